"""Retrieval metrics: distances, acc@K (FG-SBIR) and CMC + mAP (ReID), vectorised, on CPU or GPU.

Introduced in notebook 01 (acc@K, CMC, mAP, multi-query). Everything takes numpy arrays or torch tensors on
any device and computes in float32 on the device of the distance matrix. Ranking is never the slow part: the ReID
evaluation sorts each chunk of queries at once instead of looping over queries in Python.

Ties favour neither side (DESIGN.md): acc@K is its expected value under uniformly random tie-breaking, so a
collapsed (constant) embedding scores chance, K/N; NaN/inf distances raise instead of ranking silently.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

import numpy as np
import torch
from torch import Tensor

METRICS = ("euclidean", "sqeuclidean", "cosine")
ArrayLike = Tensor | np.ndarray | Sequence


def _as_tensor(x: ArrayLike, device: torch.device | None = None, dtype: torch.dtype | None = None) -> Tensor:
    """numpy / list / tensor -> tensor on ``device`` (default: where it is) with ``dtype`` (default: kept)."""
    t = x if isinstance(x, Tensor) else torch.as_tensor(np.asarray(x))
    return t.to(device=device if device is not None else t.device, dtype=dtype or t.dtype)


def pairwise_distance(a: ArrayLike, b: ArrayLike, metric: str = "euclidean") -> Tensor:
    """``(len(a), len(b))`` distances between rows, in float32 on the device of ``a`` (or of ``b`` if only it is a
    tensor).

    ``euclidean`` = sqrt of the clamped (>= 0) squared distance; ``sqeuclidean``; ``cosine`` = 1 - cos similarity.
    Always float32, even inside a caller's ``torch.autocast`` (disabled here): a bf16 matmul would round the
    distances enough to create false ties and reorder near neighbours.
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    dev = a.device if isinstance(a, Tensor) else b.device if isinstance(b, Tensor) else None
    a = _as_tensor(a, device=dev, dtype=torch.float32)
    b = _as_tensor(b, device=a.device, dtype=torch.float32)
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"a and b must be (N, D) and (M, D); got {tuple(a.shape)} and {tuple(b.shape)}")
    with torch.autocast(device_type=a.device.type, enabled=False):
        if metric == "cosine":
            a = torch.nn.functional.normalize(a, dim=1)
            b = torch.nn.functional.normalize(b, dim=1)
            return 1.0 - a @ b.T
        d2 = (a * a).sum(1, keepdim=True) + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
        d2 = d2.clamp_min_(0.0)
        return d2 if metric == "sqeuclidean" else d2.sqrt_()


def _require_finite(d: Tensor, name: str = "dist") -> None:
    """Raise a ValueError naming how many entries of ``d`` are NaN/inf and what usually causes them."""
    bad = int((~torch.isfinite(d)).sum())
    if bad:
        raise ValueError(
            f"{name} contains {bad} non-finite value(s) (NaN or inf) out of {d.numel()}: the embeddings are not "
            "finite, usually because training diverged (NaN loss: lower the learning rate, check fp16/bf16 "
            "overflow) or a checkpoint is broken. Check torch.isfinite(features).all() before evaluating."
        )


def _average_views(dist: ArrayLike | Sequence[ArrayLike]) -> Tensor:
    """One (N, M) float32 matrix: a list of matrices (or a (V, N, M) stack) is averaged over views."""
    if isinstance(dist, (list, tuple)) and len(dist) > 0 and np.ndim(dist[0]) == 2:
        first = _as_tensor(dist[0], dtype=torch.float32)
        views = [first] + [_as_tensor(d, device=first.device, dtype=torch.float32) for d in dist[1:]]
        if any(v.shape != first.shape for v in views):
            raise ValueError(f"all distance views must have one shape; got {[tuple(v.shape) for v in views]}")
        return torch.stack(views).mean(0)
    d = _as_tensor(dist, dtype=torch.float32)
    return d.mean(0) if d.dim() == 3 else d


