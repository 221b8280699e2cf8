"""What a run folder holds and the ONE place that decides whether a run resumes.

Introduced in notebook 02 (resuming a killed run). A run folder ``out_dir`` holds ``checkpoint.pt`` (model,
optimiser, scheduler, RNG states, iteration, best-val state, log rows, config), ``log.csv`` and
``best_model.pt`` (the best-val weights, a plain state dict). Files are written atomically
(:func:`cdimlab.utils.atomic_torch_save`), so on the CPU a killed and resumed run ends with weights *equal* to an
uninterrupted run's. :func:`resume_checkpoint` is the only resume decision in cdimlab: the fit loops and the
experiment runner both go through it.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import Tensor

from cdimlab.train.config import TrainConfig
from cdimlab.utils import atomic_write_text

CHECKPOINT = "checkpoint.pt"
LOG = "log.csv"
BEST = "best_model.pt"

# Config fields that may change between a run and its resumption (schedule length and bookkeeping only).
RESUMABLE_CHANGES = frozenset(
    {"iterations", "patience", "checkpoint_every", "eval_every", "log_every", "eval_batch_size"}
)
RESUME_MODES = (True, False, "compatible")


def rng_state(gen: torch.Generator) -> dict[str, Any]:
    """Every random state a resumed run needs: torch CPU, CUDA (if any) and the sampling generator."""
    state = {"torch": torch.get_rng_state(), "generator": gen.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any], gen: torch.Generator) -> None:
    """Restore what :func:`rng_state` saved."""
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


def read_log(path: str | os.PathLike) -> pd.DataFrame:
    """A run's ``log.csv`` (or the run folder holding it) as a pandas DataFrame."""
    p = Path(path)
    return pd.read_csv(p / LOG if p.is_dir() else p)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint written by a fit loop (CPU tensors), with a clear error when it is missing."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}; train first or pass resume=False")
    return torch.load(path, map_location="cpu", weights_only=False)


def best_weights_path(run_dir: str | os.PathLike) -> Path:
    """``<run_dir>/best_model.pt``: the weights a finished run keeps."""
    return Path(run_dir) / BEST


def load_best_weights(run_dir: str | os.PathLike) -> dict[str, Tensor]:
    """The best-val state dict of a run folder; FileNotFoundError names the folder and the fix."""
    path = best_weights_path(run_dir)
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} holds no {BEST}; train it first (python -m cdimlab train NAME)")
    return torch.load(path, map_location="cpu", weights_only=True)


def run_config(run_dir: str | os.PathLike) -> TrainConfig:
    """The TrainConfig a run folder was trained with (from its ``checkpoint.pt``)."""
    return TrainConfig.from_dict(load_checkpoint(Path(run_dir) / CHECKPOINT)["config"])


def config_mismatch(checkpoint_config: dict[str, Any], cfg: TrainConfig) -> dict[str, tuple[Any, Any]]:
    """Fields (other than :data:`RESUMABLE_CHANGES`) where a checkpoint's config differs from ``cfg``."""
    diff = {}
    for key, value in cfg.to_dict().items():
        old = checkpoint_config.get(key, value)
        if key not in RESUMABLE_CHANGES and (list(old) if isinstance(old, tuple) else old) != (
            list(value) if isinstance(value, tuple) else value
        ):
            diff[key] = (old, value)
    return diff


def resume_checkpoint(
    out_dir: str | os.PathLike | None, cfg: TrainConfig, resume: bool | str, is_main: bool = True
) -> dict[str, Any] | None:
    """The checkpoint a run continues from, or None to start over (the only resume decision in cdimlab).

    ``resume=False``: start over (rank 0 deletes an old checkpoint). ``True``: continue from
    ``out_dir/checkpoint.pt`` when it exists; a checkpoint of another recipe is a ValueError naming the fields.
    ``"compatible"`` (the experiment runner): like True, but a stale checkpoint is replaced, with a note.
    """
    if resume not in RESUME_MODES:
        raise ValueError(f"resume must be True, False or 'compatible', got {resume!r}")
    if out_dir is None:
        return None
    path = Path(out_dir) / CHECKPOINT
    if resume is False or not path.is_file():
        if resume is False and is_main:
            path.unlink(missing_ok=True)
        return None
    ck = load_checkpoint(path)
    diff = config_mismatch(ck.get("config", {}), cfg)
    if not diff:
        return ck
    if resume == "compatible":
        print(f"note: {path} was trained with another config ({sorted(diff)}); starting this run over")
        if is_main:
            path.unlink(missing_ok=True)
        return None
    raise ValueError(
        f"cannot resume from {path}: its config differs in {diff} "
        "(checkpoint value, requested value); pass resume=False to start over or use another out_dir"
    )
