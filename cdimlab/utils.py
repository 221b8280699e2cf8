"""Small shared helpers: atomic writes, seeding, device choice, run provenance.

Introduced in notebook 00 (environment check); used by every module that writes files.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import platform
import random
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent


def _umask_mode() -> int:
    """The permission bits a plain ``open(..., "w")`` would give (mkstemp always uses 0600)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _atomic_write(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temp file in the same folder + ``os.replace``.

    A reader never sees a half-written file under the final name, even if the process is killed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, _umask_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Atomically write raw bytes (temp file + rename)."""
    return _atomic_write(path, data)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Atomically write UTF-8 text (temp file + rename)."""
    return _atomic_write(path, text.encode("utf-8"))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Atomically write ``obj`` as indented JSON (numpy / torch scalars and arrays allowed)."""
    return _atomic_write(path, (json.dumps(obj, indent=2, default=_json_default) + "\n").encode("utf-8"))


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` through a temp file + rename, so a killed run never leaves a torn checkpoint."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    return _atomic_write(path, buf.getvalue())


@contextlib.contextmanager
def atomic_directory(dest: str | os.PathLike) -> Iterator[Path]:
    """Build a folder in a temp sibling of ``dest`` and swap it in with one ``os.replace`` on success.

    Yields the temp folder to fill. On any error the temp folder is removed and ``dest`` is left as it was, so a
    half-extracted dataset never sits under its final name. An existing ``dest`` is replaced.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}."))
    try:
        yield tmp
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a CPU ``torch.Generator`` seeded with ``seed``.

    Code that samples (triplets, augmentation) should take this generator explicitly rather than
    rely on global state, so a seed gives the same result on the CPU.
    """
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """Turn ``"auto"``/``None`` into ``cuda`` when available, else ``cpu``; validate explicit names.

    Raises a ValueError naming the argument when CUDA is requested but absent.
    """
    if device is None or (isinstance(device, str) and device == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device={str(device)!r} was requested but torch sees no CUDA GPU; use device='cpu' or 'auto'"
        )
    return dev


def git_commit(repo: str | os.PathLike = REPO_ROOT) -> str | None:
    """The current git commit of the project (``None`` outside a git checkout)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10, check=True
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def env_info(device: str | torch.device | None = None) -> dict[str, Any]:
    """Provenance for results files: versions, device name, git commit."""
    dev = resolve_device(device if device is not None else "auto")
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else (platform.processor() or "cpu")
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "device": str(dev),
        "device_name": name,
        "cpu_count": os.cpu_count(),
        "git_commit": git_commit(),
    }


def default_data_root() -> Path:
    """Where datasets live: ``$CDIMLAB_DATA`` if set, else ``<repo>/data`` (git-ignored)."""
    env = os.environ.get("CDIMLAB_DATA")
    return Path(env).expanduser() if env else REPO_ROOT / "data"
