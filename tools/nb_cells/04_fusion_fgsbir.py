"""Cells of notebooks/04_fusion_fgsbir.ipynb (built by tools/build_notebooks.py)."""

CELLS = [
    (
        "md",
        """
# 04 · The paper's idea on FG-SBIR: fuse `conv5` with `fc7`

Vanilla embeds a sketch with `fc7` alone. The paper adds the **mid-level** map `conv5` (after its max-pool: 256×7×7
at the paper's input), **flattened** so that its spatial layout survives — sketch and photo are pose-aligned, so the
toe of a shoe sits at the same place in both — L2-normalised, and concatenated with L2(`fc7`):

$$f^{final} = \\big[\\, \\ell_2(\\mathrm{flatten}(f^{conv5})),\\; \\ell_2(f^{fc7}) \\,\\big] \\in \\mathbb{R}^{12{,}544 + 256}$$

The same triplet loss trains the whole network through this 12,800-d embedding, so `conv5` gets a direct training
signal (deep supervision).

**Learning goals.** After this notebook you can
1. build the fused embedding with `FusionConfig(("conv5",), "flatten")` and predict its size at any input size;
2. explain why each part is L2-normalised separately, and why the fusion adds **no** parameters here;
3. train Vanilla and fusion **side by side** under one recipe and one seed, and compare their curves and acc@K;
4. say what a smoke-profile comparison can and cannot tell you.
""",
    ),
    (
        "params",
        """
# Parameters (papermill: -p profile full). Literals only.
profile = "smoke"
seed = 0
data_root = None
category = "shoes"  # shoes | chairs | handbags
iterations = None  # None: the profile's value
device = "auto"
""",
    ),
    (
        "code",
        """
%matplotlib inline
import pandas as pd
import torch

from cdimlab import course
from cdimlab.fusion import EmbeddingNet, FusionConfig, fusion_dim
from cdimlab.models import build_backbone
from cdimlab.train import evaluate_sbir, fit_triplet, sbir_distances
from cdimlab.utils import resolve_device, seed_everything

profile = course.resolve_profile(profile)
device = resolve_device(device)
cfg = course.profile_config(f"{category}_ours", profile, iterations=iterations, seed=seed)
sbir = course.sbir_data(category, data_root, seed=seed)
print(f"{category} ({'synthetic' if sbir.synthetic else 'real'}): train {len(sbir.train)}, test {len(sbir.test)}; "
      f"{cfg.iterations} iterations at {cfg.sbir_input}x{cfg.sbir_input}")
""",
    ),
    (
        "md",
        """
## The fused embedding

`EmbeddingNet(backbone, cfg)` runs the backbone once, reads the taps named in `cfg.taps`, pools them, and fuses them
with the final feature (`cdimlab.fusion.MidLevelFusion`). `parts(x)` returns the two halves before concatenation.
""",
    ),
    (
        "code",
        """
OURS = FusionConfig(("conv5",), "flatten", None, True)
VANILLA = FusionConfig()
seed_everything(seed)
fused = EmbeddingNet(build_backbone("sketchanet", input_size=cfg.sbir_input), OURS).eval()
x = torch.randn(2, 1, cfg.sbir_input, cfg.sbir_input)
with torch.no_grad():
    parts, emb = fused.parts(x), fused(x)
print({k: tuple(v.shape) for k, v in parts.items()}, "->", tuple(emb.shape), "|", OURS.describe())
c, h, w = fused.backbone.tap_shapes()["conv5"]
assert fused.out_dim == c * h * w + 256 == emb.shape[1]
for name, part in parts.items():
    assert torch.allclose(part.norm(dim=1), torch.ones(2)), f"the {name} part has unit length"
""",
    ),
    (
        "code",
        """
paper_size = fusion_dim(build_backbone("sketchanet", input_size=225), OURS)
vanilla = EmbeddingNet(build_backbone("sketchanet", input_size=cfg.sbir_input), VANILLA)
n_params = {name: sum(p.numel() for p in m.parameters()) for name, m in (("Vanilla", vanilla), ("Ours", fused))}
print(f"fused embedding at 225x225: {paper_size:,} values; parameters: {n_params}")
assert paper_size == 12_800
assert n_params["Vanilla"] == n_params["Ours"], "flatten + L2 + concat has no weights: the gain is not capacity"
""",
    ),
    (
        "md",
        """
Two things to notice. The fused embedding is 50× longer than Vanilla's, and if it were not normalised part by part,
the 12,544 `conv5` values would drown the 256 `fc7` values — each part gets unit length, so both weigh the same.
And fusion adds **no parameters**: any gain comes from *what* the loss sees, not from a bigger model.

## Train both, side by side

`course.train_side_by_side` seeds before building each model, so Vanilla and fusion start from the same random
backbone weights and see the same triplets: only the embedding differs.
""",
    ),
    (
        "code",
        """
def sketchanet_with(fusion):
    return lambda: EmbeddingNet(build_backbone("sketchanet", input_size=cfg.sbir_input), fusion)


variants = {"Vanilla (fc7)": sketchanet_with(VANILLA), "Ours (conv5 flatten + fc7)": sketchanet_with(OURS)}
runs = course.train_side_by_side(
    variants,
    fit=lambda m: fit_triplet(m, sbir.train, sbir.val, cfg, device, progress=True),
    evaluate=lambda m: evaluate_sbir(m, sbir.test, device, protocol=cfg.eval_protocol, cfg=cfg),
    seed=seed,
)
print(f"both trained and evaluated in {runs.wall_s:.0f} s")
runs.table()
""",
    ),
    (
        "code",
        """
from cdimlab.viz.plots import plot_training_curves

logs = {label: pd.DataFrame(fit.log) for label, fit in runs.fits.items()}
for label, fit in runs.fits.items():
    assert course.loss_is_stable(course.losses_from_log(fit.log)), f"{label}: the loss must stay finite and bounded"
for label, m in runs.metrics.items():
    assert 0.0 <= m["acc@1"] <= m["acc@10"] <= 1.0, label
plot_training_curves(logs)
""",
    ),
    (
        "code",
        """
from cdimlab.viz.plots import plot_acc_at_k_curve

dists = {label: sbir_distances(m, sbir.test, device, protocol="center", cfg=cfg) for label, m in runs.models.items()}
plot_acc_at_k_curve(dists, ks=range(1, min(20, len(sbir.test)) + 1))
""",
    ),
    (
        "md",
        """
## Reading the comparison honestly

In the **smoke** profile both models saw a few dozen batches of synthetic shapes at 113×113, from random weights:
the difference between the two rows above is mostly noise, and it may go either way. Nothing here is evidence for
or against the paper. What the smoke run *does* show is that both variants train through the same code, and that
the fused model is exactly as large.

The **full** profile (225×225, up to 20K iterations, early stopping on validation) is where the paper's claim lives:
Table 3 reports Vanilla 52.17% → Ours 64.35% acc@1 on QMUL-Shoe. Our own full-profile numbers, when
`results/full/` holds them, are in notebook 08.
""",
    ),
    (
        "code",
        """
from cdimlab.experiments import get_experiment

paper = pd.DataFrame({name: get_experiment(f"{category}_{name}").paper for name in ("vanilla", "ours")}).T * 100
print(f"the paper's Table 3 on {category} (percent):")
paper
""",
    ),
    (
        "md",
        """
## Summary

* Fusion = pool the mid-level map (flatten, for pose-aligned sketch and photo), L2-normalise each part, concatenate
  with the final feature, train end to end: `FusionConfig(("conv5",), "flatten")`, 12,800-d at 225×225.
* It adds no parameters; per-part L2 keeps the short `fc7` part from being drowned by the long `conv5` part.
  Exercise 3 below has you write this forward pass yourself; the checker compares it with `MidLevelFusion`.
* Compare variants with one recipe and one seed (`course.train_side_by_side`). A smoke comparison checks the
  plumbing; only a full run can test the paper's +12 points.

Next: **05_fusion_reid** — the same idea where the domains are *not* aligned.
""",
    ),
    ("exercises", ""),
]
