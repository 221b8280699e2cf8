"""What a run folder holds and the ONE place that decides whether a run resumes.

Introduced in notebook 02 (resuming a killed run). A run folder ``out_dir`` holds ``checkpoint.pt`` (model,
optimiser, scheduler, RNG states, iteration, best-val state, log rows, loss accumulators, config, and the run's
identity: experiment, data kind, model description), ``log.csv`` and ``best_model.pt`` (the best-val weights, a
plain state dict). Each ``.pt`` is written atomically with a sha256 digest beside it (``<file>.sha256``) and read
back with ``torch.load(weights_only=True)`` after the digest is checked: a crafted file cannot run code and a
flipped byte is an error naming the file, not a silent load. On the CPU a killed and resumed run ends with
weights *equal* to an uninterrupted run's. :func:`resume_checkpoint` is the only resume decision in cdimlab: the
fit loops and the experiment runner both go through it (the policies: :data:`RESUME_MODES`).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import pickle
import zipfile
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any, BinaryIO

import pandas as pd
import torch
from torch import Tensor, nn

from cdimlab.train.config import TrainConfig
from cdimlab.train.runfolder import move_aside
from cdimlab.utils import atomic_write_json, atomic_write_stream, atomic_write_text

CHECKPOINT = "checkpoint.pt"
LOG = "log.csv"
BEST = "best_model.pt"

# Config fields that may change between a run and its resumption (schedule length and bookkeeping only).
RESUMABLE_CHANGES = frozenset(
    {"iterations", "patience", "checkpoint_every", "eval_every", "log_every", "eval_batch_size"}
)
# False: a new run (refused when the folder already holds a checkpoint); True: continue it (a checkpoint of another
# recipe, experiment or model is refused); "compatible" (the experiment runner): continue it when it matches, else
# move the old files aside and start over; "fresh": deliberately start over, the old files moved aside.
RESUME_MODES = (True, False, "compatible", "fresh")
DIGEST_SUFFIX = ".sha256"
FIX = "delete it (and its .sha256 file) to start that run over, or train into a new run folder (CLI: --runs DIR)"


class CheckpointError(ValueError):
    """A run-folder file that cannot be used: unreadable, corrupt, not written by cdimlab, or of another run."""


def rng_state(gen: torch.Generator) -> dict[str, Any]:
    """Every random state a resumed run needs: torch CPU, CUDA (if any) and the sampling generator."""
    state = {"torch": torch.get_rng_state(), "generator": gen.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = list(torch.cuda.get_rng_state_all())  # ByteTensors: plain for weights_only loading
    return state


def set_rng_state(state: dict[str, Any], gen: torch.Generator) -> None:
    """Restore what :func:`rng_state` saved."""
    torch.set_rng_state(state["torch"])
    gen.set_state(state["generator"])
    if "cuda" in state and torch.cuda.is_available():
        restore_cuda_rng(state["cuda"], torch.cuda.device_count(), torch.cuda.set_rng_state)


def restore_cuda_rng(saved: list[Any], n_devices: int, set_state: Any) -> int:
    """Give each of this host's ``n_devices`` GPUs its saved CUDA RNG state where one was saved (a run checkpointed
    on 8 GPUs may resume on 1, or the other way round: ``set_rng_state_all`` would fail); returns how many."""
    n = min(len(saved), n_devices)
    for i in range(n):
        set_state(saved[i], i)
    return n


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


class _HashingWriter:
    """A write-only stream that passes bytes on to ``fh`` and hashes them (one pass, nothing held twice)."""

    def __init__(self, fh: BinaryIO) -> None:
        self.fh, self.sha = fh, hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        return self.fh.write(data)

    def flush(self) -> None:
        self.fh.flush()


def digest_path(path: str | os.PathLike) -> Path:
    """``<file>.sha256``: the digest written beside a checkpoint or weights file."""
    return Path(f"{path}{DIGEST_SUFFIX}")


def file_sha256(path: Path) -> str:
    """sha256 of a file, read in 1 MiB blocks."""
    sha = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def save_verified(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` atomically and write its sha256 beside it (``<path>.sha256``, JSON).

    The digest file is written *before* the checkpoint is renamed into place and keeps the previous digest too,
    so a kill between the two renames leaves a pair that still verifies.
    """
    path = Path(path)
    previous = read_digest(path).get("sha256") if path.is_file() else None

    def write(fh: BinaryIO) -> None:
        hashed = _HashingWriter(fh)
        torch.save(obj, hashed)
        atomic_write_json(digest_path(path), {"sha256": hashed.sha.hexdigest(), "previous": previous})

    return atomic_write_stream(path, write)


def read_digest(path: Path) -> dict[str, Any]:
    """The digest record beside ``path`` ({} when there is none: a file written before digests existed)."""
    side = digest_path(path)
    if not side.is_file():
        return {}
    try:
        rec = json.loads(side.read_text())
    except (OSError, ValueError) as err:
        raise CheckpointError(f"the digest file {side} is unreadable ({err}); {FIX}") from err
    return rec if isinstance(rec, dict) else {}


