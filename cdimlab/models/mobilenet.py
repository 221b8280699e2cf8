"""MobileNetV2 (Sandler et al. 2018) as a tapped backbone: an ImageNet-pretrained network small enough for a laptop.

Introduced in notebook 03 (ImageNet weights) and used by the laptop track for ReID and FG-SBIR. The network is
torchvision's ``mobilenet_v2().features``, 19 blocks; tap ``block<i>`` is the output of ``features[i]``. Channels
and stride (input size / map size) of each, e.g. at 160x160 (stride 32 -> 5x5) or 128x64 (-> 4x2)::

    block0   stem 3x3 conv s2 + BN + ReLU6       32 ch   stride 2
    block1   inverted residual, t=1              16 ch   stride 2
    block2-3   inverted residuals, t=6           24 ch   stride 4
    block4-6                                     32 ch   stride 8
    block7-10                                    64 ch   stride 16
    block11-13                                   96 ch   stride 16   (block13: 96x10x10 at 160, FG-SBIR fusion)
    block14-16                                  160 ch   stride 32   (block16 and block17: the ReID fusion pair)
    block17                                     320 ch   stride 32
    block18  final 1x1 conv + BN + ReLU6       1280 ch   stride 32
    final    GAP(block18)                      1280-d

Fusion follows the paper's pattern: ReID fuses GAP of the last two blocks before the final 1x1 conv (block16,
block17; as res5a/res5b) through an FC; FG-SBIR fuses a flattened mid-level block (block13; as Mixed_7b in Table 11).
Inputs are normalised with the ImageNet mean/std (:attr:`MobileNetV2Backbone.input_mean` / ``input_std``, 0-1
scale). Sketches and edge maps have one channel: build the backbone with ``in_channels=1`` and normalise them with
the grey mean/std :data:`GREY_MEAN` / :data:`GREY_STD`; ``forward`` then repeats the channel and maps it exactly to
the per-channel ImageNet normalisation, so the same weights serve sketches, edge maps and photos.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import torch
import torchvision
from torch import Tensor

from cdimlab.models.base import Stage, TappedBackbone, pair
from cdimlab.models.mobilenet_weights import load_mobilenetv2_weights

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # 0-1 scale, as cdimlab.data.IMAGENET_MEAN
IMAGENET_STD = (0.229, 0.224, 0.225)
GREY_MEAN = (sum(IMAGENET_MEAN) / 3,)  # 0.449: normalise 1-channel inputs with this for in_channels=1
GREY_STD = (sum(IMAGENET_STD) / 3,)  # 0.226
_CHANNELS = (32, 16, 24, 24, 32, 32, 32, 64, 64, 64, 64, 96, 96, 96, 160, 160, 160, 320, 1280)
BLOCKS = tuple(f"block{i}" for i in range(len(_CHANNELS)))


class MobileNetV2Backbone(TappedBackbone):
    """torchvision MobileNetV2 features; taps ``block0`` .. ``block18`` (= ``features[i]``); final GAP, 1280-d.

    ``weights``: None (random init, default), ``"imagenet"`` (``<data_root>/weights/mobilenetv2_imagenet_features.pt``
    from ``python data_scripts/fetch_mobilenetv2.py``, else torchvision's ``mobilenet_v2-*.pth`` in the torch hub
    cache; see :mod:`cdimlab.models.mobilenet_weights`) or a path. ``in_channels``: 3 (photos) or 1 (sketches, edge
    maps; normalised with :data:`GREY_MEAN`/:data:`GREY_STD`). Any input size (the final map is input/32, rounded up).
    """

    tap_names = BLOCKS

    def __init__(
        self,
        weights: str | os.PathLike | None = None,
        input_size: int | tuple[int, int] = 224,
        in_channels: int = 3,
        data_root: str | os.PathLike | None = None,
    ) -> None:
        super().__init__()
        if in_channels not in (1, 3):
            raise ValueError(f"MobileNetV2Backbone: in_channels must be 1 or 3, got {in_channels}")
        self.features = torchvision.models.mobilenet_v2(weights=None).features
        self.input_size = pair(input_size)
        self.in_channels = in_channels
        self.final_dim = 1280
        self.tap_channels = dict(zip(BLOCKS, _CHANNELS, strict=True))
        self.input_mean = IMAGENET_MEAN if in_channels == 3 else GREY_MEAN
        self.input_std = IMAGENET_STD if in_channels == 3 else GREY_STD
        # grey-normalised x -> per-channel ImageNet normalisation of the repeated grey image: x * scale + shift
        scale = torch.tensor([GREY_STD[0] / s for s in IMAGENET_STD]).view(1, 3, 1, 1)
        pairs = zip(IMAGENET_MEAN, IMAGENET_STD, strict=True)
        shift = torch.tensor([(GREY_MEAN[0] - m) / s for m, s in pairs]).view(1, 3, 1, 1)
        self.register_buffer("_grey_scale", scale, persistent=False)
        self.register_buffer("_grey_shift", shift, persistent=False)
        self.weights_file = None
        if weights is not None:
            self.weights_file = load_mobilenetv2_weights(self.features, weights, data_root)

    def _to_rgb(self, x: Tensor) -> Tensor:
        """3-channel input unchanged; a grey-normalised 1-channel input -> the ImageNet-normalised 3-channel one."""
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"MobileNetV2Backbone(in_channels={self.in_channels}) got a {x.shape[1]}-channel input; "
                f"build it with in_channels={x.shape[1]}" + (" (1 or 3)" if x.shape[1] not in (1, 3) else "")
            )
        if self.in_channels == 3:
            return x
        return x * self._grey_scale.to(x.dtype) + self._grey_shift.to(x.dtype)

    def stages(self) -> Iterator[Stage]:
        """Input to RGB, ``block0`` .. ``block18`` (torchvision's ``features[0..18]``), then GAP -> final."""
        yield "input", self._to_rgb
        yield from zip(BLOCKS, self.features, strict=True)
        yield "pool", lambda x: x.mean(dim=(2, 3))