def true_match_ties(
    dist: ArrayLike | Sequence[ArrayLike], true_match: ArrayLike | None = None
) -> tuple[Tensor, Tensor]:
    """``(before, tied)`` per query, int64: how many gallery items are STRICTLY closer than the true match, and
    how many are at EXACTLY its distance (the true match included, so ``tied >= 1``).

    Under uniformly random tie-breaking the true match's rank is uniform on ``before + 1 .. before + tied``: the
    honest rank is a range, not a number, whenever ``tied > 1``. ``dist`` is ``(Q, G)`` (a list of view matrices is
    averaged first); ``true_match[q]`` is the gallery index of query q's match (default: q, which needs a square
    matrix). Non-finite distances raise a ValueError.
    """
    d = _average_views(dist)
    if d.dim() != 2 or 0 in d.shape:
        raise ValueError(f"dist must be a non-empty (num_query, num_gallery) matrix; got {tuple(d.shape)}")
    if true_match is None:
        if d.shape[0] != d.shape[1]:
            raise ValueError(
                f"dist must be a non-empty square (N, N) matrix (query i matches gallery i); got {tuple(d.shape)}"
                " -- or pass true_match=[gallery index of each query's match]"
            )
        tm = torch.arange(d.shape[0], device=d.device)
    else:
        tm = _as_tensor(true_match, d.device, torch.int64).reshape(-1)
        if len(tm) != d.shape[0] or int(tm.min()) < 0 or int(tm.max()) >= d.shape[1]:
            raise ValueError(
                f"true_match must hold one gallery index in [0, {d.shape[1]}) per query ({d.shape[0]})"
            )
    _require_finite(d)
    dt = d.gather(1, tm[:, None])
    return (d < dt).sum(1), (d == dt).sum(1)


def true_match_ranks(dist: ArrayLike | Sequence[ArrayLike], true_match: ArrayLike | None = None) -> Tensor:
    """EXPECTED 1-based rank of each query's true match under uniformly random tie-breaking, float32:
    ``before + (tied + 1) / 2`` (see :func:`true_match_ties`). Without ties it is the usual integer rank.

    Ties favour neither side: the old "1 + number strictly closer" rule gave a constant embedding rank 1
    everywhere. Use :func:`acc_at_k` for acc@K (``mean(rank <= K)`` of expected ranks is not expected acc@K).
    """
    before, tied = true_match_ties(dist, true_match)
    return before.float() + (tied.float() + 1.0) / 2.0


def hit_probability(before: ArrayLike, tied: ArrayLike, k: int) -> Tensor:
    """P(rank <= k) per query under random tie-breaking: ``clip((k - before) / tied, 0, 1)``, float64."""
    b, t = _as_tensor(before, dtype=torch.float64), _as_tensor(tied, dtype=torch.float64)
    return ((k - b) / t).clamp(0.0, 1.0)


def _exact_mean_hits(before: Tensor, tied: Tensor, k: int) -> float:
    """mean over queries of clip(k - before, 0, tied) / tied, summed exactly as fractions (one float rounding),
    so a constant embedding gives exactly K/N and tie-free inputs the plain share of hits."""
    num = torch.minimum((k - before).clamp(0), tied)
    ts, inv = torch.unique(tied, return_inverse=True)
    sums = torch.zeros(len(ts), dtype=torch.int64, device=tied.device).index_add_(0, inv, num)
    total = sum(
        (Fraction(int(s), int(t)) for s, t in zip(sums.tolist(), ts.tolist(), strict=True)), Fraction(0)
    )
    return float(total / len(before))


def acc_at_k(dist: ArrayLike | Sequence[ArrayLike], ks: Sequence[int] = (1, 10)) -> dict[int, float]:
    """FG-SBIR acc@K: the expected share (in [0, 1]) of queries whose true match (gallery i for query i) is in the
    top K, under uniformly random tie-breaking (DESIGN.md: ties favour neither side).

    ``dist`` is ``(N, N)`` or a list of view matrices, averaged first (the 10-view protocol). Per query,
    P(rank <= K) = clip((K - before) / tied, 0, 1) (:func:`true_match_ties`), so a constant embedding scores
    exactly K/N (chance), not 1. Non-finite distances raise a ValueError (a diverged model).
    """
    ks = tuple(int(k) for k in ks)
    if not ks or min(ks) < 1:
        raise ValueError(f"ks must be positive integers, got {ks}")
    before, tied = true_match_ties(dist)
    return {k: _exact_mean_hits(before, tied, k) for k in ks}


