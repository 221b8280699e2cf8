"""Glue for the course notebooks: environment check, profile choice, side-by-side training, small teaching helpers.

Everything here is short and calls the rest of cdimlab; it exists so that notebook cells stay short (a cell that
would need more than ~15 lines calls a function from this module instead). Introduced in notebook 00.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cdimlab.data import decode_images
from cdimlab.environment import (  # noqa: F401  (re-exported for the notebooks)
    REAL_DATASETS,
    datasets_status,
    environment_report,
    package_versions,
    resolve_profile,
    results_dir,
    widgets_available,
)
from cdimlab.evidence import (
    LaptopView,
    SeedComparison,
    alignment_probe,
    compare_over_seeds,
    laptop_results,
    summarize_seed_pair,
)
from cdimlab.experiments import (
    PROFILES,
    build_model,
    fit,
    get_experiment,
    load_reid_index,
    load_sbir_splits,
    load_trained,
    run_dir,
)
from cdimlab.train import best_weights_path
from cdimlab.utils import resolve_device, seed_everything
from cdimlab.viz.feature_maps import draw_image, new_figure, to_display

# ------------------------------------------------------------------------------------------------ teaching helpers
PAPER_URL = "https://arxiv.org/abs/1711.08106"  # Yu et al., "The Devil is in the Middle" (arXiv 1711.08106)
# The paper's Table 1: (dataset, unit, train, test, train images, query images, gallery images)
_TABLE1 = (
    ("QMUL-Shoe", "sketch-photo pairs", 304, 115, None, None, None),
    ("QMUL-Chair", "sketch-photo pairs", 200, 97, None, None, None),
    ("QMUL-Handbag", "sketch-photo pairs", 400, 168, None, None, None),
    ("Market-1501", "identities", 751, 750, 12_936, 3_368, 19_732),
)


def paper_dataset_sizes():
    """The paper's Table 1 as a DataFrame: train/test sizes of the real datasets (notebook 00).

    FG-SBIR rows count sketch-photo pairs (each test sketch is ranked against all test photos); Market-1501 counts
    identities, with its image counts beside them. The synthetic stand-ins are smaller on purpose.
    """
    import pandas as pd

    cols = ["unit", "train", "test", "train images", "query images", "gallery images"]
    df = pd.DataFrame([row[1:] for row in _TABLE1], index=[row[0] for row in _TABLE1], columns=cols)
    df.index.name = "dataset"
    return df.astype({c: "Int64" for c in cols[1:]})


def chance_acc_at_k(gallery_size: int, k: int) -> float:
    """Expected acc@K of a random ranking with one true match among ``gallery_size`` items: ``min(k, n) / n``.

    Notebooks assert that a trained model beats this floor by a margin (notebooks 00, 02, 04).
    """
    if gallery_size < 1:
        raise ValueError(f"gallery_size must be >= 1, got {gallery_size}")
    return min(k, gallery_size) / gallery_size


def loss_went_down(losses: Sequence[float], fraction: float = 0.25) -> bool:
    """True when the mean of the last ``fraction`` of ``losses`` is below the mean of the first ``fraction``.

    Single losses are noisy, windowed means less so; still, use it only where a run is long enough to learn
    (a full-profile run, or a smoke classifier); short smoke triplet runs use :func:`loss_is_stable`.
    """
    first, last = _loss_windows(losses, fraction)
    return last < first


def loss_is_stable(losses: Sequence[float], fraction: float = 0.25, slack: float = 0.25) -> bool:
    """True when every loss is finite and the last window's mean is at most ``(1 + slack)`` x the first's.

    The smoke-profile check for runs too short to promise progress: training ran and did not diverge.
    """
    if any(not np.isfinite(float(v)) for v in losses):
        return False
    first, last = _loss_windows(losses, fraction)
    return last <= (1.0 + slack) * first + 1e-12


def _loss_windows(losses: Sequence[float], fraction: float) -> tuple[float, float]:
    """Means of the first and the last ``fraction`` of the (non-NaN) losses (one value: both windows are it)."""
    vals = [float(v) for v in losses if v == v]
    if not vals:
        raise ValueError("no loss values to compare (is the log empty?)")
    n = max(1, int(len(vals) * fraction))
    return float(np.mean(vals[:n])), float(np.mean(vals[-n:]))


def losses_from_log(log: Sequence[Mapping[str, Any]]) -> list[float]:
    """The training-loss values of a fit loop's log rows (rows without a ``loss`` are evaluations)."""
    return [float(r["loss"]) for r in log if r.get("loss") is not None and r.get("loss") == r.get("loss")]


