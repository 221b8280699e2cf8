"""The two fit loops of the paper (triplet FG-SBIR, identity-classification ReID), checkpoints, evaluation.

Introduced in notebook 02 (training FG-SBIR) and notebook 03 (training ReID), with their evaluation helpers.

Both loops follow the same short shape, so they can be read in a notebook cell::

    for it in range(start, cfg.iterations):
        idx = sample(generator)                 # indices only: the images already live on the device
        x = bank.train_batch(idx, generator)    # crop + flip + normalise on the device
        loss = loss_fn(model(x), ...)           # bf16 autocast on CUDA, fp32 on the CPU
        step(loss); maybe_eval(); maybe_checkpoint()

Everything a resumed run needs (model, optimiser, scheduler, RNG states, iteration, best-val state, log rows) goes
into ``out_dir/checkpoint.pt`` through :func:`cdimlab.utils.atomic_torch_save`, so on the CPU a killed and resumed
run ends with weights *equal* to an uninterrupted run's. Under ``torchrun`` the same functions train with
DistributedDataParallel (NCCL on GPUs, gloo on the CPU); each rank samples its own shard of the batch and rank 0
alone writes files.
"""

from __future__ import annotations

import csv
import io
import math
import os
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from cdimlab.data.transforms import to_device
from cdimlab.utils import atomic_torch_save, atomic_write_text, resolve_device

CHECKPOINT = "checkpoint.pt"
LOG = "log.csv"
BEST = "best_model.pt"


# --------------------------------------------------------------------------------------------------- config
@dataclass(frozen=True)
class TrainConfig:
    """Every knob of a training run; the ``full`` profile holds the paper's recipe (DESIGN.md, Sec. 4.1).

    ``lr_decay`` is applied every ``lr_decay_every`` iterations (StepLR); ``lr_decay=1.0`` keeps the rate fixed
    (the FG-SBIR recipe). For ReID we decay by 0.95 every 1,000 iterations: over the paper's 60K iterations that
    ends at 0.95**60 = 4.6% of the initial rate, a smooth schedule the paper leaves unspecified.
    ``eval_every``/``patience`` drive early stopping on the validation split (FG-SBIR only; never on test):
    training stops after ``patience`` evaluations without a better val acc@1. ``amp``/``channels_last``: "auto"
    means on for CUDA (bf16 autocast), off on the CPU. ``sbir_input``/``sbir_resize``: the crop size and the size
    the 256x256 images are resized to first (225/256 full, 113/128 smoke). ``reid_input``: (H, W) of the ReID
    images (256x128 full, 64x32 smoke). ``sketch_std``: the Sketch-a-Net input is ``(x/255 - 250.42/255) /
    sketch_std``. The official code used ``x - 250.42`` on the 0-255 scale (``sketch_std = 1/255``) with its
    pre-trained "step3" weights; from random initialisation that scale trains markedly slower (loss after 75
    triplet iterations on real QMUL shoes: 0.26 at 1/255 vs 0.13 at 0.2, same seed), so we use the same mean and a
    unit-scale divisor ("scaled equivalently", DESIGN.md). Set ``1/255`` when you load step3 weights.
    """

    iterations: int = 20_000
    batch_size: int = 128
    lr: float = 1e-3
    optimizer: str = "sgd"  # "sgd" | "adam"
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_decay: float = 1.0
    lr_decay_every: int = 1_000
    margin: float = 0.3
    distance: str = "euclidean"  # "euclidean" | "sqeuclidean"
    label_smoothing: float = 0.0
    eval_every: int = 500
    patience: int = 10
    checkpoint_every: int = 1_000
    log_every: int = 50
    amp: str | bool = "auto"
    channels_last: str | bool = "auto"
    compile: bool = False
    sbir_input: int = 225
    sbir_resize: int | None = None
    sketch_std: float = 0.2
    reid_input: tuple[int, int] = (256, 128)
    eval_protocol: str = "10view"  # "10view" | "center" (FG-SBIR test protocol)
    eval_batch_size: int = 256
    val_fraction: float = 0.1
    max_ids: int | None = None  # smoke on real ReID data: keep only this many identities
    seed: int = 0

    def __post_init__(self) -> None:
        if self.optimizer not in ("sgd", "adam"):
            raise ValueError(f"TrainConfig.optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")
        if self.iterations < 1 or self.batch_size < 1:
            raise ValueError("TrainConfig.iterations and batch_size must be >= 1")
        if not self.sketch_std > 0:
            raise ValueError(f"TrainConfig.sketch_std must be > 0 (0-1 scale), got {self.sketch_std!r}")
        if self.eval_protocol not in ("10view", "center"):
            raise ValueError(
                f"TrainConfig.eval_protocol must be '10view' or 'center', got {self.eval_protocol!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (for results JSON)."""
        return asdict(self)


@dataclass
class FitResult:
    """What a fit loop returns: the model (best-val weights loaded), the log rows and bookkeeping."""

    model: nn.Module
    log: list[dict[str, Any]]
    iterations_run: int
    stopped_early: bool
    best_iteration: int | None
    best_val: float | None
    img_per_s: float
    wall_s: float
    out_dir: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------ distributed
@dataclass(frozen=True)
class DistInfo:
    """Rank bookkeeping; ``world_size == 1`` outside ``torchrun``."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> tuple[DistInfo, torch.device]:
    """Detect ``torchrun`` (``WORLD_SIZE`` > 1) and join the process group: NCCL on CUDA, gloo on the CPU.

    Returns the rank info and the device this rank uses (``cuda:LOCAL_RANK`` on GPUs). Idempotent.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo(), device
    import torch.distributed as dist

    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), local), device


