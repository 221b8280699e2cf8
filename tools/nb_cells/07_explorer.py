"""Cells of notebooks/07_explorer.ipynb (built by tools/build_notebooks.py)."""

CELLS = [
    (
        "md",
        """
# 07 · Look inside: feature-map explorer, Grad-CAM for embeddings, ranked galleries

The paper's argument is visual (its Fig. 2 and Fig. 5): a `conv5` filter of Sketch-a-Net fires on the same part — a
heel, a buckle, a laces pattern — **at the same place** in a sketch and in its photo. That is matchable, local,
mid-level detail that `fc7` has already pooled away. This notebook lets you look for yourself.

**Learning goals.** After this notebook you can
1. use the **feature-map explorer** (choose the dataset, the image pair, the layer and the filter) to compare a
   filter's activation on a sketch and its photo, or on one person seen by two cameras, and find filters that fire
   alike in both domains;
2. explain **Grad-CAM for embeddings**: which regions of a query raise its similarity to a gallery item;
3. read a **ranked gallery** with the true matches marked, and connect it to acc@K and CMC;
4. see a 2-D map of the embedding space, sketches beside their photos.

Without interactive widgets (a static HTML export, a plain Python run), every view falls back to a static figure.
""",
    ),
    (
        "params",
        """
# Parameters (papermill: -p profile full). Literals only.
profile = "smoke"
seed = 0
data_root = None
sbir_experiment = "shoes_ours"  # the FG-SBIR model to look inside
reid_experiment = "market_ours"  # the ReID model (loaded when an earlier run left one; else random weights)
device = "cpu"
""",
    ),
    (
        "code",
        """
%matplotlib inline
import torch
from IPython.display import display

from cdimlab import course
from cdimlab.data import sbir_bank
from cdimlab.viz.explorer import ExplorerState, FeatureMapExplorer

profile = course.resolve_profile(profile)
model, cfg, source = course.trained_model(sbir_experiment, profile, data_root, device, seed=seed)
print(f"{sbir_experiment}: {source}")
sbir = course.sbir_data("shoes", data_root, seed=seed)
pairs = torch.arange(min(8, len(sbir.test)))
sizes = dict(crop=cfg.sbir_input, resize=cfg.sbir_resize, sketch_std=cfg.sketch_std)  # plain sizes, no config
sketches, photos = (sbir_bank(x, device, **sizes, train=False).eval_batch(pairs) for x in (sbir.test.sketches, sbir.test.photos))
assert sketches.shape == photos.shape == (len(pairs), 1, cfg.sbir_input, cfg.sbir_input)
""",
    ),
    (
        "md",
        """
## The feature-map explorer

Pick a pair (sketch *i* and photo *i*), a layer and a filter. Each map is upsampled and drawn over its image; the
title gives the cosine similarity of the two maps — how alike the filter fires in the two domains. The explorer
suggests the filters that fire strongly *and* alike for the current pair.

First a static view (it is what an exported notebook shows), then the interactive explorer.
""",
    ),
    (
        "code",
        """
explorer = FeatureMapExplorer(model, sketches, photos, taps=("conv3", "conv4", "conv5"), device=device,
                              labels=("sketch", "photo"))
best = explorer.suggested_filters(k=3)
print("filters that fire alike on pair 0 at conv5:", best)
figure = explorer.render(ExplorerState(pair=0, layer="conv5", filter=best[0]))
assert explorer.num_filters("conv5") == 256 and len(explorer) == len(pairs)
figure
""",
    ),
    (
        "code",
        """
explorer.show()  # sliders and menus in JupyterLab; a static figure where widgets cannot render
""",
    ),
    (
        "md",
        """
Try it: move the filter slider across `conv5` and compare with `conv3`. Early-layer filters respond to strokes
everywhere; many `conv5` filters respond to one *part*, in both domains, at the same place — the reason flattening
`conv5` (keeping *where*) helps FG-SBIR.

The paper's Fig. 5 shows several filters on one pair at once:
""",
    ),
    (
        "code",
        """
from cdimlab.viz.feature_maps import render_feature_maps, top_filters

maps_a, maps_b = explorer.maps(0, "conv5")
render_feature_maps(sketches[0], photos[0], maps_a, maps_b, top_filters(maps_a, maps_b, k=4), layer="conv5")
""",
    ),
    (
        "md",
        """
## Two cameras: the same explorer for ReID

For ReID the two "domains" are two cameras. The pose is different, so a filter that fires on a backpack does so at a
*different place* in each view — the reason ReID pools the maps (GAP) instead of flattening them.
""",
    ),
    (
        "code",
        """
from cdimlab.data import transforms as T

reid_model, reid_cfg, reid_source = course.trained_model(reid_experiment, profile, data_root, device, seed=seed,
                                                         train_if_missing=False)
print(f"{reid_experiment}: {reid_source}")
reid = course.reid_data("market1501", data_root, size=reid_cfg.reid_input, max_ids=reid_cfg.max_ids, decode_train=False)
cam_a, cam_b = course.two_camera_pairs(reid.data, n=4, size=tuple(reid_cfg.reid_input))
normalise = lambda x: T.normalize(x * 255.0, T.IMAGENET_MEAN, T.IMAGENET_STD)  # explorer images are in [0, 1]
reid_explorer = FeatureMapExplorer(reid_model, cam_a, cam_b, taps=("res4", "res5a", "res5b"), device=device,
                                   labels=("camera A", "camera B"), preprocess=normalise)
reid_explorer.render(ExplorerState(pair=0, layer="res5a", filter=reid_explorer.suggested_filters(k=1)[0]))
""",
    ),
    (
        "md",
        """
Both explorers in one place: the **dataset** menu switches between sketch ↔ photo (QMUL-style) and camera A ↔
camera B (Market-style); the controls below it pick the pair, layer, filter and overlay.
""",
    ),
    (
        "code",
        """
views = {"shoes: sketch ↔ photo": explorer, "market1501: camera A ↔ camera B": reid_explorer}
if course.widgets_available():
    display(course.dataset_switch(views))
else:
    print("no widgets here: the static figures above show both datasets")
""",
    ),
    (
        "md",
        """
## Grad-CAM for an embedding

Grad-CAM explains a *score*. A retrieval model has no class score at test time, so we explain the **similarity**
between the query's embedding and one gallery item's embedding: the gradient of that similarity with respect to a
layer's maps weights the maps, and their weighted sum shows the regions that make the two match
(`cdimlab.viz.gradcam`, built on the `grad-cam` package with a similarity target).
""",
    ),
    (
        "code",
        """
from cdimlab.viz.gradcam import embedding_gradcam, embedding_similarity, render_gradcam

q, g = sketches[0], photos[0]
cam_q = embedding_gradcam(model, "conv5", q, g, device)
cam_g = embedding_gradcam(model, "conv5", g, q, device)
similarity = embedding_similarity(model, q, g, device)
assert cam_q.shape == tuple(q.shape[-2:]) and 0.0 <= cam_q.min() and cam_q.max() <= 1.0
render_gradcam(q, g, cam_q, cam_g, titles=("query sketch", "its photo"), layer="conv5", similarity=similarity)
""",
    ),
    (
        "md",
        """
## Ranked galleries, true matches marked

Each row: a query sketch, then its top-ranked photos; green = the true match, red = another photo. The query's title
gives the rank of its true match — acc@1 counts rows whose first photo is green, acc@10 rows with green in the top 10.
""",
    ),
    (
        "code",
        """
from cdimlab.metrics import acc_at_k
from cdimlab.train import embed_images, sbir_distances
from cdimlab.viz.gallery import rank_of_true_match, render_ranked_gallery

dist = sbir_distances(model, sbir.test, device, protocol="center", cfg=cfg)[0]
ranks = rank_of_true_match(dist)
acc = acc_at_k(dist, ks=(1, 10))
assert abs(acc[1] - float((ranks <= 1).mean())) < 1e-6, "the gallery's ranks and acc@1 agree"
render_ranked_gallery(sbir.test.sketches, sbir.test.photos, dist, k=6, queries=[0, 1, 2, 3])
""",
    ),
    (
        "md",
        """
## The embedding space in 2-D

A PCA of the test embeddings: colour = instance, marker = domain. In a good cross-domain embedding each sketch sits
next to its own photo, not next to other sketches.
""",
    ),
    (
        "code",
        """
from cdimlab.viz.plots import embedding_2d

n = min(10, len(sbir.test))
bank_s = sbir_bank(sbir.test.sketches[:n], device, **sizes, train=False)
bank_p = sbir_bank(sbir.test.photos[:n], device, **sizes, train=False)
emb = torch.cat([embed_images(model, bank_s, device)[0], embed_images(model, bank_p, device)[0]])
embedding_2d(emb, labels=list(range(n)) * 2, domains=["sketch"] * n + ["photo"] * n, title=f"{sbir_experiment}: PCA")
""",
    ),
    (
        "md",
        """
## Summary

* The **explorer** shows, filter by filter, that mid-level maps fire on the same part at the same place in a sketch
  and its photo (pose-aligned: flatten them), but at different places for two cameras (not aligned: pool them).
* **Embedding Grad-CAM** differentiates the *similarity* of two embeddings, not a class score, and shows the regions
  that make a query match a gallery item.
* **Ranked galleries** make acc@K and CMC visible; the **2-D map** shows whether sketches sit beside their photos.
* All views are plain figures (`render`, `render_feature_maps`, `render_gradcam`, `render_ranked_gallery`), so they
  work without widgets too.

Next: **08_reproduce_paper** — every table, the paper's numbers beside ours.
""",
    ),
    ("exercises", ""),
]