@dataclass
class SideBySide:
    """Result of :func:`train_side_by_side`: metrics per variant, the fit results, and the wall time."""

    metrics: dict[str, dict[str, float]]
    fits: dict[str, Any] = field(repr=False)
    models: dict[str, torch.nn.Module] = field(repr=False)
    wall_s: float = 0.0

    def table(self):
        """Metrics as a pandas DataFrame (one row per variant), percentages rounded for reading."""
        import pandas as pd

        return (pd.DataFrame(self.metrics).T * 100).round(2)


def train_side_by_side(
    variants: Mapping[str, Callable[[], torch.nn.Module]],
    fit: Callable[[torch.nn.Module], Any],
    evaluate: Callable[[torch.nn.Module], dict[str, float]],
    seed: int = 0,
) -> SideBySide:
    """Build, train and evaluate each variant under one recipe and one seed (notebooks 04, 05, 06).

    ``variants`` maps a label to a zero-argument model builder (called after seeding, so every variant starts
    from the same random state); ``fit(model)`` trains it (e.g. ``fit_triplet`` with fixed data and config) and
    ``evaluate(model)`` returns metrics. Seeding per variant makes the comparison fair: only the architecture
    differs.
    """
    t0 = time.perf_counter()
    metrics, fits, models = {}, {}, {}
    for label, build in variants.items():
        seed_everything(seed)
        model = build()
        fits[label] = fit(model)
        models[label] = getattr(fits[label], "model", model)
        metrics[label] = evaluate(models[label])
    return SideBySide(metrics, fits, models, time.perf_counter() - t0)


# ------------------------------------------------------------------------------------------------ data and configs
def profile_config(experiment: str, profile: str, **overrides: Any):
    """The :class:`cdimlab.train.TrainConfig` of ``experiment`` in ``profile``, with every non-None override applied.

    Notebook parameters such as ``iterations = None`` mean "the profile's value", so a parameters cell of literals
    can leave the recipe alone or change one knob.
    """
    cfg = get_experiment(experiment).config(profile)
    return replace(cfg, **{k: v for k, v in overrides.items() if v is not None})


@dataclass
class SBIRData:
    """A QMUL-format FG-SBIR dataset split for training: train / validation (carved from train) / test."""

    category: str
    path: Path
    synthetic: bool
    train: Any
    val: Any
    test: Any


def sbir_data(category: str, data_root: Any = None, seed: int = 0, val_fraction: float = 0.1) -> SBIRData:
    """Locate ``category`` (real QMUL data, else the synthetic stand-in), load both splits, carve a validation
    split out of train (early stopping never looks at the test split). Notebooks 00, 02, 04, 06, 07."""
    d = load_sbir_splits(category, data_root, seed, val_fraction)
    return SBIRData(category, Path(d.source["path"]), d.source["kind"] == "synthetic", d.train, d.val, d.test)


@dataclass
class ReIDCourseData:
    """A ReID dataset for the notebooks: the index (:class:`cdimlab.data.ReIDData`) and, when decoded, the
    training images (uint8 N x H x W x 3) with their identity labels."""

    name: str
    path: Path
    synthetic: bool
    data: Any
    train_images: np.ndarray | None = None
    train_labels: torch.Tensor | None = None


def reid_data(
    name: str,
    data_root: Any = None,
    size: tuple[int, int] = (256, 128),
    max_ids: int | None = None,
    decode_train: bool = True,
    progress: bool = True,
) -> ReIDCourseData:
    """Locate and index a ReID dataset; on real data keep only ``max_ids`` identities when given (a smoke run on
    real data); decode the training images at ``size`` when ``decode_train``. Notebooks 00, 03, 05, 07."""
    d = load_reid_index(name, data_root, max_ids)
    data = d.reid
    out = ReIDCourseData(name, Path(d.source["path"]), d.source["kind"] == "synthetic", data)
    if decode_train:
        out.train_images = decode_images([e[0] for e in data.train], size=tuple(size), progress=progress)
        out.train_labels = torch.as_tensor([e[1] for e in data.train])
    return out


