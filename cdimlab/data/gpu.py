"""``ImageBank``: a whole dataset as one uint8 tensor on the training device, augmented there.

Introduced in notebook 02 (training data) and used by ``cdimlab.train``. QMUL sets are tiny and Market-1501's training set is
~1.3 GB as uint8 at 256x128, so they fit on a GPU: cropping, flipping and normalising a batch there is one gather and
one multiply-add (~300K img/s on an H100), so the model, not a DataLoader, bounds training speed.

Value scale: ``mean``/``std`` are on the **0-1 scale** (``pixel / 255``), as in torchvision: outputs are
``(pixel/255 - mean) / std``. For sketches use ``transforms.SKETCH_NORM_MEAN/STD`` (== the official ``x - 250.42``);
for RGB photos ``transforms.IMAGENET_MEAN/STD``.

Test views (``eval_batch``): view 0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right, 4 centre, 5-9 the same
five crops mirrored left-right (``transforms.TEN_VIEW_ORDER``). Without cropping (``crop=None``, ReID) views 0-4 are
the whole image and 5-9 its mirror.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    SKETCH_NORM_MEAN,
    crop_view,
    normalize,
    random_crop_flip,
    to_device,
)


def _to_nchw_uint8(images: np.ndarray | Tensor) -> Tensor:
    """(N, H, W) or (N, H, W, C) uint8 -> CPU uint8 (N, C, H, W) tensor (no copy of the channel data when C=1)."""
    t = torch.from_numpy(np.ascontiguousarray(images)) if isinstance(images, np.ndarray) else images
    if t.dtype != torch.uint8:
        raise ValueError(f"ImageBank expects uint8 images (0-255), got dtype {t.dtype}")
    if t.dim() == 3:
        return t.unsqueeze(1)
    if t.dim() == 4 and t.shape[-1] in (1, 3):
        return t.permute(0, 3, 1, 2)
    raise ValueError(f"ImageBank expects images shaped (N, H, W) or (N, H, W, C), got {tuple(t.shape)}")


def _resize_uint8(x: Tensor, size: tuple[int, int], chunk: int = 512) -> Tensor:
    """Bilinear (antialiased) resize of a uint8 (N, C, H, W) tensor, in chunks to bound float memory."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    out = torch.empty((x.shape[0], x.shape[1], *size), dtype=torch.uint8, device=x.device)
    for i in range(0, x.shape[0], chunk):
        part = x[i : i + chunk].float()
        res = F.interpolate(part, size=size, mode="bilinear", align_corners=False, antialias=True)
        out[i : i + chunk] = res.round_().clamp_(0, 255).to(torch.uint8)
    return out


