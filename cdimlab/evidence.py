"""What a Vanilla-vs-Ours comparison in a notebook stands on: several seeds, the untrained network, chance, n.

A single smoke run on 30 synthetic queries moves in steps of 3.3 points, so one seed cannot say which side is
better. This module runs (or loads) one results record per experiment and seed through
:func:`cdimlab.experiments.run_experiment`, summarises them the way the laptop track does
(:class:`cdimlab.laptop.PairSummary`, :func:`cdimlab.laptop.verdict`), and words what the numbers support. It also
reads the committed laptop records for a notebook's task. Introduced in notebook 04; used by 05 and 08, and
re-exported by :mod:`cdimlab.course`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

from cdimlab import laptop
from cdimlab.experiments import get_experiment, run_experiment

Records = dict[tuple[str, int], dict[str, Any]]


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value), NaNs dropped; (nan, nan) for none."""
    vals = [float(v) for v in values if v == v]
    if not vals:
        return float("nan"), float("nan")
    return float(np.mean(vals)), float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0


def summarize_seed_pair(
    records: Records, vanilla: str, ours: str, metric: str | None = None
) -> laptop.PairSummary:
    """The :class:`~cdimlab.laptop.PairSummary` of any Vanilla/Ours pair over the seeds both sides have.

    ``metric`` defaults to the task's headline (acc@1 for FG-SBIR, rank1 for ReID). ValueError when no seed has
    both records.
    """
    exp = get_experiment(vanilla)
    metric = metric or laptop.HEADLINE[exp.task]
    seeds = sorted(s for (n, s) in records if n == vanilla and (ours, s) in records)
    if not seeds:
        raise ValueError(f"no seed has records of both {vanilla!r} and {ours!r}; run them first")
    side = {"vanilla": vanilla, "ours": ours}

    def over_seeds(name: str, key: str, m: str) -> tuple[float, float]:
        return _mean_std([(records[(name, s)].get(key) or {}).get(m, float("nan")) for s in seeds])

    trained = {k: over_seeds(n, "metrics", metric) for k, n in side.items()}
    untrained = {k: over_seeds(n, "untrained", metric) for k, n in side.items()}
    wins = sum(
        records[(ours, s)]["metrics"][metric] > records[(vanilla, s)]["metrics"][metric] for s in seeds
    )
    first = records[(vanilla, seeds[0])]
    shown = [m for m in laptop.SHOWN[exp.task] if m in first["metrics"]]
    allm = {k: {m: over_seeds(n, "metrics", m) for m in shown} for k, n in side.items()}
    return laptop.PairSummary(exp.dataset, exp.backbone, vanilla, ours, seeds, metric, trained, untrained,
                              float(first["chance"][metric]), int(wins), int(first.get("n_queries") or 0), allm)  # fmt: skip


@dataclass
class SeedComparison:
    """Records of a Vanilla/Ours pair (and extra rows, e.g. the HOG baseline) over seeds, with their summary."""

    profile: str
    records: Records = field(repr=False)
    summary: laptop.PairSummary
    extra: tuple[str, ...] = ()

    def table(self):
        """One row per experiment: the headline metric's mean ± std over seeds (%), untrained, chance, n, seeds."""
        import pandas as pd

        p, rows = self.summary, {}
        for label, name in (("Vanilla", p.vanilla), ("Ours", p.ours), *((n, n) for n in self.extra)):
            seeds = sorted(s for (n, s) in self.records if n == name)
            trained = _mean_std([self.records[(name, s)]["metrics"][p.metric] for s in seeds])
            untrained = _mean_std([(self.records[(name, s)].get("untrained") or {}).get(p.metric, float("nan"))
                                   for s in seeds])  # fmt: skip
            rows[f"{label} ({name})" if label != name else name] = {
                f"{p.metric} mean (%)": 100 * trained[0], "± std": 100 * trained[1],
                "untrained (%)": 100 * untrained[0], "untrained ± std": 100 * untrained[1],
                "chance (%)": 100 * p.chance, "n test queries": p.n_queries, "seeds": len(seeds),
            }  # fmt: skip
        return pd.DataFrame(rows).T.round(2).astype({"n test queries": int, "seeds": int})

    def verdict(self) -> str:
        """What the numbers support, in words (never a claim the spread does not carry)."""
        p = self.summary
        step = 100 / p.n_queries if p.n_queries else float("nan")
        kinds = {(r.get("data") or {}).get("kind", "?") for r in self.records.values()}
        data = "synthetic stand-in" if kinds == {"synthetic"} else "/".join(sorted(kinds))
        near = [side for side in ("vanilla", "ours")
                if p.trained[side][0] - p.chance <= max(p.trained[side][1], step / 100)]  # fmt: skip
        verb = "sits" if len(near) == 1 else "sit"
        floor = (f"\n- trained {' and '.join(s.capitalize() for s in near)} {verb} within one query or one std of "
                 "chance: at this budget the network has not learned to rank; these numbers test the pipeline, "
                 "not the method.") if near else ""  # fmt: skip
        return (f"{laptop.verdict(p)}\n- {p.n_queries} test queries ({data} data, `{self.profile}` profile): one "
                f"query moves {p.metric} by {step:.1f} points, so a gap smaller than that is one query."
                f"{floor}{self._head_start()}")  # fmt: skip

    def _head_start(self) -> str:
        """A line when Ours led Vanilla before training by at least half its trained lead (the lead is not learned)."""
        p = self.summary
        before = p.untrained["ours"][0] - p.untrained["vanilla"][0]
        after = p.trained["ours"][0] - p.trained["vanilla"][0]
        if not (before > 0 and after > 0 and before >= after / 2):
            return ""
        return (f"\n- Ours led by {100 * before:.1f} points **before any training** (trained: {100 * after:.1f}): "
                "most of its lead comes from the flattened mid-level map itself, not from what training taught it "
                "(see the baselines below).")  # fmt: skip

    def baselines(self) -> str:
        """Where the untrained networks and the extra rows (HOG) stand against chance and the trained models."""
        p = self.summary
        lines = []
        for side, label in (("vanilla", "Vanilla (fc7)"), ("ours", "Ours (flattened conv5 + fc7)")):
            u, t = p.untrained[side][0], p.trained[side][0]
            if u != u:
                continue
            times = f"{u / p.chance:.0f}x chance" if p.chance > 0 else "above chance"
            cmp = "above" if u > t else ("level with" if u == t else "below")
            lines.append(f"- {label} **untrained** scores {100 * u:.1f}% {p.metric} ({times}, chance "
                         f"{100 * p.chance:.1f}%), {cmp} its trained score {100 * t:.1f}%.")  # fmt: skip
        for name in self.extra:
            vals = [r["metrics"][p.metric] for (n, _), r in self.records.items() if n == name]
            if vals:
                best = max(p.trained["vanilla"][0], p.trained["ours"][0])
                word = "beats" if np.mean(vals) > best else "does not beat"
                lines.append(f"- {name}: {100 * np.mean(vals):.1f}% {p.metric}; it {word} the better deep model "
                             f"({100 * best:.1f}%).")  # fmt: skip
        return "\n".join(lines)

    def figure(self) -> Figure:
        """Untrained vs trained bars (mean ± std over seeds) for both sides, chance as a line."""
        return laptop.plot_pairs([self.summary])


