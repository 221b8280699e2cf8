"""Cells of notebooks/05_fusion_reid.ipynb (built by tools/build_notebooks.py)."""

CELLS = [
    (
        "md",
        """
# 05 · The paper's idea on ReID: fuse `res5a` and `res5b` with `pool5`

A person seen by two cameras is *not* pose-aligned: an arm that is on the left in one view may be behind the body in
the other. So for ReID the paper **global-average-pools** the mid-level maps instead of flattening them — keeping
*what* fired, dropping *where*. It takes the first two units of ResNet-50's last block, `res5a` and `res5b` (2,048
channels each), pools each to a vector, concatenates them (4,096), reduces them with a fully connected layer to
1,024, and concatenates that with `pool5`:

$$f^{final} = \\big[\\, \\mathrm{FC}_{1024}\\big(\\mathrm{GAP}(f^{res5a}),\\, \\mathrm{GAP}(f^{res5b})\\big),\\; f^{pool5} \\,\\big]
\\in \\mathbb{R}^{1024 + 2048}$$

The identity classifier sits on this 3,072-d vector during training, and the vector is the retrieval embedding.

**Learning goals.** After this notebook you can
1. build the ReID fusion with `FusionConfig(("res5a", "res5b"), "gap", 1024, l2_parts=False)` and count what it adds;
2. explain why ReID uses GAP where FG-SBIR flattens;
3. train Vanilla and fusion side by side with `fit_classifier` and compare mAP, CMC and multi-query scores;
4. read CMC curves of two models on one plot;
5. compare the two over several seeds beside the untrained network and chance, and read the real-data (`laptop`)
   results.
""",
    ),
    (
        "params",
        """
# Parameters (papermill: -p profile full). Literals only.
profile = "smoke"  # smoke | laptop | full
seed = 0
seeds = (0, 1, 2)  # the multi-seed comparison (records are reused on a rerun)
retrain = False  # laptop profile: True reruns seed 0 of the laptop track on Market-1501 (real data)
data_root = None
dataset = "market1501"
iterations = None  # None: the profile's value
weights = None  # None: random init; "imagenet" needs the torchvision weights file locally
device = "auto"
""",
    ),
    (
        "code",
        """
%matplotlib inline
import pandas as pd

from cdimlab import course
from cdimlab.fusion import FusionConfig, ReIDNet
from cdimlab.models import build_backbone
from cdimlab.train import evaluate_reid, fit_classifier, reid_eval_banks
from cdimlab.utils import resolve_device
""",
    ),
    (
        "code",
        """
profile = course.resolve_profile(profile, (dataset,), data_root)
recipe = "smoke" if profile == "laptop" else profile  # laptop: live cells at smoke size, real numbers below
device = resolve_device(device)
prefix = {"market1501": "market", "dukemtmc": "duke"}.get(dataset, dataset)
cfg = course.profile_config(f"{prefix}_ours", recipe, iterations=iterations, seed=seed)
reid = course.reid_data(dataset, data_root, size=cfg.reid_input, max_ids=cfg.max_ids)
banks = reid_eval_banks(reid.data, device, cfg)  # decoded once, shared by both evaluations
print(f"{dataset} ({'synthetic' if reid.synthetic else 'real'}): {reid.data.num_train_pids} training ids; "
      f"{cfg.iterations} iterations, batch {cfg.batch_size}, input {cfg.reid_input}")
""",
    ),
    (
        "md",
        """
## The fused ReID embedding
""",
    ),
    (
        "code",
        """
OURS = FusionConfig(("res5a", "res5b"), "gap", 1024, l2_parts=False)
VANILLA = FusionConfig(l2_parts=False)
K = reid.data.num_train_pids
ours = ReIDNet(build_backbone("resnet50", input_size=tuple(cfg.reid_input), weights=weights), OURS, K)
vanilla = ReIDNet(build_backbone("resnet50", input_size=tuple(cfg.reid_input), weights=weights), VANILLA, K)
extra = sum(p.numel() for p in ours.parameters()) - sum(p.numel() for p in vanilla.parameters())
print(f"{OURS.describe()}: {ours.out_dim}-d (Vanilla: {vanilla.out_dim}-d); extra parameters: {extra:,}")
assert ours.out_dim == 1024 + 2048 and vanilla.out_dim == 2048
assert extra == (4096 * 1024 + 1024) + 1024 * K, "the FC reduction, plus the classifier's wider input"
""",
    ),
    (
        "md",
        """
Unlike FG-SBIR, the ReID fusion does add weights: the 4,096 → 1,024 layer (4.2 M parameters), and the classifier now
reads 3,072 values instead of 2,048. The parts are not L2-normalised here (`l2_parts=False`): the softmax classifier
on top learns its own scaling.

## Train both, side by side
""",
    ),
    (
        "code",
        """
def resnet_with(fusion):
    return lambda: ReIDNet(build_backbone("resnet50", input_size=tuple(cfg.reid_input), weights=weights), fusion, K)


builders = {"Vanilla (pool5)": resnet_with(VANILLA), "Ours (res5a+res5b GAP -> FC1024 + pool5)": resnet_with(OURS)}
runs = course.train_side_by_side(
    builders,
    fit=lambda m: fit_classifier(m, reid.train_images, reid.train_labels, cfg, device, progress=True),
    evaluate=lambda m: evaluate_reid(m, banks, device, multi_query=True, cfg=cfg),
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

for label, fit in runs.fits.items():
    losses = course.losses_from_log(fit.log)
    assert course.loss_is_stable(losses), f"{label}: the loss must stay finite and bounded"
for label, m in runs.metrics.items():
    assert 0.0 <= m["rank1"] <= m["rank5"] <= m["rank10"] <= 1.0 and 0.0 < m["mAP"] <= 1.0, label
plot_training_curves({label: pd.DataFrame(fit.log) for label, fit in runs.fits.items()})
""",
    ),
    (
        "code",
        """
from cdimlab.metrics import cmc_map, pairwise_distance
from cdimlab.train import embed_images
from cdimlab.viz.plots import plot_cmc

curves = {}
for label, m in runs.models.items():
    qf, gf = (embed_images(m, b, device)[0] for b in (banks.query, banks.gallery))
    curves[label] = cmc_map(pairwise_distance(qf, gf), banks.q_pids, banks.g_pids, banks.q_camids, banks.g_camids)
plot_cmc(curves, max_rank=20)
""",
    ),
    (
        "md",
        """
## Several seeds, the untrained network, and chance

One seed is one draw, and the smoke query set is small. `course.compare_over_seeds` runs both sides for every seed
in `seeds` through the experiment runner (records already written are reused); every record holds the same
network's score at its initial weights, chance (rank-1 and mAP of a random ranking under the ReID rules) and the
number of test queries. The sentence under the table is computed from the numbers.
""",
    ),
    (
        "code",
        """
from IPython.display import Markdown, display

cmp = None
if profile != "laptop":  # laptop: the committed real-data records below take this role
    cmp = course.compare_over_seeds(f"{prefix}_vanilla", f"{prefix}_ours", profile, seeds,
                                    data_root=data_root, device=device)
    assert len(cmp.records) == 2 * len(seeds) and 0 < cmp.summary.chance < 1 and cmp.summary.n_queries > 0
    display(cmp.table())
    display(Markdown(cmp.verdict()))
    display(cmp.figure())
""",
    ),
    (
        "md",
        """
If the trained scores sit at chance, that is what you are looking at: a ResNet-50 from random weights, a few dozen
iterations on tiny synthetic people, cannot learn identities; the smoke run checks that fusion, classifier,
evaluation and the ReID protocol run end to end. ReID needs a pre-trained backbone and real data for a number that
means something — the `laptop` profile below (ImageNet MobileNetV2 on the real Market-1501, on a CPU).

## Real data: the `laptop` profile
""",
    ),
    (
        "code",
        """
from cdimlab import laptop

if profile == "laptop" and retrain:
    laptop.run_track(seeds=(0,), datasets=("market1501",), data_root=data_root)
view = course.laptop_results(("market1501",))
display(Markdown(view.markdown()))
if view.summaries:
    assert all(0 < p.chance < 1 and p.n_queries > 0 for p in view.summaries)
    display(view.figure())
""",
    ),
    (
        "md",
        """
## The paper's numbers

The paper (ImageNet ResNet-50, 60K iterations at 256×128) reports on Market-1501 Vanilla 67.55% → Ours 75.55% mAP
single-query and 75.98% → 82.37% multi-query.
""",
    ),
    (
        "code",
        """
from cdimlab.experiments import get_experiment

paper = pd.DataFrame({name: get_experiment(f"{prefix}_{name}").paper for name in ("vanilla", "ours")}).T * 100
print(f"the paper's numbers on {dataset} (percent):")
paper
""",
    ),
    (
        "md",
        """
## Summary

* ReID views are not aligned, so the mid-level maps are **globally average-pooled**, not flattened (Table 10 tests
  this); `res5a` and `res5b` are pooled, concatenated, reduced by an FC layer to 1,024 and fused with `pool5`.
* The fused embedding (3,072-d) feeds the identity classifier in training and ranks the gallery at test time.
* Side-by-side training with one recipe and one seed isolates the effect of the fusion; several seeds beside the
  untrained network and chance say whether a gap is more than noise. Smoke runs check the plumbing; real-data
  numbers come from the `laptop` profile (CPU) and the `full` profile (GPU, the paper's +8 points of mAP).

Next: **06_ablations** — which layers, which pooling, which backbone, and attention instead of fusion.
""",
    ),
    ("exercises", ""),
]