def two_camera_pairs(
    data: Any, n: int = 5, size: tuple[int, int] = (128, 64)
) -> tuple[np.ndarray, np.ndarray]:
    """For the first ``n`` training identities seen by two cameras: one image from each camera (uint8 N x H x W x 3).

    Used to show ReID's two "domains" (notebooks 00, 07).
    """
    first: dict[int, tuple[str, int]] = {}
    pairs: list[tuple[str, str]] = []
    for path, pid, cam in data.train:
        if pid not in first:
            first[pid] = (path, cam)
        elif first[pid][1] != cam and first[pid][0] is not None:
            pairs.append((first[pid][0], path))
            first[pid] = (None, cam)  # type: ignore[assignment]
        if len(pairs) == n:
            break
    if not pairs:
        raise ValueError(f"{getattr(data, 'name', 'dataset')}: no training identity is seen by two cameras")
    a = decode_images([p for p, _ in pairs], size=tuple(size), progress=False)
    b = decode_images([q for _, q in pairs], size=tuple(size), progress=False)
    return a, b


def show_pairs(top: Any, bottom: Any, labels: tuple[str, str] = ("sketch", "photo")):
    """A 2-row figure: ``top[i]`` above ``bottom[i]`` (aligned pairs), labelled rows. Returns the Figure."""
    return show_rows([top, bottom], labels)


def show_rows(rows: Sequence[Any], labels: Sequence[str]):
    """One row of images per entry of ``rows`` (column i aligned across rows), each labelled; returns the Figure.

    E.g. anchor sketches, positive photos and negative photos of a triplet batch (notebook 02).
    """
    if len(rows) != len(labels) or not rows:
        raise ValueError(f"give one label per row: {len(rows)} rows, {len(labels)} labels")
    n = min(len(r) for r in rows)
    if n == 0:
        raise ValueError("show_rows needs at least one image in every row")
    fig = new_figure(1.8 * n, 2.0 * len(rows))
    axes = fig.subplots(len(rows), n, squeeze=False)
    for r, (images, label) in enumerate(zip(rows, labels, strict=True)):
        for i in range(n):
            draw_image(axes[r, i], to_display(images[i]), f"{label} {i}")
    return fig


def trained_model(
    experiment: str,
    profile: str,
    data_root: Any = None,
    device: Any = "auto",
    seed: int = 0,
    num_classes: int | None = None,
    train_if_missing: bool = True,
    runs_root: Any = None,
) -> tuple[torch.nn.Module, Any, str]:
    """A trained model of ``experiment`` for visualisation (notebook 07): ``(model in eval mode, cfg, source)``.

    Loads ``runs/<profile>/<experiment>/best_model.pt`` when an earlier run (``run_experiment``, ``make reproduce``,
    notebook 06/08) left one (``runs_root`` overrides ``runs/``); otherwise trains it now with the profile's recipe
    into that folder when ``train_if_missing``, or returns the untrained model. ``source`` says which, for the
    notebook to print.
    """
    exp, dev = get_experiment(experiment), resolve_device(device)
    cfg, folder = exp.config(profile), run_dir(experiment, profile, runs_root)
    seed_everything(seed)
    try:
        model, _ = load_trained(folder, exp, dev, cfg)
        return model, cfg, f"loaded {best_weights_path(folder)}"
    except (FileNotFoundError, RuntimeError):  # no run yet, or one with another input size / class count
        pass
    if not train_if_missing:
        model = _untrained(exp, cfg, data_root, num_classes, dev)
        return model, cfg, "untrained (random weights): no earlier run found"
    data = load_sbir_splits(exp.dataset, data_root, seed) if exp.task == "fgsbir" else (
        load_reid_index(exp.dataset, data_root, cfg.max_ids))  # fmt: skip
    trained = fit(
        exp, cfg, data, dev, folder, resume="fresh", progress=True, profile=profile
    )  # old files kept aside
    its = trained.fit.iterations_run if trained.fit is not None else 0
    return trained.model.eval(), cfg, f"trained now ({its} iterations, saved to {folder})"


@dataclass
class ExplorerModel:
    """The FG-SBIR model notebook 07 looks inside: the net, its config, where it came from, the taps to show and
    the layer the text is about (the fused mid-level layer)."""

    model: torch.nn.Module
    cfg: Any
    source: str
    experiment: str
    profile: str
    taps: tuple[str, ...]
    layer: str
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))


_LAPTOP_EXPLORER = ("shoes_ours", "shoes_mnv2_ours")  # laptop-trained models whose maps have spatial extent


