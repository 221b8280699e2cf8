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
import shlex
import signal
import sys
import time
import traceback
from dataclasses import replace
from pathlib import Path
from typing import Any

from cdimlab import gpu_session
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
from cdimlab.experiments.records import experiment_of
from cdimlab.laptop import run_track, write_summary
from cdimlab.report import write_report
from cdimlab.train import CHECKPOINT, best_weights_path, load_checkpoint, shutdown_distributed
from cdimlab.utils import REPO_ROOT, default_data_root, resolve_device

DEBUG_ENV = "CDIMLAB_DEBUG"  # =1: show the traceback of an error instead of one `error: ...` line

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
  python -m cdimlab gpu-session --minutes 12 --data DIR   # a borrowed GPU: preflight, plan, run, bench
Profiles: 'smoke' = synthetic stand-ins, tiny schedules (CI: tests the pipeline, not the paper);
'laptop' = the real datasets on a CPU with ImageNet MobileNetV2 (minutes per run); 'full' = the paper's
recipe on a CUDA GPU. laptop and full never fall back to synthetic data.
"""


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (iteration counts)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text}")
    return value


def seed_int(text: str) -> int:
    """argparse type: an integer >= 0 (seeds)."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text}")
    return value


def device_name(text: str) -> str:
    """argparse type: auto, cpu, cuda, cuda:N or mps (whether that device exists is checked in :func:`main`)."""
    base, _, index = text.partition(":")
    if text != "auto" and (base not in ("cpu", "cuda", "mps") or (index and not index.isdigit())):
        raise argparse.ArgumentTypeError(f"unknown device {text!r}; use auto, cpu, cuda, cuda:N or mps")
    return text


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", choices=PROFILES, default="smoke",
                   help="smoke: synthetic, tiny (default); laptop: real data on a CPU; full: the paper's schedule on a GPU")  # fmt: skip
    p.add_argument("--data", default=None, metavar="ROOT",
                   help="data root holding qmul_v1/, reid/ (default: $CDIMLAB_DATA or ./data); with --profile smoke "
                        "an absent dataset is replaced by its synthetic stand-in (in .cache/, said on stderr)")  # fmt: skip
    p.add_argument("--out", default=None, metavar="DIR", help="results folder (default: <repo>/results)")
    p.add_argument("--device", default="auto", type=device_name,
                   help="auto (CUDA if present, else CPU), cpu, cuda, cuda:1 ...")  # fmt: skip
    p.add_argument("--seed", type=seed_int, default=0, help="random seed (default 0)")


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
    again = p.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true",
                       help="continue from runs/<profile>/<name>/checkpoint.pt (refused for another recipe)")  # fmt: skip
    again.add_argument("--fresh", action="store_true",
                       help="start over although the run folder holds a checkpoint (its files move to old-<time>/)")  # fmt: skip
    p.add_argument("--runs", default=None, metavar="DIR", help="checkpoint folder root (default: runs/)")
    p.add_argument("--iterations", type=positive_int, default=None,
                   help="override the profile's iteration count")  # fmt: skip

    p = sub.add_parser("eval", help="evaluate a trained run folder (or show a result JSON)",
                       description="RUN is a run folder (runs/<profile>/<name>, holding best_model.pt) or a "
                       "results JSON. A run folder is re-evaluated on the test split and the metrics printed.")  # fmt: skip
    p.add_argument("run", help="run folder or result .json")
    p.add_argument(
        "--data", default=None, metavar="ROOT", help="data root (default: $CDIMLAB_DATA or ./data)"
    )
    p.add_argument("--device", default="auto", type=device_name)

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
                       "(a second call continues). One seed takes roughly 40 minutes on 2 idle CPU cores (more on busy ones).")  # fmt: skip
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds to run (default: 0)")
    p.add_argument("--only", nargs="+", default=None, metavar="DATASET",
                   help="only these datasets, e.g. --only shoes market1501")  # fmt: skip
    p.add_argument(
        "--data", default=None, metavar="ROOT", help="data root (default: $CDIMLAB_DATA or ./data)"
    )
    p.add_argument("--out", default=None, metavar="DIR", help="results folder (default: <repo>/results)")
    p.add_argument("--runs", default=None, metavar="DIR", help="checkpoint folder root (default: runs/)")
    p.add_argument(
        "--device",
        default="cpu",
        type=device_name,
        help="cpu (default; the track is sized for 2 CPU cores) or cuda",
    )
    p.add_argument("--force", action="store_true", help="re-run pairs whose records exist")

    p = sub.add_parser("report", help="render the paper-vs-here tables from existing results (no training)")
    p.add_argument("--profile", choices=PROFILES, default="smoke")
    p.add_argument("--out", default=None, metavar="DIR", help="results folder (default: <repo>/results)")

    p = sub.add_parser("bench", help="throughput table: model-only vs real trainer img/s; ranking time")
    p.add_argument("--device", default="auto", type=device_name)
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


