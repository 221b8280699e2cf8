"""The controlled experiment: does fusion's advantage follow the place where identity lives?

Introduced in notebook 06. Two synthetic shoe sets differ in ONE switch (``synthetic_sbir(identity=...)``):
``shoes_shape``, where instances differ only in global shape (every shoe carries the same parts), and
``shoes_parts``, where every shoe has the same outline and only small local parts (which, where, how large) tell
instances apart. On each, Sketch-a-Net is trained three ways over several seeds (catalogue ``CONTROLLED_PAIRS``):
Vanilla (fc7 alone), Ours (``conv4`` flattened + fc7: at the smoke input of 113 px conv4 is the last map with a
layout, 5x5, as pool5 is at the paper's 225 px) and the paper's ``conv5`` (pool5, only 2x2 at 113 px). The paper's
mechanism predicts Ours > Vanilla on parts, much less so on shape. Each run is an ordinary results record of
:func:`cdimlab.experiments.run_experiment` (trained, untrained, chance, 100 test queries) under
``results/controlled/smoke/``; ``python -m cdimlab.controlled`` runs what is missing and writes ``SUMMARY.md``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from cdimlab.baselines import pixel_matcher
from cdimlab.data.registry import CONTROLLED_SIZES
from cdimlab.evidence import SeedComparison, compare_over_seeds
from cdimlab.experiments import CONTROLLED_PAIRS, get_experiment, load_sbir_splits, run_experiment
from cdimlab.utils import REPO_ROOT, atomic_write_text

# records: ROOT/smoke/<condition>_<arm>[.seed<k>].json (committed)
ROOT = REPO_ROOT / "results" / "controlled"
SEEDS = (0, 1, 2, 3, 4)
CONDITIONS = ("shape", "parts")
PROFILE = "smoke"


def _ms(values: Sequence[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


@dataclass
class ControlledResult:
    """Per condition (``"shape"``, ``"parts"``): the Vanilla/Ours comparison over seeds, ``conv5`` as an extra row."""

    comparisons: dict[str, SeedComparison]
    pixels: dict[str, dict[float, float]]  # condition -> blur sigma -> acc@1 of the no-learning pixel matcher

    def gaps(self, condition: str, arm: str = "ours", key: str = "metrics") -> list[float]:
        """Per seed, ``arm`` minus Vanilla in acc@1 (``key="untrained"``: the same gap before any training)."""
        c = self.comparisons[condition]
        seeds = c.summary.seeds
        rec = c.records
        return [rec[(f"{condition}_{arm}", s)][key]["acc@1"] - rec[(f"{condition}_vanilla", s)][key]["acc@1"]
                for s in seeds]  # fmt: skip

    def table(self) -> pd.DataFrame:
        """One row per condition and arm: acc@1 trained and untrained (mean ± std over seeds, %), gap to Vanilla."""
        rows = {}
        for cond, comp in self.comparisons.items():
            for arm in ("vanilla", "ours", "conv5"):
                name = f"{cond}_{arm}"
                seeds = [s for (n, s) in comp.records if n == name]
                trained = _ms([comp.records[(name, s)]["metrics"]["acc@1"] for s in seeds])
                untrained = _ms([comp.records[(name, s)]["untrained"]["acc@1"] for s in seeds])
                gap = _ms(self.gaps(cond, arm)) if arm != "vanilla" else (float("nan"), float("nan"))
                rows[(cond, get_experiment(name).fusion.describe("fc7"))] = {
                    "acc@1 (%)": 100 * trained[0], "± std": 100 * trained[1], "untrained (%)": 100 * untrained[0],
                    "gap to Vanilla (points)": 100 * gap[0], "gap ± std": 100 * gap[1],
                    "beats Vanilla": f"{sum(g > 0 for g in self.gaps(cond, arm))}/{len(seeds)}" if arm != "vanilla"
                    else "", "seeds": len(seeds),
                }  # fmt: skip
            rows[(cond, "pixel matcher, no learning (best blur)")] = {
                "acc@1 (%)": 100 * max(self.pixels[cond].values()), "seeds": "-"}  # fmt: skip
        return pd.DataFrame.from_dict(rows, orient="index").round(1)

    def moved(self, key: str = "metrics") -> tuple[float, bool]:
        """How much larger fusion's gap is on parts than on shape (acc@1), and whether that exceeds the spread
        (one std over seeds of either gap); ``key="untrained"``: the same before training."""
        (gp, sp), (gs, ss) = _ms(self.gaps("parts", key=key)), _ms(self.gaps("shape", key=key))
        return gp - gs, gp - gs > max(sp, ss) and gp > sp

    def learned(self, condition: str, arm: str) -> float:
        """Mean over seeds of what training added to ``arm``'s acc@1 (trained minus untrained, same seed)."""
        recs = [r for (n, _), r in self.comparisons[condition].records.items() if n == f"{condition}_{arm}"]
        return statistics.fmean(r["metrics"]["acc@1"] - r["untrained"]["acc@1"] for r in recs)

    def verdict(self) -> str:
        """What the numbers support, in words: fusion's gap per condition before and after training, and whether the
        switch moved it (never a claim the spread over seeds does not carry)."""
        lines = []
        for cond in CONDITIONS:
            g, u = _ms(self.gaps(cond)), _ms(self.gaps(cond, key="untrained"))
            wins, n = sum(x > 0 for x in self.gaps(cond)), len(self.gaps(cond))
            lines.append(f"- identity in **{cond}**: Ours (conv4) - Vanilla = {100 * g[0]:+.1f} ± {100 * g[1]:.1f} "
                         f"points acc@1 after training (Ours ahead on {wins} of {n} seeds), {100 * u[0]:+.1f} ± "
                         f"{100 * u[1]:.1f} before; training moved Vanilla by {100 * self.learned(cond, 'vanilla'):+.1f}"
                         f" and Ours by {100 * self.learned(cond, 'ours'):+.1f} points.")  # fmt: skip
        for key, when in (("untrained", "before training"), ("metrics", "after training")):
            diff, clear = self.moved(key)
            if clear:
                lines.append(f"- {when.capitalize()}, the switch moved fusion's advantage: {100 * diff:.1f} points "
                             "more when identity lives in small parts, more than the spread over seeds.")  # fmt: skip
            else:
                lines.append(f"- {when.capitalize()}, the switch did not move fusion's advantage by more than the "
                             f"spread over seeds ({100 * diff:+.1f} points): no sign of the paper's mechanism "
                             f"{when}.")  # fmt: skip
        gp, sp = _ms(self.gaps("parts"))
        c5p, c5s = _ms(self.gaps("parts", "conv5"))[0], _ms(self.gaps("shape", "conv5"))[0]
        why = (": a mid-level map helps while it still has a layout to keep" if c5p < gp - sp
               else ", not clearly less than conv4")  # fmt: skip
        lines.append(f"- The paper's conv5 (pool5), only 2x2 at this input, adds {100 * c5p:+.1f} (parts) and "
                     f"{100 * c5s:+.1f} (shape) points to Vanilla after training{why}.")  # fmt: skip
        return "\n".join(lines)

    def figure(self) -> Figure:
        """Bars per condition: untrained (grey) and trained (colour) acc@1, mean ± std; chance as a line."""
        fig = Figure(figsize=(9, 3.4), layout="constrained")
        axes = fig.subplots(1, len(CONDITIONS), sharey=True)
        for ax, cond in zip(axes, CONDITIONS, strict=True):
            comp = self.comparisons[cond]
            for i, arm in enumerate(("vanilla", "ours", "conv5")):
                name = f"{cond}_{arm}"
                seeds = [s for (n, s) in comp.records if n == name]
                for dx, key, colour in ((-0.18, "untrained", "#bbbbbb"), (0.18, "metrics", f"C{i}")):
                    m, s = _ms([comp.records[(name, k)][key]["acc@1"] for k in seeds])
                    label = ("untrained" if key == "untrained" else "trained") if i == 0 else None
                    ax.bar(i + dx, 100 * m, 0.36, yerr=100 * s, color=colour, label=label)
            ax.axhline(100 * comp.summary.chance, color="k", ls=":", lw=1, label="chance")
            best = max(self.pixels[cond].values())
            ax.axhline(100 * best, color="k", ls="--", lw=0.8, label="pixel matcher (no learning)")
            ax.set_xticks([0, 1, 2], ["Vanilla", "Ours (conv4)", "conv5 (2x2)"])
            ax.set_title(f"identity in {cond}: {len(comp.summary.seeds)} seeds, {comp.summary.n_queries} queries",
                         fontsize=9)  # fmt: skip
        axes[0].set_ylabel("acc@1 (%)")
        axes[0].legend(fontsize=7, loc="upper left")
        return fig

    def markdown(self) -> str:
        """SUMMARY.md: what was run, the table, the verdict."""
        seeds = sorted({s for c in self.comparisons.values() for (_, s) in c.records})
        cfg = get_experiment("parts_ours").config(PROFILE)
        head = ("# Controlled experiment: identity in global shape vs in small local parts\n\n"
                f"Synthetic data (`shoes_shape`, `shoes_parts`: {CONTROLLED_SIZES[0]:,} training / "
                f"{CONTROLLED_SIZES[1]} test shoes each), `smoke` profile recipe `CONTROLLED_SMOKE` ({cfg.sbir_input} px, "
                f"{cfg.iterations} iterations), Sketch-a-Net from random init, seeds {seeds}, 2 CPU cores. acc@1 in %, mean ± std over "
                "seeds; chance 1.0 %; untrained = the same network at its initial weights (same seed). Pixel matcher: "
                "blurred-pixel correlation, no learning, the best of blur 0, 2, 4, 8 px. Made by "
                "`python -m cdimlab.controlled`.\n\n")  # fmt: skip
        return head + _markdown(self.table()) + "\n\n" + self.verdict() + "\n"


