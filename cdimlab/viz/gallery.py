"""Ranked-retrieval galleries: each query with its top-k gallery items, true matches framed green (notebook 07).

Works for both tasks of the course:

* FG-SBIR: query i (a sketch) matches one gallery photo, ``true_match[i]`` (default ``i``, as in QMUL V1).
* ReID: a gallery image matches when it has the query's identity; gallery images of the same identity *and* the
  same camera, and junk images (identity -1), are dropped from the ranking, exactly as ``cmc_map`` does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure
from torch import Tensor

from cdimlab.metrics import true_match_ranks, true_match_ties
from cdimlab.viz.feature_maps import draw_image, new_figure, to_display

MATCH_COLOUR = "#1a9641"
MISS_COLOUR = "#d7191c"


def as_distance_matrix(dist: Tensor | np.ndarray | Sequence) -> np.ndarray:
    """A (Q, G) float64 distance matrix; a list of matrices (test views) is averaged, as in ``acc_at_k``."""
    if isinstance(dist, (list, tuple)):
        mats = [as_distance_matrix(d) for d in dist]
        if not mats or any(m.shape != mats[0].shape for m in mats):
            raise ValueError("dist: a list of distance matrices must be non-empty and all of one shape")
        return np.mean(mats, axis=0)
    d = (
        dist.detach().cpu().double().numpy()
        if isinstance(dist, Tensor)
        else np.asarray(dist, dtype=np.float64)
    )
    if d.ndim != 2:
        raise ValueError(f"dist must be a (num_queries, num_gallery) matrix, got shape {d.shape}")
    return d


def _true_match(true_match: Sequence[int] | np.ndarray | Tensor | None, d: np.ndarray) -> np.ndarray:
    """Gallery index of each query's true match (default: query i <-> gallery i)."""
    if true_match is None:
        if d.shape[0] > d.shape[1]:
            raise ValueError(
                f"dist has {d.shape[0]} queries but {d.shape[1]} gallery items; pass true_match=[gallery index "
                "of each query's match]"
            )
        return np.arange(d.shape[0])
    tm = np.asarray(
        true_match.cpu() if isinstance(true_match, Tensor) else true_match, dtype=np.int64
    ).reshape(-1)
    if len(tm) != d.shape[0] or tm.min(initial=0) < 0 or tm.max(initial=0) >= d.shape[1]:
        raise ValueError(
            f"true_match must hold one gallery index in [0, {d.shape[1]}) per query ({d.shape[0]})"
        )
    return tm


def rank_of_true_match(
    dist: Tensor | np.ndarray | Sequence, true_match: Sequence[int] | None = None
) -> np.ndarray:
    """EXPECTED 1-based rank of each query's true match under random tie-breaking (float64 array).

    The rule is :func:`cdimlab.metrics.true_match_ranks` (ties favour neither side): ``before + (tied + 1) / 2``,
    the integer rank when nothing ties. ``dist`` may be a list of per-view matrices, averaged first. For acc@K use
    :func:`cdimlab.metrics.acc_at_k`, not ``mean(rank <= K)``.
    """
    d = as_distance_matrix(dist)
    return true_match_ranks(d, _true_match(true_match, d)).double().numpy()


def rank_label(dist: Tensor | np.ndarray | Sequence, true_match: Sequence[int] | None = None) -> list[str]:
    """Per query, the honest rank of its true match as text: ``"rank 3"``, or ``"rank 2-4 (3-way tie)"`` when
    other items sit at exactly its distance (:func:`cdimlab.metrics.true_match_ties`)."""
    d = as_distance_matrix(dist)
    before, tied = true_match_ties(d, _true_match(true_match, d))
    return [
        f"rank {b + 1}" if t == 1 else f"rank {b + 1}-{b + t} ({t}-way tie)"
        for b, t in zip(before.tolist(), tied.tolist(), strict=True)
    ]


@dataclass(frozen=True)
class RankedRow:
    """One query's top-k: gallery ``indices`` (best first), their ``distances``, and which are true matches."""

    query: int
    indices: np.ndarray
    distances: np.ndarray
    is_match: np.ndarray


def _ids(x: Sequence[int] | np.ndarray | Tensor | None, n: int, name: str) -> np.ndarray | None:
    if x is None:
        return None
    a = np.asarray(x.cpu() if isinstance(x, Tensor) else x).reshape(-1)
    if len(a) != n:
        raise ValueError(f"{name} has {len(a)} entries but dist implies {n}")
    return a