def train_overrides(args: argparse.Namespace) -> dict[str, Any] | None:
    """The config overrides of ``train`` (``--iterations``)."""
    return {"iterations": args.iterations} if args.iterations is not None else None


def cmd_train(args: argparse.Namespace) -> int:
    resume = "strict" if args.resume else "fresh" if args.fresh else False
    rec = run_experiment(args.experiment, args.profile, _data_root(args.data), args.out, args.device,
                         resume=resume, seed=args.seed, force=True,
                         runs_root=args.runs, config_overrides=train_overrides(args))  # fmt: skip
    if os.environ.get("RANK", "0") == "0":  # under torchrun only rank 0 reports (and wrote the file)
        print(summarize([rec]))
        print(f"wrote {result_path(args.experiment, args.profile, args.out, args.seed)}")
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
    ck = path / CHECKPOINT  # the experiment it recorded, else the folder name (minus a .seed<k> suffix)
    recorded = (load_checkpoint(ck).get("identity") or {}).get("experiment") if ck.is_file() else None
    exp = get_experiment(recorded or experiment_of(path.name))
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


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Everything that can be checked before any data is read or file touched: names, paths, device, config."""
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
        if getattr(args, "device", None) is not None:
            resolve_device(args.device)
        if args.command == "train":
            replace(get_experiment(args.experiment).config(args.profile), seed=args.seed,
                    **(train_overrides(args) or {}))  # fmt: skip
    except (ValueError, RuntimeError) as err:
        parser.error(str(err))


def resume_command(argv: list[str]) -> str:
    """The command that continues an interrupted one: the same arguments, ``--resume`` for ``train``."""
    args = [a for a in argv if a != "--fresh"]
    if args and args[0] == "train" and "--resume" not in args:
        args.append("--resume")
    return "python -m cdimlab " + shlex.join(args)


def _sigterm(signum: int, frame: Any) -> None:
    """SIGTERM outside training: stop like Ctrl-C (training installs its own handler that checkpoints first)."""
    raise KeyboardInterrupt(f"stopped by {signal.Signals(signum).name}")


def main(argv: list[str] | None = None) -> int:
    """Entry point: parse ``argv`` and run the command.

    Exit codes: 0 done; 2 a usage or input error (``error: <message>``: bad arguments, invalid config, missing
    or corrupt files); 1 a runtime failure; 130 interrupted (Ctrl-C / SIGTERM; the command to resume is printed).
    ``CDIMLAB_DEBUG=1`` shows the traceback instead.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["gpu-session"]:  # its own parser: python -m cdimlab gpu-session --help
        return gpu_session.main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    check_args(parser, args)
    debug = os.environ.get(DEBUG_ENV, "") not in ("", "0")
    old_term = signal.signal(signal.SIGTERM, _sigterm) if threading_main() else None
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt as err:
        if debug:
            traceback.print_exc()
        print(f"\ninterrupted: {err or 'Ctrl-C'}\nto continue: {resume_command(argv)}", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError) as err:
        return fail(err, 2, debug)
    except Exception as err:  # noqa: BLE001 - the one place that turns any failure into a message + exit code
        return fail(err, 1, debug)
    finally:
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)
        if args.command in ("train", "reproduce"):
            shutdown_distributed()  # under torchrun: leave the process group cleanly


def threading_main() -> bool:
    """Signal handlers can be installed only from the main thread (not inside a notebook's worker thread)."""
    import threading

    return threading.current_thread() is threading.main_thread()


def fail(err: BaseException, code: int, debug: bool) -> int:
    """Print ``error: <message>`` (the traceback with ``CDIMLAB_DEBUG=1``) and return the exit code."""
    if debug:
        traceback.print_exc()
    print(f"error: {err}" + ("" if debug else f"  (set {DEBUG_ENV}=1 for the traceback)"), file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
