"""One command that turns a short loan of a CUDA card into the paper's results: preflight, plan, run, bench.

Introduced in notebook 08 (performance and the GPU runs). ``python -m cdimlab.gpu_session --minutes 12 --data
.gpu/data`` (1) measures the card in well under two minutes (environment, precision, a few steps of each trainer,
``cmc_map`` at Market-1501 scale, JPEG decoding) and writes that rate table to JSON; (2) plans the runs that fit the
remaining minutes (:func:`cdimlab.gpu_plan.plan_session`, a pure function): FG-SBIR shoes then chairs, Vanilla
then Ours, with the full recipe and early stopping when it fits, else an equal iteration cap; then Market-1501
Vanilla and Ours at the largest equal iteration count that fits; (3) runs them one by one, each writing ``results/full/<name>.json`` the
moment it ends, skipping those already finished, so a second call continues; a failing run is logged and the
next one starts; (4) writes ``bench/gpu_<card>.md``. ``--dry-run`` prints the plan from ``--rates`` (or the example
H100 table of :mod:`cdimlab.gpu_plan`) and touches no GPU. The calls into the rest of the package are the adapters
:func:`measure_rates`, :func:`run_one` (here) and :func:`cdimlab.gpu_plan.recipe`.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cdimlab.gpu_plan import (
    EXAMPLE_RATES,
    MIN_ITERATIONS,
    REID_ORDER,
    SBIR_ORDER,
    PlannedRun,
    format_plan,
    plan_session,
    recipe,
    run_cost,
)
from cdimlab.utils import REPO_ROOT, atomic_write_json, atomic_write_text

__all__ = ["EXAMPLE_RATES", "MIN_ITERATIONS", "REID_ORDER", "SBIR_ORDER", "PlannedRun", "already_done",
           "bench_report", "check_data", "finished_record", "format_plan", "main", "measure_rates", "plan_session",
           "preflight", "recipe", "run_cost", "run_one", "run_session"]  # fmt: skip
MARKET_IMAGES = 12_936 + 3_368 + 19_732 + 25_259  # train + query + gallery + gt_bbox, decoded every ReID run
PREFLIGHT_LIMIT_S = 120


# ------------------------------------------------------------------------------- adapters (re-point here)
def measure_rates(device: Any, sizes: str = "paper", steps: int | None = None,
                  cmc_shape: tuple[int, int] = (3368, 19732)) -> dict[str, Any]:  # fmt: skip
    """Model-only and trainer img/s of both trainers and ``cmc_map`` seconds on ``device`` (adapter to bench)."""
    from dataclasses import replace

    from cdimlab import bench

    s = bench.SIZES[sizes] if steps is None else replace(bench.SIZES[sizes], steps=steps)
    rows = [bench.bench_sbir(device, s), bench.bench_reid(device, s)]
    return {"rows": rows, "cmc_map_s": bench.bench_cmc(device, cmc_shape), "cmc_shape": list(cmc_shape)}


def run_one(name: str, iterations: int, *, data_root: Any, out_root: Any, runs_root: Any, device: Any,
            force: bool, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    """Train and evaluate ``name`` (``full`` profile, real data only) for ``iterations`` (adapter)."""
    from cdimlab.experiments import run_experiment

    cfg = {"iterations": int(iterations), **(overrides or {})}
    return run_experiment(name, profile="full", data_root=data_root, out_root=out_root, device=device,
                          resume=True, force=force, runs_root=runs_root, progress=False,
                          allow_synthetic=False, config_overrides=cfg)  # fmt: skip


# -------------------------------------------------------------------------------------------- running
class SessionLog:
    """Prints and appends timestamped lines to ``<log_dir>/gpu_session.log``."""

    def __init__(self, log_dir: Path | None) -> None:
        self.path = None
        if log_dir is not None:
            Path(log_dir).mkdir(parents=True, exist_ok=True)
            self.path = Path(log_dir) / "gpu_session.log"

    def __call__(self, msg: str) -> None:
        line = f"[{time.strftime('%H:%M:%S')}] {msg}"
        print(line, flush=True)
        if self.path is not None:
            with self.path.open("a") as f:
                f.write(line + "\n")


def finished_record(path: Path) -> dict[str, Any] | None:
    """The record at ``path`` if it is a finished run (has ``finished_utc``, ``schedule`` and ``env``), else None."""
    try:
        rec = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    ok = isinstance(rec, dict) and rec.get("finished_utc") and "schedule" in rec and "env" in rec
    return rec if ok else None


def already_done(out_root: Path) -> dict[str, int | None]:
    """Finished runs of the session's experiments under ``<out_root>/full``: name -> iterations they ran."""
    done = {}
    for name in SBIR_ORDER + REID_ORDER:
        rec = finished_record(Path(out_root) / "full" / f"{name}.json")
        if rec is not None:
            done[name] = rec["schedule"].get("iterations_run")
    return done