def shutdown_distributed() -> None:
    """Leave the process group (call once at the end of a torchrun process; a no-op otherwise).

    Exiting with a live gloo/NCCL group can abort the process ("terminate called without an active exception").
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def _wrap_ddp(model: nn.Module, dist_info: DistInfo, device: torch.device) -> nn.Module:
    """Wrap in DistributedDataParallel when running under torchrun (weights are broadcast from rank 0)."""
    if dist_info.world_size <= 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def _barrier(dist_info: DistInfo) -> None:
    if dist_info.world_size > 1:
        import torch.distributed as dist

        dist.barrier()


# ------------------------------------------------------------------------------------------- small helpers
def _auto(flag: str | bool, device: torch.device) -> bool:
    """``"auto"`` -> on for CUDA only; booleans pass through."""
    return device.type == "cuda" if flag == "auto" else bool(flag)


def _autocast(cfg: TrainConfig, device: torch.device):
    """bf16 autocast on CUDA when ``cfg.amp`` allows it; a no-op context on the CPU (fp32, deterministic)."""
    if _auto(cfg.amp, device):
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return nullcontext()


def _unwrap(model: nn.Module) -> nn.Module:
    """The plain module under DDP / torch.compile wrappers (its state dict has clean keys)."""
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)


def make_optimizer(params, cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD (momentum, weight decay) or Adam, as ``cfg.optimizer`` says."""
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def make_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig):
    """Step decay: multiply the rate by ``cfg.lr_decay`` every ``cfg.lr_decay_every`` iterations."""
    return torch.optim.lr_scheduler.StepLR(opt, step_size=max(1, cfg.lr_decay_every), gamma=cfg.lr_decay)


def _rng_state(gen: torch.Generator) -> dict[str, Any]:
    """Every random state a resumed run needs: torch CPU, CUDA (if any) and the sampling generator."""
    state = {"torch": torch.get_rng_state(), "generator": gen.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any], gen: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    gen.set_state(state["generator"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def write_log_csv(rows: list[dict[str, Any]], path: str | os.PathLike) -> Path:
    """Atomically rewrite the per-run log (one row per logged iteration or evaluation)."""
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row if k not in keys]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys)
    writer.writeheader()
    writer.writerows(rows)
    return atomic_write_text(path, buf.getvalue())


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint written by a fit loop (CPU tensors), with a clear error when it is missing."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}; train first or pass resume=False")
    return torch.load(path, map_location="cpu", weights_only=False)


# Config fields that may change between a run and its resumption (schedule length and bookkeeping only).
RESUMABLE_CHANGES = frozenset(
    {"iterations", "patience", "checkpoint_every", "eval_every", "log_every", "eval_batch_size"}
)


def config_mismatch(checkpoint_config: dict[str, Any], cfg: TrainConfig) -> dict[str, tuple[Any, Any]]:
    """Fields (other than :data:`RESUMABLE_CHANGES`) where a checkpoint's config differs from ``cfg``."""
    now = cfg.to_dict()
    diff = {}
    for key, value in now.items():
        old = checkpoint_config.get(key, value)
        if key not in RESUMABLE_CHANGES and (list(old) if isinstance(old, tuple) else old) != (
            list(value) if isinstance(value, tuple) else value
        ):
            diff[key] = (old, value)
    return diff


