"""Result plots: training curves, acc@K and CMC curves, paper-vs-here bars, a 2-D view of embeddings.

Used by notebooks 02-06 and 08. Every function returns a ``matplotlib.figure.Figure`` built without pyplot, so
nothing is shown twice, no global figure list grows in long sessions, and no backend is forced: Jupyter's inline
backend displays a figure that is a cell's value; scripts call ``fig.savefig(...)``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from torch import Tensor

from cdimlab.metrics import acc_at_k
from cdimlab.viz.feature_maps import new_figure
from cdimlab.viz.gallery import as_distance_matrix

X_COLUMNS = ("iteration", "step", "epoch")


def _read_log(log: pd.DataFrame | str | os.PathLike, label: str) -> pd.DataFrame:
    """A training log as a DataFrame: a DataFrame, a ``log.csv`` path, or a run folder holding ``log.csv``."""
    if isinstance(log, pd.DataFrame):
        return log
    p = Path(log)
    p = p / "log.csv" if p.is_dir() else p
    if not p.is_file():
        raise FileNotFoundError(
            f"logs[{label!r}]: no training log at {p}; pass a DataFrame or a log.csv path"
        )
    return pd.read_csv(p)


def plot_training_curves(
    logs: Mapping[str, pd.DataFrame | str | os.PathLike], columns: Sequence[str] | None = None
) -> Figure:
    """One panel per logged quantity (default: ``loss`` and every ``val_*`` column), one line per run label.

    The x axis is the first of ``iteration``/``step``/``epoch`` present (else the row number). Rows where a
    column is empty (validation is logged less often than the loss) are skipped per column.
    """
    if not logs:
        raise ValueError("logs is empty; pass {label: DataFrame or log.csv path}")
    frames = {label: _read_log(log, label) for label, log in logs.items()}
    if columns is None:
        seen: list[str] = []
        for df in frames.values():
            seen += [c for c in df.columns if (c == "loss" or c.startswith("val_")) and c not in seen]
        if not seen:
            seen = [
                c for df in frames.values() for c in df.select_dtypes("number").columns if c not in X_COLUMNS
            ]
            seen = list(dict.fromkeys(seen))
        columns = seen
    if not columns:
        raise ValueError("no numeric columns to plot in the logs")
    fig = new_figure(4.0 * len(columns), 3.2)
    axes = fig.subplots(1, len(columns), squeeze=False)[0]
    for ax, col in zip(axes, columns, strict=True):
        for label, df in frames.items():
            if col not in df:
                continue
            xcol = next((c for c in X_COLUMNS if c in df), None)
            d = df[[col] + ([xcol] if xcol else [])].dropna(subset=[col])
            x = d[xcol] if xcol else d.index
            ax.plot(x, d[col], marker="o" if len(d) < 30 else None, ms=3, label=label)
        ax.set_title(col, fontsize=10)
        ax.set_xlabel(next((c for c in X_COLUMNS if any(c in df for df in frames.values())), "row"))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return fig


def plot_learning_curves(log: pd.DataFrame | str | os.PathLike | Sequence[Mapping], ax=None) -> Figure:
    """One run's training loss (left axis) and validation scores (right axis, when logged) against iteration.

    ``log`` is a ``log.csv`` path, a run folder, a DataFrame or a fit loop's log rows (``FitResult.log``).
    Draws on ``ax`` when given, else on a new Figure; returns the Figure. Introduced in notebook 02.
    """
    df = log if isinstance(log, pd.DataFrame) else None
    if df is None:
        df = _read_log(log, "log") if isinstance(log, (str, os.PathLike)) else pd.DataFrame(list(log))
    if ax is None:
        ax = new_figure(6, 3.5).subplots()
    if "loss" in df:
        d = df.dropna(subset=["loss"])
        ax.plot(d["iteration"], d["loss"], label="train loss", color="tab:blue")
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    val_cols = [c for c in df.columns if c.startswith("val_")]
    if val_cols:
        ax2 = ax.twinx()
        for c in val_cols:
            d = df.dropna(subset=[c])
            ax2.plot(d["iteration"], d[c], marker="o", ls="--", label=c)
        ax2.set_ylabel("validation")
        ax2.legend(loc="upper right", fontsize=8)
    ax.legend(loc="upper left", fontsize=8)
    return ax.figure


def acc_at_k_curve(dist: Tensor | np.ndarray | Sequence, ks: Iterable[int] = range(1, 21)) -> np.ndarray:
    """acc@K (fractions) for each K in ``ks`` from one distance matrix (or a list of views, averaged), by
    :func:`cdimlab.metrics.acc_at_k` (expected value under random tie-breaking)."""
    ks = tuple(int(k) for k in ks)
    acc = acc_at_k(as_distance_matrix(dist), ks=ks)
    return np.array([acc[k] for k in ks], dtype=np.float64)


def _percent_curve_axes(ax, xlabel: str, ylabel: str, title: str) -> None:
    """The shared look of the acc@K and CMC curves: 0-100 % axis, light grid, small legend."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 101)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)


