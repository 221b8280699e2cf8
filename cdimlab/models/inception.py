"""InceptionV3 as an FG-SBIR tower (paper Table 11) with named taps.

Introduced in notebook 06 (Table 11). Input 3x299x299 (works from 75x75 up). Taps ``Mixed_6e``
(768x17x17), ``Mixed_7a`` (1280x8x8), ``Mixed_7b`` (2048x8x8, the paper's fusion layer), ``Mixed_7c``
(2048x8x8); final ``pool`` = GAP(Mixed_7c), 2048-d. Module names are torchvision's, so its ImageNet checkpoint
loads directly (the auxiliary classifier and ``fc`` are dropped).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import torch
import torchvision
from torch import Tensor

from cdimlab.models.base import Stage, TappedBackbone, pair
from cdimlab.models.weights import load_imagenet_weights

_STEM = (
    "Conv2d_1a_3x3",
    "Conv2d_2a_3x3",
    "Conv2d_2b_3x3",
    "maxpool1",
    "Conv2d_3b_1x1",
    "Conv2d_4a_3x3",
    "maxpool2",
)
_MIXED = ("Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e")
_TOP = ("Mixed_7a", "Mixed_7b", "Mixed_7c")


class InceptionV3Backbone(TappedBackbone):
    """torchvision InceptionV3 (no aux head, no fc); taps Mixed_6e, Mixed_7a, Mixed_7b, Mixed_7c; final pool.

    ``weights``: None (random init), ``"imagenet"`` or a path. With ImageNet weights ``transform_input`` is set,
    as torchvision does: inputs normalised with the ImageNet mean/std are re-mapped to the [-1, 1] scaling the
    Google weights were trained with.
    """

    tap_names = ("Mixed_6e", *_TOP)

    def __init__(
        self,
        weights: str | os.PathLike | None = None,
        input_size: int | tuple[int, int] = 299,
        transform_input: bool | None = None,
    ) -> None:
        super().__init__()
        net = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=True)
        for name in (*_STEM, *_MIXED, *_TOP):
            setattr(self, name, getattr(net, name))
        self.input_size = pair(input_size)
        self.in_channels = 3
        self.final_dim = 2048
        self.tap_channels = {"Mixed_6e": 768, "Mixed_7a": 1280, "Mixed_7b": 2048, "Mixed_7c": 2048}
        self.weights_file = None
        if weights is not None:
            path = None if weights == "imagenet" else weights
            self.weights_file = load_imagenet_weights(self, "inception_v3", path)
        self.transform_input = (weights is not None) if transform_input is None else transform_input

    def _transform(self, x: Tensor) -> Tensor:
        """ImageNet mean/std normalisation -> Google's (x - 0.5) / 0.5, per channel (only if transform_input)."""
        if not self.transform_input:
            return x
        mean = torch.tensor([0.485, 0.456, 0.406], device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225], device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        return (x * std + mean - 0.5) / 0.5

    def stages(self) -> Iterator[Stage]:
        """Input transform, the stem, Mixed_5b..7c, then GAP -> pool."""
        yield "input", self._transform
        for name in (*_STEM, *_MIXED, *_TOP):
            yield name, getattr(self, name)
        yield "pool", lambda x: x.mean(dim=(2, 3))
