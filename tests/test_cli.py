"""CLI: help, list, errors (exit code 2 with the valid names), a train -> eval round trip in a subprocess, bench."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cdimlab.cli import build_parser, main

REPO = Path(__file__).resolve().parents[1]


def _run(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "cdimlab", *args], capture_output=True, text=True, timeout=timeout,
                          cwd=REPO, env=env)  # fmt: skip


def test_help_explains_commands():
    text = build_parser().format_help()
    for word in ("train", "eval", "reproduce", "bench", "data", "list", "smoke", "full"):
        assert word in text


def test_unknown_experiment_exits_2_and_lists_names(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "shoes_best", "--data", "nowhere"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "unknown experiment 'shoes_best'" in err and "shoes_ours" in err and "market_vanilla" in err


def test_list_prints_every_experiment(capsys):
    from cdimlab.experiments import EXPERIMENTS

    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in EXPERIMENTS)
    assert main(["list", "--table", "9"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [ln.split()[0] for ln in lines[1:3]] == ["shoes_gap", "shoes_ours"]


def test_train_then_eval_round_trip(tmp_path):
    data, out, runs = tmp_path / "data", tmp_path / "results", tmp_path / "runs"
    proc = _run("train", "shoes_vanilla", "--data", str(data), "--out", str(out), "--runs", str(runs),
                "--iterations", "2", "--device", "cpu")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = out / "smoke" / "shoes_vanilla.json"
    rec = json.loads(result.read_text())
    assert rec["schedule"]["iterations_run"] == 2 and rec["data"]["synthetic"] is True
    run_dir = runs / "smoke" / "shoes_vanilla"
    assert (run_dir / "checkpoint.pt").is_file() and (run_dir / "log.csv").is_file()
    proc = _run("eval", str(run_dir), "--data", str(data), "--device", "cpu")
    assert proc.returncode == 0, proc.stderr[-2000:]
    evaluated = json.loads(proc.stdout)
    assert evaluated["metrics"] == pytest.approx(
        rec["metrics"]
    )  # same weights, same protocol -> same numbers
    proc = _run("eval", str(result))
    assert proc.returncode == 0 and json.loads(proc.stdout)["metrics"] == rec["metrics"]


def test_eval_missing_path_is_a_usage_error(capsys, tmp_path):
    with pytest.raises(SystemExit) as exc:
        main(["eval", str(tmp_path / "nope")])
    assert exc.value.code == 2 and "does not exist" in capsys.readouterr().err


def test_bench_table_for_tiny_sizes(tmp_path):
    from cdimlab.bench import run_bench

    text, path = run_bench(device="cpu", sizes="tiny", steps=1, out_dir=tmp_path, cmc_shape=(40, 120))
    assert path is not None and path.read_text() == text
    rows = [ln for ln in text.splitlines() if ln.startswith("| FG-SBIR") or ln.startswith("| ReID")]
    assert len(rows) == 2
    for row in rows:
        model_only, trainer, ratio = (float(c.replace(",", "")) for c in row.strip("|").split("|")[1:4])
        assert (
            model_only > 0 and trainer > 0 and ratio == pytest.approx(trainer / model_only, rel=0.15)
        )  # table rounds img/s
    assert "cmc_map" in text and "40 x 120" in text


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--iterations", "0"], "--iterations: must be an integer >= 1"),
        (["--iterations", "-5"], "--iterations: must be an integer >= 1"),
        (["--seed", "-1"], "--seed: must be an integer >= 0"),
        (["--device", "tpu"], "unknown device 'tpu'"),
        (["--resume", "--fresh"], "not allowed with argument"),
    ],
)
def test_bad_train_arguments_exit_2_before_any_work(capsys, tmp_path, args, words):
    with pytest.raises(SystemExit) as exc:
        main(["train", "shoes_vanilla", "--runs", str(tmp_path), *args])
    assert exc.value.code == 2 and words in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing written


def test_cuda_without_a_gpu_is_a_usage_error(capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit) as exc:
        main(["train", "shoes_vanilla", "--device", "cuda"])
    assert exc.value.code == 2 and "torch sees no CUDA GPU" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("raised", "code"),
    [(ValueError("bad value X"), 2), (FileNotFoundError("no file Y"), 2), (RuntimeError("broke Z"), 1)],
)
def test_library_errors_become_one_error_line_and_an_exit_code(capsys, monkeypatch, raised, code):
    import cdimlab.cli as cli

    def boom(*a, **k):
        raise raised

    monkeypatch.setattr(cli, "run_experiment", boom)
    monkeypatch.delenv("CDIMLAB_DEBUG", raising=False)
    assert main(["train", "shoes_vanilla", "--device", "cpu"]) == code
    err = capsys.readouterr().err
    assert f"error: {raised}" in err and "Traceback" not in err
    monkeypatch.setenv("CDIMLAB_DEBUG", "1")
    assert main(["train", "shoes_vanilla", "--device", "cpu"]) == code
    assert "Traceback" in capsys.readouterr().err


def test_interrupt_exits_130_and_prints_the_resume_command(capsys, monkeypatch):
    import cdimlab.cli as cli
    from cdimlab.train import TrainingInterrupted

    def interrupted(*a, **k):
        raise TrainingInterrupted("training interrupted at iteration 3/40; checkpoint written", 3, None)

    monkeypatch.setattr(cli, "run_experiment", interrupted)
    assert main(["train", "shoes_vanilla", "--device", "cpu", "--fresh", "--iterations", "40"]) == 130
    err = capsys.readouterr().err
    assert "iteration 3/40" in err
    assert "python -m cdimlab train shoes_vanilla --device cpu --iterations 40 --resume" in err
