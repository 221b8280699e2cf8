"""``python -m cdimlab ...``: long runs outside the notebooks (train, eval, reproduce the paper, bench, data).

Introduced in notebook 00 (the course map) and used by ``make reproduce`` / ``make bench``. Every sub-command
prints what it does; ``--help`` on each explains its arguments. Under ``torchrun --nproc_per_node=N`` the
``train`` command trains with DistributedDataParallel (one process per GPU; gloo on the CPU).
"""

from __future__ import annotations

import argparse
import json
import os
import runpy
import sys
import time
from pathlib import Path
from typing import Any

from cdimlab.bench import run_bench
from cdimlab.data import DATASETS
from cdimlab.data.registry import ensure_synthetic
from cdimlab.experiments import (
    EXPERIMENTS,
    PAPER_TABLES,
    PROFILES,
    evaluate,
    experiments_for_tables,
    get_experiment,
    load_data,
    load_trained,
    result_path,
    run_experiment,
    summarize,
)
from cdimlab.laptop import run_track, write_summary
from cdimlab.report import write_report
from cdimlab.train import best_weights_path, shutdown_distributed
from cdimlab.utils import REPO_ROOT, default_data_root

DESCRIPTION = """\
cdimlab: reproduce "The Devil is in the Middle" (Yu et al.) - mid-level feature fusion for
cross-domain instance matching (FG-SBIR sketch->photo, person re-identification).

Typical use:
  python -m cdimlab list                                   # every experiment (paper table rows)
  python -m cdimlab data synthetic --data data             # small synthetic datasets, no download
  python -m cdimlab train shoes_ours --data data           # train + evaluate one row (smoke profile)
  python -m cdimlab reproduce --profile smoke --data data  # all tables 3-11, paper vs here, into results/
  python -m cdimlab bench                                  # throughput: model-only vs trainer img/s
  python -m cdimlab laptop --seeds 0 1 2 --data ROOT      # Vanilla vs Ours on real data, 2 CPU cores
Profiles: 'smoke' = synthetic stand-ins, tiny schedules (CI: tests the pipeline, not the paper);
'laptop' = the real datasets on a CPU with ImageNet MobileNetV2 (minutes per run); 'full' = the paper's
recipe on a CUDA GPU. laptop and full never fall back to synthetic data.
"""


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", choices=PROFILES, default="smoke",
                   help="smoke: synthetic, tiny (default); laptop: real data on a CPU; full: the paper's schedule on a GPU")  # fmt: skip
    p.add_argument("--data", default=None, metavar="ROOT",
                   help="data root holding qmul_v1/, reid/ (default: $CDIMLAB_DATA or ./data); with --profile smoke "
                        "an absent dataset is replaced by its synthetic stand-in (in .cache/, said on stderr)")  # fmt: skip
    p.add_argument("--out", default=None, metavar="DIR", help="results folder (default: <repo>/results)")
    p.add_argument("--device", default="auto", help="auto (CUDA if present, else CPU), cpu, cuda, cuda:1 ...")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (kept separate so tests and docs can inspect it)."""
    parser = argparse.ArgumentParser(prog="python -m cdimlab", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("list", help="list the experiments (one per trained paper-table row)")
    p.add_argument("--table", type=int, default=None, help="only the experiments of this table (3-11)")

    p = sub.add_parser("train", help="train and evaluate one experiment; writes results/<profile>/<name>.json",
                       description="Train EXPERIMENT (see `list`) from scratch (or --resume), evaluate it on the test split and write "
                       "<out>/<profile>/<EXPERIMENT>.json. Checkpoints go to runs/<profile>/<EXPERIMENT>/.")  # fmt: skip
    p.add_argument("experiment", help="experiment name, e.g. shoes_ours, market_vanilla (see `list`)")
    _add_common(p)
    p.add_argument("--resume", action="store_true", help="continue from runs/<profile>/<name>/checkpoint.pt")
    p.add_argument("--runs", default=None, metavar="DIR", help="checkpoint folder root (default: runs/)")
    p.add_argument("--iterations", type=int, default=None, help="override the profile's iteration count")

    p = sub.add_parser("eval", help="evaluate a trained run folder (or show a result JSON)",
                       description="RUN is a run folder (runs/<profile>/<name>, holding best_model.pt) or a "
                       "results JSON. A run folder is re-evaluated on the test split and the metrics printed.")  # fmt: skip
    p.add_argument("run", help="run folder or result .json")
    p.add_argument(
        "--data", default=None, metavar="ROOT", help="data root (default: $CDIMLAB_DATA or ./data)"
    )
    p.add_argument("--device", default="auto")

    p = sub.add_parser("reproduce", help="run every table (3-11) and render 'paper vs here' into results/",
                       description="Train and evaluate every experiment the chosen tables need (each shared run "
                       "once), skipping those already in <out>/<profile>/, then write REPORT.md, report.html "
                       "and plots there.")  # fmt: skip
    _add_common(p)
    p.add_argument("--only", type=int, nargs="+", default=None, metavar="TABLE",
                   help="only these tables, e.g. --only 3 7")  # fmt: skip
    p.add_argument("--force", action="store_true", help="re-run experiments whose results exist")
    p.add_argument("--runs", default=None, metavar="DIR", help="checkpoint folder root (default: runs/)")

    p = sub.add_parser("laptop", help="the laptop track: Vanilla vs Ours on real data on a CPU, over seeds",
                       description="Train and evaluate every laptop pair (ImageNet MobileNetV2 on QMUL shoes, "
                       "chairs and Market-1501; Sketch-a-Net from scratch on shoes) for each seed, on REAL data "
                       "only, then write results/laptop/SUMMARY.md and laptop.png. Finished records are reused "
                       "(a second call continues). One seed takes about 20-30 minutes on 2 CPU cores.")  # fmt: skip
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds to run (default: 0)")
    p.add_argument("--only", nargs="+", default=None, metavar="DATASET",
                   help="only these datasets, e.g. --only shoes market1501")  # fmt: skip
    p.add_argument(
        "--data", default=None, metavar="ROOT", help="data root (default: $CDIMLAB_DATA or ./data)"
    )
    p.add_argument("--out", default=None, metavar="DIR", help="results folder (default: <repo>/results)")
    p.add_argument("--runs", default=None, metavar="DIR", help="checkpoint folder root (default: runs/)")
    p.add_argument(
        "--device", default="cpu", help="cpu (default; the track is sized for 2 CPU cores) or cuda"
    )
    p.add_argument("--force", action="store_true", help="re-run pairs whose records exist")

    p = sub.add_parser("report", help="render the paper-vs-here tables from existing results (no training)")
    p.add_argument("--profile", choices=PROFILES, default="smoke")
    p.add_argument("--out", default=None, metavar="DIR", help="results folder (default: <repo>/results)")

    p = sub.add_parser("bench", help="throughput table: model-only vs real trainer img/s; ranking time")
    p.add_argument("--device", default="auto")
    p.add_argument("--sizes", choices=("auto", "smoke", "paper"), default="auto",
                   help="auto: paper sizes on CUDA, small on CPU")  # fmt: skip
    p.add_argument("--steps", type=int, default=None, help="timed steps per measurement")
    p.add_argument(
        "--out", default="bench", metavar="DIR", help="where <device>.md is written (default: bench)"
    )

    p = sub.add_parser("data", help="prepare datasets: synthetic stand-ins, QMUL V1, ReID")
    dsub = p.add_subparsers(dest="data_command", metavar="KIND")
    dsub.required = True
    d = dsub.add_parser("synthetic", help="write the synthetic QMUL-like and Market-like datasets (seconds)")
    d.add_argument("--data", default=None, metavar="ROOT",
                   help="data root; files go to ROOT/synthetic (default: $CDIMLAB_DATA or ./data)")  # fmt: skip
    d = dsub.add_parser("qmul", help="download + verify QMUL FG-SBIR V1 (data_scripts/download_qmul_v1.py)",
                        add_help=False, prefix_chars="+")  # fmt: skip
    d.add_argument("args", nargs=argparse.REMAINDER, help="passed to the data script (try --help)")
    d = dsub.add_parser("reid", help="prepare Market-1501 / DukeMTMC-reID / CUHK03 from your copy "
                        "(data_scripts/prepare_reid.py)", add_help=False, prefix_chars="+")  # fmt: skip
    d.add_argument("args", nargs=argparse.REMAINDER, help="passed to the data script (try --help)")
    return parser


def _data_root(arg: str | None) -> Path:
    return Path(arg).expanduser() if arg else default_data_root()


def cmd_list(args: argparse.Namespace) -> int:
    names = experiments_for_tables([args.table]) if args.table else sorted(EXPERIMENTS)
    print(f"{'experiment':<28} {'tables':<10} {'task':<7} {'dataset':<16} row")
    for n in names:
        e = EXPERIMENTS[n]
        print(f"{n:<28} {','.join(map(str, e.tables)):<10} {e.task:<7} {e.dataset:<16} {e.row}")
    print(f"\n{len(names)} experiments; tables {sorted(PAPER_TABLES)} (cited competitor rows are not re-run)")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    overrides = {"iterations": args.iterations} if args.iterations else None
    rec = run_experiment(args.experiment, args.profile, _data_root(args.data), args.out, args.device,
                         resume=args.resume, seed=args.seed, force=True,
                         runs_root=args.runs, config_overrides=overrides)  # fmt: skip
    if os.environ.get("RANK", "0") == "0":  # under torchrun only rank 0 reports (and wrote the file)
        print(summarize([rec]))
        print(f"wrote {result_path(args.experiment, args.profile, args.out)}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    """Re-evaluate a run folder's best weights on the test split (or print a result JSON)."""
    path = Path(args.run)
    if path.suffix == ".json":
        if not path.is_file():
            raise FileNotFoundError(f"no result file {path}")
        rec = json.loads(path.read_text())
        print(json.dumps({"experiment": rec.get("experiment"), "metrics": rec.get("metrics"),
                          "paper": rec.get("paper")}, indent=2))  # fmt: skip
        return 0
    rec = evaluate_run_dir(path, args.data, args.device)
    print(json.dumps(rec, indent=2))
    return 0


