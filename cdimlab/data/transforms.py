"""Image transforms as pure, vectorised tensor functions (crops, flips, the 10-view test protocol).

Introduced in notebook 02 (data): the FG-SBIR recipe trains on random 225x225 crops of the 256x256 images with
horizontal flips (p=0.5) and tests on 10 views (4 corner crops + centre, and their mirror images), averaging the
distances. ReID trains on the whole 256x128 image with flips only. ``cdimlab.data.gpu.ImageBank`` applies the same
functions to batches that live on the GPU.

Conventions: batches are ``(B, C, H, W)`` tensors of any dtype (uint8 is cheapest: crop first, convert later).
Normalisation constants are on the **0-1 scale** (``pixel / 255``), the torchvision convention; the paper's
Sketch-a-Net mean 250.42 is given on the 0-255 scale as ``SKETCH_MEAN`` and, ready for ``normalize``, as
``SKETCH_NORM_MEAN`` / ``SKETCH_NORM_STD`` (which reproduce the official ``x - 250.42`` exactly).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

SKETCH_MEAN: float = 250.42  # official Sketch-a-Net pixel mean, 0-255 scale
SKETCH_NORM_MEAN: tuple[float, ...] = (SKETCH_MEAN / 255.0,)  # 0-1 scale, for normalize / ImageBank
SKETCH_NORM_STD: tuple[float, ...] = (1.0 / 255.0,)  # so that (x/255 - m)/s == x - 250.42 on the 0-255 scale
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)  # 0-1 scale
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)  # 0-1 scale

#: Order of the 10 test views: (corner, flipped). View 4 is the unflipped centre crop.
TEN_VIEW_ORDER: tuple[tuple[str, bool], ...] = (
    ("top_left", False),
    ("top_right", False),
    ("bottom_left", False),
    ("bottom_right", False),
    ("center", False),
    ("top_left", True),
    ("top_right", True),
    ("bottom_left", True),
    ("bottom_right", True),
    ("center", True),
)


def to_device(t: Tensor, device: torch.device | str) -> Tensor:
    """Copy a small CPU tensor (indices, offsets, masks) to ``device`` without stalling the GPU.

    A plain ``.to("cuda")`` from pageable memory synchronises the stream; from pinned memory with
    ``non_blocking=True`` it is queued like a kernel, so sampling on the CPU overlaps the GPU's work.
    """
    device = torch.device(device)
    if t.device == device or (device.type == t.device.type and device.index is None):
        return t
    if device.type == "cuda" and t.device.type == "cpu":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


def _check_crop(x: Tensor, crop: tuple[int, int]) -> tuple[int, int]:
    """Validate a (h, w) crop against a (B, C, H, W) batch and return it as ints."""
    if x.dim() != 4:
        raise ValueError(f"expected a (B, C, H, W) batch, got shape {tuple(x.shape)}")
    h, w = int(crop[0]), int(crop[1])
    if not (0 < h <= x.shape[-2] and 0 < w <= x.shape[-1]):
        raise ValueError(f"crop={crop} does not fit images of size {tuple(x.shape[-2:])}")
    return h, w


def crop_boxes(
    x: Tensor, ys: Tensor, xs: Tensor, crop: tuple[int, int], flips: Tensor | None = None
) -> Tensor:
    """Per-sample crops (and optional mirror) by index arithmetic: one gather, no Python loop per image.

    ``ys``/``xs`` are the top-left corners (B,), ``flips`` a bool (B,) mask. Returns (B, C, h, w), same dtype.
    """
    h, w = _check_crop(x, crop)
    dev = x.device
    ys, xs = to_device(ys.long(), dev), to_device(xs.long(), dev)
    rows = ys[:, None] + torch.arange(h, device=dev)[None, :]  # (B, h)
    ar = torch.arange(w, device=dev)[None, :]
    cols = xs[:, None] + ar  # (B, w)
    if flips is not None:
        cols = torch.where(to_device(flips, dev)[:, None], xs[:, None] + (w - 1 - ar), cols)
    b = torch.arange(x.shape[0], device=dev)[:, None, None]
    out = x[b, :, rows[:, :, None], cols[:, None, :]]  # advanced indexing -> (B, h, w, C)
    return out.permute(0, 3, 1, 2).contiguous()


def hflip(x: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mirror a (B, C, H, W) batch left-right; with ``mask`` (bool (B,)) only the selected samples."""
    flipped = x.flip(-1)
    if mask is None:
        return flipped
    return torch.where(to_device(mask, x.device)[:, None, None, None], flipped, x)


