"""ResNet-50 for person ReID (paper Sec. 3.3) with the paper's named taps.

Introduced in notebook 03. Input 3x256x128. Taps (paper names -> torchvision modules):
``res2`` = layer1 (256x64x32), ``res3`` = layer2 (512x32x16), ``res4`` = layer3 (1024x16x8, = ``res4f``),
``res4a..res4f`` = layer3[0..5], ``res5a/b/c`` = layer4[0..2] (2048x8x4); final ``pool5`` = GAP(res5c), 2048-d.
The module names are torchvision's (``conv1``, ``layer3`` ...), so torchvision's ImageNet checkpoints load directly.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import torchvision
from torch import Tensor

from cdimlab.models.base import Stage, TappedBackbone, pair
from cdimlab.models.weights import load_imagenet_weights

_RES4 = tuple(f"res4{c}" for c in "abcdef")
_RES5 = ("res5a", "res5b", "res5c")


class ResNet50Backbone(TappedBackbone):
    """torchvision ResNet-50 without its classifier; taps res2, res3, res4, res4a..f, res5a..c; final pool5.

    ``weights``: None (random init, default), ``"imagenet"`` (torchvision cache, see :mod:`cdimlab.models.weights`)
    or a path to a torchvision-format checkpoint. ``last_stride=1`` keeps res5 at 16x8 (a common ReID trick; the
    paper uses the standard stride 2).
    """

    tap_names = ("res2", "res3", *_RES4, "res4", *_RES5)

    def __init__(
        self,
        weights: str | os.PathLike | None = None,
        last_stride: int = 2,
        input_size: int | tuple[int, int] = (256, 128),
    ) -> None:
        super().__init__()
        if last_stride not in (1, 2):
            raise ValueError(f"last_stride must be 1 or 2, got {last_stride}")
        net = torchvision.models.resnet50(weights=None)
        for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"):
            setattr(self, name, getattr(net, name))
        if last_stride == 1:
            self.layer4[0].conv2.stride = (1, 1)
            self.layer4[0].downsample[0].stride = (1, 1)
        self.last_stride = last_stride
        self.input_size = pair(input_size)
        self.in_channels = 3
        self.final_dim = 2048
        self.tap_channels = {"res2": 256, "res3": 512, "res4": 1024, **dict.fromkeys(_RES4, 1024)}
        self.tap_channels.update(dict.fromkeys(_RES5, 2048))
        self.weights_file = None
        if weights is not None:
            path = None if weights == "imagenet" else weights
            self.weights_file = load_imagenet_weights(self, "resnet50", path)

    def stages(self) -> Iterator[Stage]:
        """Stem, res2, res3, res4a..f (res4f is also ``res4``), res5a..c, then GAP -> pool5."""
        yield "stem", lambda x: self.maxpool(self.relu(self.bn1(self.conv1(x))))
        yield "res2", self.layer1
        yield "res3", self.layer2
        for name, block in zip(_RES4, self.layer3, strict=True):
            yield name, block
            if name == "res4f":
                yield "res4", _identity
        for name, block in zip(_RES5, self.layer4, strict=True):
            yield name, block
        yield "pool5", lambda x: x.mean(dim=(2, 3))


def _identity(x: Tensor) -> Tensor:
    return x