def _nan_error(it: int, loss: float, out_dir: Path | None, last_ckpt: int | None) -> FloatingPointError:
    where = (
        f"{out_dir / CHECKPOINT} (iteration {last_ckpt})" if out_dir and last_ckpt else "no checkpoint yet"
    )
    return FloatingPointError(
        f"training loss became {loss} at iteration {it}; stopped. The last good checkpoint is kept untouched: "
        f"{where}. Hints: lower the learning rate (TrainConfig.lr), check the data (empty or constant images, "
        "wrong normalisation), or turn amp off"
    )


def _read_loss_every_step(device: torch.device) -> bool:
    """Read the loss on the host every step on the CPU (free there); on CUDA only at log steps (see _Loop.step)."""
    return device.type != "cuda"


class _Loop:
    """Shared machinery of both fit loops: optimiser, scheduler, logging, checkpoints, resume, NaN guard."""

    def __init__(
        self,
        model: nn.Module,
        cfg: TrainConfig,
        device: torch.device,
        out_dir: str | os.PathLike | None,
        resume: bool,
        progress: bool,
        images_per_step: int,
        desc: str,
    ) -> None:
        self.cfg, self.device = cfg, device
        self.dist, self.device = init_distributed(device)
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.raw = model.to(self.device)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick the fastest kernels
        if _auto(cfg.channels_last, self.device):
            self.raw = self.raw.to(memory_format=torch.channels_last)
        self.gen = torch.Generator().manual_seed(cfg.seed + 1_000_003 * self.dist.rank)
        self.opt = make_optimizer(self.raw.parameters(), cfg)
        self.sched = make_scheduler(self.opt, cfg)
        self.start, self.log, self.last_ckpt = 0, [], None
        self.best_val: float | None = None
        self.best_iteration: int | None = None
        self.best_state: dict[str, Tensor] | None = None
        self.bad_evals = 0
        self.extra_state: dict[str, Any] = {}
        if resume and self.out_dir is not None and (self.out_dir / CHECKPOINT).is_file():
            ck = load_checkpoint(self.out_dir / CHECKPOINT)
            diff = config_mismatch(ck.get("config", {}), cfg)
            if diff:
                raise ValueError(
                    f"cannot resume from {self.out_dir / CHECKPOINT}: its config differs in {diff} "
                    "(checkpoint value, requested value); pass resume=False to start over or use another out_dir"
                )
            self._restore(ck)
        elif resume is False and self.out_dir is not None and self.dist.is_main:
            (self.out_dir / CHECKPOINT).unlink(missing_ok=True)
        self.model = _wrap_ddp(self.raw, self.dist, self.device)
        if cfg.compile:
            self.model = torch.compile(self.model)
        self.images_per_step = images_per_step
        self.bar = None
        if progress and self.dist.is_main:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=cfg.iterations, initial=self.start, desc=desc, unit="it", leave=False)
        self.t0, self.seen, self.warm = time.perf_counter(), 0, False
        self._loss_sum: float | Tensor = 0.0  # summed on the device between log steps (see step)
        self._loss_n = 0
        self.t_start = self.t0

    # -- state ------------------------------------------------------------------------------------------------
    def state(self, it: int) -> dict[str, Any]:
        """Everything needed to continue exactly after iteration ``it``."""
        return {
            "iteration": it,
            "model": self.raw.state_dict(),
            "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict(),
            "rng": _rng_state(self.gen),
            "best_val": self.best_val,
            "best_iteration": self.best_iteration,
            "best_state": self.best_state,
            "bad_evals": self.bad_evals,
            "log": self.log,
            "config": self.cfg.to_dict(),
            "extra": self.extra_state,
        }

    def _restore(self, ck: dict[str, Any]) -> None:
        self.raw.load_state_dict(ck["model"])
        self.opt.load_state_dict(ck["optimizer"])
        self.sched.load_state_dict(ck["scheduler"])
        _set_rng_state(ck["rng"], self.gen)
        self.start = self.last_ckpt = int(ck["iteration"])
        self.best_val, self.best_iteration = ck["best_val"], ck["best_iteration"]
        self.best_state, self.bad_evals = ck["best_state"], ck["bad_evals"]
        self.log, self.extra_state = list(ck["log"]), dict(ck.get("extra", {}))
        if self.dist.rank != 0:  # the checkpoint holds rank 0's sampling state: give this rank its own stream
            self.gen.manual_seed(self.cfg.seed + 1_000_003 * self.dist.rank + self.start)
            self.extra_state.pop("sampler", None)

    def sync_buffers(self) -> None:
        """Average BatchNorm running statistics over ranks (DDP only syncs gradients), so every rank evaluates and
        saves the same model. A no-op outside torchrun."""
        if self.dist.world_size <= 1:
            return
        import torch.distributed as dist

        for buf in self.raw.buffers():
            if buf.is_floating_point():
                dist.all_reduce(buf, op=dist.ReduceOp.SUM)
                buf.div_(self.dist.world_size)

    def checkpoint(self, it: int) -> None:
        """Rank 0 writes ``checkpoint.pt`` and ``log.csv`` atomically; other ranks only wait.

        Losses not yet read (CUDA) are checked first, so weights after a NaN never overwrite a good checkpoint.
        """
        if self._loss_n and self._nonfinite_anywhere(float(self._loss_sum)):
            raise self._stop_on_nan(it, float(self._loss_sum))
        self.sync_buffers()
        if self.out_dir is not None and self.dist.is_main:
            atomic_torch_save(self.state(it), self.out_dir / CHECKPOINT)
            write_log_csv(self.log, self.out_dir / LOG)
        self.last_ckpt = it
        _barrier(self.dist)

    # -- per step ---------------------------------------------------------------------------------------------
    def step(self, it: int, loss: Tensor, need_value: bool = False) -> float | None:
        """Backward + optimiser + scheduler step; raises FloatingPointError (nothing written) on NaN/inf.

        On the CPU (or with ``need_value``) the loss is read and checked every step, before the update. On CUDA a
        host read is a device sync that would leave the GPU idle between steps, so the loss is summed on the
        device and read at log steps and checkpoints: a NaN then stops the run at the next read, and no checkpoint
        is ever written after it. Returns the step's loss when it was read, else None.
        """
        done = it + 1
        eager = _read_loss_every_step(self.device) or need_value
        value = None
        if eager:
            value = float(loss.detach())
            if self._nonfinite_anywhere(value):
                raise self._stop_on_nan(done, value)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.sched.step()
        self._loss_sum = self._loss_sum + (value if eager else loss.detach().float())
        self._loss_n += 1
        self.seen += self.images_per_step
        if not self.warm:  # the first step (allocations, autotuning) is not timed
            self.warm, self.seen, self.t0 = True, 0, time.perf_counter()
        if done % max(1, self.cfg.log_every) == 0 or done == self.cfg.iterations:
            mean = float(self._loss_sum) / max(self._loss_n, 1)
            if self._nonfinite_anywhere(mean):
                raise self._stop_on_nan(done, mean)
            self.log.append(
                {"iteration": done, "loss": mean, "lr": self.opt.param_groups[0]["lr"],
                 "img_per_s": round(self.img_per_s(), 2)}
            )  # fmt: skip
            self._loss_sum, self._loss_n = 0.0, 0
            if self.bar is not None:
                self.bar.set_postfix(loss=f"{mean:.4f}", img_s=f"{self.img_per_s():.0f}", refresh=False)
        if self.bar is not None:
            self.bar.update(1)
        return value

    def _nonfinite_anywhere(self, value: float) -> bool:
        """True when ``value`` is NaN/inf on this rank or on any other (so that every rank stops together)."""
        bad = not math.isfinite(value)
        if self.dist.world_size > 1:
            import torch.distributed as dist

            flag = torch.tensor([float(bad)], device=self.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            bad = bool(flag.item())
        return bad

    def _stop_on_nan(self, it: int, value: float) -> FloatingPointError:
        if self.bar is not None:
            self.bar.close()
        return _nan_error(it, value, self.out_dir, self.last_ckpt)

    def agree(self, flag: bool) -> bool:
        """Rank 0's decision (e.g. early stopping) for every rank, so no rank leaves the loop alone and hangs DDP."""
        if self.dist.world_size <= 1:
            return flag
        import torch.distributed as dist

        t = torch.tensor([int(flag)], device=self.device)
        dist.broadcast(t, 0)
        return bool(t.item())

    def img_per_s(self) -> float:
        """Images through the model per second (all ranks together), this call, first step excluded."""
        if self.seen == 0:
            return 0.0
        return self.seen * self.dist.world_size / max(time.perf_counter() - self.t0, 1e-9)

    def observe_val(self, it: int, value: float, metrics: dict[str, float]) -> bool:
        """Record a validation result; keep the best weights; return True when patience is exhausted."""
        self.log.append({"iteration": it, **{f"val_{k}": v for k, v in metrics.items()}})
        if self.best_val is None or value > self.best_val:
            self.best_val, self.best_iteration, self.bad_evals = value, it, 0
            self.best_state = {k: v.detach().cpu().clone() for k, v in self.raw.state_dict().items()}
            return False
        self.bad_evals += 1
        return self.bad_evals >= self.cfg.patience

    def finish(self, it: int, stopped_early: bool) -> FitResult:
        """Final checkpoint (last weights), then load and save the best-val weights; return the result."""
        self.extra_state["stopped_early"] = stopped_early
        self.checkpoint(it)
        if self.bar is not None:
            self.bar.close()
        if self.best_state is not None:
            self.raw.load_state_dict(self.best_state)
        if self.out_dir is not None and self.dist.is_main:
            atomic_torch_save(self.raw.state_dict(), self.out_dir / BEST)
        wall = time.perf_counter() - self.t_start
        return FitResult(
            model=self.raw,
            log=self.log,
            iterations_run=it,
            stopped_early=stopped_early,
            best_iteration=self.best_iteration,
            best_val=self.best_val,
            img_per_s=self.img_per_s(),
            wall_s=wall,
            out_dir=self.out_dir,
            extra={"world_size": self.dist.world_size, "resumed_from": self.start or None},
        )


# ------------------------------------------------------------------------------------------------ banks
def _norm_stats(mean: Any, std: Any, channels: int) -> tuple[list[float], list[float]]:
    """Broadcast scalar or per-channel normalisation constants to ``channels`` values."""
    m = [float(v) for v in np.atleast_1d(np.asarray(mean, dtype=np.float64))]
    s = [float(v) for v in np.atleast_1d(np.asarray(std, dtype=np.float64))]
    return (m * channels)[:channels] if len(m) == 1 else m, (s * channels)[:channels] if len(s) == 1 else s


def sbir_bank(
    images: np.ndarray, device: torch.device, cfg: TrainConfig, *, train: bool, in_channels: int = 1
):
    """An ImageBank for QMUL sketches or photo edge maps (uint8 N x 256 x 256), sized as ``cfg`` says.

    Training banks crop ``cfg.sbir_input`` at random and flip; evaluation banks give the 10 views. For a
    3-channel backbone (InceptionV3) the grey images are repeated over 3 channels with ImageNet statistics.
    """
    from cdimlab.data import ImageBank
    from cdimlab.data import transforms as T

    imgs = np.asarray(images)
    if in_channels == 3 and imgs.ndim == 3:
        imgs = np.repeat(imgs[..., None], 3, axis=-1)
        mean, std = T.IMAGENET_MEAN, T.IMAGENET_STD
    else:
        mean, std = T.SKETCH_NORM_MEAN, (cfg.sketch_std,)
    mean, std = _norm_stats(mean, std, in_channels)
    resize = cfg.sbir_resize
    return ImageBank(
        imgs,
        device,
        crop=(cfg.sbir_input, cfg.sbir_input),
        flip=train,
        mean=mean,
        std=std,
        out_size=(resize, resize) if resize else None,
        channels_last=_auto(cfg.channels_last, device),
    )


def reid_bank(images: np.ndarray, device: torch.device, cfg: TrainConfig, *, train: bool):
    """An ImageBank for ReID crops (uint8 N x H x W x 3) at ``cfg.reid_input``, ImageNet-normalised, flip in training."""
    from cdimlab.data import ImageBank
    from cdimlab.data import transforms as T

    h, w = cfg.reid_input
    same = tuple(np.asarray(images).shape[1:3]) == (h, w)
    return ImageBank(
        images,
        device,
        crop=None,
        flip=train,
        mean=list(T.IMAGENET_MEAN),
        std=list(T.IMAGENET_STD),
        out_size=None if same else (h, w),
        channels_last=_auto(cfg.channels_last, device),
    )


# ------------------------------------------------------------------------------------------------- FG-SBIR
def fit_triplet(
    model: nn.Module,
    train: Any,
    val: Any | None,
    cfg: TrainConfig,
    device: str | torch.device = "auto",
    out_dir: str | os.PathLike | None = None,
    resume: bool = False,
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
    Introduced in notebook 02.
    """
    from cdimlab.data import TripletSampler
    from cdimlab.losses import triplet_ranking_loss

    device = resolve_device(device)
    loop = _Loop(
        model, cfg, device, out_dir, resume, progress, 0, f"triplet {getattr(train, 'category', '')}"
    )
    dev, world = loop.device, loop.dist.world_size
    in_ch = getattr(_backbone_of(loop.raw), "in_channels", 1)
    sketches = sbir_bank(train.sketches, dev, cfg, train=True, in_channels=in_ch)
    photos = sbir_bank(train.photos, dev, cfg, train=True, in_channels=in_ch)
    sampler = TripletSampler(train, mode=sampler_mode)
    per_rank = max(1, cfg.batch_size // world)
    loop.images_per_step = 3 * per_rank
    it, stop = loop.start, bool(loop.extra_state.get("stopped_early", False))  # a finished run stays finished
    loop.raw.train()
    while it < cfg.iterations and not stop:
        a, p, n = sampler.sample(per_rank, loop.gen)
        x = torch.cat(
            [
                sketches.train_batch(a, loop.gen),
                photos.train_batch(p, loop.gen),
                photos.train_batch(n, loop.gen),
            ]
        )
        with _autocast(cfg, dev):
            emb = loop.model(x).float()
        ea, ep, en = emb.split(per_rank)
        loss = triplet_ranking_loss(ea, ep, en, margin=cfg.margin, distance=cfg.distance)
        value = loop.step(it, loss, need_value=callback is not None)
        it += 1
        if val is not None and len(val) > 0 and (it % cfg.eval_every == 0 or it == cfg.iterations):
            loop.sync_buffers()
            metrics = evaluate_sbir(loop.raw, val, dev, protocol="center", cfg=cfg)
            stop = loop.agree(loop.observe_val(it, metrics["acc@1"] + 1e-3 * metrics["acc@10"], metrics))
            loop.raw.train()
        if it % cfg.checkpoint_every == 0 and it < cfg.iterations and not stop:
            loop.checkpoint(it)
        if callback is not None:
            callback(it, value)
    result = loop.finish(it, stopped_early=stop)
    loop.raw.eval()
    return result


def _backbone_of(model: nn.Module) -> nn.Module:
    """The TappedBackbone inside an EmbeddingNet / ReIDNet (for in_channels and input sizes)."""
    for attr in ("backbone", "embedder"):
        inner = getattr(model, attr, None)
        if inner is not None:
            return _backbone_of(inner) if attr == "embedder" else inner
    return model


# ---------------------------------------------------------------------------------------------------- ReID
class _EpochSampler:
    """Shuffled passes over ``n`` items drawn ``batch`` at a time; its state lives in the checkpoint."""

    def __init__(self, n: int, state: dict[str, Any]) -> None:
        self.n, self.state = n, state

    def sample(self, batch: int, gen: torch.Generator) -> Tensor:
        out = []
        while batch > 0:
            perm, pos = self.state.get("perm"), self.state.get("pos", 0)
            if perm is None or pos >= self.n:
                perm, pos = torch.randperm(self.n, generator=gen), 0
            take = perm[pos : pos + batch]
            out.append(take)
            batch -= len(take)
            self.state["perm"], self.state["pos"] = perm, pos + len(take)
        return torch.cat(out)


def fit_classifier(
    model: nn.Module,
    images: Any,
    labels: Tensor,
    cfg: TrainConfig,
    device: str | torch.device = "auto",
    out_dir: str | os.PathLike | None = None,
    resume: bool = False,
    progress: bool = True,
    callback: Callable[[int, float], None] | None = None,
) -> FitResult:
    """Train a ReIDNet with softmax cross-entropy over the training identities (the paper's ReID recipe).

    ``images`` is an :class:`cdimlab.data.ImageBank` (augmentation on its device) or a uint8 array
    (N, H, W, 3) that is put into one; ``labels`` (N,) holds identity labels 0..K-1. Batches are shuffled
    passes over the training set. Full profile: Adam 3.5e-4, x0.95 every 1,000 iterations, batch 64, 60K
    iterations, no early stopping (the paper trains a fixed schedule). Introduced in notebook 03.
    """
    from cdimlab.losses import cross_entropy

    device = resolve_device(device)
    loop = _Loop(model, cfg, device, out_dir, resume, progress, 0, "classifier")
    dev, world = loop.device, loop.dist.world_size
    bank = images if hasattr(images, "train_batch") else reid_bank(images, dev, cfg, train=True)
    labels = torch.as_tensor(labels, dtype=torch.long).to(dev)
    sampler = _EpochSampler(len(bank), loop.extra_state.setdefault("sampler", {}))
    per_rank = max(1, cfg.batch_size // world)
    loop.images_per_step = per_rank
    it = loop.start
    loop.raw.train()
    while it < cfg.iterations:
        idx = sampler.sample(per_rank, loop.gen)
        x = bank.train_batch(idx, loop.gen)
        with _autocast(cfg, dev):
            logits = loop.model(x).float()
        target = labels[to_device(idx, dev)]
        value = loop.step(
            it, cross_entropy(logits, target, label_smoothing=cfg.label_smoothing), callback is not None
        )
        it += 1
        if it % cfg.checkpoint_every == 0 and it < cfg.iterations:
            loop.checkpoint(it)
        if callback is not None:
            callback(it, value)
    result = loop.finish(it, stopped_early=False)
    loop.raw.eval()
    return result


# ------------------------------------------------------------------------------------------------ evaluation
@torch.no_grad()
def embed_images(
    model: nn.Module | Callable[[Tensor], Tensor],
    bank: Any,
    device: str | torch.device = "auto",
    batch_size: int = 256,
    views: Sequence[int] = (4,),
    amp: str | bool = "auto",
) -> Tensor:
    """Embed every image of ``bank`` for each view: a float32 tensor ``(len(views), N, D)`` on ``device``.

    ``model`` is an EmbeddingNet, a ReIDNet (its ``embed`` is used) or any callable. View 4 is the centre
    crop; views 0..9 are the 10-view protocol (4 corners + centre, and their flips).
    """
    device = resolve_device(device)
    fn = model.embed if hasattr(model, "embed") else model
    was_training = getattr(model, "training", False)
    if isinstance(model, nn.Module):
        model.eval()
    ctx = _autocast(TrainConfig(amp=amp), device)
    out = []
    try:
        for v in views:
            chunks = []
            for s in range(0, len(bank), batch_size):
                idx = torch.arange(s, min(s + batch_size, len(bank)))
                with ctx:
                    chunks.append(fn(bank.eval_batch(idx, view=v)).float())
            out.append(torch.cat(chunks))
    finally:
        if isinstance(model, nn.Module):
            model.train(was_training)
    return torch.stack(out).to(device)


SBIR_VIEWS = {"10view": tuple(range(10)), "center": (4,)}


@torch.no_grad()
def sbir_distances(
    model: nn.Module,
    split: Any,
    device: str | torch.device = "auto",
    protocol: str = "10view",
    cfg: TrainConfig | None = None,
) -> list[Tensor]:
    """Sketch-to-photo distance matrices, one per view (query i matches gallery i)."""
    from cdimlab.metrics import pairwise_distance

    if protocol not in SBIR_VIEWS:
        raise ValueError(f"protocol must be one of {list(SBIR_VIEWS)}, got {protocol!r}")
    device = resolve_device(device)
    cfg = cfg or TrainConfig()
    in_ch = getattr(_backbone_of(model), "in_channels", 1)
    views = SBIR_VIEWS[protocol]
    sk = embed_images(model, sbir_bank(split.sketches, device, cfg, train=False, in_channels=in_ch), device,
                      cfg.eval_batch_size, views, False)  # fmt: skip
    ph = embed_images(model, sbir_bank(split.photos, device, cfg, train=False, in_channels=in_ch), device,
                      cfg.eval_batch_size, views, False)  # fmt: skip
    # evaluation embeds in float32 (amp off): bf16 rounding could reorder near-ties in the ranking
    return [pairwise_distance(sk[v], ph[v]) for v in range(len(views))]


def evaluate_sbir(
    model: nn.Module,
    test_split: Any,
    device: str | torch.device = "auto",
    protocol: str = "10view",
    cfg: TrainConfig | None = None,
) -> dict[str, float]:
    """FG-SBIR acc@1 and acc@10 (fractions) of sketch -> photo retrieval on ``test_split``.

    ``protocol="10view"`` averages the distance matrices over the 10 views of both sketch and photo (the
    official protocol); ``"center"`` uses the centre crop only. ``cfg`` supplies the input sizes (default: the
    paper's 225 crop). Ranking runs on ``device``. Introduced in notebook 02.
    """
    from cdimlab.metrics import acc_at_k

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
    data: Any, device: str | torch.device, cfg: TrainConfig, progress: bool = False
) -> ReIDBanks:
    """Decode the query / gallery (/ gt_bbox) images of a ReIDData at ``cfg.reid_input`` into banks on ``device``."""
    from cdimlab.data import decode_images

    device = resolve_device(device)

    def bank(entries):
        imgs = decode_images([e[0] for e in entries], size=tuple(cfg.reid_input), progress=progress)
        arr = np.asarray([e[1:] for e in entries], dtype=np.int64).reshape(-1, 2)
        return reid_bank(imgs, device, cfg, train=False), arr[:, 0], arr[:, 1]

    q, qp, qc = bank(data.query)
    g, gp, gc = bank(data.gallery)
    mq = mqp = mqc = None
    if getattr(data, "gt_bbox", None):
        mq, mqp, mqc = bank(data.gt_bbox)
    return ReIDBanks(q, g, qp, qc, gp, gc, mq, mqp, mqc)


def evaluate_reid(
    model: nn.Module,
    data: Any,
    device: str | torch.device = "auto",
    multi_query: bool = True,
    cfg: TrainConfig | None = None,
) -> dict[str, float]:
    """ReID mAP and CMC rank-1/5/10 (single query), plus multi-query mAP/rank-1 when gt_bbox images exist.

    ``data`` is a ReIDData (decoded here at ``cfg.reid_input``) or :class:`ReIDBanks`. Features are the model's
    retrieval embedding (``ReIDNet.embed``), distances are Euclidean, and ranking follows torchreid semantics
    (:func:`cdimlab.metrics.cmc_map`), on ``device``. Multi-query pools (mean) the gt_bbox features of the query's
    identity in the query's camera (Market-1501). Introduced in notebook 03.
    """
    from cdimlab.metrics import cmc_map, multi_query_pool, pairwise_distance

    device = resolve_device(device)
    cfg = cfg or TrainConfig()
    banks = data if isinstance(data, ReIDBanks) else reid_eval_banks(data, device, cfg)
    qf = embed_images(model, banks.query, device, cfg.eval_batch_size, (4,), False)[0]
    gf = embed_images(model, banks.gallery, device, cfg.eval_batch_size, (4,), False)[0]
    cmc, mAP = cmc_map(pairwise_distance(qf, gf), banks.q_pids, banks.g_pids, banks.q_camids, banks.g_camids)
    out = {"mAP": float(mAP), "rank1": float(cmc[0]), "rank5": float(cmc[4]), "rank10": float(cmc[9])}
    if multi_query and banks.mq is not None:
        mf = embed_images(model, banks.mq, device, cfg.eval_batch_size, (4,), False)[0]
        pooled = multi_query_pool(
            mf,
            torch.as_tensor(banks.mq_pids),
            torch.as_tensor(banks.mq_camids),
            torch.as_tensor(banks.q_pids),
            torch.as_tensor(banks.q_camids),
            mode="mean",
        )
        cmc_mq, map_mq = cmc_map(
            pairwise_distance(pooled.to(gf.device).float(), gf),
            banks.q_pids,
            banks.g_pids,
            banks.q_camids,
            banks.g_camids,
        )
        out.update({"mq_mAP": float(map_mq), "mq_rank1": float(cmc_mq[0])})
    return out


# -------------------------------------------------------------------------------------------------- plots
def read_log(path: str | os.PathLike):
    """A run's ``log.csv`` as a pandas DataFrame."""
    import pandas as pd

    return pd.read_csv(path)


def plot_learning_curves(log: Any, ax=None):
    """Training loss (left axis) and validation acc@1 (right axis, when logged) against iteration.

    ``log`` is a path to ``log.csv``, a run folder, a DataFrame or a list of log rows. Introduced in notebook 02.
    """
    import matplotlib.pyplot as plt
    import pandas as pd

    if isinstance(log, (str, os.PathLike)):
        p = Path(log)
        df = read_log(p / LOG if p.is_dir() else p)
    else:
        df = log if isinstance(log, pd.DataFrame) else pd.DataFrame(list(log))
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5))
    if "loss" in df:
        d = df.dropna(subset=["loss"])
        ax.plot(d["iteration"], d["loss"], label="train loss", color="tab:blue")
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    val_cols = [c for c in df.columns if c.startswith("val_")]
    if val_cols:
        ax2 = ax.twinx()
        for c in val_cols:
            d = df.dropna(subset=[c])
            ax2.plot(d["iteration"], d[c], marker="o", ls="--", label=c)
        ax2.set_ylabel("validation")
        ax2.legend(loc="upper right", fontsize=8)
    ax.legend(loc="upper left", fontsize=8)
    return ax


def copy_config(cfg: TrainConfig, **changes: Any) -> TrainConfig:
    """``dataclasses.replace`` under a short name, for notebooks."""
    return replace(cfg, **changes)


__all__ = [
    "TrainConfig",
    "FitResult",
    "DistInfo",
    "ReIDBanks",
    "init_distributed",
    "shutdown_distributed",
    "fit_triplet",
    "fit_classifier",
    "embed_images",
    "evaluate_sbir",
    "evaluate_reid",
    "sbir_distances",
    "reid_eval_banks",
    "sbir_bank",
    "reid_bank",
    "load_checkpoint",
    "write_log_csv",
    "read_log",
    "plot_learning_curves",
    "copy_config",
    "make_optimizer",
    "make_scheduler",
]