def run_session(plan: list[PlannedRun], deadline: float, log: SessionLog, *, data_root: Any, out_root: Path,
                runs_root: Any, device: Any, precision: Any = None) -> list[dict[str, Any]]:  # fmt: skip
    """Run ``plan`` in order until ``deadline`` (``time.monotonic()``); one row per run: status, times, error.

    A finished record is skipped (a second call continues); a run whose estimate no longer fits is skipped; a
    failure is logged with its traceback and the next run starts.
    """
    rows = []
    overrides = {"amp": False} if precision is not None and precision.name != "bf16" else None
    for p in plan:
        row: dict[str, Any] = {"experiment": p.experiment, "iterations": p.iterations, "est_s": p.est_s}
        path = Path(out_root) / "full" / f"{p.experiment}.json"
        left = deadline - time.monotonic()
        if finished_record(path) is not None:
            row["status"] = "already done"
        elif p.est_s > left:
            row["status"] = f"skipped: needs {p.est_s / 60:.1f} min, {left / 60:.1f} left"
        else:
            log(f"start {p.experiment}: {p.iterations:,} iterations, est. {p.est_s / 60:.1f} min")
            t0 = time.monotonic()
            try:
                rec = run_one(p.experiment, p.iterations, data_root=data_root, out_root=out_root,
                              runs_root=runs_root, device=device, force=path.exists(), overrides=overrides)  # fmt: skip
                _annotate(path, p, precision)
                row.update(status="done", metrics=rec.get("metrics", {}))
            except Exception as e:  # one failed run must not cost the others their window
                row["status"] = f"FAILED: {type(e).__name__}: {e}"
                log(traceback.format_exc())
            row["wall_s"] = round(time.monotonic() - t0, 1)
        log(
            f"{p.experiment}: {row['status']}"
            + (f" in {row['wall_s'] / 60:.1f} min" if "wall_s" in row else "")
        )
        rows.append(row)
    return rows


def _annotate(path: Path, p: PlannedRun, precision: Any) -> None:
    """Add the session's plan and precision to the record run_experiment just wrote (atomic rewrite)."""
    rec = finished_record(path)
    if rec is not None:
        rec["gpu_session"] = {"planned_iterations": p.iterations, "estimated_s": p.est_s, "note": p.note,
                              "precision": precision.describe() if precision is not None else None}  # fmt: skip
        atomic_write_json(path, rec)


def _card_slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name).strip("_") or "card"


def bench_report(rates: Mapping[str, Any], rows: list[dict[str, Any]], precision_line: str) -> str:
    """Markdown: the preflight bench table (model-only vs trainer img/s, ranking time) and the session's runs."""
    from cdimlab import bench

    info = rates["env"]
    text = bench.format_table(rates["rows"], rates["cmc_map_s"], tuple(rates["cmc_shape"]), info)
    lines = [text, precision_line, "", "## gpu-session runs", "",
             "| experiment | iterations | est. min | wall min | status |", "|---|---:|---:|---:|---|"]  # fmt: skip
    for r in rows:
        wall = f"{r['wall_s'] / 60:.1f}" if "wall_s" in r else ""
        lines.append(
            f"| {r['experiment']} | {r['iterations']:,} | {r['est_s'] / 60:.1f} | {wall} | {r['status']} |"
        )
    return "\n".join(lines) + "\n"


