"""The learner's environment: package versions, widgets, which datasets are real here, and the profile to run.

Introduced in notebook 00 (setup); :mod:`cdimlab.course` re-exports every name, so notebooks call
``course.environment_report()`` and ``course.resolve_profile(profile)``.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from cdimlab.data import locate_dataset
from cdimlab.experiments import PROFILES
from cdimlab.utils import REPO_ROOT, default_data_root, env_info

REAL_DATASETS = ("shoes", "chairs", "handbags", "market1501", "dukemtmc", "cuhk03_labeled", "cuhk03_detected")
_VERSION_PACKAGES = ("torch", "torchvision", "numpy", "matplotlib", "ipywidgets", "pytorch_grad_cam", "tqdm")


# ------------------------------------------------------------------------------------------------ environment
def package_versions(names: Sequence[str] = _VERSION_PACKAGES) -> dict[str, str | None]:
    """``{package: version}`` for the packages the course uses; ``None`` for one that is not installed."""
    out: dict[str, str | None] = {}
    for name in names:
        try:
            mod = importlib.import_module(name)
        except ImportError:
            out[name] = None
            continue
        out[name] = getattr(mod, "__version__", "installed")
    return out


def widgets_available() -> bool:
    """True when ipywidgets 8+ is importable *and* a Jupyter kernel is running (so widgets can render).

    Outside a kernel (plain python, or nbval's headless run without a front end) the notebooks show static
    figures instead; that path is what the tests exercise.
    """
    try:
        import ipywidgets
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    kernel = shell is not None and getattr(shell, "kernel", None) is not None
    return kernel and int(ipywidgets.__version__.split(".")[0]) >= 8


def datasets_status(data_root: str | os.PathLike | None = None) -> dict[str, str]:
    """For each real dataset name: ``"real"`` when it is found under ``data_root``, else ``"missing"``.

    Uses :func:`cdimlab.data.locate_dataset` with ``allow_synthetic=False``; synthetic stand-ins are always
    available (generated on demand), so they are not listed.
    """
    root = Path(data_root) if data_root is not None else default_data_root()
    out = {}
    for name in REAL_DATASETS:
        try:
            loc = locate_dataset(name, root, allow_synthetic=False)
            out[name] = "missing" if getattr(loc, "synthetic", False) else "real"
        except (FileNotFoundError, ValueError, OSError):
            out[name] = "missing"
    return out


def environment_report(data_root: str | os.PathLike | None = None) -> dict[str, Any]:
    """Everything notebook 00 checks: versions, device (CUDA or not), widgets, datasets present, data root."""
    info = env_info()
    return {
        "python": info["python"],
        "packages": package_versions(),
        "cuda": torch.cuda.is_available(),
        "device": info["device"],
        "device_name": info["device_name"],
        "cpu_count": info["cpu_count"],
        "widgets": widgets_available(),
        "data_root": str(Path(data_root) if data_root is not None else default_data_root()),
        "datasets": datasets_status(data_root),
    }


def resolve_profile(profile: str, task_datasets: Sequence[str] = (), data_root: Any = None) -> str:
    """The profile a notebook actually runs: ``"smoke"``, ``"laptop"`` or ``"full"``.

    ``"auto"`` picks ``full`` only with a GPU and every dataset in ``task_datasets`` present as real data, else
    ``smoke``. ``"laptop"`` (real data on a CPU) prints a note naming the datasets of ``task_datasets`` that are
    missing (notebooks then show committed laptop records, or say how to make them). An explicit ``"full"`` without
    a GPU still runs (slowly) but prints a warning; an unknown profile is a ValueError naming the parameter.
    """
    if profile not in (*PROFILES, "auto"):
        raise ValueError(f"parameter profile must be one of {(*PROFILES, 'auto')}, got {profile!r}")
    status = datasets_status(data_root) if profile in ("auto", "laptop") and task_datasets else {}
    has_data = bool(task_datasets) and all(status.get(d) == "real" for d in task_datasets)
    if profile == "auto":
        return "full" if torch.cuda.is_available() and has_data else "smoke"
    if profile == "laptop" and task_datasets and not has_data:
        missing = [d for d in task_datasets if status.get(d) != "real"]
        print(f"note: profile='laptop' uses real data only; missing here: {missing} "
              "(python data_scripts/download_qmul_v1.py, data_scripts/prepare_reid.py)")  # fmt: skip
    if profile == "full" and not torch.cuda.is_available():
        print(
            "warning: profile='full' without a CUDA GPU will take many hours; use 'smoke' or 'laptop' on a CPU"
        )
    return profile


def results_dir(profile: str) -> Path:
    """Where experiment results of ``profile`` live: ``<repo>/results/<profile>``."""
    return REPO_ROOT / "results" / profile
