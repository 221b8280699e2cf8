"""The machinery both fit loops share: optimiser, scheduler, logging, checkpoints, resume, NaN guard, timing.

Introduced in notebook 02. A fit loop (:mod:`cdimlab.train.fit`) owns the data and the loss; :class:`TrainLoop`
owns everything else, so the loops read as::

    loop = TrainLoop(model, cfg, device, out_dir, resume, progress, desc)   # locks out_dir, resumes
    with loop.running():                                # Ctrl-C / SIGTERM handled between steps
        while it < cfg.iterations:
            loss = ...; loop.step(it, loss); it += 1
            maybe loop.observe_val(...); maybe loop.checkpoint(it); loop.poll_interrupt(it)
        return loop.finish(it, stopped_early)

Everything a resumed run needs goes into ``out_dir/checkpoint.pt`` (:mod:`cdimlab.train.checkpoint`); weights
that are not finite are never saved. A Ctrl-C or SIGTERM is caught, the run checkpoints at the next step
boundary and raises :class:`TrainingInterrupted` (a KeyboardInterrupt) saying how to resume; a second Ctrl-C
stops at once. Under ``torchrun`` the model is wrapped in DistributedDataParallel and rank 0 alone writes files.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from cdimlab.precision import choose_precision, make_grad_scaler
from cdimlab.train import distributed as D
from cdimlab.train.checkpoint import (
    BEST,
    CHECKPOINT,
    LOG,
    current_labels,
    describe_model,
    resume_checkpoint,
    rng_state,
    save_verified,
    set_rng_state,
    write_log_csv,
)
from cdimlab.train.config import FitResult, TrainConfig, auto_flag, make_optimizer, make_scheduler
from cdimlab.train.runfolder import acquire, release


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C / SIGTERM during training: a checkpoint was written; the message says how to resume."""

    def __init__(self, message: str, iteration: int, checkpoint: Path | None) -> None:
        super().__init__(message)
        self.iteration, self.checkpoint = iteration, checkpoint

    def __str__(self) -> str:
        return str(self.args[0])


def nonfinite_tensors(state: dict[str, Tensor]) -> list[str]:
    """Names of floating-point entries of a state dict holding NaN or inf (empty: all finite)."""
    return [k for k, v in state.items() if torch.is_floating_point(v) and not bool(torch.isfinite(v).all())]


# a checkpoint is refused when its largest weight grew this many times beyond the run's start (at least 1.0):
# finite but diverged weights (lr far too high) would otherwise replace the last good checkpoint
DIVERGED_FACTOR = 1e3


def largest_weight(model: nn.Module) -> float:
    """The largest |w| over the model's floating-point parameters (0.0 for a model without any)."""
    sizes = [float(p.detach().abs().max()) for p in model.parameters() if p.is_floating_point() and p.numel()]
    return max(sizes, default=0.0)


def nan_error(
    it: int, loss: float, out_dir: Path | None, last_ckpt: int | None, what: str = ""
) -> FloatingPointError:
    """The error a diverged run raises: where the last good (finite) checkpoint is, and what to try."""
    where = (
        f"{out_dir / CHECKPOINT} (iteration {last_ckpt})" if out_dir and last_ckpt else "no checkpoint yet"
    )
    return FloatingPointError(
        f"training {what or f'loss became {loss}'} at iteration {it}; stopped, nothing saved. The last good "
        "checkpoint is kept untouched: "
        f"{where}. Hints: lower the learning rate (TrainConfig.lr), check the data (empty or constant images, "
        "wrong normalisation), or turn amp off"
    )


def read_loss_every_step(device: torch.device) -> bool:
    """Read the loss on the host every step on the CPU (free there); on CUDA only at log steps (see step)."""
    return device.type != "cuda"