def preflight(device: Any, data_root: Path, log: SessionLog, steps: int | None = None,
              sizes: str = "paper", cmc_shape: tuple[int, int] = (3368, 19732)) -> tuple[dict[str, Any], Any]:  # fmt: skip
    """Environment, precision, trainer and ranking rates, JPEG decode rate; returns (rate table, precision).

    ``sizes``/``cmc_shape``: the bench's sizes (``"paper"`` on a card; tests use ``"tiny"`` on the CPU).
    """
    import torch

    from cdimlab.precision import choose_precision
    from cdimlab.utils import env_info

    t0, dev = time.monotonic(), torch.device(device)
    env = env_info(dev)
    cap = list(torch.cuda.get_device_capability(dev)) if dev.type == "cuda" else None
    prec = choose_precision(dev)
    log(f"torch {env['torch']}, CUDA {torch.version.cuda}, {env['device_name']}, capability {cap}")
    log(prec.describe())
    m = measure_rates(dev, sizes, steps, cmc_shape)
    sbir, reid = (
        {"model_only_img_per_s": r["model_only"], "trainer_img_per_s": r["trainer"]} for r in m["rows"]
    )
    decode = _decode_rate(data_root)
    reid_over = 20.0 + MARKET_IMAGES / decode + MARKET_IMAGES / (3 * reid["model_only_img_per_s"])
    rates = {"label": f"measured on {env['device_name']}", "example": False, "device_name": env["device_name"],
             "capability": cap, "precision": prec.name, "sbir": sbir, "reid": reid, "cmc_map_s": m["cmc_map_s"],
             "cmc_shape": m["cmc_shape"], "rows": m["rows"], "decode_img_per_s": round(decode, 1), "env": env,
             "overhead_s": {"fgsbir": 20.0, "reid": round(reid_over, 1)}, "safety_s": 30.0,
             "preflight_s": round(time.monotonic() - t0, 1)}  # fmt: skip
    log(f"preflight {rates['preflight_s']} s: SBIR {sbir['trainer_img_per_s']:,.0f} img/s, ReID "
        f"{reid['trainer_img_per_s']:,.0f} img/s, cmc_map {m['cmc_map_s']:.3f} s, decode {decode:,.0f} img/s")  # fmt: skip
    if rates["preflight_s"] > PREFLIGHT_LIMIT_S:
        log(f"warning: preflight took over {PREFLIGHT_LIMIT_S} s; lower --preflight-steps next time")
    return rates, prec


def _decode_rate(data_root: Path, n: int = 512) -> float:
    """JPEG decode + resize rate on this host from ``n`` Market-1501 gallery images (3,843 img/s if absent)."""
    try:
        from cdimlab.data import decode_images, load_reid, locate_dataset

        data = load_reid("market1501", locate_dataset("market1501", data_root, allow_synthetic=False).path)
        t0 = time.perf_counter()
        decode_images([e[0] for e in data.gallery[:n]], size=(256, 128), progress=False)
        return n / (time.perf_counter() - t0)
    except (OSError, ValueError):
        return float(EXAMPLE_RATES["decode_img_per_s"])


def check_data(data_root: Path, log: SessionLog) -> list[str]:
    """The session's experiments whose dataset is present under ``data_root`` (each missing one is logged)."""
    from cdimlab.data import locate_dataset

    ok = []
    for name in SBIR_ORDER + REID_ORDER:
        ds = recipe(name)["dataset"]
        try:
            locate_dataset(ds, data_root, allow_synthetic=False)
            ok.append(name)
        except (OSError, ValueError) as e:
            log(f"data missing for {name}: {e}")
    return ok


