"""DSSA-style "attention only" fusion (paper Fig. 3b): the alternative the paper argues against.

Introduced in notebook 06 (attention vs fusion). Song et al.'s DSSA model re-weights a mid-level map with a learned
spatial attention mask, pools the attended map and concatenates it with the final feature. The paper shows that
plain fusion of the *whole* mid-level map (Fig. 3c, :mod:`cdimlab.fusion`) is enough, and better: attention keeps
only what the mask selects and, after pooling, throws away the spatial layout that pose-aligned FG-SBIR needs.
This module exists so the course can train both and compare them; it is not the paper's method.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cdimlab.models.base import TappedBackbone

_MASKS = ("softmax", "sigmoid")


class AttentionOnly(nn.Module):
    """1x1 conv -> spatial attention mask over a tap map -> attended GAP -> L2, concatenated with L2(final).

    ``mask="softmax"``: a distribution over the H*W positions; the attended feature is the mask-weighted
    average of the map. ``mask="sigmoid"``: an independent gate per position; the attended feature is
    GAP(map * mask). ``out_dim = in_channels + final_dim``.
    """

    def __init__(self, in_channels: int, final_dim: int, mask: str = "softmax") -> None:
        super().__init__()
        if mask not in _MASKS:
            raise ValueError(f"mask must be one of {_MASKS}, got {mask!r}")
        self.mask = mask
        self.score = nn.Conv2d(in_channels, 1, kernel_size=1)
        self.out_dim = in_channels + final_dim

    def attention(self, fmap: Tensor) -> Tensor:
        """The attention mask ``(B, H, W)``: sums to 1 per image (softmax) or lies in (0, 1) (sigmoid)."""
        logits = self.score(fmap).flatten(1).float()
        weights = logits.softmax(dim=1) if self.mask == "softmax" else logits.sigmoid()
        return weights.view(fmap.shape[0], *fmap.shape[2:])

    def forward(self, fmap: Tensor, final: Tensor) -> Tensor:
        """``concat(L2(attended pooled map), L2(final))`` of shape ``(B, in_channels + final_dim)``."""
        mask = self.attention(fmap).unsqueeze(1)
        if self.mask == "softmax":
            attended = (fmap.float() * mask).sum(dim=(2, 3))
        else:
            attended = (fmap.float() * mask).mean(dim=(2, 3))
        return torch.cat([F.normalize(attended, dim=1), F.normalize(final.float(), dim=1)], dim=1)


class AttentionEmbeddingNet(nn.Module):
    """Backbone + :class:`AttentionOnly` over one tap (default ``conv5``): an embedding for the triplet loss."""

    def __init__(self, backbone: TappedBackbone, tap: str = "conv5", mask: str = "softmax") -> None:
        super().__init__()
        backbone._check_taps((tap,))
        self.backbone = backbone
        self.tap = tap
        self.head = AttentionOnly(backbone.tap_channels[tap], backbone.final_dim, mask)
        self.out_dim = self.head.out_dim

    def forward(self, x: Tensor) -> Tensor:
        """Embedding ``(B, out_dim)``."""
        feats = self.backbone.forward_taps(x, (self.tap,))
        return self.head(feats[self.tap], feats["final"])

    @torch.no_grad()
    def attention_map(self, x: Tensor) -> Tensor:
        """The attention mask ``(B, H, W)`` over the tap map, for visualisation."""
        return self.head.attention(self.backbone.forward_taps(x, (self.tap,))[self.tap])
