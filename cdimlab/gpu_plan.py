"""Planning a borrowed-GPU session: which runs fit the minutes left, from a measured rate table (pure functions).

Introduced in notebook 08 (performance and the GPU runs); used by :mod:`cdimlab.gpu_session`, which measures the
rates and runs the plan. Priority order: FG-SBIR shoes then chairs, Vanilla then Ours (the full recipe with early
stopping when it fits, else one equal iteration cap), then Market-1501 Vanilla and Ours at the largest equal
iteration count that fits. A run costs ``iterations x images per iteration / trainer img/s`` plus a fixed
overhead per task (data loading and decoding, evaluation) taken from the rate table. The one call into the rest of
the package is the adapter :func:`recipe`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

SBIR_ORDER = ("shoes_vanilla", "shoes_ours", "chairs_vanilla", "chairs_ours")
REID_ORDER = ("market_vanilla", "market_ours")
MIN_ITERATIONS = {"fgsbir": 1_000, "reid": 1_000}
ROUND_TO = {"fgsbir": 500, "reid": 100}  # FG-SBIR: a multiple of eval_every, so the last step is validated

# A labelled example, not a measurement: DESIGN.md's H100 numbers (Sketch-a-Net triplet step ~14,800 img/s fp32,
# ResNet-50 batch 64 bf16 ~1,900 img/s eager / 2,463 model-only (torchreid), DataLoader JPEG decode 3,843 img/s with
# 8 workers, cmc_map 0.02 s); overheads are guesses (ReID: decode ~61K JPEGs + evaluate ~48K images per run).
EXAMPLE_RATES: dict[str, Any] = {
    "label": "EXAMPLE: one H100, numbers from DESIGN.md (not measured by this session)",
    "example": True,
    "device_name": "NVIDIA H100 (example)",
    "capability": [9, 0],
    "precision": "bf16",
    "sbir": {"model_only_img_per_s": 14_856.0, "trainer_img_per_s": 14_800.0},
    "reid": {"model_only_img_per_s": 2_463.0, "trainer_img_per_s": 1_900.0},
    "cmc_map_s": 0.02,
    "decode_img_per_s": 3_843.0,
    "overhead_s": {"fgsbir": 20.0, "reid": 60.0},
    "safety_s": 30.0,
}


@dataclass(frozen=True)
class PlannedRun:
    """One run of the plan: ``est_s`` its estimated seconds (overhead included), ``cumulative_s`` up to its end."""

    experiment: str
    task: str
    iterations: int
    batch_size: int
    est_s: float
    cumulative_s: float
    note: str = ""


# ------------------------------------------------------------------------------- adapter (re-point here)
def recipe(name: str) -> dict[str, Any]:
    """The ``full`` recipe of experiment ``name``: task, batch size, iterations, eval_every (adapter)."""
    from cdimlab.experiments import get_experiment

    exp = get_experiment(name)
    cfg = exp.config("full")
    return {"task": exp.task, "dataset": exp.dataset, "batch_size": cfg.batch_size,
            "iterations": cfg.iterations, "eval_every": cfg.eval_every}  # fmt: skip


# ----------------------------------------------------------------------------------------- planning
def run_cost(rates: Mapping[str, Any], task: str, iterations: int, batch: int) -> float:
    """Seconds for one run: images / trainer rate + the task's fixed overhead (data, evaluation)."""
    key = "sbir" if task == "fgsbir" else "reid"
    per_it = batch * (3 if task == "fgsbir" else 1)
    return iterations * per_it / float(rates[key]["trainer_img_per_s"]) + float(rates["overhead_s"][task])