# ------------------------------------------------------------------------------------------------ CLI
def build_parser() -> argparse.ArgumentParser:
    """Arguments of ``python -m cdimlab.gpu_session``."""
    p = argparse.ArgumentParser(prog="python -m cdimlab.gpu_session", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--minutes", type=float, default=12.0, help="device minutes for the whole session (default 12)"
    )
    p.add_argument(
        "--data",
        default=None,
        metavar="ROOT",
        help="data root with qmul_v1/ and reid/ (default: .gpu/data if present, else $CDIMLAB_DATA or ./data)",
    )
    p.add_argument(
        "--rates", default=None, metavar="JSON", help="rate table for --dry-run (default: example H100)"
    )
    p.add_argument("--dry-run", action="store_true", help="print the plan from the rate table; touch no GPU")
    p.add_argument(
        "--log-dir", default=str(REPO_ROOT / "runs" / "gpu_session"), help="where the log file goes"
    )
    p.add_argument("--out", default=str(REPO_ROOT / "results"), help="results root (records in <out>/full/)")
    p.add_argument("--bench-dir", default=str(REPO_ROOT / "bench"), help="where gpu_<card>.md is written")
    p.add_argument(
        "--sbir-share", type=float, default=0.5, help="most of the budget FG-SBIR may take when capped"
    )
    p.add_argument(
        "--preflight-steps", type=int, default=None, help="timed steps per trainer (default: bench's)"
    )
    return p  # fmt: skip


def _data_root(arg: str | None) -> Path:
    from cdimlab.utils import default_data_root

    if arg:
        return Path(arg).expanduser()
    staged = REPO_ROOT / ".gpu" / "data"
    return staged if staged.is_dir() else default_data_root()


def load_rates(path: str | None) -> dict[str, Any]:
    """The rate table at ``path`` (JSON), or the example H100 table; a broken file names itself and the fix."""
    if path is None:
        return dict(EXAMPLE_RATES)
    try:
        rates = json.loads(Path(path).read_text())
        for key in ("sbir", "reid", "overhead_s"):
            rates[key]  # noqa: B018 (presence check)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise SystemExit(f"--rates {path}: not a rate table ({type(e).__name__}: {e}); write one like "
                         "cdimlab.gpu_session.EXAMPLE_RATES or drop --rates for the example") from None  # fmt: skip
    return rates


def main(argv: list[str] | None = None) -> int:
    """Preflight, plan, run, bench (or, with ``--dry-run``, only print the plan).

    Exit 0 when every run is done or planned out, 1 when a run failed or its data is missing, 2 without CUDA.
    """
    args = build_parser().parse_args(argv)
    start = time.monotonic()
    deadline = start + args.minutes * 60.0
    out_root, data_root = Path(args.out), _data_root(args.data)
    done = already_done(out_root)
    if args.dry_run:
        rates = load_rates(args.rates)
        names_ok = check_data(data_root, SessionLog(None)) if args.data else None
        plan = plan_session(rates, args.minutes, done, args.sbir_share, names_ok)
        print(f"dry run: no GPU touched; already finished: {sorted(done) or 'none'}")
        print(format_plan(plan, args.minutes, rates))
        return 0
    import torch

    if not torch.cuda.is_available():
        print(
            "gpu_session: torch sees no CUDA GPU; use --dry-run to print the plan on a CPU", file=sys.stderr
        )
        return 2
    log = SessionLog(Path(args.log_dir))
    device = torch.device("cuda")
    log(f"gpu-session: {args.minutes:g} min, data {data_root}, results {out_root}/full, done {sorted(done)}")
    names_ok = check_data(data_root, log)
    rates, prec = preflight(device, data_root, log, args.preflight_steps)
    slug = _card_slug(rates["device_name"])
    atomic_write_json(Path(args.bench_dir) / f"gpu_{slug}.rates.json", {k: v for k, v in rates.items()})
    left_min = (deadline - time.monotonic()) / 60.0
    plan = plan_session(rates, left_min, done, args.sbir_share, names_ok)
    log("\n" + format_plan(plan, left_min, rates))
    rows = run_session(plan, deadline, log, data_root=data_root, out_root=out_root, runs_root=None,
                       device=device, precision=prec)  # fmt: skip
    path = atomic_write_text(
        Path(args.bench_dir) / f"gpu_{slug}.md", bench_report(rates, rows, prec.describe())
    )
    log(f"bench table: {path}; session {math.ceil((time.monotonic() - start) / 60)} min")
    missing = [n for n in SBIR_ORDER + REID_ORDER if n not in names_ok]
    if missing:
        log(f"not run for lack of data under {data_root}: {', '.join(missing)}")
    return 1 if missing or any(r["status"].startswith("FAILED") for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
