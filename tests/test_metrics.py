"""Metrics against straightforward per-query references (torchreid semantics, DESIGN.md)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cdimlab.metrics import (
    acc_at_k,
    cmc_map,
    hit_probability,
    multi_query_pool,
    pairwise_distance,
    true_match_ranks,
    true_match_ties,
)


def reference_cmc_map(d, qp, gp, qc, gg, max_rank):
    """Per-query python loop: the reference code's semantics, written plainly."""
    cmcs, aps = [], []
    for i in range(len(qp)):
        order = np.argsort(d[i], kind="stable")
        keep = ~((gp[order] == qp[i]) & (gg[order] == qc[i])) & (gp[order] != -1)
        raw = (gp[order] == qp[i])[keep].astype(float)
        if raw.sum() == 0:
            aps.append(np.nan)
            continue
        cmc = np.minimum(raw.cumsum(), 1)
        cmc = np.concatenate([cmc, np.full(max(0, max_rank - len(cmc)), cmc[-1])])[:max_rank]
        cmcs.append(cmc)
        precision = raw.cumsum() / np.arange(1, len(raw) + 1)
        aps.append((precision * raw).sum() / raw.sum())
    aps = np.array(aps)
    return np.mean(cmcs, 0), float(np.nanmean(aps)), aps


def random_reid(seed, nq=60, ng=400, npid=25, ncam=4, tie_levels=None):
    """Random ids with junk (-1), distractors (0), same-camera matches; integer distances make many ties."""
    rng = np.random.default_rng(seed)
    qp = rng.integers(1, npid, nq)
    qc = rng.integers(0, ncam, nq)
    gp = rng.integers(-1, npid, ng)
    gc = rng.integers(0, ncam, ng)
    if tie_levels:
        d = rng.integers(0, tie_levels, (nq, ng)).astype(np.float32)
    else:
        d = rng.random((nq, ng)).astype(np.float32)
    return d, qp, gp, qc, gc


@pytest.mark.parametrize("method", ["hist", "sort"])
@pytest.mark.parametrize("tie_levels", [None, 7, 40])
def test_cmc_map_matches_reference(method, tie_levels):
    d, qp, gp, qc, gc = random_reid(3, tie_levels=tie_levels)
    # a query whose only same-identity gallery items share its camera has no valid match -> skipped
    qp[0], qc[0] = 999, 1
    gp[:3], gc[:3] = 999, 1
    assert (gp == 0).any() and (gp == -1).any()
    cmc, mAP, ap = cmc_map(
        d, qp, gp, qc, gc, max_rank=20, method=method, return_per_query=True, chunk_size=16
    )
    rcmc, rmap, rap = reference_cmc_map(d, qp, gp, qc, gc, 20)
    assert cmc.shape == (20,)
    np.testing.assert_allclose(cmc, rcmc, atol=1e-6)
    assert mAP == pytest.approx(rmap, abs=1e-6)
    assert np.isnan(ap[0]) and np.isnan(rap[0])
    np.testing.assert_allclose(ap, rap, atol=1e-6)


def test_cmc_map_torch_input_and_long_max_rank():
    d, qp, gp, qc, gc = random_reid(5, nq=10, ng=30)
    cmc, mAP = cmc_map(torch.from_numpy(d), torch.from_numpy(qp), gp, qc, torch.from_numpy(gc), max_rank=50)
    rcmc, rmap, _ = reference_cmc_map(d, qp, gp, qc, gc, 50)
    assert cmc.shape == (50,) and cmc[-1] == pytest.approx(1.0)
    np.testing.assert_allclose(cmc, rcmc, atol=1e-6)
    assert mAP == pytest.approx(rmap, abs=1e-6)


def test_cmc_map_hand_example():
    # gallery: [match same cam (removed), distractor, match other cam, junk, negative]
    d = np.array([[0.1, 0.2, 0.3, 0.05, 0.4]], dtype=np.float32)
    cmc, mAP = cmc_map(d, [7], [7, 0, 7, -1, 3], [0], [0, 1, 1, 2, 1], max_rank=3)
    np.testing.assert_allclose(cmc, [0.0, 1.0, 1.0])  # distractor ranks first, match second
    assert mAP == pytest.approx(0.5)


def test_cmc_map_errors():
    with pytest.raises(ValueError, match="no query has a valid"):
        cmc_map(np.zeros((1, 2)), [1], [1, 2], [0], [0, 0])
    with pytest.raises(ValueError, match="ids do not match"):
        cmc_map(np.zeros((2, 2)), [1], [1, 2], [0], [0, 0])
    with pytest.raises(ValueError, match=r"2 non-finite value\(s\) \(NaN or inf\).*diverged"):
        cmc_map(np.full((1, 2), np.nan), [1], [1, 2], [0], [1, 0])


