"""Triplet ranking loss (paper Eq. 2) and cross-entropy against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from cdimlab.losses import TripletRankingLoss, cross_entropy, triplet_ranking_loss


def test_triplet_loss_hand_computed():
    a = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    p = torch.tensor([[3.0, 4.0], [1.0, 1.0]])  # D(a,p) = 5, 0
    n = torch.tensor([[0.0, 1.0], [1.0, 3.0]])  # D(a,n) = 1, 2
    # euclidean: max(0, .3 + 5 - 1) = 4.3 ; max(0, .3 + 0 - 2) = 0 -> mean 2.15
    assert triplet_ranking_loss(a, p, n).item() == pytest.approx(2.15, abs=1e-5)
    # squared: max(0, .3 + 25 - 1) = 24.3 ; max(0, .3 + 0 - 4) = 0 -> mean 12.15
    assert triplet_ranking_loss(a, p, n, distance="sqeuclidean").item() == pytest.approx(12.15, abs=1e-5)
    assert TripletRankingLoss(margin=1.0)(a, p, n).item() == pytest.approx((1 + 5 - 1 + 0) / 2, abs=1e-5)


def test_triplet_loss_gradient_finite_at_zero_distance():
    a = torch.ones(3, 4, requires_grad=True)
    p = torch.ones(3, 4)  # D(a, p) = 0 exactly
    n = torch.zeros(3, 4)
    loss = triplet_ranking_loss(a, p, n, margin=5.0)
    loss.backward()
    assert torch.isfinite(a.grad).all()
    assert loss.item() == pytest.approx(5.0 - 2.0, abs=1e-4)


def test_triplet_loss_errors():
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="distance"):
        triplet_ranking_loss(x, x, x, distance="cosine")
    with pytest.raises(ValueError, match="same shape"):
        triplet_ranking_loss(x, x, torch.zeros(2, 4))
    with pytest.raises(ValueError, match="distance"):
        TripletRankingLoss(distance="l1")


def test_cross_entropy_and_label_smoothing():
    logits = torch.tensor([[2.0, 0.0, 0.0]])
    target = torch.tensor([0])
    logz = math.log(math.exp(2) + 2)
    assert cross_entropy(logits, target).item() == pytest.approx(logz - 2, abs=1e-5)
    # smoothing eps: (1 - eps) * NLL(target) + eps * mean over classes of NLL
    eps = 0.3
    expected = (1 - eps) * (logz - 2) + eps * ((logz - 2) + 2 * logz) / 3
    assert cross_entropy(logits, target, label_smoothing=eps).item() == pytest.approx(expected, abs=1e-5)
    assert cross_entropy(logits.bfloat16(), target).dtype == torch.float32
    with pytest.raises(ValueError, match="label_smoothing"):
        cross_entropy(logits, target, label_smoothing=1.0)
    with pytest.raises(ValueError, match="target"):
        cross_entropy(logits, torch.tensor([0, 1]))


def test_batch_triplet_loss_against_hand_values():
    """Three sketches, photo ids [0, 1, 1]: pairs (i, j) with another id are (0,1) (0,2) (1,0) (2,0); only (2,0) is
    active: 0.3 + D(a2, p2) - D(a2, p0) = 0.3 + sqrt(2) - 0. Mean over the 4 pairs."""
    import math

    import torch

    from cdimlab.losses import batch_triplet_loss

    a = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]], requires_grad=True)
    p = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    loss = batch_triplet_loss(a, p, torch.tensor([0, 1, 1]), margin=0.3)
    assert float(loss.detach()) == pytest.approx((0.3 + math.sqrt(2)) / 4, rel=1e-6)
    sq = batch_triplet_loss(a.detach(), p, torch.tensor([0, 1, 1]), margin=0.3, distance="sqeuclidean")
    assert float(sq) == pytest.approx((0.3 + 2.0) / 4, rel=1e-6)
    same = batch_triplet_loss(a, p, torch.tensor([5, 5, 5]))  # no pair with another photo: 0, still a graph
    assert float(same.detach()) == 0.0 and same.requires_grad
    loss.backward()
    assert a.grad is not None and a.grad[2].abs().sum() > 0 and a.grad[1].abs().sum() == 0
    with pytest.raises(ValueError, match="pos_ids"):
        batch_triplet_loss(a, p, torch.tensor([0, 1]))
