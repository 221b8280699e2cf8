"""Evaluation: embed a bank, FG-SBIR acc@K (10-view or centre), ReID mAP / CMC (single and multi query).

Introduced in notebook 02 (FG-SBIR) and notebook 03 (ReID). Every model is used through the shared interface
``model.embed(x)`` (EmbeddingNet, ReIDNet, the attention net, a bare backbone) and ``model.backbone`` (for the
input channels). Evaluation embeds in float32 by default: bf16 rounding could reorder near-ties in a ranking.
Input sizes come from the :class:`~cdimlab.train.config.TrainConfig` the model was trained with (default: the
paper's 225 crop and 256x128 ReID images), then travel as plain numbers into the banks of
:mod:`cdimlab.data.gpu`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from cdimlab.data import decode_images, reid_bank, sbir_bank
from cdimlab.metrics import acc_at_k, cmc_map, multi_query_pool, pairwise_distance
from cdimlab.train.config import TrainConfig, auto_flag, autocast
from cdimlab.utils import resolve_device

SBIR_VIEWS = {"10view": tuple(range(10)), "center": (4,)}


@torch.no_grad()
def embed_images(
    model: nn.Module | Callable[[Tensor], Tensor],
    bank: Any,
    device: str | torch.device = "auto",
    batch_size: int = 256,
    views: Sequence[int] = (4,),
    amp: str | bool = False,
) -> Tensor:
    """Embed every image of ``bank`` for each view: a float32 tensor ``(len(views), N, D)`` on ``device``.

    ``model.embed`` is used (any callable works too). View 4 is the centre crop; views 0..9 are the 10-view
    protocol (4 corners + centre, and their flips). ``amp`` defaults to off (fp32); ``"auto"`` = bf16 on CUDA.
    """
    device = resolve_device(device)
    fn = getattr(model, "embed", model)
    was_training = getattr(model, "training", False)
    if isinstance(model, nn.Module):
        model.eval()
    out = []
    try:
        for v in views:
            chunks = []
            for s in range(0, len(bank), batch_size):
                idx = torch.arange(s, min(s + batch_size, len(bank)))
                with autocast(amp, device):
                    chunks.append(fn(bank.eval_batch(idx, view=v)).float())
            out.append(torch.cat(chunks))
    finally:
        if isinstance(model, nn.Module):
            model.train(was_training)
    return torch.stack(out).to(device)


def in_channels_of(model: Any) -> int:
    """Input channels of a model's backbone (1 for Sketch-a-Net, 3 for RGB backbones)."""
    return int(getattr(getattr(model, "backbone", None), "in_channels", 1))


def input_stats_of(model: Any) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """The (mean, std) a backbone asks its inputs to be normalised with (``input_mean``/``input_std``), or None
    for the course's defaults (Sketch-a-Net's sketch mean, ImageNet for RGB backbones)."""
    bb = getattr(model, "backbone", None)
    mean, std = getattr(bb, "input_mean", None), getattr(bb, "input_std", None)
    return None if mean is None or std is None else (tuple(mean), tuple(std))


def sbir_eval_bank(images: np.ndarray, model: Any, device: torch.device, cfg: TrainConfig):
    """An evaluation bank for ``model`` at the sizes of ``cfg`` (crop, resize, sketch std)."""
    return sbir_bank(images, device, crop=cfg.sbir_input, resize=cfg.sbir_resize, sketch_std=cfg.sketch_std,
                     train=False, in_channels=in_channels_of(model), stats=input_stats_of(model),
                     channels_last=auto_flag(cfg.channels_last, device))  # fmt: skip


@torch.no_grad()
def sbir_distances(
    model: nn.Module,
    split: Any,
    device: str | torch.device = "auto",
    protocol: str = "10view",
    cfg: TrainConfig | None = None,
) -> list[Tensor]:
    """Sketch-to-photo squared Euclidean distance matrices, one per view (query i matches gallery i)."""
    if protocol not in SBIR_VIEWS:
        raise ValueError(f"protocol must be one of {list(SBIR_VIEWS)}, got {protocol!r}")
    device = resolve_device(device)
    cfg = cfg or TrainConfig()
    views = SBIR_VIEWS[protocol]
    banks = [sbir_eval_bank(imgs, model, device, cfg) for imgs in (split.sketches, split.photos)]
    sk, ph = (embed_images(model, b, device, cfg.eval_batch_size, views) for b in banks)
    # squared Euclidean, as the official 10-view test averages it over the views (same ranking for one view)
    return [pairwise_distance(sk[v], ph[v], metric="sqeuclidean") for v in range(len(views))]


