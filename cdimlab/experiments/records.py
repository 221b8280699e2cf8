"""Where runs and results records live, and how a record is written: ``results/<profile>/<name>[.seed<k>].json``
beside ``runs/<profile>/<name>[.seed<k>]/`` (checkpoints), paths shown relative to the repository.

Used by :mod:`cdimlab.experiments.runner` (which builds the records), the CLI and :mod:`cdimlab.laptop`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from cdimlab.utils import REPO_ROOT, atomic_write_json


def seeded_name(name: str, seed: int = 0) -> str:
    """File stem of one seed's run: ``name`` for seed 0 (as ever), ``name.seed<k>`` for the others."""
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    return name if seed == 0 else f"{name}.seed{seed}"


def experiment_of(stem: str) -> str:
    """The experiment name in a record/run-folder stem (``shoes_ours.seed2`` -> ``shoes_ours``)."""
    return stem.split(".seed")[0]


def result_path(name: str, profile: str, out_root: str | os.PathLike | None = None, seed: int = 0) -> Path:
    """``<out_root>/<profile>/<name>[.seed<k>].json`` (``out_root`` defaults to ``<repo>/results``)."""
    root = Path(out_root if out_root is not None else REPO_ROOT / "results")
    return root / profile / f"{seeded_name(name, seed)}.json"


def run_dir(name: str, profile: str, runs_root: str | os.PathLike | None = None, seed: int = 0) -> Path:
    """Where checkpoints and logs of a run go: ``runs/<profile>/<name>[.seed<k>]`` (git-ignored)."""
    root = Path(runs_root if runs_root is not None else REPO_ROOT / "runs")
    return root / profile / seeded_name(name, seed)


def shown_path(path: Path) -> str:
    """A path as a committed record shows it: relative to the repository when inside it, else its last parts."""
    try:
        return Path(path).resolve().relative_to(REPO_ROOT).as_posix()
    except ValueError:
        return "/".join(Path(path).parts[-3:])


def write_record(path: str | os.PathLike, record: dict[str, Any]) -> Path | None:
    """Write a results record atomically (rank 0 only under torchrun); returns the path written, or None."""
    if int(os.environ.get("RANK", "0")) != 0:
        return None
    return atomic_write_json(path, record)


def summarize(records: list[dict[str, Any]]) -> str:
    """One line per record: name, metrics vs paper (for progress output)."""
    lines = []
    for r in records:
        m = r.get("metrics", {})
        parts = [f"{k}={m[k]:.3f} (paper {r['paper'][k]:.3f})" for k in m if k in r.get("paper", {})]
        lines.append(f"{r['experiment']:<28} " + "  ".join(parts))
    return "\n".join(lines)
