"""Small shared helpers: atomic writes, seeding, device choice, run provenance.

Introduced in notebook 00 (environment check); used by every module that writes files.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows (``/proc/self/status`` on Linux).

    Elsewhere it falls back to the ``os.umask`` set-and-restore dance, which is process-wide and not thread-safe.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """Permission bits a plain ``open(..., "w")`` gives (``0o666 & ~umask``, 0644 under umask 022).

    ``tempfile.mkstemp`` always makes 0600 files; files renamed into place get these bits instead, so learners on a
    shared machine can read what the instructor wrote.
    """
    return 0o666 & ~current_umask()


def dir_mode() -> int:
    """Permission bits a plain ``os.mkdir`` gives (``0o777 & ~umask``), not ``tempfile.mkdtemp``'s 0700."""
    return 0o777 & ~current_umask()


def atomic_write_stream(path: str | os.PathLike, write: Callable[[BinaryIO], Any]) -> Path:
    """Call ``write(fh)`` on a temp file in ``path``'s folder, fsync, give it normal permissions, ``os.replace``.

    The one atomic writer of the package: a reader never sees a half-written file under the final name, even if
    the process is killed, and nothing is held in memory twice (``np.save``/``torch.save`` stream into ``fh``).
    On any error the temp file is removed and an older ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _atomic_write(path: str | os.PathLike, data: bytes) -> Path:
    """Atomically write a bytes-like ``data`` (see :func:`atomic_write_stream`)."""
    return atomic_write_stream(path, lambda fh: fh.write(data))


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
    return atomic_write_stream(path, lambda fh: torch.save(obj, fh))


def pid_alive(pid: int) -> bool:
    """True when process ``pid`` exists on this machine (signal 0 checks without sending anything)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    return True


def temp_prefix(dest: Path) -> str:
    """Name prefix of a temp sibling of ``dest`` (a staging folder, a ``.part`` download): ``.<name>.pid<N>.``, so
    a later run can tell which ones a killed process left behind (:func:`remove_orphans`)."""
    return f".{dest.name}.pid{os.getpid()}."


def remove_orphans(dest: Path) -> list[Path]:
    """Remove the temp siblings of ``dest`` (named by :func:`temp_prefix`) whose process is gone -- what a SIGKILL
    left: half-extracted staging folders, ``.part`` downloads. A live process's temp files are left alone."""
    pattern = re.compile(rf"^\.{re.escape(dest.name)}\.pid(\d+)\.")
    removed = []
    for p in dest.parent.iterdir() if dest.parent.is_dir() else []:
        m = pattern.match(p.name)
        if m and not pid_alive(int(m.group(1))):
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
            removed.append(p)
    if removed:
        print(f"note: removed {len(removed)} temp file(s)/folder(s) a killed process left beside {dest}",
              file=sys.stderr)  # fmt: skip
    return removed


@contextlib.contextmanager
def atomic_directory(dest: str | os.PathLike) -> Iterator[Path]:
    """Build a folder in a temp sibling of ``dest`` and swap it in only once it is complete.

    Yields the temp folder to fill (normal ``0o777 & ~umask`` permissions, not mkdtemp's 0700). On success an
    existing ``dest`` is renamed aside, the new folder renamed in, and only then the old one deleted, so ``dest``
    always holds a complete copy (old or new). On any error the temp folder is removed and ``dest`` is left as it was;
    staging folders of a killed earlier run are removed first (:func:`remove_orphans`).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    remove_orphans(dest)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=temp_prefix(dest)))
    try:
        os.chmod(tmp, dir_mode())
        yield tmp
        _swap_in(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _swap_in(new: Path, dest: Path) -> None:
    """Rename ``dest`` aside (if any), rename ``new`` to ``dest``, then delete the old copy; undo on failure."""
    if not dest.exists() and not dest.is_symlink():
        os.replace(new, dest)
        return
    aside = Path(tempfile.mkdtemp(dir=dest.parent, prefix=temp_prefix(dest) + "old."))
    old = aside / dest.name
    os.replace(dest, old)
    try:
        os.replace(new, dest)
    except BaseException:
        os.replace(old, dest)
        aside.rmdir()
        raise
    shutil.rmtree(aside, ignore_errors=True)


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


@functools.cache
def code_version(repo: str | os.PathLike = REPO_ROOT) -> tuple[str | None, bool | None]:
    """(commit, dirty) of the code this process runs: read once, at the first call (``cdimlab.utils`` makes it
    at import), so a record written hours later by a long run names the commit it started from, not whatever
    HEAD is by then. ``dirty``: tracked files differed from that commit (None outside a git checkout)."""
    commit = git_commit(repo)
    if commit is None:
        return None, None
    try:
        out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                             capture_output=True, text=True, timeout=10, check=True)  # fmt: skip
        return commit, bool(out.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return commit, None


def env_info(device: str | torch.device | None = None) -> dict[str, Any]:
    """Provenance for results files: versions, device name, and the git commit this process started from
    (:func:`code_version`; ``git_dirty`` when its tracked files had uncommitted changes then)."""
    dev = resolve_device(device if device is not None else "auto")
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else (platform.processor() or "cpu")
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "device": str(dev),
        "device_name": name,
        "cpu_count": os.cpu_count(),
        "git_commit": code_version()[0],
        "git_dirty": code_version()[1],
    }


def default_data_root() -> Path:
    """Where datasets live: ``$CDIMLAB_DATA`` if set, else ``<repo>/data`` (git-ignored)."""
    env = os.environ.get("CDIMLAB_DATA")
    return Path(env).expanduser() if env else REPO_ROOT / "data"


code_version()  # the code this process runs: fixed now, not when a long run writes its record
