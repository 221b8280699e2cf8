"""DistributedDataParallel plumbing of the fit loops: join ``torchrun``'s group, wrap, agree across ranks.

Introduced in notebook 08 (multi-GPU runs). Outside ``torchrun`` (``WORLD_SIZE`` unset or 1) every function here is
a no-op, so the fit loops read the same on a laptop and on eight GPUs. NCCL on GPUs, gloo on the CPU.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel


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
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def wrap_ddp(model: nn.Module, info: DistInfo, device: torch.device) -> nn.Module:
    """Wrap in DistributedDataParallel when running under torchrun (weights are broadcast from rank 0)."""
    if info.world_size <= 1:
        return model
    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(sync_batchnorm(model, info, device), device_ids=ids)


def sync_batchnorm(model: nn.Module, info: DistInfo, device: torch.device) -> nn.Module:
    """Multi-GPU: BatchNorm layers become SyncBatchNorm (statistics over the global batch, not each rank's
    share: batch 64 on 4 cards would otherwise normalise over 16). In place, keys unchanged. CUDA only (NCCL);
    on CPU ranks (gloo, tests) BatchNorm stays and buffers are averaged before evaluation and checkpoints."""
    if info.world_size <= 1 or device.type != "cuda":
        return model
    return nn.SyncBatchNorm.convert_sync_batchnorm(model)


def barrier(info: DistInfo) -> None:
    """Wait for every rank (no-op for one process)."""
    if info.world_size > 1:
        dist.barrier()


def nonfinite_anywhere(value: float, info: DistInfo, device: torch.device) -> bool:
    """True when ``value`` is NaN/inf on this rank or on any other (so that every rank stops together)."""
    bad = not math.isfinite(value)
    if info.world_size > 1:
        flag = torch.tensor([float(bad)], device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        bad = bool(flag.item())
    return bad


def agree(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """Rank 0's decision (e.g. early stopping) for every rank, so no rank leaves the loop alone and hangs DDP."""
    if info.world_size <= 1:
        return flag
    t = torch.tensor([int(flag)], device=device)
    dist.broadcast(t, 0)
    return bool(t.item())


def average_buffers(model: nn.Module, info: DistInfo) -> None:
    """Average BatchNorm running statistics over ranks (DDP only syncs gradients), so every rank evaluates and
    saves the same model. A no-op outside torchrun."""
    if info.world_size <= 1:
        return
    for buf in model.buffers():
        if buf.is_floating_point():
            dist.all_reduce(buf, op=dist.ReduceOp.SUM)
            buf.div_(info.world_size)