def test_cmc_map_ties_follow_gallery_order_not_the_query():
    # all distances tied: the match (gallery 1) goes behind gallery 0, as torchreid's stable argsort does
    cmc, mAP = cmc_map(np.zeros((1, 2)), [1], [2, 1], [0], [1, 1], max_rank=2)
    np.testing.assert_allclose(cmc, [0.0, 1.0])
    assert mAP == pytest.approx(0.5)


def test_acc_at_k_hand_example_and_ties():
    d = np.array(
        [
            [0.1, 0.5, 0.9],  # rank 1
            [0.2, 0.3, 0.1],  # two items strictly closer -> rank 3
            [0.4, 0.7, 0.4],  # tie with item 0: rank 1 or 2 with probability 1/2 each -> expected rank 1.5
        ]
    )
    # (updated: the old strictly-smaller rule gave query 2 rank 1 and acc@1 = 2/3, counting the tie as a hit)
    assert true_match_ranks(d).tolist() == [1.0, 3.0, 1.5]
    assert acc_at_k(d, ks=(1, 2, 3)) == {1: 0.5, 2: 2 / 3, 3: 1.0}


def test_acc_at_k_ties_are_expected_value_hand_computed():
    # query 0: one item strictly closer (b = 1) and a 3-way tie (t = 3) -> P(rank <= 2) = (2 - 1) / 3 = 1/3
    d = np.array(
        [
            [0.5, 0.1, 0.5, 0.5],
            [0.9, 0.1, 0.5, 0.6],
            [0.9, 0.8, 0.1, 0.6],
            [0.9, 0.8, 0.7, 0.1],
        ]
    )
    before, tied = true_match_ties(d)
    assert before.tolist() == [1, 0, 0, 0] and tied.tolist() == [3, 1, 1, 1]
    assert hit_probability(before, tied, 2).tolist() == [1 / 3, 1.0, 1.0, 1.0]
    assert true_match_ranks(d).tolist() == [3.0, 1.0, 1.0, 1.0]  # uniform on 2..4
    assert acc_at_k(d, ks=(1, 2, 3, 4)) == {1: 3 / 4, 2: (1 / 3 + 3) / 4, 3: (2 / 3 + 3) / 4, 4: 1.0}
    # mixed tie sizes: q0 b=1 t=2, q1 b=0 t=3, q2 alone
    d = np.array([[0.5, 0.1, 0.5], [0.2, 0.2, 0.2], [0.3, 0.9, 0.1]])
    assert acc_at_k(d, ks=(1, 2, 3)) == {1: 4 / 9, 2: 13 / 18, 3: 1.0}


def test_true_match_ties_with_explicit_true_match():
    d = np.array([[0.3, 0.5, 0.1, 0.5, 0.5]])  # one query, five gallery items, match = item 1
    before, tied = true_match_ties(d, true_match=[1])
    assert (before.tolist(), tied.tolist()) == ([2], [3])
    assert true_match_ranks(d, true_match=[1]).tolist() == [4.0]  # uniform on 3..5
    with pytest.raises(ValueError, match="true_match"):
        true_match_ties(d, true_match=[5])


@pytest.mark.parametrize("metric", ["euclidean", "sqeuclidean", "cosine"])
def test_constant_embedding_scores_chance_exactly(metric):
    n = 115
    e = torch.randn(1, 256).repeat(n, 1)  # a collapsed model: every sketch and photo embeds the same
    d = pairwise_distance(e, e, metric)
    assert acc_at_k(d, ks=(1, 10)) == {1: 1 / n, 10: 10 / n}  # the old rule scored 1.0 and 1.0
    assert acc_at_k([d] * 10, ks=(1, 10)) == {1: 1 / n, 10: 10 / n}  # 10 views, averaged
    assert true_match_ranks(d).tolist() == [(n + 1) / 2] * n


def test_acc_at_k_views_averaged_before_ties():
    a = np.array([[0.0, 1.0], [1.0, 0.0]])
    b = np.array([[2.0, 1.0], [1.0, 0.0]])  # the average [[1, 1], [1, 0]] ties query 0's match with item 1
    assert acc_at_k([a, b], ks=(1, 2)) == {1: 0.75, 2: 1.0}


def test_non_finite_distances_raise_with_count_and_cause():
    nan = torch.full((4, 8), float("nan"))
    with pytest.raises(ValueError, match=r"16 non-finite value\(s\).*diverged"):
        acc_at_k(pairwise_distance(nan, nan))  # the old rule returned 1.0 here
    d = np.eye(3)
    d[1, 2] = np.inf
    with pytest.raises(ValueError, match=r"1 non-finite value\(s\) \(NaN or inf\) out of 9"):
        acc_at_k([np.eye(3), d])
    with pytest.raises(ValueError, match="non-finite"):
        true_match_ranks(d)