def load_verified(path: str | os.PathLike, what: str = "checkpoint") -> Any:
    """Read a file written by :func:`save_verified`: digest checked, then ``torch.load(weights_only=True)``.

    Empty, truncated, garbage or tampered files -- and pickles holding anything but tensors and plain containers
    (a crafted file could otherwise run code) -- raise :class:`CheckpointError` naming the file and the fix.
    """
    path = Path(path)
    if path.stat().st_size == 0:
        raise CheckpointError(f"{what} {path} is empty (a killed copy or a full disk?); {FIX}")
    digest = read_digest(path)
    if digest:
        actual = file_sha256(path)
        if actual not in (digest.get("sha256"), digest.get("previous")):
            raise CheckpointError(
                f"{what} {path} does not match its sha256 digest in {digest_path(path).name} (the file was changed "
                f"or corrupted on disk after it was written); {FIX}"
            )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "Unsupported global" in str(err) or "GLOBAL" in str(err):  # a callable to run: a crafted file
            raise CheckpointError(
                f"refusing to load {path}: it holds Python objects that cdimlab never writes (unpickling them could "
                f"run arbitrary code); it is not a cdimlab {what}. {FIX}"
            ) from None
        raise CheckpointError(f"{what} {path} is corrupt ({short_reason(err)}); {FIX}") from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, KeyError) as err:
        raise CheckpointError(
            f"{what} {path} is unreadable (truncated or corrupt: {short_reason(err)}); {FIX}"
        ) from None


def short_reason(err: BaseException) -> str:
    """The telling line of a torch / pickle error (they run to many lines of advice that do not apply here)."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    telling = [ln for ln in lines if "Unsupported" in ln or "failed" in ln.lower()]
    return ((telling or lines or [type(err).__name__])[0])[:200]


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint written by a fit loop (CPU tensors; verified, weights-only), with a clear error when it
    is missing or unusable."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}; train first or pass resume=False")
    ck = load_verified(path, "checkpoint")
    if not isinstance(ck, dict) or "model" not in ck or "iteration" not in ck:
        raise CheckpointError(f"{path} is not a cdimlab checkpoint (no model / iteration entries); {FIX}")
    return ck


def best_weights_path(run_dir: str | os.PathLike) -> Path:
    """``<run_dir>/best_model.pt``: the weights a finished run keeps."""
    return Path(run_dir) / BEST


def load_best_weights(run_dir: str | os.PathLike) -> dict[str, Tensor]:
    """The best-val state dict of a run folder (verified, weights-only); FileNotFoundError names the fix."""
    path = best_weights_path(run_dir)
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} holds no {BEST}; train it first (python -m cdimlab train NAME)")
    state = load_verified(path, "weights file")
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointError(f"{path} is not a state dict of tensors; {FIX}")
    return state


def run_config(run_dir: str | os.PathLike) -> TrainConfig:
    """The TrainConfig a run folder was trained with (from its ``checkpoint.pt``)."""
    return TrainConfig.from_dict(load_checkpoint(Path(run_dir) / CHECKPOINT)["config"])


# ------------------------------------------------------------------------------------------------ identity
_LABELS: ContextVar[dict[str, Any] | None] = ContextVar("cdimlab_run_labels", default=None)


@contextlib.contextmanager
def run_labels(**labels: Any) -> Iterator[None]:
    """Label the runs started inside (``experiment=...``, ``data="real"|"synthetic"``): the fit loops record the
    labels in the checkpoint, and a resume with other labels is refused (the runner sets them)."""
    token = _LABELS.set({**(_LABELS.get() or {}), **labels})
    try:
        yield
    finally:
        _LABELS.reset(token)


def current_labels() -> dict[str, Any]:
    """The labels set by the innermost :func:`run_labels` ({} outside)."""
    return dict(_LABELS.get() or {})


def _plain(value: Any) -> Any:
    """Tuples -> lists, recursively (what a checkpoint or JSON file gives back)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def describe_model(model: nn.Module) -> dict[str, Any]:
    """What network a checkpoint holds: its class, its backbone's class and its fusion config (plain values)."""
    inner = getattr(model, "embedder", model)
    cfg = getattr(inner, "cfg", None)
    backbone = getattr(model, "backbone", None)
    return {
        "class": type(model).__name__,
        "backbone": type(backbone).__name__ if isinstance(backbone, nn.Module) else None,
        "fusion": _plain(asdict(cfg)) if is_dataclass(cfg) else None,
        "tap": getattr(model, "tap", None),
    }