class TrainLoop:
    """Shared machinery of both fit loops: optimiser, scheduler, logging, checkpoints, resume, NaN guard."""

    def __init__(
        self,
        model: nn.Module,
        cfg: TrainConfig,
        device: torch.device,
        out_dir: str | os.PathLike | None,
        resume: bool | str,
        progress: bool,
        desc: str,
    ) -> None:
        self.cfg = cfg
        self.dist, self.device = D.init_distributed(device)
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.raw = model.to(self.device)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick the fastest kernels
        if auto_flag(cfg.channels_last, self.device):
            self.raw = self.raw.to(memory_format=torch.channels_last)
        self.gen = torch.Generator().manual_seed(cfg.seed + 1_000_003 * self.dist.rank)
        self.opt = make_optimizer(self.raw.parameters(), cfg)
        self.sched = make_scheduler(self.opt, cfg)
        # fp16 (cards without bf16 hardware) scales the loss so small gradients do not flush to zero
        self.precision = choose_precision(self.device, "auto" if auto_flag(cfg.amp, self.device) else "fp32")
        self.scaler = make_grad_scaler(self.precision, self.device)
        if self.device.type == "cuda" and self.dist.is_main:
            print(self.precision.describe(), flush=True)
        self.start, self.log, self.last_ckpt = 0, [], None
        self.best_val: float | None = None
        self.best_iteration: int | None = None
        self.best_state: dict[str, Tensor] | None = None
        self.bad_evals = 0
        self.extra_state: dict[str, Any] = {}
        self.loss_sum: float | Tensor = 0.0  # summed on the device between log steps (see step)
        self.loss_n = 0
        self.identity = {**current_labels(), "model": describe_model(self.raw)}
        # measured on the weights the run starts from (a resumed run is handed the same freshly built model)
        self.diverged_above = DIVERGED_FACTOR * max(largest_weight(self.raw), 1.0)
        self.lock = acquire(self.out_dir) if self.out_dir is not None and self.dist.is_main else None
        try:
            ck = resume_checkpoint(self.out_dir, cfg, resume, self.dist.is_main, self.identity)
            if ck is not None:
                self.restore(ck)
            self.model = D.wrap_ddp(self.raw, self.dist, self.device)
            if cfg.compile:
                self.model = torch.compile(self.model)
        except BaseException:
            self.unlock()
            raise
        self.signal: int | None = None
        self.images_per_step = 0
        self.bar = None
        if progress and self.dist.is_main:
            self.bar = tqdm(total=cfg.iterations, initial=self.start, desc=desc, unit="it", leave=False)
        self.t0, self.seen, self.warm = time.perf_counter(), 0, False
        self.t_start, self.paused = self.t0, 0.0  # paused: evaluation and checkpoint time, not training steps

    # -- the run's lifetime -----------------------------------------------------------------------------------
    def unlock(self) -> None:
        """Give back the run folder's lock (once)."""
        if self.lock is not None:
            release(self.lock)
            self.lock = None

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        """The training block: Ctrl-C / SIGTERM only set a flag (see :meth:`poll_interrupt`); on leaving, the
        signal handlers are restored, the progress bar closed and the run folder unlocked."""
        old = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                old[sig] = signal.signal(sig, self.on_signal)
        try:
            yield
        finally:
            for sig, handler in old.items():
                signal.signal(sig, handler)
            if self.bar is not None:
                self.bar.close()
            self.unlock()

    def on_signal(self, signum: int, frame: Any) -> None:
        """First Ctrl-C / SIGTERM: stop at the next step boundary with a checkpoint; a second one: stop now."""
        if self.signal is not None:
            raise KeyboardInterrupt(f"interrupted twice; stopped without a checkpoint after the last one "
                                    f"(iteration {self.last_ckpt})")  # fmt: skip
        self.signal = signum
        print(f"\n{signal.Signals(signum).name}: finishing the current step, then writing a checkpoint "
              "(press Ctrl-C again to stop at once)", flush=True)  # fmt: skip

    def poll_interrupt(self, it: int) -> None:
        """After step ``it``: when a signal came, write a checkpoint and raise TrainingInterrupted. Under torchrun
        the ranks agree (rank 0's flag) at log steps only, so there is no per-step collective."""
        if self.dist.world_size > 1 and it % max(1, self.cfg.log_every):
            return
        if not self.agree(self.signal is not None):
            return
        self.checkpoint(it)
        where = self.out_dir / CHECKPOINT if self.out_dir is not None else None
        how = (f"checkpoint written to {where} (iteration {it}); continue with resume=True (CLI: the same "
               "command with --resume)") if where else "no run folder, so nothing was saved"  # fmt: skip
        raise TrainingInterrupted(
            f"training interrupted at iteration {it}/{self.cfg.iterations}; {how}", it, where
        )

    # -- state ------------------------------------------------------------------------------------------------
    def state(self, it: int) -> dict[str, Any]:
        """Everything needed to continue exactly after iteration ``it`` (the checkpoint format)."""
        return {
            "iteration": it,
            "model": self.raw.state_dict(),
            "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict(),
            "scaler": self.scaler.state_dict(),  # fp16: the loss scale it found (empty when disabled)
            "rng": rng_state(self.gen),
            "best_val": self.best_val,
            "best_iteration": self.best_iteration,
            "best_state": self.best_state,
            "bad_evals": self.bad_evals,
            "log": self.log,
            "loss_sum": float(
                self.loss_sum
            ),  # the losses since the last log row, so a resumed log is the same
            "loss_n": self.loss_n,
            "config": self.cfg.to_dict(),
            "identity": self.identity,
            "extra": self.extra_state,
        }

    def restore(self, ck: dict[str, Any]) -> None:
        """Continue from a checkpoint written by :meth:`state`."""
        self.raw.load_state_dict(ck["model"])
        self.opt.load_state_dict(ck["optimizer"])
        self.sched.load_state_dict(ck["scheduler"])
        # (older checkpoints have no scaler state: the scaler then starts afresh)
        if self.scaler.is_enabled() and ck.get("scaler"):
            self.scaler.load_state_dict(ck["scaler"])
        set_rng_state(ck["rng"], self.gen)
        self.start = self.last_ckpt = int(ck["iteration"])
        self.best_val, self.best_iteration = ck["best_val"], ck["best_iteration"]
        self.best_state, self.bad_evals = ck["best_state"], ck["bad_evals"]
        self.log, self.extra_state = list(ck["log"]), dict(ck.get("extra", {}))
        self.loss_sum, self.loss_n = float(ck.get("loss_sum", 0.0)), int(ck.get("loss_n", 0))
        if self.dist.rank != 0:  # the checkpoint holds rank 0's random stream: give this rank its own
            self.gen.manual_seed(self.cfg.seed + 1_000_003 * self.dist.rank + self.start)
            # (the epoch sampler's state -- epoch, position -- is the same on every rank: it stays)

    def sync_buffers(self) -> None:
        """Average BatchNorm statistics over ranks before evaluating or saving (no-op outside torchrun)."""
        D.average_buffers(self.raw, self.dist)

    def checkpoint(self, it: int) -> None:
        """Rank 0 writes ``checkpoint.pt`` and ``log.csv`` atomically; other ranks only wait.

        Losses not yet read (CUDA) are checked first, and the weights and buffers must be finite: a diverged
        state never overwrites the last good checkpoint (FloatingPointError instead, nothing written).
        """
        if self.loss_n and self.nonfinite(float(self.loss_sum)):
            raise self.stop_on_nan(it, float(self.loss_sum))
        self.sync_buffers()
        bad = nonfinite_tensors(self.raw.state_dict())
        big = largest_weight(self.raw) if not bad else 0.0
        grown = big > self.diverged_above
        if self.nonfinite(float("nan") if bad or grown else 0.0):
            why = f"weights {bad[:3]} are not finite" if bad else ""
            if grown:
                why = (f"weights diverged (largest |w| = {big:.3g}, above {self.diverged_above:.3g}: "
                       f"{DIVERGED_FACTOR:g}x where this run started)")  # fmt: skip
            raise self.stop_on_nan(it, float("nan"), why)
        with self.untimed():
            if self.out_dir is not None and self.dist.is_main:
                save_verified(self.state(it), self.out_dir / CHECKPOINT)
                write_log_csv(self.log, self.out_dir / LOG)
            self.last_ckpt = it
            D.barrier(self.dist)

    @contextlib.contextmanager
    def untimed(self) -> Iterator[None]:
        """A block (evaluation, checkpoint) whose time img/s leaves out: img/s counts training steps only."""
        self.sync_device()  # training work still queued on a GPU belongs to the steps, not to this block
        t = time.perf_counter()
        try:
            yield
        finally:
            self.paused += time.perf_counter() - t

    # -- per step ---------------------------------------------------------------------------------------------
    def step(self, it: int, loss: Tensor, need_value: bool = False) -> float | None:
        """Backward + optimiser + scheduler step; raises FloatingPointError (nothing written) on NaN/inf.

        On the CPU (or with ``need_value``) the loss is read and checked every step, before the update. On CUDA a
        host read is a device sync that would leave the GPU idle between steps, so the loss is summed on the
        device and read at log steps and checkpoints: a NaN then stops the run at the next read, and no checkpoint
        is ever written after it. Returns the step's loss when it was read, else None.
        """
        done = it + 1
        eager = read_loss_every_step(self.device) or need_value
        value = None
        if eager:
            value = float(loss.detach())
            if self.nonfinite(value):
                raise self.stop_on_nan(done, value)
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()  # a disabled scaler (bf16, fp32) passes the loss through
        self.scaler.step(self.opt)
        self.scaler.update()
        self.sched.step()
        self.loss_sum = self.loss_sum + (value if eager else loss.detach().float())
        self.loss_n += 1
        self.seen += self.images_per_step
        if not self.warm:  # the first step (allocations, autotuning, its queued kernels) is not timed
            self.sync_device()
            self.warm, self.seen, self.t0, self.paused = True, 0, time.perf_counter(), 0.0
        if done % max(1, self.cfg.log_every) == 0 or done == self.cfg.iterations:
            self.log_loss(done)
        if self.bar is not None:
            self.bar.update(1)
        return value

    def log_loss(self, done: int) -> None:
        """Append the mean loss since the last log row (and lr, img/s); stop on a NaN."""
        mean = float(self.loss_sum) / max(self.loss_n, 1)
        if self.nonfinite(mean):
            raise self.stop_on_nan(done, mean)
        self.log.append(
            {"iteration": done, "loss": mean, "lr": self.opt.param_groups[0]["lr"],
             "img_per_s": round(self.img_per_s(), 2)}
        )  # fmt: skip
        self.loss_sum, self.loss_n = 0.0, 0
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{mean:.4f}", img_s=f"{self.img_per_s():.0f}", refresh=False)

    def nonfinite(self, value: float) -> bool:
        """True when ``value`` is NaN/inf on any rank."""
        return D.nonfinite_anywhere(value, self.dist, self.device)

    def stop_on_nan(self, it: int, value: float, what: str = "") -> FloatingPointError:
        """Close the progress bar and build the NaN error (the caller raises it)."""
        if self.bar is not None:
            self.bar.close()
        return nan_error(it, value, self.out_dir, self.last_ckpt, what)

    def agree(self, flag: bool) -> bool:
        """Rank 0's decision for every rank (see :func:`cdimlab.train.distributed.agree`)."""
        return D.agree(flag, self.dist, self.device)

    def sync_device(self) -> None:
        """Wait for queued CUDA work (a no-op on the CPU), so that a clock read means what it says."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def img_per_s(self) -> float:
        """Images through the model per second (all ranks together), this call, first step excluded; time spent
        in :meth:`untimed` blocks (evaluation, checkpoints) does not count."""
        if self.seen == 0:
            return 0.0
        return self.seen * self.dist.world_size / max(time.perf_counter() - self.t0 - self.paused, 1e-9)

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
        img_per_s = self.img_per_s()  # before the best weights are written
        if self.bar is not None:
            self.bar.close()
        if self.best_state is not None:
            self.raw.load_state_dict(self.best_state)
        if self.out_dir is not None and self.dist.is_main:
            save_verified(self.raw.state_dict(), self.out_dir / BEST)
        return FitResult(
            model=self.raw,
            log=self.log,
            iterations_run=it,
            stopped_early=stopped_early,
            best_iteration=self.best_iteration,
            best_val=self.best_val,
            img_per_s=img_per_s,
            wall_s=time.perf_counter() - self.t_start,
            out_dir=self.out_dir,
            extra={"world_size": self.dist.world_size, "resumed_from": self.start or None},
        )
