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
sbir_experiment = "shoes_ours"  # the FG-SBIR model; a laptop-trained run (runs/laptop/shoes_ours) wins when present
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
from cdimlab.train.evaluate import sbir_eval_bank
from cdimlab.viz.explorer import ExplorerState, FeatureMapExplorer

profile = course.resolve_profile(profile)
em = course.explorer_model(sbir_experiment, profile, data_root, device, seed=seed)
model, cfg, layer, device = em.model, em.cfg, em.layer, em.device  # layer: the fused layer the text is about
print(f"{em.experiment} ({em.profile} profile): {em.source}; taps {em.taps}")
sbir = course.sbir_data("shoes", data_root, seed=seed)
pairs = torch.arange(min(8, len(sbir.test)))
sketches, photos = (sbir_eval_bank(x, model, device, cfg).eval_batch(pairs) for x in (sbir.test.sketches, sbir.test.photos))
assert sketches.shape == photos.shape and len(sketches) == len(pairs)
""",
    ),
    (
        "md",
        """
## The feature-map explorer

Pick a pair (sketch *i* and photo *i*), a layer and a filter. Each map is upsampled and drawn over its image. The
title answers the question that matters for retrieval: **does this map pick the true photo out of the others?** It
ranks all the explorer's photos by the distance between their (L2-normalised, flattened) map and the sketch's, for
the chosen filter and for the whole layer: *rank 1 of 8* means the true photo is the closest, and the distance to
it is set against the **best wrong photo**. (Cosine similarity of one sketch-photo pair cannot do this: a sketch's
map is about as similar to a wrong photo's as to its own.) The explorer opens on the fused layer and suggests the
filters that fire strongly *and* alike for the current pair.

First a static view (it is what an exported notebook shows), then the interactive explorer.
""",
    ),
    (
        "code",
        """
explorer = FeatureMapExplorer(model, sketches, photos, taps=em.taps, device=device, labels=("sketch", "photo"),
                              layer=layer)
best = explorer.suggested_filters(k=3)
c, h, w = explorer.maps(0, layer)[0].shape
print(f"{layer} maps are {c} x {h} x {w}; filters that fire alike on pair 0 at {layer}: {best}")
if h * w <= 4:
    print(f"only {h}x{w} positions: little to see. `make laptop` trains a model whose maps have spatial extent")
figure = explorer.render(ExplorerState(pair=0, layer=layer, filter=best[0]))
assert explorer.state.layer == layer and explorer.num_filters(layer) == c and len(explorer) == len(pairs)
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
The same measure for every pair at once: the rank of the true photo (1 = retrieved first) and the gap between the
best wrong photo's distance and the true photo's (positive = the true photo is closer), by the whole fused layer.
""",
    ),
    (
        "code",
        """
scores = [explorer.match(i, layer) for i in range(len(explorer))]
print(f"rank of the true photo among {len(explorer)} at {layer}:", [s.rank for s in scores])
print("gap (best wrong - true distance):", [round(s.gap, 2) for s in scores])
assert all(1 <= s.rank <= len(explorer) for s in scores)
""",
    ),
    (
        "md",
        """
Try it: move the filter slider across the fused layer (`conv5` for Sketch-a-Net, `block13` for the MobileNetV2 of
the laptop track) and compare with the earliest tap. Early-layer filters respond to strokes everywhere; a mid-level
filter that responds to one *part*, in both domains, at the same place ranks the true photo high — the reason
flattening the mid-level map (keeping *where*) helps FG-SBIR. Watch the rank, not how pretty the map is.

The paper's Fig. 5 shows several filters on one pair at once:
""",
    ),
    (
        "code",
        """
from cdimlab.viz.feature_maps import render_feature_maps, top_filters

maps_a, maps_b = explorer.maps(0, layer)
render_feature_maps(sketches[0], photos[0], maps_a, maps_b, top_filters(maps_a, maps_b, k=4), layer=layer)
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
cam_q = embedding_gradcam(model, layer, q, g, device)
cam_g = embedding_gradcam(model, layer, g, q, device)
similarity = embedding_similarity(model, q, g, device)
assert cam_q.shape == tuple(q.shape[-2:]) and 0.0 <= cam_q.min() and cam_q.max() <= 1.0
render_gradcam(q, g, cam_q, cam_g, titles=("query sketch", "its photo"), layer=layer, similarity=similarity)
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

dist = sbir_distances(model, sbir.test, device, protocol="center", cfg=cfg)[0]  # every test photo, not just 8
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
bank_s = sbir_eval_bank(sbir.test.sketches[:n], model, device, cfg)
bank_p = sbir_eval_bank(sbir.test.photos[:n], model, device, cfg)
emb = torch.cat([embed_images(model, bank_s, device)[0], embed_images(model, bank_p, device)[0]])
embedding_2d(emb, labels=list(range(n)) * 2, domains=["sketch"] * n + ["photo"] * n, title=f"{em.experiment}: PCA")
""",
    ),
    (
        "md",
        """
## Summary

* The **explorer** shows, filter by filter, where mid-level maps fire in a sketch and its photo (pose-aligned:
  flatten them) and in two cameras (not aligned: pool them), and headlines what matters for retrieval: the rank of
  the true partner and its distance gap to the best wrong one. It opens on the fused layer; a laptop-trained model
  (`make laptop`) gives maps with spatial extent, the smoke model only a 2x2 `conv5`.
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
