"""Cells of notebooks/02_vanilla_fgsbir.ipynb (built by tools/build_notebooks.py)."""

CELLS = [
    (
        "md",
        """
# 02 · Vanilla FG-SBIR: Sketch-a-Net and the triplet loss

The baseline the paper improves on ("Vanilla" in its Table 3): one Sketch-a-Net tower embeds sketches and photos
alike, its `fc7` output (L2-normalised) is the embedding, and a **triplet ranking loss** pulls a sketch towards its
photo and pushes it away from another.

**Learning goals.** After this notebook you can
1. describe Sketch-a-Net's layers and read its named **taps** (`conv3`, `conv4`, `conv5`) and final feature `fc7`;
2. write the **triplet ranking loss** and say what the margin does;
3. explain how training triplets are **sampled from human annotations** (shoes, chairs) or from the true match
   alone (handbags), and why a validation split is carved out of the training set;
4. train the Vanilla model with `cdimlab.train.fit_triplet`, watch its loss, and evaluate acc@1 / acc@10.
""",
    ),
    (
        "params",
        """
# Parameters (papermill: -p profile full). Literals only.
profile = "smoke"  # smoke: 113x113 inputs, a few dozen iterations on the CPU; full: 225x225, up to 20,000
seed = 0
data_root = None  # None: $CDIMLAB_DATA or ./data (synthetic stand-in when QMUL is absent)
category = "shoes"  # shoes | chairs | handbags
iterations = None  # None: the profile's value
device = "auto"
""",
    ),
    (
        "code",
        """
%matplotlib inline
from IPython.display import display
import torch

from cdimlab import course
from cdimlab.data import TripletSampler
from cdimlab.fusion import EmbeddingNet, FusionConfig
from cdimlab.losses import triplet_ranking_loss
from cdimlab.models import build_backbone
from cdimlab.train import evaluate_sbir, fit_triplet
from cdimlab.viz.plots import plot_learning_curves
from cdimlab.utils import resolve_device, seed_everything
""",
    ),
    (
        "code",
        """
profile = course.resolve_profile(profile)
device = resolve_device(device)
generator = seed_everything(seed)
cfg = course.profile_config(f"{category}_vanilla", profile, iterations=iterations, seed=seed)
print(f"profile {profile!r} on {device}: {cfg.iterations} iterations, batch {cfg.batch_size} triplets, "
      f"input {cfg.sbir_input}x{cfg.sbir_input}, lr {cfg.lr}, margin {cfg.margin}")
""",
    ),
    (
        "md",
        """
## The data: sketches, photos and human triplet annotations

QMUL FG-SBIR V1 stores each split as two arrays of 256×256 grey images — sketches and **photo edge maps** — where
row *i* of one matches row *i* of the other. For shoes and chairs, annotators also ranked pairs of candidate photos
for each sketch ("which of these two is closer to the sketch?"): each sketch has 10 candidates and all 45 pairs
were labelled. Those `(positive, negative)` pairs are the training triplets.
""",
    ),
    (
        "code",
        """
sbir = course.sbir_data(category, data_root, seed=seed)
train, val, test = sbir.train, sbir.val, sbir.test
print(f"{category} ({'synthetic stand-in' if sbir.synthetic else 'real QMUL V1'}): "
      f"train {len(train)}, validation {len(val)}, test {len(test)}; {train.num_triplets} annotated triplets")
assert len(train) > 0 and len(val) > 0 and len(test) > 0
assert train.sketches.shape[1:] == (256, 256) and train.photos.shape == train.sketches.shape
""",
    ),
    (
        "md",
        """
`TripletSampler` draws a batch of `(anchor sketch, positive photo, negative photo)` **indices** (the images stay
where they are; the trainer gathers and augments them on the device). With probability 0.25 the annotated negative
is replaced by a random photo *outside* the sketch's 10 candidates — an easy negative that keeps the embedding
globally sensible. Handbags have no annotations: positive = the true match, negative = any other photo.
""",
    ),
    (
        "code",
        """
sampler = TripletSampler(train)
anchor, pos, neg = sampler.sample(4, generator)
assert anchor.shape == pos.shape == neg.shape == (4,)
assert bool((pos != neg).all()), "a triplet's positive and negative are different photos"
triplets = [train.sketches[anchor], train.photos[pos], train.photos[neg]]
course.show_rows(triplets, ("anchor sketch", "positive", "negative"))
""",
    ),
    (
        "md",
        """
## Sketch-a-Net and its taps

`build_backbone("sketchanet")` returns a `TappedBackbone`: besides its final feature it can hand back named
intermediate maps — the *taps* the fusion module of notebook 04 will use. The smoke profile shrinks the input to
113×113, which shrinks the maps (not the channel counts).
""",
    ),
    (
        "code",
        """
backbone = build_backbone("sketchanet", input_size=cfg.sbir_input)
shapes = backbone.tap_shapes()
for name, shape in shapes.items():
    print(f"{name:>6}: {shape}")
assert shapes["conv5"][0] == 256 and shapes["final"] == (256,)
assert build_backbone("sketchanet", input_size=225).tap_shapes()["conv5"] == (256, 7, 7), "the paper's pool5"
""",
    ),
    (
        "md",
        r"""
## The triplet ranking loss

For an anchor sketch $a$, its positive photo $p$ and a negative photo $n$, with embedding $f$ and distance $d$:

$$L(a, p, n) = \max\big(0,\; \Delta + d(f(a), f(p)) - d(f(a), f(n))\big)$$

The loss is zero once the negative is farther than the positive **by at least the margin** $\Delta$ (0.3). The
paper uses the Euclidean distance; the official code the squared one (`TrainConfig.distance` chooses).
""",
    ),
    (
        "code",
        """
a = torch.tensor([[0.0, 0.0]])
p = torch.tensor([[0.3, 0.4]])        # d(a, p) = 0.5
n_far = torch.tensor([[1.0, 0.0]])    # d(a, n) = 1.0: farther than 0.5 + margin -> no loss
n_near = torch.tensor([[0.6, 0.0]])   # d(a, n) = 0.6: inside the margin -> loss 0.3 + 0.5 - 0.6 = 0.2
assert triplet_ranking_loss(a, p, n_far, margin=0.3).item() == 0.0
assert abs(triplet_ranking_loss(a, p, n_near, margin=0.3).item() - 0.2) < 1e-6
print("loss(far negative) =", triplet_ranking_loss(a, p, n_far).item(),
      "| loss(near negative) =", round(triplet_ranking_loss(a, p, n_near).item(), 4))
""",
    ),
    (
        "md",
        """
## Train the Vanilla model

`FusionConfig()` with no taps *is* Vanilla: the embedding is L2(`fc7`), 256 numbers. `fit_triplet` samples
triplets, crops them at random (225×225 out of the 256 image; smoke: 113 out of a 128 resize) and flips them on the
device, and every
`eval_every` iterations measures acc@1 on the **validation** split, keeping the best weights (early stopping on
validation, never on test).
""",
    ),
    (
        "code",
        """
seed_everything(seed)
model = EmbeddingNet(build_backbone("sketchanet", input_size=cfg.sbir_input), FusionConfig())
assert model.out_dim == 256
fit = fit_triplet(model, train, val, cfg, device, out_dir=None, progress=True)
losses = course.losses_from_log(fit.log)
print(f"{fit.iterations_run} iterations in {fit.wall_s:.1f} s ({fit.img_per_s:.0f} img/s); "
      f"best validation score at iteration {fit.best_iteration}")
""",
    ),
    (
        "code",
        """
display(plot_learning_curves(fit.log))
assert course.loss_is_stable(losses), "the loss must stay finite and must not blow up"
if profile == "full" and len(losses) >= 10:  # a full run logs hundreds of values
    assert course.loss_went_down(losses), "over a full run the training loss falls"
""",
    ),
    (
        "md",
        """
Why does the smoke loss hover around 0.3? With random weights every image lands near the same point, so
d(a, p) ≈ d(a, n) and the loss ≈ the margin. A few dozen iterations barely move it — which is why the assert above
only checks that training ran and did not diverge. A full run pulls the loss well below the margin.

## Evaluate on the test split

`evaluate_sbir` embeds every test sketch and photo, ranks the photos for each sketch and reports acc@1 and acc@10
(`protocol="10view"` averages 10 crops, as the official code; the smoke profile uses the centre crop).
""",
    ),
    (
        "code",
        """
model = fit.model.eval()
scores = evaluate_sbir(model, test, device, protocol=cfg.eval_protocol, cfg=cfg)
chance = {k: course.chance_acc_at_k(len(test), k) for k in (1, 10)}
print(f"test acc@1 = {scores['acc@1']:.3f} (chance {chance[1]:.3f}); acc@10 = {scores['acc@10']:.3f} (chance {chance[10]:.3f})")
assert 0.0 <= scores["acc@1"] <= scores["acc@10"] <= 1.0
""",
    ),
    (
        "md",
        """
In the smoke profile these numbers come from a few dozen iterations on synthetic shapes; they show the pipeline
works, nothing more. The `full` profile (225×225, up to 20,000 iterations with early stopping) on QMUL-Shoe is what
the paper's Vanilla row (52.17% acc@1) describes — see notebook 08 for our full-profile numbers.

Finally, **look** at what the model retrieves: each row is a query sketch and its top-ranked photos; the true match
is framed in green when it made the list.
""",
    ),
    (
        "code",
        """
from cdimlab.train import sbir_distances
from cdimlab.viz.gallery import render_ranked_gallery

dist = sbir_distances(model, test, device, protocol="center", cfg=cfg)[0]
render_ranked_gallery(test.sketches, test.photos, dist, k=6, queries=[0, 1, 2])
""",
    ),
    (
        "md",
        """
## Summary

* Sketch-a-Net is one tower shared by sketches and photos; its taps expose `conv3`-`conv5`, its final feature is
  `fc7` (256-d). Vanilla's embedding is L2(`fc7`).
* The triplet loss is zero once the negative is farther than the positive by the margin; only violating triplets
  teach, which is why sampling matters: human-annotated pairs for shoes and chairs, true match vs any other for
  handbags, plus 25% easy negatives.
* `fit_triplet` keeps the best weights on a validation split carved from training; `evaluate_sbir` scores acc@1
  and acc@10 on the test split (10-view or centre crop).

Next: **03_vanilla_reid** — the same story for people and cameras.
""",
    ),
    ("exercises", ""),
]
