"""Chance levels: what a ranking in uniformly random order scores, so every number has its floor beside it.

Introduced in notebook 01 (metrics) and written into every results record by the runner. A trained number means
little until it stands beside chance and beside the same network's untrained score (docs/DEVIATIONS.md).

* FG-SBIR acc@K with N gallery photos and one true match: K/N.
* ReID, per query after torchreid's filtering (junk and same-identity-same-camera items dropped): with n gallery
  items of which m match, rank-1 = m/n, and the expected average precision of a random order is
  ``(1/n) * ((m-1)/(n-1) * (n - H_n) + H_n)`` with ``H_n`` the n-th harmonic number (Bestgen 2015, "Exact
  expected average precision of the random baseline"); it is 1 when m = n and ``H_n / n`` when m = 1.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def sbir_chance(gallery_size: int, ks: Sequence[int] = (1, 10)) -> dict[str, float]:
    """``{"acc@K": K/N}``: chance acc@K of sketch -> photo retrieval over ``gallery_size`` photos."""
    if gallery_size < 1:
        raise ValueError(f"gallery_size must be >= 1, got {gallery_size}")
    return {f"acc@{k}": min(1.0, k / gallery_size) for k in ks}


def expected_random_ap(n: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Expected AP of a uniformly random ranking of ``n`` items holding ``m`` true matches (elementwise)."""
    n, m = np.asarray(n, dtype=np.float64), np.asarray(m, dtype=np.float64)
    harmonic = np.array([np.sum(1.0 / np.arange(1, int(k) + 1)) for k in n.ravel()]).reshape(n.shape)
    frac = np.divide(m - 1, n - 1, out=np.ones_like(n), where=n > 1)
    return (frac * (n - harmonic) + harmonic) / n


def reid_chance(
    q_pids: Sequence[int], g_pids: Sequence[int], q_camids: Sequence[int], g_camids: Sequence[int]
) -> dict[str, float]:
    """Chance ``rank1`` and ``mAP`` of ReID retrieval under torchreid's filtering (queries without a match skipped)."""
    qp, gp = np.asarray(q_pids)[:, None], np.asarray(g_pids)[None, :]
    qc, gc = np.asarray(q_camids)[:, None], np.asarray(g_camids)[None, :]
    kept = (gp != -1) & ~((gp == qp) & (gc == qc))
    n, m = kept.sum(1), ((gp == qp) & kept).sum(1)
    valid = m > 0
    if not valid.any():
        raise ValueError("no query has a true match in the gallery: chance is undefined")
    n, m = n[valid], m[valid]
    return {"rank1": float(np.mean(m / n)), "mAP": float(np.mean(expected_random_ap(n, m)))}
