"""Cells of notebooks/03_vanilla_reid.ipynb (built by tools/build_notebooks.py)."""

CELLS = [
    (
        "md",
        """
# 03 · Vanilla person ReID: ResNet-50, identities and the pool5 embedding

The paper's ReID baseline ("Vanilla" in Tables 4-6) is the standard one: a ResNet-50 is trained to **classify the
training identities** with softmax cross-entropy; at test time the classifier is thrown away and the 2,048-d `pool5`
feature (global average pooling of `res5c`) is the embedding that ranks the gallery.

**Learning goals.** After this notebook you can
1. read a Market-1501-style dataset: identities, cameras, the train / query / gallery split, junk and distractors;
2. build ResNet-50 with named taps and a `ReIDNet` head, and say why training is *classification* while testing is
   *retrieval*;
3. train it with `cdimlab.train.fit_classifier`, embed query and gallery, and score mAP and CMC with `cmc_map`;
4. look at a ranked gallery and tell a true match from a same-camera image that the protocol drops.
""",
    ),
    (
        "params",
        """
# Parameters (papermill: -p profile full). Literals only.
profile = "smoke"  # smoke: 64x32 inputs, a few iterations on the CPU; full: 256x128, 60,000 iterations
seed = 0
data_root = None  # None: $CDIMLAB_DATA or ./data (synthetic stand-in when Market-1501 is absent)
dataset = "market1501"
iterations = None  # None: the profile's value
weights = None  # None: random init; "imagenet" (the paper's start) needs the torchvision weights file locally
device = "auto"
""",
    ),
    (
        "code",
        """
%matplotlib inline
from IPython.display import display
import numpy as np

from cdimlab import course
from cdimlab.fusion import FusionConfig, ReIDNet
from cdimlab.models import build_backbone
from cdimlab.train import fit_classifier, reid_eval_banks
from cdimlab.viz.plots import plot_learning_curves
from cdimlab.utils import resolve_device, seed_everything
""",
    ),
    (
        "code",
        """
profile = course.resolve_profile(profile)
device = resolve_device(device)
seed_everything(seed)
experiment = {"market1501": "market", "dukemtmc": "duke"}.get(dataset, dataset) + "_vanilla"
cfg = course.profile_config(experiment, profile, iterations=iterations, seed=seed)
print(f"profile {profile!r} on {device}: {cfg.iterations} iterations, batch {cfg.batch_size}, "
      f"input {cfg.reid_input}, {cfg.optimizer} lr {cfg.lr}")
""",
    ),
    (
        "md",
        """
## The data

A Market-1501 file name such as `0002_c1s1_000451_03.jpg` says: identity 2, camera 1. The **training** identities
and the **test** identities are disjoint — the model must recognise people it has never seen, which is why the
test is retrieval, not classification. The test side has a **query** set and a **gallery**; the gallery also holds
distractors (identity 0) and junk (identity −1).
""",
    ),
    (
        "code",
        """
reid = course.reid_data(dataset, data_root, size=cfg.reid_input, max_ids=cfg.max_ids)
data = reid.data
print(f"{dataset} ({'synthetic stand-in' if reid.synthetic else 'real data'}): {data.num_train_pids} training identities "
      f"in {len(data.train)} images; {len(data.query)} queries; {len(data.gallery)} gallery images")
train_ids = {pid for _, pid, _ in data.train}
assert train_ids == set(range(data.num_train_pids)), "training labels are relabelled 0..K-1"
assert reid.train_images.shape == (len(data.train), *cfg.reid_input, 3)
gallery_ids = np.array([pid for _, pid, _ in data.gallery])
print(f"gallery: {np.sum(gallery_ids == 0)} distractors (id 0), {np.sum(gallery_ids == -1)} junk (id -1)")
""",
    ),
    (
        "code",
        """
cam_a, cam_b = course.two_camera_pairs(data, n=6, size=(128, 64))
course.show_pairs(cam_a, cam_b, ("camera A", "camera B"))
""",
    ),
    (
        "md",
        """
## ResNet-50 with taps, and the ReID head

`build_backbone("resnet50")` is torchvision's ResNet-50 with named taps: `res2`…`res4`, the six units `res4a`…`res4f`,
and the three units of the last block `res5a`, `res5b`, `res5c`; its final feature is `pool5`. The paper starts
from ImageNet weights; no weights can be downloaded here, so the default is random initialisation (absolute numbers
are then far lower; what we compare is Vanilla against fusion under one recipe).
""",
    ),
    (
        "code",
        """
backbone = build_backbone("resnet50", input_size=tuple(cfg.reid_input), weights=weights)
shapes = backbone.tap_shapes()
print({k: shapes[k] for k in ("res3", "res4", "res5a", "res5b", "final")})
assert shapes["res5a"][0] == shapes["res5b"][0] == 2048 and shapes["final"] == (2048,)
model = ReIDNet(backbone, FusionConfig(l2_parts=False), num_classes=data.num_train_pids)
assert model.out_dim == 2048 and model.classifier.out_features == data.num_train_pids
print(f"embedding {model.out_dim}-d (pool5); classifier over {data.num_train_pids} identities")
""",
    ),
    (
        "md",
        """
## Train: identity classification

`fit_classifier` shuffles the training images, flips them at random, and minimises softmax cross-entropy over the
training identities (Adam, learning rate 3.5e-4 decayed ×0.95 every 1,000 iterations in the full profile).
""",
    ),
    (
        "code",
        """
fit = fit_classifier(model, reid.train_images, reid.train_labels, cfg, device, out_dir=None, progress=True)
losses = course.losses_from_log(fit.log)
print(f"{fit.iterations_run} iterations in {fit.wall_s:.1f} s ({fit.img_per_s:.0f} img/s); "
      f"loss {losses[0]:.3f} -> {losses[-1]:.3f}")
display(plot_learning_curves(fit.log))
assert all(v == v for v in losses), "the loss must stay finite"
assert losses[0] < 1.5 * np.log(data.num_train_pids) + 1, "a fresh classifier starts near log(K)"
""",
    ),
    (
        "md",
        """
## Evaluate: rank the gallery by pool5 distance

Evaluation is three steps: embed the query and gallery images with `model.embed` (pool5 — not the logits), compute
Euclidean distances, and score them with `cmc_map` (same-identity same-camera images and junk dropped, distractors
kept). `cdimlab.train.evaluate_reid` does exactly this in one call, plus **multi-query** on Market-1501; here we take
the steps one by one so we can reuse the distances for a picture.
""",
    ),
    (
        "code",
        """
import torch
from cdimlab.chance import reid_chance
from cdimlab.metrics import cmc_map, pairwise_distance
from cdimlab.train import embed_images

model = fit.model.eval()
banks = reid_eval_banks(data, device, cfg)                 # query / gallery images on the device
qf = embed_images(model, banks.query, device)[0]           # (queries, 2048)
gf = embed_images(model, banks.gallery, device)[0]         # (gallery, 2048)
dist = pairwise_distance(qf, gf)
cmc, mAP = cmc_map(dist, banks.q_pids, banks.g_pids, banks.q_camids, banks.g_camids)
chance = reid_chance(banks.q_pids, banks.g_pids, banks.q_camids, banks.g_camids)  # a random ranking
print(f"mAP {mAP:.3f}; CMC rank-1 {cmc[0]:.3f}, rank-5 {cmc[4]:.3f}, rank-10 {cmc[9]:.3f}; chance: rank-1 "
      f"{chance['rank1']:.3f}, mAP {chance['mAP']:.3f}; {len(data.query)} queries")
assert qf.shape == (len(data.query), 2048) and gf.shape == (len(data.gallery), 2048)
assert 0.0 <= cmc[0] <= cmc[4] <= cmc[9] <= 1.0 and 0.0 < mAP <= 1.0
""",
    ),
    (
        "md",
        """
A ranked gallery makes the protocol concrete: each row is a query, then its nearest gallery images; green frames
are true matches (same identity, another camera), red ones are not. Same-camera images of the query person never
appear — the protocol removed them.
""",
    ),
    (
        "code",
        """
from cdimlab.viz.gallery import render_ranked_gallery

q_imgs = banks.query.raw(torch.arange(len(banks.query)))      # the uint8 images as stored on the device
g_imgs = banks.gallery.raw(torch.arange(len(banks.gallery)))
render_ranked_gallery(q_imgs, g_imgs, dist, k=6, queries=[0, 1, 2],
                      q_pids=banks.q_pids, g_pids=banks.g_pids, q_camids=banks.q_camids, g_camids=banks.g_camids)
""",
    ),
    (
        "md",
        """
## Summary

* ReID trains a **classifier** over training identities (softmax cross-entropy) but tests **retrieval** of unseen
  identities: the 2,048-d `pool5` feature is the embedding, the classifier is discarded.
* The protocol drops same-identity same-camera gallery images and junk; distractors stay.
* `fit_classifier`, then embed → distance → `cmc_map` (all of it in `evaluate_reid`, with multi-query) is the
  whole loop. The paper's Vanilla reaches 67.55% mAP on Market-1501 from ImageNet weights.

**What the smoke numbers are.** In the `smoke` profile a *randomly initialised* ResNet-50 sees a few dozen
64x32 synthetic people for a handful of steps: far too little for a 25-million-parameter network to learn
identities. The loss may even rise a little between the first and last logged steps (a fresh classifier's loss is
near log K; the first Adam steps overshoot), and mAP sits at or near the chance line printed above. That is the
honest result of this budget, not a bug: the smoke profile checks that the pipeline runs end to end. To see a ReID
network *learn*, use the laptop track: ImageNet MobileNetV2 on the real Market-1501 reaches rank-1 ≈ 0.55 after 300
CPU iterations (from 0.07 before training; `results/laptop/SUMMARY.md`, notebook 05 with `profile = "laptop"`).

Next: **04_fusion_fgsbir** — the paper's idea, first on sketches.
""",
    ),
    ("exercises", ""),
]
