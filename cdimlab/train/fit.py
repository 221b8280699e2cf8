"""The two fit loops of the paper: triplet ranking for FG-SBIR, identity classification for ReID.

Introduced in notebook 02 (:func:`fit_triplet`) and notebook 03 (:func:`fit_classifier`). Both follow the same
short shape, so they can be read in a notebook cell::

    for it in range(start, cfg.iterations):
        idx = sampler.sample(batch, generator)  # indices only: the images already live on the device
        x = bank.train_batch(idx, generator)    # crop + flip + normalise on the device
        loss = loss_fn(model(x), ...)           # bf16 autocast on CUDA, fp32 on the CPU
        loop.step(it, loss); maybe evaluate; maybe checkpoint; loop.poll_interrupt(it)

Optimiser, logging, checkpoints, resume, the run-folder lock, Ctrl-C handling and DDP live in
:class:`cdimlab.train.loop.TrainLoop`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from cdimlab.data import EpochSampler, TripletSampler, reid_bank, sbir_bank
from cdimlab.data.transforms import to_device
from cdimlab.losses import batch_triplet_loss, cross_entropy, triplet_ranking_loss
from cdimlab.train.config import FitResult, TrainConfig, auto_flag, autocast
from cdimlab.train.evaluate import evaluate_sbir, in_channels_of, input_stats_of
from cdimlab.train.loop import TrainLoop
from cdimlab.utils import resolve_device


def fit_triplet(
    model: nn.Module,
    train: Any,
    val: Any | None,
    cfg: TrainConfig,
    device: str | torch.device = "auto",
    out_dir: str | os.PathLike | None = None,
    resume: bool | str = False,
    progress: bool = True,
    callback: Callable[[int, float], None] | None = None,
    sampler_mode: str = "auto",
) -> FitResult:
    """Train an EmbeddingNet with the triplet ranking loss on (sketch, positive photo, negative photo) batches.

    One tower is shared by the three branches (a single forward on the concatenated batch). Triplets come from
    :class:`cdimlab.data.TripletSampler` (human annotations for shoes/chairs, true match vs any other for
    handbags). Every ``cfg.eval_every`` iterations the centre-crop acc@1 on ``val`` (carved from the training
    set, never the test set) is measured; the best weights are kept and training stops after ``cfg.patience``
    evaluations without improvement. ``callback(iteration, loss)`` runs after each step (live plots, tests).
    ``resume``: see :func:`cdimlab.train.checkpoint.resume_checkpoint`.
    """
    loop = TrainLoop(model, cfg, resolve_device(device), out_dir, resume, progress,
                     f"triplet {getattr(train, 'category', '')}")  # fmt: skip
    with loop.running():  # the run folder stays locked; Ctrl-C / SIGTERM checkpoint between steps
        dev, world = loop.device, loop.dist.world_size
        sizes = {"crop": cfg.sbir_input, "resize": cfg.sbir_resize, "sketch_std": cfg.sketch_std, "train": True,
                 "in_channels": in_channels_of(loop.raw), "channels_last": auto_flag(cfg.channels_last, dev),
                 "stats": input_stats_of(loop.raw), "flip": cfg.sbir_flip}  # fmt: skip
        sketches, photos = sbir_bank(train.sketches, dev, **sizes), sbir_bank(train.photos, dev, **sizes)
        sampler = TripletSampler(train, mode=sampler_mode)
        per_rank = max(1, cfg.batch_size // world)
        loop.images_per_step = 3 * per_rank
        it, stop = (
            loop.start,
            bool(loop.extra_state.get("stopped_early", False)),
        )  # a finished run stays finished
        loop.raw.train()
        while it < cfg.iterations and not stop:
            a, p, n = sampler.sample(per_rank, loop.gen)
            x = torch.cat([sketches.train_batch(a, loop.gen), photos.train_batch(p, loop.gen),
                           photos.train_batch(n, loop.gen)])  # fmt: skip
            with autocast(cfg.amp, dev):
                emb = loop.model(x).float()
            ea, ep, en = emb.split(per_rank)
            loss = triplet_ranking_loss(ea, ep, en, margin=cfg.margin, distance=cfg.distance)
            if cfg.batch_negatives > 0:  # the other photos of the batch as negatives too (TrainConfig)
                extra = batch_triplet_loss(
                    ea, ep, torch.as_tensor(p), margin=cfg.margin, distance=cfg.distance
                )
                loss = (1 - cfg.batch_negatives) * loss + cfg.batch_negatives * extra
            value = loop.step(it, loss, need_value=callback is not None)
            it += 1
            if val is not None and len(val) > 0 and (it % cfg.eval_every == 0 or it == cfg.iterations):
                with loop.untimed():  # img/s counts training steps only
                    loop.sync_buffers()
                    metrics = evaluate_sbir(loop.raw, val, dev, protocol="center", cfg=cfg)
                    stop = loop.agree(
                        loop.observe_val(it, metrics["acc@1"] + 1e-3 * metrics["acc@10"], metrics)
                    )
                loop.raw.train()
            if it % cfg.checkpoint_every == 0 and it < cfg.iterations and not stop:
                loop.checkpoint(it)
            if callback is not None:
                with loop.untimed():  # a notebook's live plot is not training time either
                    callback(it, value)
            loop.poll_interrupt(it)
        result = loop.finish(it, stopped_early=stop)
        loop.raw.eval()
        return result


def fit_classifier(
    model: nn.Module,
    images: Any,
    labels: Tensor,
    cfg: TrainConfig,
    device: str | torch.device = "auto",
    out_dir: str | os.PathLike | None = None,
    resume: bool | str = False,
    progress: bool = True,
    callback: Callable[[int, float], None] | None = None,
) -> FitResult:
    """Train a ReIDNet with softmax cross-entropy over the training identities (the paper's ReID recipe).

    ``images`` is an :class:`cdimlab.data.ImageBank` (augmentation on its device) or a uint8 array
    (N, H, W, 3) that is put into one at ``cfg.reid_input``; ``labels`` (N,) holds identity labels 0..K-1.
    Batches are shuffled passes over the training set (:class:`cdimlab.data.EpochSampler`). Full profile: Adam
    3.5e-4, x0.95 every 1,000 iterations, batch 64, 60K iterations, no early stopping.
    """
    loop = TrainLoop(model, cfg, resolve_device(device), out_dir, resume, progress, "classifier")
    with loop.running():
        dev, world = loop.device, loop.dist.world_size
        if hasattr(images, "train_batch"):
            bank = images
        else:
            bank = reid_bank(images, dev, size=tuple(cfg.reid_input), train=True,
                             channels_last=auto_flag(cfg.channels_last, dev))  # fmt: skip
        labels = torch.as_tensor(labels, dtype=torch.long).to(dev)
        sampler = EpochSampler(len(bank), loop.extra_state.setdefault("sampler", {}), loop.dist.rank, world,
                               cfg.seed)  # ranks partition each global batch  # fmt: skip
        per_rank = max(1, cfg.batch_size // world)
        loop.images_per_step = per_rank
        it = loop.start
        loop.raw.train()
        while it < cfg.iterations:
            idx = sampler.sample(per_rank, loop.gen)
            x = bank.train_batch(idx, loop.gen)
            with autocast(cfg.amp, dev):
                logits = loop.model(x).float()
            target = labels[to_device(idx, dev)]
            loss = cross_entropy(logits, target, label_smoothing=cfg.label_smoothing)
            value = loop.step(it, loss, callback is not None)
            it += 1
            if it % cfg.checkpoint_every == 0 and it < cfg.iterations:
                loop.checkpoint(it)
            if callback is not None:
                with loop.untimed():
                    callback(it, value)
            loop.poll_interrupt(it)
        result = loop.finish(it, stopped_early=False)
        loop.raw.eval()
        return result
