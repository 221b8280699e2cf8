"""Chance levels against exhaustive enumeration and hand-computed values."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from cdimlab.chance import expected_random_ap, reid_chance, sbir_chance


def _ap(order: tuple[int, ...], matches: set[int]) -> float:
    hits, precisions = 0, []
    for rank, item in enumerate(order, 1):
        if item in matches:
            hits += 1
            precisions.append(hits / rank)
    return float(np.mean(precisions))


@pytest.mark.parametrize("n,m", [(1, 1), (3, 1), (4, 2), (5, 3), (6, 6)])
def test_expected_random_ap_equals_the_mean_over_all_orders(n, m):
    orders = list(itertools.permutations(range(n)))
    exact = np.mean([_ap(o, set(range(m))) for o in orders])
    assert expected_random_ap(np.array([n]), np.array([m]))[0] == pytest.approx(exact, abs=1e-12)


def test_sbir_chance_is_k_over_n():
    assert sbir_chance(115) == {"acc@1": 1 / 115, "acc@10": 10 / 115}
    assert sbir_chance(5, ks=(10,)) == {"acc@10": 1.0}
    with pytest.raises(ValueError, match="gallery_size"):
        sbir_chance(0)


def test_reid_chance_filters_like_torchreid():
    # query id 1 cam 0. Gallery: same id same cam (dropped), same id other cam (match), junk (dropped), 2 others
    g_pids, g_cams = [1, 1, -1, 2, 0], [0, 1, 1, 1, 2]
    out = reid_chance([1, 7], g_pids, [0, 0], g_cams)  # query 7 has no match: skipped
    assert out["rank1"] == pytest.approx(1 / 3)  # n = 3 kept items, m = 1
    assert out["mAP"] == pytest.approx((1 + 1 / 2 + 1 / 3) / 3)  # H_3 / 3
    with pytest.raises(ValueError, match="no query has a true match"):
        reid_chance([7], g_pids, [0], g_cams)