def ranked_rows(
    dist: Tensor | np.ndarray | Sequence,
    queries: Sequence[int],
    k: int = 5,
    true_match: Sequence[int] | None = None,
    q_pids: Sequence[int] | None = None,
    g_pids: Sequence[int] | None = None,
    q_camids: Sequence[int] | None = None,
    g_camids: Sequence[int] | None = None,
) -> list[RankedRow]:
    """Top-``k`` gallery items for each query in ``queries``.

    With ``q_pids``/``g_pids`` (ReID) a match means the same identity; gallery items with the query's identity and
    camera (when camids are given) and junk (pid -1) are excluded. Otherwise (FG-SBIR) the one match is
    ``true_match[q]`` (default ``q``). Ties are broken by gallery index (stable sort).
    """
    d = as_distance_matrix(dist)
    nq, ng = d.shape
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    reid = q_pids is not None or g_pids is not None
    if reid and (q_pids is None or g_pids is None):
        raise ValueError("ReID galleries need both q_pids and g_pids")
    qp, gp = _ids(q_pids, nq, "q_pids"), _ids(g_pids, ng, "g_pids")
    qc, gc = _ids(q_camids, nq, "q_camids"), _ids(g_camids, ng, "g_camids")
    tm = None if reid else _true_match(true_match, d)
    rows = []
    for q in queries:
        if not 0 <= int(q) < nq:
            raise ValueError(f"queries: index {q} is out of range for {nq} queries")
        keep = np.ones(ng, dtype=bool)
        if reid:
            keep &= gp != -1
            if qc is not None and gc is not None:
                keep &= ~((gp == qp[q]) & (gc == qc[q]))
        cand = np.flatnonzero(keep)
        order = cand[np.argsort(d[q, cand], kind="stable")][:k]
        match = (gp[order] == qp[q]) if reid else (order == tm[q])
        rows.append(RankedRow(int(q), order, d[q, order], np.asarray(match, dtype=bool)))
    return rows


def _frame(ax, colour: str, width: float = 4.0) -> None:
    """Colour an image's border (the axes spines) to mark it as a true match or not."""
    for spine in ax.spines.values():
        spine.set_visible(True)
        spine.set_edgecolor(colour)
        spine.set_linewidth(width)


def render_ranked_gallery(
    query_imgs: Tensor | np.ndarray | Sequence,
    gallery_imgs: Tensor | np.ndarray | Sequence,
    dist: Tensor | np.ndarray | Sequence,
    true_match: Sequence[int] | None = None,
    k: int = 5,
    *,
    queries: Sequence[int] | None = None,
    q_pids: Sequence[int] | None = None,
    g_pids: Sequence[int] | None = None,
    q_camids: Sequence[int] | None = None,
    g_camids: Sequence[int] | None = None,
    title: str | None = None,
) -> Figure:
    """One row per query: the query, then its top-``k`` gallery items framed green (match) or red (not).

    ``queries`` picks the rows (default: the first ``min(5, num_queries)``). For FG-SBIR the query's title says
    at which rank its true match is (so a miss outside the top-k is still visible), as a range when it ties
    (:func:`rank_label`). ``query_imgs[i]`` and
    ``gallery_imgs[j]`` are any images :func:`cdimlab.viz.feature_maps.to_display` accepts.
    """
    d = as_distance_matrix(dist)
    if len(query_imgs) != d.shape[0] or len(gallery_imgs) != d.shape[1]:
        raise ValueError(
            f"dist is {d.shape} but there are {len(query_imgs)} query and {len(gallery_imgs)} gallery images"
        )
    queries = list(range(min(5, d.shape[0]))) if queries is None else [int(q) for q in queries]
    rows = ranked_rows(d, queries, k, true_match, q_pids, g_pids, q_camids, g_camids)
    reid = q_pids is not None
    ranks = None if reid else rank_label(d, true_match)
    fig = new_figure(1.7 * (k + 1), 2.1 * len(rows) + 0.4)
    axes = fig.subplots(len(rows), k + 1, squeeze=False)
    for r, row in enumerate(rows):
        label = f"query {row.query}"
        label += f"\ntrue match: {ranks[row.query]}" if ranks is not None else ""
        draw_image(axes[r, 0], to_display(query_imgs[row.query]), label)
        for c in range(k):
            ax = axes[r, c + 1]
            if c >= len(row.indices):
                ax.axis("off")
                continue
            g = int(row.indices[c])
            draw_image(ax, to_display(gallery_imgs[g]), f"#{c + 1}  d={row.distances[c]:.3g}")
            _frame(ax, MATCH_COLOUR if row.is_match[c] else MISS_COLOUR)
    fig.suptitle(title or f"top-{k} retrieval (green = true match, red = not)", fontsize=10)
    return fig


__all__ = ["RankedRow", "rank_label", "rank_of_true_match", "ranked_rows", "render_ranked_gallery"]
