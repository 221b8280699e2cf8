"""A run folder's housekeeping: one run at a time (a lock file), stale temp files cleaned, old runs kept aside.

Introduced in notebook 02 (resuming a killed run). :func:`lock_run` makes ``<run>/run.lock`` atomically
(``O_CREAT | O_EXCL``) holding the owner's pid, host and start time: a second concurrent run of the same folder
fails with a message naming the owner, and a lock whose process is gone (a killed run) is taken over with a note.
The owner then removes temp files that an interrupted atomic write left (:func:`clean_stale_temps`). Nothing in a
run folder is deleted to start over: :func:`move_aside` moves the old files into ``<run>/old-<time>/``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from cdimlab.utils import pid_alive

LOCK = "run.lock"
# the files of a run (checkpoint.pt, best_model.pt with their .sha256 digests, log.csv)
RUN_FILES = ("checkpoint.pt", "checkpoint.pt.sha256", "best_model.pt", "best_model.pt.sha256", "log.csv")
# what cdimlab.utils.atomic_write_stream leaves when killed: ".<name>.<8 mkstemp chars>.tmp"
TEMP_PATTERN = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")
_HELD: dict[
    Path, int
] = {}  # lock path -> how many times this process holds it (run_experiment, then the loop)


class RunLockedError(RuntimeError):
    """Another live process is training into the same run folder."""


def read_lock(path: Path) -> dict:
    """The owner recorded in a lock file ({} when it is unreadable or half-written)."""
    try:
        rec = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return rec if isinstance(rec, dict) else {}


def _create(path: Path) -> float:
    """Create the lock file atomically (FileExistsError when it exists); returns the start time written."""
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    started = time.time()
    owner = {"pid": os.getpid(), "host": socket.gethostname(), "started": started, "command": sys.argv}
    with os.fdopen(fd, "w") as fh:
        json.dump(owner, fh)
    return started


def acquire(folder: Path) -> Path:
    """Take the lock of ``folder`` (re-entrant within a process); RunLockedError while another run holds it."""
    folder.mkdir(parents=True, exist_ok=True)
    path = (folder / LOCK).resolve()
    if path in _HELD:
        _HELD[path] += 1
        return path
    for _ in range(3):
        try:
            started = _create(path)
            break
        except FileExistsError:
            owner = read_lock(path)
            pid, host = owner.get("pid"), owner.get("host")
            same_host = host in (None, socket.gethostname())
            if isinstance(pid, int) and pid != os.getpid() and (not same_host or pid_alive(pid)):
                where = f"pid {pid}" + ("" if same_host else f" on {host}")
                raise RunLockedError(
                    f"{folder} is in use by another run ({where}, started "
                    f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(owner.get('started', 0)))}); wait for it "
                    f"to finish or train into another run folder (CLI: --runs DIR). If no such run exists, delete "
                    f"{path}"
                ) from None
            print(f"note: taking over the stale lock {path} (its process {pid} is gone)", file=sys.stderr)
            path.unlink(missing_ok=True)
    else:
        raise RunLockedError(f"could not lock {folder}: {path} keeps coming back; delete it and retry")
    _HELD[path] = 1
    clean_stale_temps(folder, started)
    return path


def release(path: Path) -> None:
    """Give back one hold of the lock; the last one removes the file."""
    _HELD[path] -= 1
    if _HELD[path] <= 0:
        del _HELD[path]
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def lock_run(folder: str | os.PathLike | None, enabled: bool = True) -> Iterator[None]:
    """Hold ``folder``'s lock for the duration of the block (nothing when ``folder`` is None or not ``enabled``:
    under torchrun only rank 0 writes, so only rank 0 locks)."""
    if folder is None or not enabled:
        yield
        return
    path = acquire(Path(folder))
    try:
        yield
    finally:
        release(path)


def clean_stale_temps(folder: Path, before: float) -> list[Path]:
    """Remove temp files of interrupted atomic writes in ``folder`` (cdimlab's own pattern, older than ``before``:
    the lock is held, so no live writer owns them); returns what was removed."""
    removed = []
    for p in folder.iterdir():
        if p.is_file() and TEMP_PATTERN.match(p.name) and p.stat().st_mtime < before:
            p.unlink(missing_ok=True)
            removed.append(p)
    if removed:
        print(f"note: removed {len(removed)} temp file(s) a killed run left in {folder}", file=sys.stderr)
    return removed


def move_aside(folder: Path, reason: str) -> Path | None:
    """Move the run files of ``folder`` into ``folder/old-<time>/`` (none: nothing to move, returns None)."""
    present = [folder / n for n in RUN_FILES if (folder / n).is_file()]
    if not present:
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    dest, k = folder / f"old-{stamp}", 1
    while dest.exists():
        dest, k = folder / f"old-{stamp}-{k}", k + 1
    dest.mkdir()
    for p in present:
        os.replace(p, dest / p.name)
    print(f"note: {reason}; the old files ({', '.join(p.name for p in present)}) are kept in {dest}",
          file=sys.stderr)  # fmt: skip
    return dest
