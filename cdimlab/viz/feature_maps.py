"""Feature maps of a mid layer, side by side for the two domains (the paper's Fig. 2 and Fig. 5).

Introduced in notebook 07 (explorer). The paper's argument is visual: a ``conv5`` filter of Sketch-a-Net fires on
the same part (a heel, a buckle) in a sketch and in its photo, at the same place, because the two domains are
pose-aligned; so flattening ``conv5`` keeps useful, matchable detail that ``fc7`` has thrown away. These helpers
read a tap of any :class:`~cdimlab.models.base.TappedBackbone` (or of a model that contains one, such as
``EmbeddingNet``), rank the filters that both images activate strongly and alike, and draw the maps upsampled over
the images.

All figures are ``matplotlib.figure.Figure`` objects built without pyplot: nothing is shown or kept in a global
figure list, and Jupyter's inline backend displays one when it is the value of a cell or passed to ``display``.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import Tensor, nn

from cdimlab.models.base import TappedBackbone
from cdimlab.utils import resolve_device

ImageLike = Tensor | np.ndarray


class CourseFigure(Figure):
    """A ``Figure`` that shows itself as a PNG in Jupyter.

    The inline backend only registers its PNG formatter once pyplot is imported; these figures are made without
    pyplot, so they carry their own ``_repr_png_`` and display the same whether or not a notebook imported pyplot.
    """

    def _repr_png_(self) -> bytes:
        buf = io.BytesIO()
        self.savefig(buf, format="png")
        return buf.getvalue()


def new_figure(width: float, height: float) -> Figure:
    """A pyplot-free :class:`CourseFigure` with an Agg canvas (renders anywhere; no backend is switched)."""
    fig = CourseFigure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def figure_pixels(fig: Figure) -> np.ndarray:
    """Render ``fig`` and return its RGBA pixels ``(H, W, 4)`` uint8 (tests compare these to see a change)."""
    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba()).copy()


def as_batch(images: ImageLike, name: str = "images") -> Tensor:
    """Turn images into a float batch ``(B, C, H, W)``.

    Float tensors are taken as they are (already normalised model inputs). uint8 arrays/tensors ``(B, H, W)``
    (sketches, edge maps) become 1-channel, ``(B, H, W, 3)`` become 3-channel, scaled to [0, 1]. A single image
    ``(C, H, W)`` float becomes a batch of one.
    """
    x = torch.as_tensor(np.asarray(images)) if isinstance(images, np.ndarray) else images
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or numpy array, got {type(images).__name__}")
    if x.dtype == torch.uint8:
        if x.ndim == 3:
            x = x[:, None]
        elif x.ndim == 4 and x.shape[-1] in (1, 3):
            x = x.permute(0, 3, 1, 2)
        if x.ndim != 4:
            raise ValueError(f"{name}: uint8 images must be (B, H, W) or (B, H, W, 3), got {tuple(x.shape)}")
        return x.float().div_(255.0)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4:
        raise ValueError(f"{name} must be (B, C, H, W) (or one (C, H, W) image), got shape {tuple(x.shape)}")
    return x.float()


def to_display(img: ImageLike) -> np.ndarray:
    """One image as a float array in [0, 1] ready for ``imshow``: ``(H, W)`` grayscale or ``(H, W, 3)`` RGB.

    Accepts ``(C, H, W)`` / ``(1, C, H, W)`` tensors (normalised model inputs are min-max rescaled per image, so a
    mean-subtracted sketch still looks like a sketch), ``(H, W)`` and ``(H, W, 3)`` arrays, uint8 or float.
    """
    is_tensor = isinstance(img, Tensor)
    a = img.detach().cpu().numpy() if is_tensor else np.asarray(img)
    if a.ndim == 4 and a.shape[0] == 1:
        a = a[0]
    channels_first = a.ndim == 3 and a.shape[0] in (1, 3) and (is_tensor or a.shape[-1] not in (1, 3))
    if channels_first:  # tensors are (C, H, W); arrays are (H, W, C) unless clearly channels-first
        a = np.moveaxis(a, 0, -1)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] != 3):
        raise ValueError(
            f"cannot display an image of shape {a.shape}; expected (H, W), (H, W, 3) or (C, H, W)"
        )
    if a.dtype == np.uint8:
        return a.astype(np.float32) / 255.0
    a = a.astype(np.float32)
    lo, hi = float(a.min()), float(a.max())
    if lo >= 0.0 and hi <= 1.0:
        return a
    return (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)


@torch.no_grad()
def feature_maps(
    model_or_backbone: nn.Module,
    images: ImageLike,
    tap: str,
    device: str | torch.device = "cpu",
    batch_size: int = 64,
    preprocess: Callable[[Tensor], Tensor] | None = None,
) -> Tensor:
    """Feature maps ``(B, C, h, w)`` (on the CPU) of tap ``tap`` for ``images``, in eval mode.

    ``model_or_backbone`` may be a backbone or any model holding one (the backbone's own taps are read, which is
    what the fusion module pools). ``preprocess`` (e.g. mean subtraction) is applied to each batch on ``device``.
    Training flags are restored afterwards so a model mid-training is left as it was.
    """
    backbone = getattr(model_or_backbone, "backbone", None)  # every cdimlab net (and a bare backbone) has one
    if not isinstance(backbone, TappedBackbone):
        raise TypeError(
            f"model is a {type(model_or_backbone).__name__} without a cdimlab TappedBackbone; pass a backbone from "
            "cdimlab.models.build_backbone(...) or a net built on one (EmbeddingNet, ReIDNet, AttentionNet)"
        )
    dev = resolve_device(device)
    x_all = as_batch(images)
    flags = {m: m.training for m in backbone.modules()}
    backbone.eval()
    try:
        out = []
        for start in range(0, len(x_all), batch_size):
            x = x_all[start : start + batch_size].to(dev)
            if preprocess is not None:
                x = preprocess(x)
            out.append(backbone.forward_taps(x, (tap,))[tap].float().cpu())
    finally:
        for m, flag in flags.items():
            m.training = flag
    return torch.cat(out) if out else torch.empty(0)


def _check_pair_maps(maps_a: Tensor, maps_b: Tensor) -> tuple[Tensor, Tensor]:
    """Both maps as float ``(C, h, w)`` with equal shapes (a leading batch of one is dropped)."""
    a, b = torch.as_tensor(maps_a).float(), torch.as_tensor(maps_b).float()
    a = a[0] if a.ndim == 4 and a.shape[0] == 1 else a
    b = b[0] if b.ndim == 4 and b.shape[0] == 1 else b
    if a.ndim != 3 or a.shape != b.shape:
        raise ValueError(
            f"maps_a and maps_b must both be (C, h, w) with the same shape, got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    return a, b


def activation_similarity(maps_a: Tensor, maps_b: Tensor) -> Tensor:
    """Cosine similarity ``(C,)`` of each filter's map in image A and in image B (0 where a map is all zero).

    High values mean the filter fires at the same places in both domains: the pose-aligned, mid-level evidence
    that flattening ``conv5`` preserves.
    """
    a, b = _check_pair_maps(maps_a, maps_b)
    a, b = a.flatten(1), b.flatten(1)
    denom = a.norm(dim=1) * b.norm(dim=1)
    dots = (a * b).sum(dim=1)
    return torch.where(denom > 0, dots / denom.clamp_min(1e-12), torch.zeros_like(dots))


def top_filters(maps_a: Tensor, maps_b: Tensor, k: int = 4) -> list[int]:
    """The ``k`` filters that both images activate strongly *and* alike, best first.

    Score per filter = cosine similarity of its two maps x sqrt(mean activation in A x mean activation in B)
    (activations taken as magnitudes), so a filter silent in either image scores 0. Ties keep filter order.
    """
    a, b = _check_pair_maps(maps_a, maps_b)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    strength = (a.abs().mean(dim=(1, 2)) * b.abs().mean(dim=(1, 2))).sqrt()
    score = activation_similarity(a, b) * strength
    order = torch.sort(score, descending=True, stable=True).indices
    return [int(i) for i in order[: min(k, len(order))]]


def upsample_map(fmap: Tensor | np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """One map ``(h, w)`` bilinearly upsampled to ``size`` (H, W) and min-max scaled to [0, 1] (0 if flat)."""
    m = torch.as_tensor(np.asarray(fmap) if isinstance(fmap, np.ndarray) else fmap).detach().float().cpu()
    if (
        m.ndim != 2
    ):  # (a CUDA map, or one that requires grad, is brought to the CPU first: the result is numpy)
        raise ValueError(f"a feature map must be (h, w), got shape {tuple(m.shape)}")
    up = F.interpolate(m[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]
    lo, hi = float(up.min()), float(up.max())
    return ((up - lo) / (hi - lo)).numpy() if hi > lo else np.zeros(size, dtype=np.float32)


def draw_image(ax, img: np.ndarray, title: str | None = None) -> None:
    """``imshow`` an image from :func:`to_display` (grayscale with a gray colormap), without axes ticks."""
    ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0.0, vmax=1.0)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)


def draw_heat(
    ax, img: np.ndarray, heat: np.ndarray, alpha: float, overlay: bool, title: str | None = None
) -> None:
    """Draw ``heat`` (H, W in [0, 1], jet colormap) over ``img`` with ``alpha``, or alone when not ``overlay``."""
    if overlay:
        ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0.0, vmax=1.0)
        ax.imshow(heat, cmap="jet", alpha=float(alpha), vmin=0.0, vmax=1.0)
    else:
        ax.imshow(heat, cmap="jet", vmin=0.0, vmax=1.0)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)


def render_feature_maps(
    img_a: ImageLike,
    img_b: ImageLike,
    maps_a: Tensor,
    maps_b: Tensor,
    filters: Sequence[int],
    titles: tuple[str, str] = ("sketch", "photo"),
    overlay: bool = True,
    alpha: float = 0.5,
    layer: str | None = None,
) -> Figure:
    """The paper's Fig. 2/5: two rows (image A, image B), first column the image, then one column per filter.

    Each filter's map is upsampled to the image size and drawn over it (``overlay``) or alone. Column titles give
    the filter index and the cosine similarity of its two maps. ``maps_*`` are ``(C, h, w)`` of one image each.
    """
    a, b = _check_pair_maps(maps_a, maps_b)
    filters = [int(f) for f in filters]
    bad = [f for f in filters if not 0 <= f < a.shape[0]]
    if not filters or bad:
        raise ValueError(f"filters must be a non-empty list of indices in [0, {a.shape[0]}), got {filters}")
    da, db = to_display(img_a), to_display(img_b)
    sims = activation_similarity(a, b)
    fig = new_figure(2.0 * (1 + len(filters)), 4.4)
    axes = fig.subplots(2, 1 + len(filters), squeeze=False)
    for row, (img, maps, name) in enumerate(((da, a, titles[0]), (db, b, titles[1]))):
        draw_image(axes[row, 0], img, name)
        for col, f in enumerate(filters, start=1):
            heat = upsample_map(maps[f], img.shape[:2])
            title = f"filter {f}  cos {sims[f]:.2f}" if row == 0 else f"filter {f}"
            draw_heat(axes[row, col], img, heat, alpha, overlay, title)
    if layer:
        fig.suptitle(f"{layer}: activation maps of {len(filters)} filters", fontsize=10)
    return fig
