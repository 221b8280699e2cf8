"""Cells of notebooks/01_metrics.ipynb (built by tools/build_notebooks.py)."""

CELLS = [
    (
        "md",
        """
# 01 · Metrics: acc@K, CMC, mAP and multi-query

Every number in the paper is one of four retrieval metrics. Before training anything we compute each one **by hand**
on a tiny example, then with `cdimlab.metrics`, and check that the two agree.

**Learning goals.** After this notebook you can
1. compute FG-SBIR **acc@K** from a sketch-to-photo distance matrix, and explain the 10-view average;
2. compute a ReID **CMC** curve and **mAP**, including which gallery images are *dropped* (same identity and same
   camera, junk) and which stay (distractors);
3. explain **multi-query** ReID (pooling several images of the query person);
4. use `acc_at_k`, `cmc_map` and `multi_query_pool` from `cdimlab.metrics`, and know why ranking must be vectorised.
""",
    ),
    (
        "params",
        """
# Parameters (papermill). Literals only.
profile = "smoke"
seed = 0
ranking_queries = 1000  # size of the timing example at the end (Market-1501: 3,368 queries x 19,732 gallery)
ranking_gallery = 4000
""",
    ),
    (
        "code",
        """
%matplotlib inline
import matplotlib.pyplot as plt
import numpy as np
import torch

from cdimlab import metrics
from cdimlab.utils import seed_everything

generator = seed_everything(seed)
""",
    ),
    (
        "md",
        """
## FG-SBIR: acc@K

Four sketches (rows, the queries) against four photos (columns, the gallery); sketch *i* matches photo *i*, so the
**diagonal** holds the true-match distances. Smaller is more similar.
""",
    ),
    (
        "code",
        """
D = torch.tensor([
    [0.10, 0.40, 0.35, 0.80],   # sketch 0: its photo is the closest      -> rank 1
    [0.30, 0.50, 0.20, 0.90],   # sketch 1: two photos are closer         -> rank 3
    [0.70, 0.60, 0.65, 0.20],   # sketch 2: photo 3 and photo 1 are closer -> rank 3
    [0.90, 0.80, 0.70, 0.75],   # sketch 3: photo 2 is closer             -> rank 2
])
true = D.diagonal()[:, None]                     # each query's true-match distance
ranks_by_hand = (D < true).sum(dim=1) + 1        # 1 + number of photos strictly closer
print("rank of the true match per sketch:", ranks_by_hand.tolist())
acc_by_hand = {k: (ranks_by_hand <= k).float().mean().item() for k in (1, 2, 3)}
acc_by_hand
""",
    ),
    (
        "code",
        """
acc = metrics.acc_at_k(D, ks=(1, 2, 3))
assert ranks_by_hand.tolist() == [1, 3, 3, 2]
assert acc == acc_by_hand == {1: 0.25, 2: 0.5, 3: 1.0}
print("cdimlab.metrics.acc_at_k agrees with the hand computation:", acc)
""",
    ),
    (
        "md",
        """
**The 10-view protocol.** At test time the official FG-SBIR code crops each 256×256 image five ways (4 corners +
centre) and flips each crop: 10 views. It computes one distance matrix per view and **averages the matrices** before
ranking. `acc_at_k` accepts a list of matrices and does exactly that; `centre` alone is the cheaper alternative
(notebooks say which one a number used).
""",
    ),
    (
        "code",
        """
views = [D + 0.05 * torch.randn(D.shape, generator=generator) for _ in range(10)]
averaged = torch.stack(views).mean(0)
assert metrics.acc_at_k(views, ks=(1, 2)) == metrics.acc_at_k(averaged, ks=(1, 2))
print("acc@K over 10 views = acc@K of the averaged matrix:", metrics.acc_at_k(views, ks=(1, 2)))
""",
    ),
    (
        "md",
        """
## ReID: CMC and mAP

In ReID a query person usually has **several** true matches in the gallery, seen by several cameras. Two rules make the
benchmark honest (Market-1501's protocol, followed by torchreid and by us):

* gallery images of the **same identity from the same camera** as the query are **dropped** — finding the same
  person in the same camera a second later is too easy;
* **junk** images (identity `-1`) are dropped; **distractors** (identity `0`) stay, as negatives.

**CMC@k** is the share of queries whose *first* true match is within the top *k*; **AP** averages the precision at
the rank of *every* true match, so it rewards finding *all* of them early; **mAP** is the mean AP over queries.
""",
    ),
    (
        "code",
        """
q_pids, q_cams = np.array([1, 2]), np.array([0, 0])
g_pids = np.array([1, 1, 2, 0, 1, -1, 2])        # 0 = distractor, -1 = junk
g_cams = np.array([0, 1, 1, 1, 2, 1, 0])
dist = torch.tensor([
    [0.1, 0.5, 0.3, 0.2, 0.8, 0.05, 0.9],        # query identity 1, camera 0
    [0.6, 0.2, 0.4, 0.1, 0.7, 0.30, 0.2],        # query identity 2, camera 0
])
""",
    ),
    (
        "code",
        """
def ap_by_hand(d, q_pid, q_cam):
    keep = ~((g_pids == q_pid) & (g_cams == q_cam)) & (g_pids != -1)   # the two dropping rules
    order = np.argsort(d.numpy()[keep], kind="stable")
    hits = (g_pids[keep] == q_pid)[order]                              # relevance in rank order
    precision_at_hits = np.cumsum(hits)[hits] / (np.flatnonzero(hits) + 1)
    return precision_at_hits.mean(), np.flatnonzero(hits)[0] + 1       # AP, rank of the first hit

by_hand = [ap_by_hand(dist[i], q_pids[i], q_cams[i]) for i in range(2)]
for i, (ap, first) in enumerate(by_hand):
    print(f"query {i}: AP = {ap:.4f}, first true match at rank {first}")
""",
    ),
    (
        "code",
        """
cmc, mAP = metrics.cmc_map(dist, q_pids, g_pids, q_cams, g_cams, max_rank=5)
assert np.isclose(mAP, np.mean([ap for ap, _ in by_hand]))
firsts = np.array([first for _, first in by_hand])
assert np.allclose(cmc, [(firsts <= k).mean() for k in range(1, 6)])
assert np.all(np.diff(cmc) >= 0) and cmc[-1] <= 1.0, "a CMC curve never decreases and ends at most at 1"
print(f"mAP = {mAP:.4f}; CMC@1..5 = {np.round(cmc, 3).tolist()}")
""",
    ),
    (
        "code",
        """
fig, ax = plt.subplots(figsize=(4.5, 3))
ax.step(np.arange(1, 6), cmc, where="post", marker="o")
ax.set(xlabel="rank k", ylabel="CMC@k", ylim=(0, 1.05), title="CMC of the two-query example")
plt.show()
""",
    ),
    (
        "md",
        """
## Multi-query (Market-1501)

Market-1501 also ships `gt_bbox`: several hand-drawn boxes of each query person *in the query's camera*. The
**multi-query** setting pools (averages, or max-pools) their features into one query feature before ranking — more
views of the person, a steadier query. Here 3 images of identity 1 in camera 0 and one image in camera 1:
""",
    ),
    (
        "code",
        """
feats = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [9.0, 9.0]])
pids, cams = torch.tensor([1, 1, 1, 1]), torch.tensor([0, 0, 0, 1])
pooled = metrics.multi_query_pool(feats, pids, cams, torch.tensor([1]), torch.tensor([0]), mode="mean")
assert torch.allclose(pooled, feats[:3].mean(0, keepdim=True)), "only the query's camera is pooled"
maxed = metrics.multi_query_pool(feats, pids, cams, torch.tensor([1]), torch.tensor([0]), mode="max")
assert torch.equal(maxed, torch.tensor([[1.0, 1.0]]))
print("mean-pooled query:", pooled.tolist(), " max-pooled:", maxed.tolist())
""",
    ),
    (
        "md",
        """
## Ranking must never be the slow part

Reference ReID code loops over queries in Python, which takes about a minute and a half at Market-1501's size.
`cmc_map` sorts whole blocks of queries at once (on the GPU when the distances are there). A smaller random example:
""",
    ),
    (
        "code",
        """
import time

rng = np.random.default_rng(seed)
big = torch.rand(ranking_queries, ranking_gallery, generator=generator)
bq, bg = rng.integers(1, 300, ranking_queries), rng.integers(1, 300, ranking_gallery)
bqc, bgc = rng.integers(0, 6, ranking_queries), rng.integers(0, 6, ranking_gallery)
t0 = time.perf_counter()
big_cmc, big_map = metrics.cmc_map(big, bq, bg, bqc, bgc)
elapsed = time.perf_counter() - t0
print(f"{ranking_queries} x {ranking_gallery} ranked in {elapsed:.2f} s; random features: mAP {big_map:.3f}")
assert big_map < 0.2, "random distances must not look like a good model"
""",
    ),
    (
        "md",
        """
## Summary

* **acc@K** (FG-SBIR): one true match per query; the share of queries whose match is in the top K. The official
  protocol averages 10 views' distance matrices first.
* **CMC@k** (ReID): the share of queries whose *first* true match is in the top k — after dropping same-identity
  same-camera images and junk; distractors stay.
* **AP / mAP**: precision at every true match's rank, averaged — it rewards finding *all* the matches early.
* **Multi-query**: pool the features of the query person's images in the query's camera, then rank.
* `cdimlab.metrics` computes all of them vectorised, and agreed with our hand computations above.

Next: **02_vanilla_fgsbir** — train the baseline these metrics will score.
""",
    ),
    ("exercises", ""),
]
