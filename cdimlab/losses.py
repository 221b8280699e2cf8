"""Losses: the triplet ranking loss of FG-SBIR (paper Eq. 2) and cross-entropy for ReID.

Introduced in notebook 02 (triplet) and notebook 03 (cross-entropy).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

DISTANCES = ("euclidean", "sqeuclidean")
_EPS = 1e-12


def _distance(x: Tensor, y: Tensor, distance: str) -> Tensor:
    """Distance over the last dim in float32 (row-wise for (B, D) pairs; (B, B) when broadcast as (B, 1, D) against
    (1, B, D)). Euclidean uses sqrt(max(d2, eps)) so the gradient is finite at 0."""
    d2 = (x.float() - y.float()).pow(2).sum(dim=-1)
    return d2 if distance == "sqeuclidean" else d2.clamp_min(_EPS).sqrt()


def triplet_ranking_loss(
    anchor: Tensor, pos: Tensor, neg: Tensor, margin: float = 0.3, distance: str = "euclidean"
) -> Tensor:
    """Mean over the batch of ``max(0, margin + D(a, p) - D(a, n))`` (paper Eq. 2).

    ``distance="euclidean"`` is the paper's text; ``"sqeuclidean"`` is what the official code used.
    Inputs are ``(B, D)`` embeddings of the same shape.
    """
    if distance not in DISTANCES:
        raise ValueError(f"distance must be one of {DISTANCES}, got {distance!r}")
    if not (anchor.shape == pos.shape == neg.shape) or anchor.dim() != 2:
        raise ValueError(
            f"anchor, pos, neg must be (B, D) of the same shape; got {tuple(anchor.shape)}, "
            f"{tuple(pos.shape)}, {tuple(neg.shape)}"
        )
    return F.relu(margin + _distance(anchor, pos, distance) - _distance(anchor, neg, distance)).mean()


def batch_triplet_loss(
    anchor: Tensor, pos: Tensor, pos_ids: Tensor, margin: float = 0.3, distance: str = "euclidean"
) -> Tensor:
    """Eq. 2's hinge with every *other* positive photo of the batch as a negative: the mean over pairs (i, j),
    j != i and ``pos_ids[j] != pos_ids[i]``, of ``max(0, margin + D(a_i, p_i) - D(a_i, p_j))`` (0 with no pair).

    B - 1 negatives per sketch from embeddings the batch already computed; mostly easier than the annotated
    negatives, so a random-init tower gets a signal to learn from (the laptop Sketch-a-Net, ``batch_negatives``).
    """
    if distance not in DISTANCES:
        raise ValueError(f"distance must be one of {DISTANCES}, got {distance!r}")
    if anchor.shape != pos.shape or anchor.dim() != 2 or tuple(pos_ids.shape) != (anchor.shape[0],):
        raise ValueError(
            f"anchor and pos must be (B, D) of the same shape and pos_ids (B,); got {tuple(anchor.shape)}, "
            f"{tuple(pos.shape)}, {tuple(pos_ids.shape)}"
        )
    d = _distance(anchor[:, None, :], pos[None, :, :], distance)  # (B, B): sketch i, photo j
    ids = pos_ids.to(anchor.device)
    valid = ids[None, :] != ids[:, None]  # also drops j == i
    hinge = F.relu(margin + d.diagonal()[:, None] - d)
    # masked mean without reading a value on the host (no per-step GPU sync); 0 when no pair is valid
    return (hinge * valid).sum() / valid.sum().clamp_min(1)


class TripletRankingLoss(nn.Module):
    """Module form of :func:`triplet_ranking_loss` (``margin``, ``distance`` fixed at construction)."""

    def __init__(self, margin: float = 0.3, distance: str = "euclidean") -> None:
        super().__init__()
        if distance not in DISTANCES:
            raise ValueError(f"distance must be one of {DISTANCES}, got {distance!r}")
        self.margin = margin
        self.distance = distance

    def forward(self, anchor: Tensor, pos: Tensor, neg: Tensor) -> Tensor:
        """Mean triplet ranking loss of the batch."""
        return triplet_ranking_loss(anchor, pos, neg, self.margin, self.distance)

    def extra_repr(self) -> str:
        return f"margin={self.margin}, distance={self.distance!r}"


def cross_entropy(logits: Tensor, target: Tensor, label_smoothing: float = 0.0) -> Tensor:
    """Softmax cross-entropy over identities (computed in float32), optional label smoothing in [0, 1)."""
    if logits.dim() != 2 or target.shape != logits.shape[:1]:
        raise ValueError(
            f"logits must be (B, K) and target (B,); got {tuple(logits.shape)} and {tuple(target.shape)}"
        )
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
    return F.cross_entropy(logits.float(), target.long(), label_smoothing=label_smoothing)


__all__ = ["DISTANCES", "TripletRankingLoss", "cross_entropy", "triplet_ranking_loss"]
