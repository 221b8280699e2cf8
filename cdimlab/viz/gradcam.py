"""Grad-CAM for embeddings: which regions of a query make it match a gallery item (notebook 07).

Classic Grad-CAM explains a class score. A retrieval model has no classes at test time, so the score explained
here is the *similarity* of the query's embedding to one gallery item's embedding (:class:`SimilarityTarget`):
the map shows which regions of the query, seen through a chosen layer, raise that similarity. Swapping the roles
gives the map on the gallery item.

:func:`embedding_gradcam` uses the ``grad-cam`` package (``pytorch_grad_cam.GradCAM``) with that target.
:func:`gradcam_reference` is a few-line Grad-CAM written out by hand (forward hook on the layer, gradient of the
similarity, channel weights = spatial mean of the gradient, ReLU of the weighted sum, normalised); the tests check
that both agree, which is how we know the package is used right.

Backbone stages in ``cdimlab.models`` may be plain functions rather than modules, and the package hooks modules;
:func:`expose_tap` therefore passes the chosen tap through an ``nn.Identity`` "probe" for the duration of a call
(the identity returns the very tensor the network uses downstream, so its gradient is the tap's gradient).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch import Tensor, nn

from cdimlab.utils import resolve_device
from cdimlab.viz.feature_maps import (
    ImageLike,
    as_batch,
    draw_heat,
    draw_image,
    new_figure,
    to_display,
)

METRICS = ("cosine", "dot")


class SimilarityTarget:
    """Grad-CAM target: similarity of a model output (one embedding) to a fixed reference embedding.

    ``pytorch_grad_cam`` calls a target once per sample with that sample's output row ``(D,)``; a batch
    ``(B, D)`` also works (one score per row). ``metric`` is ``"cosine"`` (default; what ranking by Euclidean
    distance of L2-normalised embeddings amounts to) or ``"dot"``.
    """

    def __init__(self, reference_embedding: Tensor, metric: str = "cosine") -> None:
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
        ref = torch.as_tensor(reference_embedding).detach().float()
        self.reference = ref[0] if ref.ndim == 2 and ref.shape[0] == 1 else ref
        if self.reference.ndim != 1:
            raise ValueError(f"reference_embedding must be one vector (D,), got shape {tuple(ref.shape)}")
        self.metric = metric

    def __call__(self, model_output: Tensor) -> Tensor:
        ref = self.reference.to(model_output.device, model_output.dtype)
        if model_output.shape[-1] != ref.shape[0]:
            raise ValueError(
                f"model output has {model_output.shape[-1]} dims but the reference embedding has {ref.shape[0]}"
            )
        if self.metric == "cosine":
            return F.cosine_similarity(model_output, ref.expand_as(model_output), dim=-1)
        return (model_output * ref).sum(dim=-1)


class EmbeddingOf(nn.Module):
    """``model.embed`` as a module (pytorch-grad-cam calls a module): image -> flat embedding."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return self.model.embed(x).flatten(1)


@contextmanager
def expose_tap(model: nn.Module, tap: str) -> Iterator[nn.Module]:
    """Within the block, tap ``tap`` of the model's backbone passes through a yielded ``nn.Identity`` probe.

    Forward hooks on the probe (ours or ``pytorch_grad_cam``'s) see the tap's output and its gradient. The
    backbone is restored on exit, also after an error.
    """
    backbone = model.backbone
    backbone.check_taps((tap,))
    probe = nn.Identity()
    original = backbone.stages

    def stages():
        for name, fn in original():
            yield (name, (lambda x, fn=fn: probe(fn(x)))) if name == tap else (name, fn)

    object.__setattr__(backbone, "stages", stages)
    try:
        yield probe
    finally:
        del backbone.__dict__["stages"]


def _model_device(model: nn.Module, device: str | torch.device) -> torch.device:
    """Resolve ``device`` and check the model lives there (ValueError with the fix otherwise)."""
    dev = resolve_device(device)
    param = next(model.parameters(), None)
    if param is not None and param.device.type != dev.type:
        raise ValueError(f"model is on {param.device} but device={str(dev)!r}; call model.to(device) first")
    return dev