def evaluate_run_dir(path: Path, data: str | None, device: str) -> dict[str, Any]:
    """Load a run folder's best weights and the config of its ``checkpoint.pt``; evaluate on the test split."""
    if not best_weights_path(path).is_file():
        raise FileNotFoundError(
            f"{path} holds no {best_weights_path(path).name}; pass a run folder written by `train` or a result .json"
        )
    exp = get_experiment(path.name)
    model, cfg = load_trained(path, exp, device)
    profile = path.parent.name if path.parent.name in PROFILES else "smoke"
    run_data = load_data(exp, profile, _data_root(data), cfg=cfg)
    metrics = evaluate(exp, model, run_data, cfg, device)
    return {"experiment": exp.name, "run_dir": str(path), "metrics": metrics, "paper": exp.paper}


def cmd_reproduce(args: argparse.Namespace) -> int:
    names = experiments_for_tables(args.only)
    root = _data_root(args.data)
    t0 = time.perf_counter()
    print(
        f"reproduce: profile={args.profile}, data={root}, {len(names)} experiments -> {args.out}/{args.profile}"
    )
    records, failed = [], []
    for i, name in enumerate(names, 1):
        done = result_path(name, args.profile, args.out).is_file() and not args.force
        print(f"[{i}/{len(names)}] {name}{' (cached)' if done else ''} ... elapsed {time.perf_counter() - t0:.0f}s",
              flush=True)  # fmt: skip
        try:
            rec = run_experiment(name, args.profile, root, args.out, args.device, resume=True, seed=args.seed,
                                 force=args.force, runs_root=args.runs, progress=sys.stderr.isatty())  # fmt: skip
        except Exception as err:  # one broken row must not lose the others: report it and go on
            failed.append(name)
            print(f"    FAILED: {type(err).__name__}: {err}", flush=True)
            continue
        records.append(rec)
        print("    " + summarize([rec]).strip(), flush=True)
    paths = write_report(args.out, args.profile, tables=args.only)
    print(f"done in {time.perf_counter() - t0:.0f}s; report: {paths['markdown']} and {paths['html']}")
    if failed:
        print(
            f"{len(failed)} experiment(s) failed: {', '.join(failed)} (re-run one with `train NAME --resume`)"
        )
        return 1
    return 0