def test_acc_at_k_averages_views():
    a = np.array([[0.0, 1.0], [1.0, 0.0]])
    b = np.array([[3.0, 0.0], [1.0, 0.0]])  # view b alone gets query 0 wrong; the average does not
    assert acc_at_k([a, b], ks=(1,))[1] == pytest.approx(0.5)  # averages [[1.5, .5], [1, 0]]
    assert acc_at_k([a, a], ks=(1,))[1] == pytest.approx(1.0)
    assert acc_at_k(torch.stack([torch.tensor(a), torch.tensor(b)]), ks=(1,))[1] == pytest.approx(0.5)


def test_acc_at_k_errors():
    with pytest.raises(ValueError, match="square"):
        acc_at_k(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="non-empty"):
        acc_at_k(np.zeros((0, 0)))
    with pytest.raises(ValueError, match="positive"):
        acc_at_k(np.zeros((2, 2)), ks=(0,))


@pytest.mark.parametrize("metric", ["euclidean", "sqeuclidean", "cosine"])
def test_pairwise_distance_is_float32_inside_autocast(metric):
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(40, 64)), rng.normal(size=(50, 64))
    ref = pairwise_distance(torch.tensor(a, dtype=torch.float64), b, metric)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        d = pairwise_distance(torch.tensor(a, dtype=torch.float32), b, metric)
        half = pairwise_distance(torch.tensor(a, dtype=torch.bfloat16), b, metric)  # inputs are upcast
    assert d.dtype == torch.float32 and half.dtype == torch.float32
    np.testing.assert_allclose(d.numpy(), ref.numpy(), rtol=1e-5, atol=1e-5)  # a bf16 matmul is off by ~1e-2
    np.testing.assert_allclose(half.numpy(), ref.numpy(), rtol=2e-2, atol=2e-2)


def test_pairwise_distance_metrics():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 8)), rng.normal(size=(7, 8))
    ref = np.sqrt(((a[:, None] - b[None]) ** 2).sum(-1))
    d = pairwise_distance(a, b)
    assert d.dtype == torch.float32 and d.shape == (5, 7)
    np.testing.assert_allclose(d.numpy(), ref, rtol=1e-4)
    np.testing.assert_allclose(
        pairwise_distance(torch.tensor(a), b, "sqeuclidean").numpy(), ref**2, rtol=1e-4
    )
    cos = 1 - (a @ b.T) / np.linalg.norm(a, axis=1)[:, None] / np.linalg.norm(b, axis=1)[None]
    np.testing.assert_allclose(pairwise_distance(a, b, "cosine").numpy(), cos, atol=1e-5)
    same = pairwise_distance(a, a)
    assert torch.isfinite(same).all() and float(same.diagonal().max()) < 1e-2  # clamped before sqrt
    with pytest.raises(ValueError, match="metric"):
        pairwise_distance(a, b, "manhattan")
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        pairwise_distance(a, b[:, :3])


def test_multi_query_pool_tiny_example():
    feats = torch.tensor([[1.0, 0.0], [3.0, 2.0], [5.0, 5.0], [0.0, 9.0]])
    pids = [1, 1, 1, 2]
    cams = [0, 0, 1, 0]
    mean = multi_query_pool(feats, pids, cams, [1, 2, 1], [0, 0, 1], mode="mean")
    np.testing.assert_allclose(mean.numpy(), [[2.0, 1.0], [0.0, 9.0], [5.0, 5.0]])
    mx = multi_query_pool(feats.numpy(), pids, cams, [1], [0], mode="max")
    np.testing.assert_allclose(mx.numpy(), [[3.0, 2.0]])
    with pytest.raises(ValueError, match="pid 3"):
        multi_query_pool(feats, pids, cams, [3], [0])
    with pytest.raises(ValueError, match="mode"):
        multi_query_pool(feats, pids, cams, [1], [0], mode="median")


def test_cmc_map_all_tied_rows_and_sort_fallback(monkeypatch):
    import cdimlab.metrics as metrics

    _, qp, gp, qc, gc = random_reid(8, nq=20, ng=50)
    d = np.zeros((20, 50), dtype=np.float32)  # every distance equal: order = gallery order (stable sort)
    rcmc, rmap, _ = reference_cmc_map(d, qp, gp, qc, gc, 10)
    cmc, mAP = cmc_map(d, qp, gp, qc, gc, max_rank=10, method="hist")
    np.testing.assert_allclose(cmc, rcmc, atol=1e-6)
    assert mAP == pytest.approx(rmap, abs=1e-6)
    monkeypatch.setattr(metrics, "_SPARSE_CAP", 0)  # force the fallback to the sort path
    cmc, mAP = cmc_map(d + np.float32(1.0), qp, gp, qc, gc, max_rank=10, method="hist")
    np.testing.assert_allclose(cmc, rcmc, atol=1e-6)
    assert mAP == pytest.approx(rmap, abs=1e-6)