def identity_problems(stored: dict[str, Any] | None, actual: dict[str, Any]) -> list[str]:
    """How a checkpoint's identity (experiment, model) differs from the run asking for it (empty: same run)."""
    stored = stored or {}
    out = []
    for key in ("experiment", "model"):
        old, new = stored.get(key), actual.get(key)
        if old is not None and new is not None and _plain(old) != _plain(new):
            out.append(f"{key}: checkpoint {old!r}, this run {new!r}")
    return out


def check_identity(path: Path, stored: dict[str, Any] | None, actual: dict[str, Any]) -> None:
    """Refuse (CheckpointError) a checkpoint of another experiment or model."""
    problems = identity_problems(stored, actual)
    if problems:
        raise CheckpointError(
            f"{path} belongs to another run ({'; '.join(problems)}); refusing to use it. Train into another run "
            "folder (CLI: --runs DIR), or start this one over deliberately (CLI: --fresh; the old files are kept "
            "in an old-<time>/ subfolder)"
        )


# --------------------------------------------------------------------------------------------------- resume
def config_mismatch(checkpoint_config: dict[str, Any], cfg: TrainConfig) -> dict[str, tuple[Any, Any]]:
    """Fields (other than :data:`RESUMABLE_CHANGES`) where a checkpoint's config differs from ``cfg``."""
    diff = {}
    for key, value in cfg.to_dict().items():
        old = checkpoint_config.get(key, value)
        if key not in RESUMABLE_CHANGES and _plain(old) != _plain(value):
            diff[key] = (old, value)
    return diff


def resume_checkpoint(
    out_dir: str | os.PathLike | None,
    cfg: TrainConfig,
    resume: bool | str,
    is_main: bool = True,
    identity: dict[str, Any] | None = None,
) -> dict[str, Any] | None:
    """The checkpoint a run continues from, or None to start over (the only resume decision in cdimlab).

    ``resume`` is one of :data:`RESUME_MODES`. Nothing is ever deleted: ``False`` refuses a folder that holds a
    checkpoint (ValueError saying how to continue or start over), ``"fresh"`` and a stale checkpoint under
    ``"compatible"`` move the old files into ``out_dir/old-<time>/``; ``True`` refuses a checkpoint of another
    recipe (the fields named), data kind or one with more iterations than ``cfg.iterations``. A checkpoint of
    another experiment or model (``identity``) is refused in every mode but ``"fresh"``.
    """
    if resume not in RESUME_MODES:
        raise ValueError(f"resume must be one of {RESUME_MODES}, got {resume!r}")
    if out_dir is None:
        return None
    out_dir = Path(out_dir)
    path = out_dir / CHECKPOINT
    if resume == "fresh" or not path.is_file():
        if is_main:
            move_aside(out_dir, "starting this run over" if resume == "fresh" else "a new run starts here")
        return None
    if resume is False:
        raise ValueError(
            f"{out_dir} already holds a checkpoint ({path.name}); refusing to overwrite that work. Continue it "
            "with resume=True (CLI: --resume), start over deliberately with resume='fresh' (CLI: --fresh; the old "
            "files are moved into an old-<time>/ subfolder), or use another run folder (CLI: --runs DIR)"
        )
    ck = load_checkpoint(path)
    identity = identity or {}
    check_identity(path, ck.get("identity"), identity)
    diff = stale_fields(ck, cfg, identity)
    if not diff:
        return ck
    if resume == "compatible":
        if is_main:
            move_aside(
                out_dir, f"{path} was trained with another config ({sorted(diff)}); starting this run over"
            )
        return None
    raise ValueError(
        f"cannot resume from {path}: {resume_hint(diff)} (checkpoint value, requested value); start over "
        "deliberately with resume='fresh' (CLI: --fresh; the old files are kept in an old-<time>/ subfolder) or "
        "use another out_dir (CLI: --runs DIR)"
    )


def stale_fields(
    ck: dict[str, Any], cfg: TrainConfig, identity: dict[str, Any]
) -> dict[str, tuple[Any, Any]]:
    """What keeps ``ck`` from continuing as ``cfg``: recipe fields, the data kind, a longer finished schedule."""
    diff = config_mismatch(ck.get("config", {}), cfg)
    old_data, new_data = (ck.get("identity") or {}).get("data"), identity.get("data")
    if old_data is not None and new_data is not None and old_data != new_data:
        diff["data"] = (old_data, new_data)
    if int(ck["iteration"]) > cfg.iterations:
        diff["iterations"] = (int(ck["iteration"]), cfg.iterations)
    return diff


def resume_hint(diff: dict[str, tuple[Any, Any]]) -> str:
    """The refusal's reason in words: a run longer than asked is said plainly, other fields are listed."""
    parts = []
    if "iterations" in diff:
        done, asked = diff.pop("iterations")
        parts.append(
            f"the run already has {done} iterations, more than the {asked} asked (ask for --iterations {done} "
            "or more to continue or re-evaluate it)"
        )
    if diff:
        parts.append(f"its config differs in {diff}")
    return "; ".join(parts)
