"""Runs never lose work and run-folder files cannot take over the machine (issue 12): crafted and corrupt
checkpoints, refusing instead of deleting, Ctrl-C, NaN, the run lock, run identity, resume bookkeeping, temp files.

Each test builds a tiny run folder with the CPU-sized helpers of ``test_train`` and breaks it the way a user (or a
crash) would; the expected behaviour is a named error (file + fix) and an untouched checkpoint."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from test_train import TinyBackbone, tiny_cfg, tiny_embedder, tiny_split

from cdimlab.train import (
    CheckpointError,
    RunLockedError,
    TrainingInterrupted,
    fit_triplet,
    load_checkpoint,
    run_labels,
)

REPO = Path(__file__).resolve().parents[1]


def _fit(folder, resume=False, model=None, **kw):
    """A tiny FG-SBIR run into ``folder`` (6 iterations unless told)."""
    cfg = tiny_cfg(**{"iterations": 6, "eval_every": 100, **kw.pop("cfg", {})})
    return fit_triplet(model or tiny_embedder(), tiny_split(6), None, cfg, "cpu", folder, resume=resume,
                       progress=False, **kw)  # fmt: skip


class Evil:
    """A pickle that creates ``marker`` when unpickled (what a crafted checkpoint would do)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


# ------------------------------------------------------------------------------------------ 1. security
def test_crafted_checkpoint_is_refused_without_running_its_code(tmp_path):
    folder, marker = tmp_path / "runs" / "smoke" / "shoes_vanilla", tmp_path / "PWNED"
    folder.mkdir(parents=True)
    for name in ("checkpoint.pt", "best_model.pt"):
        torch.save({"model": Evil(marker), "iteration": 1}, folder / name)
    with pytest.raises(CheckpointError, match=r"refusing to load .*checkpoint\.pt.*arbitrary code"):
        load_checkpoint(folder / "checkpoint.pt")
    with pytest.raises(CheckpointError, match="refusing"):  # train --resume goes through the same decision
        _fit(folder, resume=True)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "cdimlab", "eval", str(folder), "--device", "cpu"],
                          capture_output=True, text=True, timeout=120, cwd=REPO, env=env)  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "error: refusing to load" in proc.stderr and "checkpoint.pt" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not marker.exists()