def _one_image(img: ImageLike, name: str, dev: torch.device, preprocess: Callable | None) -> Tensor:
    """One image as a ``(1, C, H, W)`` float batch on ``dev`` (``preprocess`` applied)."""
    x = as_batch(img, name)
    if len(x) != 1:
        raise ValueError(f"{name} must be one image, got a batch of {len(x)}")
    x = x.to(dev)
    return preprocess(x) if preprocess is not None else x


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode with autograd on inside the block; training flags and parameters' ``.grad`` restored after.

    Grad-CAM back-propagates into the weights (the package zeroes and fills ``.grad``); restoring them means a
    call in the middle of a training step leaves that step's gradients as they were.
    """
    flags = {m: m.training for m in model.modules()}
    grads = {p: p.grad for p in model.parameters()}
    model.eval()
    try:
        with torch.enable_grad():
            yield
    finally:
        for m, flag in flags.items():
            m.training = flag
        for p, g in grads.items():
            p.grad = g


def _reference_embedding(embed: nn.Module, ref: Tensor) -> Tensor:
    with torch.no_grad():
        return embed(ref)[0].detach()


def embedding_gradcam(
    model: nn.Module,
    target_layer: str | nn.Module,
    query_img: ImageLike,
    reference_img: ImageLike,
    device: str | torch.device = "cpu",
    *,
    metric: str = "cosine",
    preprocess: Callable[[Tensor], Tensor] | None = None,
) -> np.ndarray:
    """Grad-CAM ``(H, W)`` in [0, 1] on ``query_img`` for its similarity to ``reference_img``'s embedding.

    Uses ``pytorch_grad_cam.GradCAM`` with a :class:`SimilarityTarget`. ``target_layer`` is a tap name of the
    model's backbone (``"conv5"``, ``"res5a"``...) or any module of ``model``. ``model`` may be a backbone, an
    ``EmbeddingNet`` or a ``ReIDNet`` (its ``embed`` is used) and must already be on ``device``. Works for
    1-channel sketches and 3-channel photos alike. Training flags are restored afterwards.
    """
    from pytorch_grad_cam import GradCAM

    dev = _model_device(model, device)
    q = _one_image(query_img, "query_img", dev, preprocess)
    r = _one_image(reference_img, "reference_img", dev, preprocess)
    embed = EmbeddingOf(model)
    with _eval_mode(model):
        target = SimilarityTarget(_reference_embedding(embed, r), metric)
        with _layer(model, target_layer) as layer:
            cam = GradCAM(model=embed, target_layers=[layer])
            try:
                # requires_grad on the input keeps the tap differentiable even when the weights are frozen
                out = cam(input_tensor=q.clone().requires_grad_(True), targets=[target])
            finally:
                cam.activations_and_grads.release()
    return np.asarray(out[0], dtype=np.float32)


@contextmanager
def _layer(model: nn.Module, target_layer: str | nn.Module) -> Iterator[nn.Module]:
    """The module to hook: a tap probe for a tap name, or ``target_layer`` itself when it is a module."""
    if isinstance(target_layer, nn.Module):
        yield target_layer
    elif isinstance(target_layer, str):
        with expose_tap(model, target_layer) as probe:
            yield probe
    else:
        raise TypeError(f"target_layer must be a tap name or an nn.Module, got {type(target_layer).__name__}")


def _normalise(x: Tensor) -> Tensor:
    """Min-max to [0, 1]; a flat map becomes zeros (no division by ~0)."""
    lo, hi = x.min(), x.max()
    return (x - lo) / (hi - lo) if float(hi - lo) > 1e-12 else torch.zeros_like(x)


def gradcam_reference(
    model: nn.Module,
    target_layer: str | nn.Module,
    query_img: ImageLike,
    reference_img: ImageLike,
    device: str | torch.device = "cpu",
    *,
    metric: str = "cosine",
    preprocess: Callable[[Tensor], Tensor] | None = None,
) -> np.ndarray:
    """Grad-CAM by hand, same inputs and output as :func:`embedding_gradcam` (used to check the package).

    Forward hook on the layer keeps its output A ``(1, C, h, w)``; s = similarity(embed(query), embed(reference));
    weights w_c = mean over (h, w) of ds/dA_c; cam = ReLU(sum_c w_c A_c), normalised to [0, 1], bilinearly
    upsampled to the image size and normalised again.
    """
    dev = _model_device(model, device)
    q = _one_image(query_img, "query_img", dev, preprocess).requires_grad_(True)
    r = _one_image(reference_img, "reference_img", dev, preprocess)
    embed = EmbeddingOf(model)
    with _eval_mode(model):
        target = SimilarityTarget(_reference_embedding(embed, r), metric)
        with _layer(model, target_layer) as layer:
            kept: list[Tensor] = []
            handle = layer.register_forward_hook(lambda _m, _i, out: kept.append(out))
            try:
                score = target(embed(q)[0])
            finally:
                handle.remove()
        if len(kept) != 1:
            raise RuntimeError(
                f"target layer ran {len(kept)} times in one forward pass; expected exactly once"
            )
        (grad,) = torch.autograd.grad(score, kept[0])
        acts = kept[0].detach()
        weights = grad.mean(dim=(2, 3), keepdim=True)
        cam = _normalise(F.relu((weights * acts).sum(dim=1))[0])
        up = F.interpolate(cam[None, None], size=q.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
    return _normalise(up).cpu().numpy().astype(np.float32)


def render_gradcam(
    query_img: ImageLike,
    reference_img: ImageLike,
    cam_q: np.ndarray,
    cam_r: np.ndarray | None = None,
    *,
    titles: tuple[str, str] = ("query", "gallery item"),
    alpha: float = 0.5,
    layer: str | None = None,
    similarity: float | None = None,
) -> Figure:
    """Query | Grad-CAM on the query | gallery item | Grad-CAM on the gallery item (the last two when given).

    Grayscale sketches are drawn in gray under the jet heat map. ``similarity`` (e.g. cosine of the two
    embeddings) and ``layer`` go in the figure title.
    """
    dq, dr = to_display(query_img), to_display(reference_img)
    cams = [np.asarray(cam_q, dtype=np.float32)] + (
        [] if cam_r is None else [np.asarray(cam_r, dtype=np.float32)]
    )
    for cam, img, name in zip(cams, (dq, dr), ("cam_q", "cam_r"), strict=False):
        if cam.shape != img.shape[:2]:
            raise ValueError(
                f"{name} has shape {cam.shape} but its image is {img.shape[:2]}; they must match"
            )
    ncols = 2 + len(cams)
    fig = new_figure(2.6 * ncols, 3.0)
    axes = fig.subplots(1, ncols)
    draw_image(axes[0], dq, titles[0])
    draw_heat(axes[1], dq, cams[0], alpha, True, f"Grad-CAM: {titles[0]}")
    draw_image(axes[2], dr, titles[1])
    if len(cams) == 2:
        draw_heat(axes[3], dr, cams[1], alpha, True, f"Grad-CAM: {titles[1]}")
    head = "Which regions raise the similarity"
    head += f" at {layer}" if layer else ""
    head += f" (cosine {similarity:.3f})" if similarity is not None else ""
    fig.suptitle(head, fontsize=10)
    return fig


def embedding_similarity(
    model: nn.Module,
    query_img: ImageLike,
    reference_img: ImageLike,
    device: str | torch.device = "cpu",
    preprocess: Callable[[Tensor], Tensor] | None = None,
) -> float:
    """Cosine similarity of the two images' embeddings in eval mode (for titles and sanity checks)."""
    dev = _model_device(model, device)
    embed = EmbeddingOf(model)
    q = _one_image(query_img, "query_img", dev, preprocess)
    r = _one_image(reference_img, "reference_img", dev, preprocess)
    with _eval_mode(model), torch.no_grad():
        e = embed(torch.cat([q, r]))
    return float(F.cosine_similarity(e[0:1], e[1:2])[0])