def cmc_map(
    dist: ArrayLike,
    q_pids: ArrayLike,
    g_pids: ArrayLike,
    q_camids: ArrayLike,
    g_camids: ArrayLike,
    max_rank: int = 50,
    return_per_query: bool = False,
    chunk_size: int = 256,
    method: str = "auto",
) -> tuple[np.ndarray, float] | tuple[np.ndarray, float, np.ndarray]:
    """ReID CMC (length ``max_rank``, fractions) and mAP with torchreid semantics (DESIGN.md).

    Per query: gallery items with the same identity AND the same camera are removed, junk (pid -1) is removed,
    distractors (pid 0) stay as negatives. Queries left without a true match are skipped (all skipped ->
    ValueError). AP = mean over true matches of precision at their rank; CMC clipped at 1 and averaged over valid
    queries (when fewer than ``max_rank`` items remain, CMC stays at its last value). Non-finite distances raise
    a ValueError (a diverged model). Ties in distance are broken by gallery order (stable sort), as torchreid's
    ``argsort`` does, so numbers stay comparable with published ones; unlike the old acc@K rule this does not
    favour the query by construction (a tied match goes behind tied items of lower gallery index), but it is
    neutral only when the gallery order is unrelated to identity: in Market-1501's filename order distractors
    (pid 0) come first, so an all-tied row (a collapsed model) ranks them ahead of the matches. Queries are processed in chunks of ``chunk_size`` to bound memory.
    ``method``: ``"sort"`` sorts every row (fast on a GPU); ``"hist"`` ranks only the true matches with a
    histogram of each row (no sort, ~4x faster on a CPU); ``"auto"`` picks sort on CUDA and hist elsewhere.
    Both give identical results.
    ``return_per_query=True`` also returns each query's AP (NaN for skipped queries).
    """
    d = _as_tensor(dist, dtype=torch.float32)
    if d.dim() != 2 or 0 in d.shape:
        raise ValueError(f"dist must be a non-empty (num_query, num_gallery) matrix, got {tuple(d.shape)}")
    dev = d.device
    qp, gp = _as_tensor(q_pids, dev, torch.int64), _as_tensor(g_pids, dev, torch.int64)
    qc, gc = _as_tensor(q_camids, dev, torch.int64), _as_tensor(g_camids, dev, torch.int64)
    if (
        len(qp)
        and len(gp)
        and max(int(gp.abs().max()), int(qp.abs().max()), int(gc.abs().max()), int(qc.abs().max())) < 2**31
    ):
        qp, gp, qc, gc = (t.to(torch.int32) for t in (qp, gp, qc, gc))  # half the memory traffic
    if qp.shape != qc.shape or qp.shape != (d.shape[0],) or gp.shape != gc.shape or gp.shape != (d.shape[1],):
        raise ValueError(
            f"ids do not match dist {tuple(d.shape)}: q_pids {tuple(qp.shape)}, q_camids {tuple(qc.shape)}, "
            f"g_pids {tuple(gp.shape)}, g_camids {tuple(gc.shape)}"
        )
    if max_rank < 1:
        raise ValueError(f"max_rank must be >= 1, got {max_rank}")
    if method not in ("auto", "sort", "hist"):
        raise ValueError(f"method must be 'auto', 'sort' or 'hist', got {method!r}")
    if method == "auto":
        method = "sort" if dev.type == "cuda" else "hist"
    # junk (pid -1) never counts: drop those gallery columns once (order kept, so ties still follow gallery order)
    cols = (gp != -1).nonzero().squeeze(1) if bool((gp == -1).any()) else None
    if cols is not None:
        gp, gc = gp[cols], gc[cols]
        if len(gp) == 0:
            raise ValueError("no query has a valid gallery match: every gallery item is junk (pid -1)")
    cmc_hits = torch.zeros(max_rank, dtype=torch.float64, device=dev)
    aps = []
    for s in range(0, d.shape[0], chunk_size):
        dc = d[s : s + chunk_size] if cols is None else d[s : s + chunk_size].index_select(1, cols)
        lo, hi = dc.min(1, keepdim=True).values, dc.max(1, keepdim=True).values  # min/max propagate NaN
        if not bool(torch.isfinite(lo).all() and torch.isfinite(hi).all()):
            _require_finite(d)  # raises, naming how many values are NaN/inf
        kept, match = _chunk_masks(qp[s : s + chunk_size], qc[s : s + chunk_size], gp, gc)
        out = None if method == "sort" else _cmc_ap_chunk_hist(dc, kept, match, max_rank, lo, hi)
        hits, ap = out if out is not None else _cmc_ap_chunk_sort(dc, kept, match, max_rank)
        cmc_hits += hits
        aps.append(ap)
    ap_all = torch.cat(aps).cpu().numpy().astype(np.float64)
    num_valid = int(np.isfinite(ap_all).sum())
    if num_valid == 0:
        raise ValueError("no query has a valid gallery match (after removing same-camera matches and junk)")
    cmc = (cmc_hits / num_valid).cpu().numpy()
    mAP = float(np.nanmean(ap_all))
    return (cmc, mAP, ap_all) if return_per_query else (cmc, mAP)