# ------------------------------------------------------------------------------------ 2. corrupt files
def test_corrupt_checkpoints_name_the_file_and_the_fix(tmp_path):
    _fit(tmp_path / "a", cfg={"iterations": 2})
    path = tmp_path / "a" / "checkpoint.pt"
    good = path.read_bytes()
    assert (tmp_path / "a" / "checkpoint.pt.sha256").is_file()
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0xFF
    cases = {
        b"": "is empty",
        good[: len(good) // 2]: "does not match its sha256",
        bytes(flipped): "does not match",
    }
    for data, words in cases.items():
        path.write_bytes(data)
        with pytest.raises(CheckpointError) as err:
            load_checkpoint(path)
        assert words in str(err.value) and str(path) in str(err.value) and "delete it" in str(err.value)
    (tmp_path / "a" / "checkpoint.pt.sha256").unlink()  # no digest (an older file): torch's error, named
    for data in (good[:100], b"garbage" * 50):
        path.write_bytes(data)
        with pytest.raises(CheckpointError, match=r"(unreadable \(truncated or|is) corrupt.*delete it"):
            load_checkpoint(path)


# ----------------------------------------------------------------------------------- 3. work never lost
def test_existing_checkpoint_is_refused_and_fresh_moves_it_aside(tmp_path):
    _fit(tmp_path, cfg={"iterations": 2})
    before = (tmp_path / "checkpoint.pt").read_bytes()
    with pytest.raises(ValueError, match=r"already holds a checkpoint.*--resume.*--fresh.*--runs"):
        _fit(tmp_path, resume=False)
    assert (tmp_path / "checkpoint.pt").read_bytes() == before
    with pytest.raises(ValueError, match="TrainConfig.margin must be > 0"):  # rejected before any file
        _fit(tmp_path, resume="fresh", cfg={"margin": 0.0})
    assert (tmp_path / "checkpoint.pt").read_bytes() == before and not list(tmp_path.glob("old-*"))
    res = _fit(tmp_path, resume="fresh", cfg={"iterations": 3})
    (old,) = tmp_path.glob("old-*")
    assert (old / "checkpoint.pt").read_bytes() == before and (old / "best_model.pt").is_file()
    assert res.iterations_run == 3 and load_checkpoint(tmp_path / "checkpoint.pt")["iteration"] == 3


# ------------------------------------------------------------------------------------- 4. Ctrl-C / SIGTERM
def test_sigint_checkpoints_between_steps_and_resumes_exactly(tmp_path):
    before = signal.getsignal(signal.SIGINT)  # default_int_handler, or SIG_IGN in a background job
    straight = _fit(tmp_path / "a")

    def ctrl_c(it, loss):
        if it == 2:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(TrainingInterrupted, match=r"iteration 2/6.*resume=True.*--resume") as err:
        _fit(tmp_path / "b", callback=ctrl_c, cfg={"checkpoint_every": 1000})
    assert err.value.iteration == 2 and load_checkpoint(tmp_path / "b" / "checkpoint.pt")["iteration"] == 2
    assert signal.getsignal(signal.SIGINT) is before  # handlers restored
    resumed = _fit(tmp_path / "b", resume=True, cfg={"checkpoint_every": 1000})
    for k, v in straight.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k


# ------------------------------------------------------------------------------------------------ 5. NaN
def test_non_finite_state_is_never_saved(tmp_path):
    model = tiny_embedder()

    def poison(it, loss):  # a NaN in a BatchNorm buffer: the training loss stays finite, the state is not
        if it == 5:
            model.backbone.conv1[1].running_var.fill_(float("nan"))

    with pytest.raises(FloatingPointError, match=r"not finite at iteration 6.*nothing saved.*iteration 4"):
        _fit(tmp_path, model=model, callback=poison, cfg={"iterations": 10, "checkpoint_every": 2})
    ck = load_checkpoint(tmp_path / "checkpoint.pt")
    assert ck["iteration"] == 4
    assert all(torch.isfinite(v).all() for v in ck["model"].values() if v.is_floating_point())


# ------------------------------------------------------------------------------------------------ 6. lock
def test_a_live_lock_refuses_a_second_run_and_a_stale_one_is_taken_over(tmp_path, capsys):
    lock = tmp_path / "run.lock"
    lock.write_text(f'{{"pid": {os.getppid()}, "started": {time.time()}}}')  # our parent: alive
    with pytest.raises(RunLockedError, match=rf"in use by another run \(pid {os.getppid()}.*--runs"):
        _fit(tmp_path)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock.write_text(f'{{"pid": {dead.pid}, "started": 0}}')
    _fit(tmp_path, cfg={"iterations": 1})
    assert "taking over the stale lock" in capsys.readouterr().err and not lock.exists()


# ------------------------------------------------------------------------------------- 7. run identity
def test_checkpoint_of_another_experiment_or_model_is_refused(tmp_path):
    from cdimlab.fusion import EmbeddingNet, FusionConfig

    with run_labels(experiment="shoes_ours"):
        _fit(tmp_path, cfg={"iterations": 2})
    assert load_checkpoint(tmp_path / "checkpoint.pt")["identity"]["experiment"] == "shoes_ours"
    with (
        run_labels(experiment="shoes_vanilla"),
        pytest.raises(CheckpointError, match="experiment: checkpoint"),
    ):
        _fit(tmp_path, resume=True)
    vanilla = EmbeddingNet(TinyBackbone(1, 32), FusionConfig())
    with pytest.raises(CheckpointError, match=r"belongs to another run \(model: .*'taps': \['c2'\]"):
        _fit(tmp_path, resume=True, model=vanilla)
    with pytest.raises(CheckpointError, match="another run"):  # "compatible" (the runner) refuses it too
        _fit(tmp_path, resume="compatible", model=vanilla)


# ------------------------------------------------------------------------------- 8. resume bookkeeping
def test_resumed_log_and_final_loss_equal_an_uninterrupted_run(tmp_path):
    cfg = {"iterations": 8, "checkpoint_every": 3, "log_every": 4}
    straight = _fit(tmp_path / "a", cfg=cfg)

    def crash(it, loss):
        if it == 5:
            raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        _fit(tmp_path / "b", cfg=cfg, callback=crash)
    resumed = _fit(tmp_path / "b", resume=True, cfg=cfg)
    assert resumed.extra["resumed_from"] == 3
    assert [r["loss"] for r in resumed.log] == [r["loss"] for r in straight.log]  # rows at 4 and 8
    with pytest.raises(ValueError, match=r"already has 8 iterations, more than the 5 asked"):
        _fit(tmp_path / "b", resume=True, cfg={**cfg, "iterations": 5})


# -------------------------------------------------------------------------------------- 11. temp files
def test_stale_temp_files_of_a_killed_write_are_cleaned(tmp_path):
    stale, other = tmp_path / ".checkpoint.pt.ab12cd_3.tmp", tmp_path / "notes.tmp"
    for p in (stale, other):
        p.write_bytes(b"x" * 1000)
        os.utime(p, (time.time() - 60, time.time() - 60))
    _fit(tmp_path, cfg={"iterations": 1})
    assert not stale.exists() and other.exists()


def test_cuda_rng_restores_on_a_host_with_another_number_of_gpus():
    from cdimlab.train.checkpoint import restore_cuda_rng

    calls: list[tuple[str, int]] = []
    assert restore_cuda_rng(["a", "b", "c"], 1, lambda st, i: calls.append((st, i))) == 1 and calls == [
        ("a", 0)
    ]
    calls.clear()
    assert restore_cuda_rng(["a"], 4, lambda st, i: calls.append((st, i))) == 1 and calls == [("a", 0)]