def cmd_laptop(args: argparse.Namespace) -> int:
    root = _data_root(args.data)
    print(f"laptop track: seeds {args.seeds}, data {root}, device {args.device}", flush=True)
    run_track(args.seeds, args.only, root, args.out, args.runs, args.device, args.force,
              log=lambda m: print(m, flush=True), progress=sys.stderr.isatty())  # fmt: skip
    paths = write_summary(args.out, args.runs)
    print(paths["markdown"].read_text())
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    paths = write_report(args.out, args.profile)
    print(f"report: {paths['markdown']} and {paths['html']}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    text, path = run_bench(device=args.device, sizes=args.sizes, steps=args.steps, out_dir=args.out)
    print(text)
    print(f"wrote {path}")
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    if args.data_command == "synthetic":
        root = _data_root(args.data)
        for name in DATASETS:
            print(f"{name:<16} {ensure_synthetic(name, root)}")
        return 0
    script = {"qmul": "download_qmul_v1.py", "reid": "prepare_reid.py"}[args.data_command]
    path = REPO_ROOT / "data_scripts" / script
    if not path.is_file():
        raise FileNotFoundError(f"data script {path} is missing; run it from a full checkout of cdimlab")
    sys.argv = [str(path), *args.args]
    runpy.run_path(str(path), run_name="__main__")
    return 0


COMMANDS = {"list": cmd_list, "train": cmd_train, "eval": cmd_eval, "reproduce": cmd_reproduce, "laptop": cmd_laptop,
            "report": cmd_report, "bench": cmd_bench, "data": cmd_data}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Entry point: parse ``argv`` and run the command; usage errors exit with code 2 and a clear message."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in ("train",):
        if args.experiment not in EXPERIMENTS:
            parser.error(
                f"unknown experiment {args.experiment!r}; valid names: {', '.join(sorted(EXPERIMENTS))}"
            )
    if args.command == "eval" and not Path(args.run).exists():
        parser.error(
            f"{args.run} does not exist; pass a run folder (runs/<profile>/<name>) or a result .json"
        )
    try:
        return COMMANDS[args.command](args)
    finally:
        if args.command in ("train", "reproduce"):
            shutdown_distributed()  # under torchrun: leave the process group cleanly


if __name__ == "__main__":
    sys.exit(main())