def random_crop_flip(
    x: Tensor,
    crop: tuple[int, int] | None,
    flip: bool = True,
    generator: torch.Generator | None = None,
) -> Tensor:
    """The training augmentation: a random ``crop`` (h, w) per sample and a horizontal flip with p=0.5.

    ``crop=None`` keeps the whole image (ReID). Random numbers come from ``generator`` (sampled on the
    generator's device, then moved), so a seeded generator gives the same batch on every run.
    """
    bsz, _, big_h, big_w = x.shape
    gdev = generator.device if generator is not None else torch.device("cpu")
    flips = (torch.rand(bsz, generator=generator, device=gdev) < 0.5) if flip else None
    if crop is None:
        return hflip(x, flips) if flips is not None else x
    h, w = _check_crop(x, crop)
    ys = torch.randint(0, big_h - h + 1, (bsz,), generator=generator, device=gdev)
    xs = torch.randint(0, big_w - w + 1, (bsz,), generator=generator, device=gdev)
    return crop_boxes(x, ys, xs, (h, w), flips)


def _corner(name: str, big: tuple[int, int], crop: tuple[int, int]) -> tuple[int, int]:
    """Top-left (y, x) of a named crop position."""
    (big_h, big_w), (h, w) = big, crop
    return {
        "top_left": (0, 0),
        "top_right": (0, big_w - w),
        "bottom_left": (big_h - h, 0),
        "bottom_right": (big_h - h, big_w - w),
        "center": ((big_h - h) // 2, (big_w - w) // 2),
    }[name]


def crop_view(x: Tensor, crop: tuple[int, int] | None, view: int = 4) -> Tensor:
    """One of the 10 test views (see ``TEN_VIEW_ORDER``); ``crop=None``: views 0-4 = image, 5-9 = mirrored."""
    if not 0 <= view < 10:
        raise ValueError(f"view must be in 0..9 (4 = centre crop), got {view}")
    name, flipped = TEN_VIEW_ORDER[view]
    if crop is None:
        return x.flip(-1) if flipped else x
    h, w = _check_crop(x, crop)
    y0, x0 = _corner(name, tuple(x.shape[-2:]), (h, w))
    out = x[..., y0 : y0 + h, x0 : x0 + w]
    return out.flip(-1) if flipped else out


def center_crop(x: Tensor, crop: tuple[int, int]) -> Tensor:
    """The centre crop (view 4), used for single-view evaluation."""
    return crop_view(x, crop, 4)


def ten_crop_views(x: Tensor, crop: tuple[int, int]) -> list[Tensor]:
    """All 10 test views in ``TEN_VIEW_ORDER`` (4 corners + centre, then the same 5 mirrored)."""
    return [crop_view(x, crop, v) for v in range(10)]


def normalize(x: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """uint8 (or 0-255 float) batch -> float32 ``(x/255 - mean) / std``; ``mean``/``std`` on the 0-1 scale.

    Raises ValueError when a mean above 1 suggests 0-255 values (e.g. pass ``SKETCH_NORM_MEAN``, not 250.42).
    """
    if any(float(m) > 1.0 for m in mean):
        raise ValueError(
            f"mean={tuple(mean)} looks like a 0-255 value; mean/std are on the 0-1 scale "
            "(use SKETCH_NORM_MEAN/SKETCH_NORM_STD for sketches, IMAGENET_MEAN/STD for photos)"
        )
    c = x.shape[1]
    m = torch.as_tensor(list(mean), dtype=torch.float32, device=x.device)
    s = torch.as_tensor(list(std), dtype=torch.float32, device=x.device)
    if m.numel() not in (1, c) or s.numel() not in (1, c):
        raise ValueError(f"mean/std have {m.numel()}/{s.numel()} values but the images have {c} channels")
    scale = 1.0 / (255.0 * s)  # fold /255 and /std into one multiply
    return (x.float() * scale.view(1, -1, 1, 1)) - (m / s).view(1, -1, 1, 1)