def evaluate_sbir(
    model: nn.Module,
    test_split: Any,
    device: str | torch.device = "auto",
    protocol: str = "10view",
    cfg: TrainConfig | None = None,
) -> dict[str, float]:
    """FG-SBIR acc@1 and acc@10 (fractions) of sketch -> photo retrieval on ``test_split``.

    ``protocol="10view"`` averages the squared Euclidean distance matrices over the 10 views of both sketch and
    photo (the official protocol); ``"center"`` uses the centre crop only. ``cfg`` supplies the input sizes (default: the
    paper's 225 crop). Ranking runs on ``device``. Introduced in notebook 02.
    """
    dists = sbir_distances(model, test_split, device, protocol, cfg)
    acc = acc_at_k(dists if len(dists) > 1 else dists[0], ks=(1, 10))
    return {"acc@1": float(acc[1]), "acc@10": float(acc[10])}


@dataclass
class ReIDBanks:
    """Evaluation images of a ReID dataset already on the device, with their identities and cameras."""

    query: Any
    gallery: Any
    q_pids: np.ndarray
    q_camids: np.ndarray
    g_pids: np.ndarray
    g_camids: np.ndarray
    mq: Any | None = None  # Market gt_bbox images for multi-query
    mq_pids: np.ndarray | None = None
    mq_camids: np.ndarray | None = None


def reid_eval_banks(
    data: Any, device: str | torch.device, cfg: TrainConfig | None = None, progress: bool = False,
    size: tuple[int, int] | None = None, cache_dir: str | os.PathLike | None = None,
) -> ReIDBanks:  # fmt: skip
    """Decode the query / gallery (/ gt_bbox) images of a ReIDData at ``size`` (default ``cfg.reid_input``)
    into banks on ``device``. With ``cache_dir`` the decoded arrays are kept there (``.npy``, checked against
    the file list and size), so a second run does not decode again."""
    device = resolve_device(device)
    cfg = cfg or TrainConfig()
    hw = tuple(size if size is not None else cfg.reid_input)
    cl = auto_flag(cfg.channels_last, device)

    def bank(entries, split):
        cache = None if cache_dir is None else Path(cache_dir) / f"{data.name}_{split}_{hw[0]}x{hw[1]}.npy"
        imgs = decode_images([e[0] for e in entries], size=hw, progress=progress, cache=cache)
        arr = np.asarray([e[1:] for e in entries], dtype=np.int64).reshape(-1, 2)
        return reid_bank(imgs, device, size=hw, train=False, channels_last=cl), arr[:, 0], arr[:, 1]

    q, qp, qc = bank(data.query, "query")
    g, gp, gc = bank(data.gallery, "gallery")
    mq = mqp = mqc = None
    if getattr(data, "gt_bbox", None):
        mq, mqp, mqc = bank(data.gt_bbox, "gt_bbox")
    return ReIDBanks(q, g, qp, qc, gp, gc, mq, mqp, mqc)


def evaluate_reid(
    model: nn.Module,
    data: Any,
    device: str | torch.device = "auto",
    multi_query: bool = True,
    cfg: TrainConfig | None = None,
) -> dict[str, float]:
    """ReID mAP and CMC rank-1/5/10 (single query), plus multi-query mAP/rank-1 when gt_bbox images exist.

    ``data`` is a ReIDData (decoded here at ``cfg.reid_input``) or :class:`ReIDBanks`. Features are
    ``model.embed``, distances are Euclidean, and ranking follows torchreid semantics
    (:func:`cdimlab.metrics.cmc_map`), on ``device``. Multi-query pools (mean) the gt_bbox features of the query's
    identity in the query's camera (Market-1501): ``mq_*`` by mean, ``mqmax_*`` by max. Introduced in notebook 03.
    """
    device = resolve_device(device)
    cfg = cfg or TrainConfig()
    banks = data if isinstance(data, ReIDBanks) else reid_eval_banks(data, device, cfg)
    qf = embed_images(model, banks.query, device, cfg.eval_batch_size)[0]
    gf = embed_images(model, banks.gallery, device, cfg.eval_batch_size)[0]
    cmc, mAP = cmc_map(pairwise_distance(qf, gf), banks.q_pids, banks.g_pids, banks.q_camids, banks.g_camids)
    out = {"mAP": float(mAP), "rank1": float(cmc[0]), "rank5": float(cmc[4]), "rank10": float(cmc[9])}
    if multi_query and banks.mq is not None:
        mf = embed_images(model, banks.mq, device, cfg.eval_batch_size)[0]
        for mode, prefix in (("mean", "mq"), ("max", "mqmax")):  # the paper does not say which pooling
            pooled = multi_query_pool(mf, torch.as_tensor(banks.mq_pids), torch.as_tensor(banks.mq_camids),
                                      torch.as_tensor(banks.q_pids), torch.as_tensor(banks.q_camids), mode=mode)  # fmt: skip
            cmc_mq, map_mq = cmc_map(pairwise_distance(pooled.to(gf.device).float(), gf), banks.q_pids,
                                     banks.g_pids, banks.q_camids, banks.g_camids)  # fmt: skip
            out.update({f"{prefix}_mAP": float(map_mq), f"{prefix}_rank1": float(cmc_mq[0])})
    return out