def explorer_model(
    experiment: str,
    profile: str,
    data_root: Any = None,
    device: Any = "cpu",
    seed: int = 0,
    runs_root: Any = None,
) -> ExplorerModel:
    """A laptop-trained FG-SBIR model when ``runs/laptop/shoes_ours`` or ``runs/laptop/shoes_mnv2_ours`` holds one
    (real data; `conv5` is 5x5 at 177 px), else :func:`trained_model` of ``experiment`` in ``profile`` (notebook 07).
    """
    dev = resolve_device(device)
    for name in _LAPTOP_EXPLORER:
        folder = run_dir(name, "laptop", runs_root)
        if best_weights_path(folder).is_file():
            exp = get_experiment(name)
            try:
                model, cfg = load_trained(folder, exp, dev, exp.config("laptop"))
            except (FileNotFoundError, RuntimeError) as err:  # e.g. ImageNet weights absent on this machine
                print(f"note: could not load {folder} ({err}); trying the next model")
                continue
            return _explorer_of(model.eval(), cfg, f"loaded the laptop-trained {best_weights_path(folder)}",
                                name, "laptop")  # fmt: skip
    model, cfg, source = trained_model(experiment, profile, data_root, dev, seed=seed, runs_root=runs_root)
    return _explorer_of(model, cfg, source, experiment, profile)


def _explorer_of(model: torch.nn.Module, cfg: Any, source: str, name: str, profile: str) -> ExplorerModel:
    """Taps: Sketch-a-Net's conv3-conv5, else the fused tap with one earlier and one later block."""
    names = tuple(model.backbone.tap_names)
    fused = get_experiment(name).fusion.taps
    layer = fused[0] if fused else names[-1]
    if {"conv3", "conv4", "conv5"} <= set(names):
        taps = ("conv3", "conv4", "conv5")
    else:
        i = names.index(layer)
        taps = tuple(dict.fromkeys((names[max(0, i - 4)], layer, names[min(len(names) - 1, i + 4)])))
    return ExplorerModel(model, cfg, source, name, profile, taps, layer, next(model.parameters()).device)


def _untrained(
    exp: Any, cfg: Any, data_root: Any, num_classes: int | None, dev: torch.device
) -> torch.nn.Module:
    """The experiment's network with random weights (the class count read from the data when not given)."""
    if exp.task == "reid" and num_classes is None:
        num_classes = load_reid_index(exp.dataset, data_root, cfg.max_ids).reid.num_train_pids
    return build_model(exp, cfg, num_classes=num_classes).to(dev).eval()


def dataset_switch(explorers: Mapping[str, Any]):
    """A ``dataset`` dropdown above the chosen explorer's widget (notebook 07: sketch ↔ photo or two cameras).

    ``explorers`` maps a label to a :class:`cdimlab.viz.explorer.FeatureMapExplorer`; choosing a label swaps the
    explorer shown below the dropdown. Returns the ipywidgets ``VBox`` (ImportError without ipywidgets).
    """
    import ipywidgets as widgets

    if not explorers:
        raise ValueError("explorers is empty; pass {label: FeatureMapExplorer}")
    names = list(explorers)
    choice = widgets.Dropdown(options=names, value=names[0], description="dataset")
    box = widgets.VBox([choice, explorers[names[0]].widget])

    def _swap(change: dict) -> None:
        box.children = (choice, explorers[change["new"]].widget)

    choice.observe(_swap, names="value")
    return box


__all__ = [
    "ExplorerModel",
    "LaptopView",
    "PROFILES",
    "explorer_model",
    "SeedComparison",
    "alignment_probe",
    "compare_over_seeds",
    "laptop_results",
    "summarize_seed_pair",
    "ReIDCourseData",
    "SBIRData",
    "profile_config",
    "reid_data",
    "sbir_data",
    "show_pairs",
    "show_rows",
    "two_camera_pairs",
    "PAPER_URL",
    "REAL_DATASETS",
    "paper_dataset_sizes",
    "SideBySide",
    "chance_acc_at_k",
    "dataset_switch",
    "datasets_status",
    "environment_report",
    "loss_is_stable",
    "loss_went_down",
    "losses_from_log",
    "package_versions",
    "resolve_profile",
    "results_dir",
    "train_side_by_side",
    "trained_model",
    "widgets_available",
]