def plot_acc_at_k_curve(
    dist_by_label: Mapping[str, Tensor | np.ndarray | Sequence], ks: Iterable[int] = range(1, 21)
) -> Figure:
    """FG-SBIR: acc@K against K, one line per model (e.g. vanilla vs fusion), in percent."""
    ks = list(ks)
    if not dist_by_label or not ks:
        raise ValueError("dist_by_label and ks must be non-empty")
    fig = new_figure(5.5, 3.8)
    ax = fig.subplots()
    for label, dist in dist_by_label.items():
        curve = 100.0 * acc_at_k_curve(dist, ks)
        ax.plot(ks, curve, marker="o", ms=3, label=f"{label} (acc@1 {curve[0]:.1f}%)")
    _percent_curve_axes(ax, "K", "acc@K (%)", "FG-SBIR: share of sketches whose photo is in the top K")
    return fig


def plot_cmc(cmc_by_label: Mapping[str, np.ndarray | Sequence[float] | tuple], max_rank: int = 20) -> Figure:
    """ReID CMC curves (fractions in [0, 1] as ``cmc_map`` returns), one per label, in percent.

    A value may also be the ``(cmc, mAP)`` tuple of ``cmc_map``; mAP then appears in the legend.
    """
    if not cmc_by_label:
        raise ValueError("cmc_by_label is empty")
    fig = new_figure(5.5, 3.8)
    ax = fig.subplots()
    for label, value in cmc_by_label.items():
        m_ap = None
        if isinstance(value, tuple) and len(value) == 2 and np.ndim(value[1]) == 0:
            value, m_ap = value
        cmc = np.asarray(value.cpu() if isinstance(value, Tensor) else value, dtype=np.float64)[:max_rank]
        ranks = np.arange(1, len(cmc) + 1)
        extra = f", mAP {100 * m_ap:.1f}%" if m_ap is not None else ""
        ax.plot(ranks, 100 * cmc, marker="o", ms=3, label=f"{label} (rank-1 {100 * cmc[0]:.1f}%{extra})")
    _percent_curve_axes(ax, "rank", "matching rate (%)", "ReID: cumulative matching characteristic")
    return fig


def _pick(df: pd.DataFrame, name: str | None, candidates: Sequence[str], what: str) -> str | None:
    if name is not None:
        if name not in df:
            raise ValueError(f"{what}={name!r} is not a column of df (columns: {list(df.columns)})")
        return name
    return next((c for c in candidates if c in df), None)