def _chunk_masks(qp: Tensor, qc: Tensor, gp: Tensor, gc: Tensor) -> tuple[Tensor, Tensor]:
    """(kept, match) masks ``(q, G)``: kept drops same-identity-same-camera items; match = kept & same identity.

    Junk columns (pid -1) are removed by the caller before this.
    """
    same_pid = gp[None, :] == qp[:, None]
    kept = ~(same_pid & (gc[None, :] == qc[:, None]))
    return kept, same_pid & kept


def _hits_from_first(first_rank: Tensor, has_match: Tensor, max_rank: int) -> Tensor:
    """CMC hit counts: query counts at rank k if its first true match has 0-based rank <= k."""
    ranks = torch.arange(max_rank, device=first_rank.device)
    return ((first_rank[:, None] <= ranks[None, :]) & has_match[:, None]).sum(0).double()


def _cmc_ap_chunk_sort(d: Tensor, kept: Tensor, match: Tensor, max_rank: int) -> tuple[Tensor, Tensor]:
    """Reference-style path: stable sort of every row (fast on a GPU; ~4x slower than the hist path on a CPU)."""
    order = torch.sort(d, dim=1, stable=True).indices
    kept, match = kept.gather(1, order), match.gather(1, order)
    pos = kept.cumsum(1, dtype=torch.int32)  # 1-based rank among kept items
    cum_match = match.cumsum(1, dtype=torch.int32)
    n_match = cum_match[:, -1]
    precision = torch.where(match, cum_match.float() / pos.clamp_min(1).float(), 0.0)
    ap = torch.where(n_match > 0, precision.sum(1) / n_match.clamp_min(1).float(), torch.nan)
    first = match.to(torch.int8).argmax(1)  # sorted index of the first true match
    first_rank = pos.gather(1, first[:, None]).squeeze(1) - 1
    return _hits_from_first(first_rank, n_match > 0, max_rank), ap


_BINS = 1 << 14
_SPARSE_CAP = 1 << 24


