"""The laptop track: the paper's central comparison, Vanilla vs mid-level fusion, on real data on 2 CPU cores.

Introduced in notebook 04 and used by notebooks 05 and 08 and ``python -m cdimlab laptop``. Each (Vanilla, Ours)
pair of :data:`cdimlab.experiments.LAPTOP_PAIRS` runs over several seeds through the one runner
(:func:`cdimlab.experiments.run_experiment`, profile ``laptop``: real data only, never synthetic), and
:func:`summarize_pairs` sets, per pair, the trained mean ± std over seeds beside the same networks' untrained
score and chance, with how often Ours beat Vanilla. Records: ``results/laptop/<name>[.seed<k>].json``.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from cdimlab.experiments import LAPTOP_PAIRS, get_experiment, result_path, run_dir, run_experiment
from cdimlab.utils import REPO_ROOT, atomic_write_text
from cdimlab.viz.plots import plot_learning_curves

PROFILE = "laptop"
HEADLINE = {"fgsbir": "acc@1", "reid": "rank1"}  # the metric each pair's verdict is read from
SHOWN = {"fgsbir": ("acc@1", "acc@10"), "reid": ("rank1", "mAP", "mq_rank1", "mq_mAP")}


def pairs_for(datasets: Sequence[str] | None = None) -> list[tuple[str, str]]:
    """The laptop pairs whose dataset is in ``datasets`` (all when None), e.g. ``["shoes", "market1501"]``."""
    if not datasets:
        return list(LAPTOP_PAIRS)
    out = [p for p in LAPTOP_PAIRS if get_experiment(p[0]).dataset in datasets]
    if not out:
        known = sorted({get_experiment(p[0]).dataset for p in LAPTOP_PAIRS})
        raise ValueError(f"no laptop pair for datasets {list(datasets)}; known: {known}")
    return out


def run_track(seeds: Sequence[int] = (0,), datasets: Sequence[str] | None = None, data_root: Any = None,
              out_root: Any = None, runs_root: Any = None, device: str = "cpu", force: bool = False,
              log: Callable[[str], None] = print, progress: bool = False) -> list[dict[str, Any]]:  # fmt: skip
    """Run every laptop pair for every seed (records already written are reused unless ``force``).

    Seeds go outermost, so one seed of every dataset finishes before the next seed starts. A pair whose data is
    missing is reported and skipped (the message names the path and the command that prepares it).
    """
    records, missing = [], set()
    t0 = time.perf_counter()
    jobs = [(s, name) for s in seeds for pair in pairs_for(datasets) for name in pair]
    for i, (seed, name) in enumerate(jobs, 1):
        ds = get_experiment(name).dataset
        if ds in missing:
            continue
        cached = result_path(name, PROFILE, out_root, seed).is_file() and not force
        log(
            f"[{i}/{len(jobs)}] {name} seed {seed}{' (cached)' if cached else ''}  {time.perf_counter() - t0:.0f}s"
        )
        try:
            rec = run_experiment(name, PROFILE, data_root, out_root, device, seed=seed, force=force,
                                 runs_root=runs_root, progress=progress)  # fmt: skip
        except FileNotFoundError as err:
            missing.add(ds)
            log(f"    skipped {ds}: {err}")
            continue
        except (RuntimeError, ValueError) as err:  # one failed run must not lose the others
            log(f"    FAILED {name} seed {seed}: {type(err).__name__}: {err}")
            continue
        m, u = rec["metrics"], rec.get("untrained") or {}
        key = HEADLINE[rec["task"]]
        log(
            f"    {key} {m[key]:.3f} (untrained {u.get(key, float('nan')):.3f}, chance {rec['chance'][key]:.3f})"
        )
        records.append(rec)
    return records


def load_records(out_root: Any = None) -> dict[tuple[str, int], dict[str, Any]]:
    """Every laptop record under ``<out_root>/laptop`` as ``{(experiment, seed): record}``."""
    folder = Path(out_root if out_root is not None else REPO_ROOT / "results") / PROFILE
    out = {}
    for path in sorted(folder.glob("*.json")):
        try:
            rec = json.loads(path.read_text(encoding="utf-8"))
            out[(rec["experiment"], int(rec["seed"]))] = rec
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ValueError(f"{path}: not a readable results record ({err}); delete or fix it") from err
    return out


@dataclass
class PairSummary:
    """One dataset's Vanilla-vs-Ours comparison over seeds (fractions)."""

    dataset: str
    backbone: str
    vanilla: str
    ours: str
    seeds: list[int]
    metric: str
    trained: dict[str, tuple[float, float]]  # "vanilla"/"ours" -> (mean, std) of the headline metric
    untrained: dict[str, tuple[float, float]]
    chance: float
    wins: int  # seeds where Ours beat Vanilla on the headline metric
    n_queries: int
    all_metrics: dict[str, dict[str, tuple[float, float]]]  # side -> metric -> (mean, std)


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    return (statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0)