def plot_paper_vs_here(
    df: pd.DataFrame,
    label_col: str | None = None,
    paper_col: str | None = None,
    here_col: str | None = None,
    title: str | None = None,
) -> Figure:
    """Horizontal bars per row: the paper's number beside ours (missing values are left blank).

    Columns are found by name unless given: label ``row``/``method``/``name`` (else the index, joined with a
    ``metric`` column when there is one), paper ``paper``, here ``here``/``ours``/``value``. Deltas are printed
    at the end of each pair of bars.
    """
    if len(df) == 0:
        raise ValueError("df has no rows")
    pcol = _pick(df, paper_col, ("paper",), "paper_col")
    hcol = _pick(df, here_col, ("here", "ours", "value"), "here_col")
    if pcol is None or hcol is None:
        raise ValueError(
            f"df needs a 'paper' and a 'here' column (or pass paper_col/here_col); has {list(df.columns)}"
        )
    lcol = _pick(df, label_col, ("row", "method", "name"), "label_col")
    labels = (df[lcol] if lcol else pd.Series(df.index, index=df.index)).astype(str)
    if "metric" in df and lcol != "metric":
        labels = labels + " " + df["metric"].astype(str)
    paper = pd.to_numeric(df[pcol], errors="coerce").to_numpy(dtype=float)
    here = pd.to_numeric(df[hcol], errors="coerce").to_numpy(dtype=float)
    y = np.arange(len(df))
    fig = new_figure(7.0, 0.5 * len(df) + 1.2)
    ax = fig.subplots()
    ax.barh(y - 0.2, paper, height=0.4, label="paper", color="#7f7f7f")
    ax.barh(y + 0.2, here, height=0.4, label="here", color="#1f77b4")
    for yi, p, h in zip(y, paper, here, strict=True):
        if np.isfinite(p) and np.isfinite(h):
            ax.text(max(p, h), yi, f"  {h - p:+.1f}", va="center", fontsize=8)
    ax.set_yticks(y, labels.tolist(), fontsize=8)
    ax.invert_yaxis()
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(title or "paper vs here", fontsize=10)
    return fig


def pca_2d(emb: Tensor | np.ndarray) -> np.ndarray:
    """Project embeddings ``(N, D)`` onto their first two principal components (``torch.pca_lowrank``).

    Deterministic: the randomised solver runs under a fixed seed and each component's sign is fixed so its
    largest-magnitude loading is positive.
    """
    x = torch.as_tensor(np.asarray(emb) if not isinstance(emb, Tensor) else emb.detach().cpu()).double()
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"emb must be (N, D) with N >= 2, got shape {tuple(x.shape)}")
    q = min(2, x.shape[1])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        _, _, v = torch.pca_lowrank(x, q=q, center=True, niter=4)
    v = v[:, :q]
    signs = torch.sign(v.gather(0, v.abs().argmax(dim=0, keepdim=True)))
    coords = (x - x.mean(0)) @ (v * signs)
    if q == 1:
        coords = torch.cat([coords, torch.zeros_like(coords)], dim=1)
    return coords.numpy()


def embedding_2d(
    emb: Tensor | np.ndarray,
    labels: Sequence | np.ndarray | Tensor,
    domains: Sequence | np.ndarray | None = None,
    title: str | None = None,
) -> Figure:
    """Scatter of the 2-D PCA of ``emb`` coloured by ``labels`` (identity / instance); marker by ``domains``.

    A good cross-domain embedding puts a sketch next to its photo (or two cameras of a person together).
    """
    xy = pca_2d(emb)
    lab = np.asarray(labels.cpu() if isinstance(labels, Tensor) else labels).reshape(-1)
    if len(lab) != len(xy):
        raise ValueError(f"labels has {len(lab)} entries but emb has {len(xy)} rows")
    dom = np.zeros(len(xy), dtype=int) if domains is None else np.asarray(domains).reshape(-1)
    if len(dom) != len(xy):
        raise ValueError(f"domains has {len(dom)} entries but emb has {len(xy)} rows")
    _, lab_idx = np.unique(lab, return_inverse=True)
    fig = new_figure(5.0, 4.5)
    ax = fig.subplots()
    markers = "o^sPDv*X"
    for i, d in enumerate(np.unique(dom)):
        sel = dom == d
        ax.scatter(xy[sel, 0], xy[sel, 1], c=lab_idx[sel], cmap="tab20", vmin=0, vmax=max(19, lab_idx.max()),
                   marker=markers[i % len(markers)], s=28, edgecolors="k", linewidths=0.3,
                   label=str(d) if domains is not None else None)  # fmt: skip
    if domains is not None:
        ax.legend(fontsize=8)
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.set_title(title or f"embeddings (PCA), {len(np.unique(lab))} labels", fontsize=10)
    return fig