def _cmc_ap_chunk_hist(
    d: Tensor, kept: Tensor, match: Tensor, max_rank: int, lo: Tensor, hi: Tensor
) -> tuple[Tensor, Tensor] | None:
    """Sort-free path: only the ranks of the (few) true matches are needed.

    rank of match i = 1 + number of kept items before it in (distance, gallery index) order. Kept items are
    counted in a fine histogram of each row's distance range (binning is monotone in the distance, so whole
    earlier bins are exact); items sharing a bin with a match are compared with it exactly (distance, then
    gallery index: the stable-sort tie rule). Returns None when too many items share bins (heavy ties), so the
    caller falls back to the sort path.
    """
    q, g = d.shape
    n_match = match.view(torch.uint8).sum(1, dtype=torch.int32)  # faster than a bool sum
    m = int(n_match.max())
    if m == 0:
        return torch.zeros(max_rank, dtype=torch.float64, device=d.device), torch.full(
            (q,), torch.nan, device=d.device
        )
    # true matches of each row in (distance, index) order; padding has distance +inf
    md, mi = torch.where(match, d, torch.inf).topk(m, dim=1, largest=False, sorted=False)
    mi, o = mi.sort(1)
    md = md.gather(1, o)
    md, o = md.sort(dim=1, stable=True)
    mi = mi.gather(1, o)
    valid = torch.arange(m, device=d.device)[None, :] < n_match[:, None]
    scale = torch.where(hi > lo, _BINS / (hi - lo), 0.0)
    bins = ((d - lo) * scale).long().clamp_(0, _BINS - 1)
    hist = torch.zeros(q, _BINS, dtype=torch.int32, device=d.device).scatter_add_(
        1, bins, kept.to(torch.int32)
    )
    before_bin = hist.cumsum(1, dtype=torch.int32) - hist  # kept items in strictly earlier bins
    mb = bins.gather(1, mi)
    below = before_bin.gather(1, mb)
    # bins holding a true match (scatter_add: padded entries must not overwrite a real flag)
    is_mbin = torch.zeros(q, _BINS, dtype=torch.int32, device=d.device)
    is_mbin = is_mbin.scatter_add_(1, torch.where(valid, mb, 0), valid.to(torch.int32)) > 0
    rows, cols = (kept & is_mbin.gather(1, bins)).nonzero(as_tuple=True)
    if rows.numel() * m > _SPARSE_CAP:
        return None
    dx, bx = d[rows, cols][:, None], bins[rows, cols][:, None]
    mdr, mir = md[rows], mi[rows]
    before = (bx == mb[rows]) & ((dx < mdr) | ((dx == mdr) & (cols[:, None] < mir))) & valid[rows]
    below = below + torch.zeros(q, m, dtype=torch.int32, device=d.device).index_add_(
        0, rows, before.to(torch.int32)
    )
    rank = (below + 1).float()
    hits_at = torch.arange(1, m + 1, device=d.device, dtype=torch.float32)[None, :]
    ap = torch.where(valid, hits_at / rank, 0.0).sum(1) / n_match.clamp_min(1).float()
    ap = torch.where(n_match > 0, ap, torch.nan)
    return _hits_from_first(below[:, 0], n_match > 0, max_rank), ap


def multi_query_pool(
    features: ArrayLike,
    pids: ArrayLike,
    camids: ArrayLike,
    query_pids: ArrayLike,
    query_camids: ArrayLike,
    mode: str = "mean",
) -> Tensor:
    """Market-1501 multi-query: for each query, pool (mean or max) the features of every row with that query's
    identity AND camera (the ``gt_bbox`` images). Returns ``(Q, D)`` float32 on the features' device."""
    if mode not in ("mean", "max"):
        raise ValueError(f"mode must be 'mean' or 'max', got {mode!r}")
    f = _as_tensor(features, dtype=torch.float32)
    dev = f.device
    p, c = _as_tensor(pids, dev, torch.int64), _as_tensor(camids, dev, torch.int64)
    qp, qc = _as_tensor(query_pids, dev, torch.int64), _as_tensor(query_camids, dev, torch.int64)
    if f.dim() != 2 or p.shape != (f.shape[0],) or c.shape != p.shape or qp.shape != qc.shape:
        raise ValueError(
            f"features (N, D) with pids/camids (N,) expected; got {tuple(f.shape)}, {tuple(p.shape)}, {tuple(c.shape)}"
            f"; query_pids {tuple(qp.shape)} / query_camids {tuple(qc.shape)} must match"
        )
    keys, group = torch.unique(torch.stack([p, c], 1), dim=0, return_inverse=True)
    pooled = torch.zeros(len(keys), f.shape[1], device=dev)
    if mode == "mean":
        pooled.index_add_(0, group, f)
        pooled /= torch.bincount(group, minlength=len(keys)).clamp_min(1)[:, None].float()
    else:
        pooled.fill_(-torch.inf)
        pooled.scatter_reduce_(0, group[:, None].expand_as(f), f, reduce="amax", include_self=True)
    # locate each query's (pid, camid) among the unique keys
    hit = (keys[None, :, 0] == qp[:, None]) & (keys[None, :, 1] == qc[:, None])
    if not bool(hit.any(1).all()):
        bad = int((~hit.any(1)).nonzero()[0, 0])
        raise ValueError(
            f"query {bad} (pid {int(qp[bad])}, camid {int(qc[bad])}) has no rows with that identity and camera"
        )
    return pooled[hit.int().argmax(1)]