def summarize_pairs(records: dict[tuple[str, int], dict[str, Any]]) -> list[PairSummary]:
    """Per laptop pair, the seeds both sides have finished, summarised (pairs with no finished seed left out)."""
    out = []
    for van, ours in LAPTOP_PAIRS:
        seeds = sorted(s for (n, s) in records if n == van and (ours, s) in records)
        if not seeds:
            continue
        exp = get_experiment(van)
        metric = HEADLINE[exp.task]
        side = {"vanilla": van, "ours": ours}
        trained = {k: _mean_std([records[(n, s)]["metrics"][metric] for s in seeds]) for k, n in side.items()}
        untrained = {k: _mean_std([(records[(n, s)].get("untrained") or {}).get(metric, float("nan"))
                                   for s in seeds]) for k, n in side.items()}  # fmt: skip
        wins = sum(
            records[(ours, s)]["metrics"][metric] > records[(van, s)]["metrics"][metric] for s in seeds
        )
        allm = {k: {m: _mean_std([records[(n, s)]["metrics"][m] for s in seeds])
                    for m in SHOWN[exp.task] if m in records[(n, seeds[0])]["metrics"]} for k, n in side.items()}  # fmt: skip
        first = records[(van, seeds[0])]
        n_q = int(first.get("n_queries") or 0)
        out.append(PairSummary(exp.dataset, exp.backbone, van, ours, seeds, metric, trained, untrained,
                               first["chance"][metric], int(wins), n_q, allm))  # fmt: skip
    return out


def _ms(v: tuple[float, float]) -> str:
    return f"{100 * v[0]:.1f} ± {100 * v[1]:.1f}"