def compare_over_seeds(
    vanilla: str,
    ours: str,
    profile: str = "smoke",
    seeds: Sequence[int] = (0, 1, 2),
    extra: Sequence[str] = (),
    data_root: Any = None,
    device: Any = "auto",
    out_root: Any = None,
    runs_root: Any = None,
    run: Callable[..., dict[str, Any]] = run_experiment,
) -> SeedComparison:
    """Run (or load: records already written are reused) ``vanilla``, ``ours`` and ``extra`` for every seed.

    Each record holds the trained metrics, the same network's untrained score, chance and the number of test
    queries (``run_experiment``); ``run`` is injectable for tests. Notebooks 04, 05.
    """
    if not seeds:
        raise ValueError("seeds is empty: give at least one seed, e.g. seeds=(0, 1, 2)")
    records: Records = {}
    for seed in seeds:
        for name in (vanilla, ours, *extra):
            records[(name, int(seed))] = run(name, profile, data_root=data_root, out_root=out_root, device=device,
                                             seed=int(seed), runs_root=runs_root, progress=False)  # fmt: skip
    return SeedComparison(profile, records, summarize_seed_pair(records, vanilla, ours), tuple(extra))


# ------------------------------------------------------------------------------------------------ laptop records
@dataclass
class LaptopView:
    """The committed laptop records of a notebook's datasets, summarised; ``message`` when there are none."""

    datasets: tuple[str, ...]
    summaries: list[laptop.PairSummary]
    message: str = ""

    def markdown(self) -> str:
        """The laptop table and one verdict per dataset, or the message saying how to produce them."""
        return laptop.render_markdown(self.summaries) if self.summaries else self.message

    def figure(self) -> Figure | None:
        """The laptop bar plot of these datasets (None without records)."""
        return laptop.plot_pairs(self.summaries) if self.summaries else None


def laptop_results(datasets: Sequence[str] | None = None, out_root: Any = None) -> LaptopView:
    """Summaries of the laptop records (``results/laptop/``) whose dataset is in ``datasets`` (None: all)."""
    wanted = tuple(datasets or ())
    summaries = [
        p for p in laptop.summarize_pairs(laptop.load_records(out_root)) if not wanted or p.dataset in wanted
    ]
    shown = ", ".join(wanted) or "any dataset"
    msg = "" if summaries else (
        f"**No laptop records for {shown} yet** (`results/laptop/` holds none). Produce them on real data with "
        "`make laptop` (about 25 min a seed on 2 CPU cores), or set `retrain = True` with `profile = \"laptop\"` "
        "to run seed 0 here.")  # fmt: skip
    return LaptopView(wanted, summaries, msg)


# ------------------------------------------------------------------------------------------------ alignment probe
def alignment_probe(
    model: torch.nn.Module, split: Any, device: Any = "cpu", cfg: Any = None
) -> dict[str, float]:
    """acc@1 of ``model`` on ``split`` as given, and with every photo mirrored left-right (notebook 04).

    Sketch and photo are pose-aligned, so a flattened map compares them position by position: a template match.
    Mirroring the photos keeps every shoe but breaks the alignment; a template matcher falls, an instance matcher
    should not.
    """
    from cdimlab.train import evaluate_sbir

    flip = {"photos": np.ascontiguousarray(split.photos[:, :, ::-1])}
    if getattr(split, "images", None) is not None:
        flip["images"] = np.ascontiguousarray(split.images[:, :, ::-1])
    mirrored = replace(split, **flip)
    return {
        "aligned": evaluate_sbir(model, split, device, protocol="center", cfg=cfg)["acc@1"],
        "photos mirrored": evaluate_sbir(model, mirrored, device, protocol="center", cfg=cfg)["acc@1"],
    }


__all__ = [
    "LaptopView",
    "SeedComparison",
    "alignment_probe",
    "compare_over_seeds",
    "laptop_results",
    "summarize_seed_pair",
]