class ImageBank:
    """uint8 images resident on ``device``; ``train_batch``/``eval_batch`` return normalised float batches.

    Args:
        images: uint8 (N, H, W) or (N, H, W, C) array/tensor.
        device: where the bank lives (and where augmentation runs).
        crop: (h, w) random-crop size for training and crop size of the test views; ``None`` = no cropping.
        flip: random horizontal flips (p=0.5) during training.
        mean, std: per-channel (or one shared) normalisation, 0-1 scale (see module docstring).
        out_size: resize every image once, at construction (e.g. (256, 128) for ReID).
        channels_last: return batches in ``torch.channels_last`` memory format (faster convs with AMP on GPU).
    """

    def __init__(
        self,
        images: np.ndarray | Tensor,
        device: str | torch.device,
        *,
        crop: tuple[int, int] | None,
        flip: bool,
        mean: Sequence[float],
        std: Sequence[float],
        out_size: tuple[int, int] | None = None,
        channels_last: bool = False,
    ) -> None:
        self.device = torch.device(device)
        data = _to_nchw_uint8(images).to(self.device)
        if out_size is not None:
            data = _resize_uint8(data, (int(out_size[0]), int(out_size[1])))
        self.data: Tensor = data.contiguous()
        if crop is not None and not (0 < crop[0] <= data.shape[-2] and 0 < crop[1] <= data.shape[-1]):
            raise ValueError(f"crop={crop} is larger than the stored images {tuple(data.shape[-2:])}")
        self.crop = None if crop is None else (int(crop[0]), int(crop[1]))
        self.flip = bool(flip)
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
        normalize(self.data[:1], self.mean, self.std)  # validate scale and channel count now
        self.channels_last = channels_last

    def __len__(self) -> int:
        return int(self.data.shape[0])

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W) of the stored images."""
        return int(self.data.shape[-2]), int(self.data.shape[-1])

    @property
    def output_size(self) -> tuple[int, int]:
        """(h, w) of the batches returned (crop size, or the stored size)."""
        return self.crop if self.crop is not None else self.image_size

    def _finish(self, x: Tensor) -> Tensor:
        if getattr(self, "_affine", None) is None:  # built once on the device: no per-batch host copies
            normalize(x[:1, :, :1, :1], self.mean, self.std)  # validates mean/std against the channels
            m = torch.as_tensor(list(self.mean), dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
            s = torch.as_tensor(list(self.std), dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
            self._affine = (1.0 / (255.0 * s), -(m / s))  # the same arithmetic as normalize()
        scale, shift = self._affine
        out = x.float() * scale + shift  # == normalize(x, mean, std)
        return out.contiguous(memory_format=torch.channels_last) if self.channels_last else out

    def _gather(self, idx: Tensor | Sequence[int]) -> Tensor:
        idx_t = to_device(torch.as_tensor(idx, dtype=torch.long), self.device)
        return self.data.index_select(0, idx_t)

    def train_batch(self, idx: Tensor | Sequence[int], generator: torch.Generator | None) -> Tensor:
        """Random crop + flip + normalise the images ``idx``: float (B, C, h, w) on the bank's device.

        The random numbers come from ``generator`` on its own device (a CPU generator works with a CUDA bank:
        the offsets are drawn on the CPU and moved), so a seeded generator reproduces the batch.
        """
        x = self._gather(idx)
        return self._finish(random_crop_flip(x, self.crop, self.flip, generator))

    def eval_batch(self, idx: Tensor | Sequence[int], view: int = 4) -> Tensor:
        """Test view ``view`` (0..9, 4 = centre crop, see module docstring) of the images ``idx``, normalised."""
        return self._finish(crop_view(self._gather(idx), self.crop, view))

    def raw(self, idx: Tensor | Sequence[int]) -> Tensor:
        """The stored uint8 (B, C, H, W) images, for display."""
        return self._gather(idx)


# ------------------------------------------------------------------------------------ the two dataset banks
def norm_stats(mean: Any, std: Any, channels: int) -> tuple[list[float], list[float]]:
    """Broadcast scalar or per-channel normalisation constants (0-1 scale) to ``channels`` values."""
    m = [float(v) for v in np.atleast_1d(np.asarray(mean, dtype=np.float64))]
    s = [float(v) for v in np.atleast_1d(np.asarray(std, dtype=np.float64))]
    return (m * channels)[:channels] if len(m) == 1 else m, (s * channels)[:channels] if len(s) == 1 else s


def sbir_bank(
    images: np.ndarray,
    device: str | torch.device,
    *,
    crop: int,
    resize: int | None = None,
    sketch_std: float = 0.2,
    train: bool,
    in_channels: int = 1,
    channels_last: bool = False,
    stats: tuple[Sequence[float], Sequence[float]] | None = None,
    flip: bool | None = None,
) -> ImageBank:
    """An ImageBank for QMUL sketches or photo edge maps (uint8 N x 256 x 256), resized to ``resize`` first.

    Training banks crop ``crop`` x ``crop`` at random and flip (``flip=False``: crop only); evaluation banks give
    the 10 views. Grey images are normalised with the sketch mean and ``sketch_std`` (0-1 scale); for a 3-channel backbone (InceptionV3)
    they are repeated over 3 channels with ImageNet statistics. ``stats`` = (mean, std) on the 0-1 scale
    overrides both: a backbone that states its own input normalisation (MobileNetV2's grey mapping of the
    ImageNet statistics) gets exactly that. Notebooks 02 and 07 build them directly.
    """
    imgs = np.asarray(images)
    if in_channels == 3 and imgs.ndim == 3:
        imgs = np.repeat(imgs[..., None], 3, axis=-1)
        mean, std = IMAGENET_MEAN, IMAGENET_STD
    else:
        mean, std = SKETCH_NORM_MEAN, (sketch_std,)
    if stats is not None:
        mean, std = stats
    mean, std = norm_stats(mean, std, in_channels)
    flips = train if flip is None else flip
    return ImageBank(imgs, device, crop=(crop, crop), flip=flips, mean=mean, std=std,
                     out_size=(resize, resize) if resize else None, channels_last=channels_last)  # fmt: skip


def reid_bank(
    images: np.ndarray,
    device: str | torch.device,
    *,
    size: tuple[int, int],
    train: bool,
    channels_last: bool = False,
) -> ImageBank:
    """An ImageBank for ReID crops (uint8 N x H x W x 3) at ``size`` (H, W), ImageNet-normalised, flip in training."""
    h, w = size
    same = tuple(np.asarray(images).shape[1:3]) == (h, w)
    return ImageBank(images, device, crop=None, flip=train, mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD),
                     out_size=None if same else (h, w), channels_last=channels_last)  # fmt: skip