def render_markdown(summaries: Sequence[PairSummary]) -> str:
    """The laptop section of the report: one row per dataset and side, the verdict in words."""
    lines = ["## laptop: real data, CPU", "",
             "Real QMUL-Shoe / QMUL-Chair test sets and the full Market-1501 test set, 2 CPU cores, the `laptop` "
             "profile (docs/DEVIATIONS.md). Mean ± std over seeds, in %, of the same networks trained, untrained "
             "(same seed, initial weights: ImageNet for mobilenetv2 with a random fusion head, random for sketchanet) "
             "and at chance.", "",
             "| dataset | backbone | side | metric | trained | untrained | chance | seeds | Ours > Vanilla |",
             "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for p in summaries:
        for side in ("vanilla", "ours"):
            win = f"{p.wins} of {len(p.seeds)}" if side == "ours" else ""
            lines.append(f"| {p.dataset} | {p.backbone} | {side} | {p.metric} | {_ms(p.trained[side])} | "
                         f"{_ms(p.untrained[side])} | {100 * p.chance:.1f} | {len(p.seeds)} | {win} |")  # fmt: skip
    lines += ["", *[verdict(p) for p in summaries]]
    return "\n".join(lines) + "\n"


def verdict(p: PairSummary) -> str:
    """One sentence on what the numbers support (no claim the spread does not carry)."""
    (vm, vs), (om, os_) = p.trained["vanilla"], p.trained["ours"]
    gain = om - vm
    learned = {s: p.trained[s][0] - p.untrained[s][0] for s in ("vanilla", "ours")}
    spread = max(vs, os_)
    if len(p.seeds) < 3:
        head = (
            f"only {len(p.seeds)} seed(s): Ours {'ahead' if gain > 0 else 'behind'} by {100 * abs(gain):.1f} "
            "points, with no spread to judge it by (run more seeds)"
        )
    elif p.wins == len(p.seeds) and gain > spread:
        head = f"fusion won on every seed ({p.wins}/{len(p.seeds)}), by {100 * gain:.1f} points"
    elif p.wins == 0 and -gain > spread:
        head = f"fusion lost on every seed, by {100 * -gain:.1f} points"
    else:
        head = (
            f"no clear winner (Ours beat Vanilla on {p.wins} of {len(p.seeds)} seeds, gap {100 * gain:+.1f})"
        )
    before = p.untrained["ours"][0] - p.untrained["vanilla"][0]
    return (f"- **{p.dataset}** ({p.backbone}): {head}; training moved Vanilla by {100 * learned['vanilla']:+.1f} "
            f"and Ours by {100 * learned['ours']:+.1f} points from their untrained scores. Before any training, "
            f"Ours was {_ahead(before)} Vanilla: {_share(gain, before)}.")  # fmt: skip


def _ahead(points: float) -> str:
    if abs(points) < 0.005:
        return "level with"
    return f"{100 * abs(points):.1f} points {'ahead of' if points > 0 else 'behind'}"


def _share(gain: float, before: float) -> str:
    """How much of the trained gap the untrained networks already had (the template-matching lesson)."""
    if gain <= 0:
        return "training did not put Ours ahead"
    if before < 0.005:  # level (or behind) before training: the whole gap is training's
        return "the gap after training came from training, not from the initial weights"
    if before >= gain:
        return "all of the trained gap was there before training (the training narrowed it)"
    return f"{100 * before / gain:.0f} % of the trained gap was there before training"


def plot_pairs(summaries: Sequence[PairSummary]) -> Figure:
    """Bars: untrained and trained (mean ± std over seeds) for Vanilla and Ours per dataset; chance as a line."""
    fig = Figure(figsize=(3.2 * max(1, len(summaries)), 3.4), layout="constrained")
    axes = fig.subplots(1, max(1, len(summaries)), squeeze=False)[0]
    for ax, p in zip(axes, summaries, strict=False):
        for i, side in enumerate(("vanilla", "ours")):
            u, t = p.untrained[side], p.trained[side]
            ax.bar(
                i - 0.18,
                100 * u[0],
                0.36,
                yerr=100 * u[1],
                color="#bbbbbb",
                label="untrained" if i == 0 else None,
            )
            ax.bar(i + 0.18, 100 * t[0], 0.36, yerr=100 * t[1], color=("tab:blue", "tab:orange")[i],
                   label="trained" if i == 0 else None)  # fmt: skip
        ax.axhline(100 * p.chance, color="k", ls=":", lw=1, label="chance")
        ax.set_xticks([0, 1], ["Vanilla", "Ours"])
        ax.set_title(f"{p.dataset} ({p.backbone}), {len(p.seeds)} seeds", fontsize=9)
        ax.set_ylabel(f"{p.metric} (%)")
    axes[0].legend(fontsize=7, loc="upper left")
    return fig


def plot_curves(runs_root: Any = None, pair: tuple[str, str] = ("shoes_vanilla", "shoes_ours"),
                seed: int = 0) -> Figure | None:  # fmt: skip
    """Training loss and validation acc@1 of one laptop pair (from the runs' ``log.csv``), or None when absent."""
    folders = [run_dir(n, PROFILE, runs_root, seed) for n in pair]
    if not all((f / "log.csv").is_file() for f in folders):
        return None
    fig = Figure(figsize=(9, 3.2), layout="constrained")
    for ax, name, folder in zip(fig.subplots(1, 2), pair, folders, strict=True):
        plot_learning_curves(folder / "log.csv", ax=ax)
        ax.set_title(f"{name} (laptop, real data, seed {seed})", fontsize=9)
    return fig


def _save(fig: Figure, path: Path) -> Path:
    tmp = path.with_suffix(f".tmp{os.getpid()}.png")
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, path)
    return path


def write_summary(out_root: Any = None, runs_root: Any = None) -> dict[str, Path]:
    """Write ``results/laptop/SUMMARY.md``, ``laptop.png`` and the Sketch-a-Net learning curves
    (``curves_shoes_sketchanet.png``, from the run folders when they exist); returns their paths."""
    folder = Path(out_root if out_root is not None else REPO_ROOT / "results") / PROFILE
    summaries = summarize_pairs(load_records(out_root))
    out = {
        "markdown": atomic_write_text(folder / "SUMMARY.md", render_markdown(summaries)),
        "plot": folder / "laptop.png",
    }
    if summaries:
        _save(plot_pairs(summaries), out["plot"])
    curves = plot_curves(runs_root)
    if curves is not None:
        out["curves"] = _save(curves, folder / "curves_shoes_sketchanet.png")
    return out