def _markdown(table: pd.DataFrame) -> str:
    """A (condition, model)-indexed table as Markdown; empty cells for NaN."""
    cols = list(table.columns)
    lines = ["| identity in | model | " + " | ".join(cols) + " |", "|---" * (len(cols) + 2) + "|"]
    for (cond, model), row in table.iterrows():
        cells = [("" if v != v else f"{v:.1f}") if isinstance(v, float) else str(v) for v in row]
        lines.append(f"| {cond} | {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_controlled(seeds: Sequence[int] = SEEDS, out_root: Any = ROOT, data_root: Any = None, device: Any = "auto",
                   run: Callable[..., dict[str, Any]] = run_experiment) -> ControlledResult:  # fmt: skip
    """Run (or load: committed records are reused) every arm of both conditions for ``seeds``."""
    comps = {}
    for (van, ours), cond in zip(CONTROLLED_PAIRS, CONDITIONS, strict=True):
        comps[cond] = compare_over_seeds(van, ours, PROFILE, seeds, extra=(f"{cond}_conv5",), data_root=data_root,
                                         device=device, out_root=out_root, run=run)  # fmt: skip
    return ControlledResult(comps, {c: pixel_scores(c, data_root) for c in CONDITIONS})


def pixel_scores(
    condition: str, data_root: Any = None, sigmas: Sequence[float] = (0, 2, 4, 8)
) -> dict[float, float]:
    """The no-learning blurred-pixel matcher on ``shoes_<condition>``'s test split (:func:`pixel_matcher`)."""
    test = load_sbir_splits(f"shoes_{condition}", data_root).test
    return pixel_matcher(test.sketches, test.photos, tuple(sigmas))