def _fit_iterations(rates: Mapping[str, Any], task: str, batch: int, seconds: float, cap: int) -> int:
    """Largest iteration count (a multiple of ``ROUND_TO``, at most ``cap``) whose run fits ``seconds``."""
    key = "sbir" if task == "fgsbir" else "reid"
    per_it = batch * (3 if task == "fgsbir" else 1)
    free = seconds - float(rates["overhead_s"][task])
    if free <= 0:
        return 0
    it = int(free * float(rates[key]["trainer_img_per_s"]) / per_it)
    return min(cap, it // ROUND_TO[task] * ROUND_TO[task])


def _equal_block(rates, names: list[str], budget: float, recipes: dict) -> tuple[list[str], int]:
    """The most runs of ``names`` (in priority order) that fit ``budget`` at one equal iteration count >= minimum."""
    for n in range(len(names), 0, -1):
        r = recipes[names[0]]
        it = _fit_iterations(rates, r["task"], r["batch_size"], budget / n, r["iterations"])
        if it >= MIN_ITERATIONS[r["task"]]:
            return names[:n], it
    return [], 0


def _done_iterations(already_done: Mapping[str, int | None] | Iterable[str]) -> dict[str, int | None]:
    if isinstance(already_done, Mapping):
        return dict(already_done)
    return {n: None for n in already_done}


def plan_session(rates: Mapping[str, Any], minutes: float,
                 already_done: Mapping[str, int | None] | Iterable[str] = (),
                 sbir_share: float = 0.5, names_ok: Iterable[str] | None = None) -> list[PlannedRun]:  # fmt: skip
    """The runs that fit ``minutes`` (the time left after preflight), in priority order.

    ``rates``: a rate table (see ``EXAMPLE_RATES``). ``already_done``: names of finished runs, or a mapping name ->
    iterations they ran (a Market partner then gets the same count). FG-SBIR runs get their full recipe (early
    stopping) when all of it and the Market pair at its minimum fit; otherwise one equal cap so that FG-SBIR uses
    at most ``sbir_share`` of the budget. Market-1501 Vanilla and Ours share what is left at one equal count.
    A run that cannot reach ``MIN_ITERATIONS`` is left out, lowest priority first (Market only runs when all
    FG-SBIR runs fit). ``names_ok`` restricts the
    candidates (e.g. to those whose data is present).
    """
    done = _done_iterations(already_done)
    ok = set(SBIR_ORDER + REID_ORDER) if names_ok is None else set(names_ok)
    budget = minutes * 60.0 - float(rates.get("safety_s", 30.0))
    recipes = {n: recipe(n) for n in SBIR_ORDER + REID_ORDER}
    sbir = [n for n in SBIR_ORDER if n not in done and n in ok]
    reid = [n for n in REID_ORDER if n not in done and n in ok]
    partner = [done[n] for n in REID_ORDER if n in done and done[n]]
    rr = recipes[REID_ORDER[0]]
    reid_min = run_cost(rates, "reid", partner[0] if partner else MIN_ITERATIONS["reid"], rr["batch_size"])
    full = {n: run_cost(rates, "fgsbir", recipes[n]["iterations"], recipes[n]["batch_size"]) for n in sbir}
    reid_fits = bool(reid) and budget * (1 - sbir_share) >= reid_min
    plan: list[tuple[str, int, str]] = []
    if sum(full.values()) + (reid_min if reid_fits else 0.0) <= budget:
        plan += [(n, recipes[n]["iterations"], "full recipe, early stopping") for n in sbir]
    elif sbir:
        share = budget * sbir_share if reid_fits else budget
        chosen, it = _equal_block(rates, sbir, share, recipes)
        if len(chosen) < len(sbir):  # strict priority: all of FG-SBIR before any Market run
            chosen, it = _equal_block(rates, sbir, budget, recipes)
        cap = recipes[sbir[0]]["iterations"]
        plan += [(n, it, f"capped from {cap:,}, early stopping") for n in chosen]
    used = sum(run_cost(rates, "fgsbir", it, recipes[n]["batch_size"]) for n, it, _ in plan)
    if reid and partner:
        it = partner[0]
        if run_cost(rates, "reid", it, rr["batch_size"]) <= budget - used:
            plan.append((reid[0], it, "same iterations as its finished partner"))
    elif reid:
        chosen, it = _equal_block(rates, reid, budget - used, recipes)
        note = (
            "paper's schedule"
            if it == rr["iterations"]
            else f"largest equal count (paper: {rr['iterations']:,})"
        )
        plan += [(n, it, note) for n in chosen]
    return _with_times(rates, plan, recipes)


def _with_times(rates, plan: list[tuple[str, int, str]], recipes: dict) -> list[PlannedRun]:
    out, total = [], 0.0
    for name, it, note in plan:
        r = recipes[name]
        est = run_cost(rates, r["task"], it, r["batch_size"])
        total += est
        out.append(PlannedRun(name, r["task"], it, r["batch_size"], round(est, 1), round(total, 1), note))
    return out


def format_plan(plan: list[PlannedRun], minutes: float, rates: Mapping[str, Any]) -> str:
    """The plan as a markdown table, headed by the rate table's label."""
    label = rates.get("label") or rates.get("device_name", "measured rates")
    lines = [f"plan for {minutes:g} min ({label}):", "",
             "| experiment | iterations | batch | est. min | cumulative min | note |", "|---|---:|---:|---:|---:|---|"]  # fmt: skip
    for p in plan:
        lines.append(f"| {p.experiment} | {p.iterations:,} | {p.batch_size} | {p.est_s / 60:.1f} | "
                     f"{p.cumulative_s / 60:.1f} | {p.note} |")  # fmt: skip
    if not plan:
        lines.append("| (nothing fits) | | | | | |")
    return "\n".join(lines)
