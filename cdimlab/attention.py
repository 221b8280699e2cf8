"""DSSA "attention only" (Song et al. 2017; paper Fig. 3b, Table 3): the alternative the paper argues against.

Introduced in notebook 06 (attention vs fusion). DSSA re-weights the last conv map with a learned spatial
attention mask and feeds the *attended* map on through the network; the paper shows that fusing the whole
mid-level map (Fig. 3c, :mod:`cdimlab.fusion`) does better. Recipe, over Sketch-a-Net's ``conv5`` (pool5) map::

    mask     = softmax_over_HxW( conv1x1_1( relu( conv1x1_256(conv5) ) ) )     # (B, 1, H, W), sums to 1
    attended = conv5 + conv5 * mask                                             # residual attention
    f        = fc7( fc6( flatten(attended) ) )                                  # the backbone's own layers
    embedding = L2(f)

The attended map replaces the tap inside the backbone's forward (the stages after the tap run unchanged), so any
:class:`~cdimlab.models.base.TappedBackbone` works. It is a course baseline, not the paper's method.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cdimlab.models.base import TappedBackbone


class SpatialAttention(nn.Module):
    """1x1 conv (``hidden``) + ReLU -> 1x1 conv (1) -> softmax over the H*W positions: a ``(B, 1, H, W)`` mask."""

    def __init__(self, in_channels: int, hidden: int = 256) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, hidden, kernel_size=1)
        self.conv2 = nn.Conv2d(hidden, 1, kernel_size=1)

    def forward(self, fmap: Tensor) -> Tensor:
        """The mask ``(B, 1, H, W)``, float32, summing to 1 over space for every image."""
        logits = self.conv2(F.relu(self.conv1(fmap))).flatten(1).float()
        return logits.softmax(dim=1).view(fmap.shape[0], 1, *fmap.shape[2:])


class AttentionNet(nn.Module):
    """Backbone with DSSA residual spatial attention on one tap (default ``conv5``); embedding = L2(final).

    Shares the model interface of every cdimlab net: ``forward``/``embed`` give the ``(B, final_dim)``
    embedding, ``backbone`` is the TappedBackbone, :meth:`attention_map` the mask for visualisation.
    """

    def __init__(self, backbone: TappedBackbone, tap: str = "conv5", hidden: int = 256) -> None:
        super().__init__()
        self.tap = backbone.check_taps((tap,))[0]
        self.backbone = backbone
        self.attention = SpatialAttention(backbone.tap_channels[tap], hidden)
        self.out_dim = backbone.final_dim

    def attended(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Run the backbone with the attended tap map; return ``(final feature, mask (B, H, W))``."""
        mask = None
        for name, fn in self.backbone.stages():
            x = fn(x)
            if name == self.tap:
                mask = self.attention(x)
                x = x + x * mask.to(x.dtype)
        if mask is None:  # check_taps guarantees the tap is a stage name; this guards odd subclasses
            raise RuntimeError(f"{type(self.backbone).__name__} never produced tap {self.tap!r}")
        return x, mask[:, 0]

    def forward(self, x: Tensor) -> Tensor:
        """Embedding ``(B, final_dim)``: L2-normalised final feature of the attended network (float32)."""
        return F.normalize(self.attended(x)[0].float(), dim=1)

    def embed(self, x: Tensor) -> Tensor:
        """Retrieval embedding (the same as ``forward``)."""
        return self(x)

    @torch.no_grad()
    def attention_map(self, x: Tensor) -> Tensor:
        """The attention mask ``(B, H, W)`` over the tap map, for visualisation (notebook 06)."""
        return self.attended(x)[1]


__all__ = ["AttentionNet", "SpatialAttention"]