def write_summary(result: ControlledResult, folder: Path = ROOT) -> dict[str, Path]:
    """``SUMMARY.md`` and ``controlled.png`` in ``folder`` (atomic)."""
    folder.mkdir(parents=True, exist_ok=True)
    png, tmp = folder / "controlled.png", folder / f"controlled.tmp{os.getpid()}.png"
    result.figure().savefig(tmp, dpi=110)
    os.replace(tmp, png)
    return {"markdown": atomic_write_text(folder / "SUMMARY.md", result.markdown()), "plot": png}


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m cdimlab.controlled [--seeds 0 1 2 3 4]``: run what is missing (~35 s a run), write the summary."""
    ap = argparse.ArgumentParser(prog="python -m cdimlab.controlled", description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    ap.add_argument(
        "--out", type=Path, default=ROOT, help="records and SUMMARY.md (default results/controlled)"
    )
    ap.add_argument("--device", default="auto")
    args = ap.parse_args(argv)
    total, t0 = 3 * len(CONDITIONS) * len(args.seeds), time.perf_counter()
    done = []

    def logged(
        name: str, profile: str, **kw: Any
    ) -> dict[str, Any]:  # one line per run: 30 runs take ~20 min
        rec = run_experiment(name, profile, **kw)
        done.append(name)
        print(f"[{len(done)}/{total}] {name} seed {kw['seed']}: acc@1 {rec['metrics']['acc@1']:.2f} "
              f"(untrained {rec['untrained']['acc@1']:.2f}); elapsed {time.perf_counter() - t0:.0f} s", flush=True)  # fmt: skip
        return rec

    result = run_controlled(args.seeds, args.out, device=args.device, run=logged)
    paths = write_summary(result, args.out)
    print(paths["markdown"].read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
