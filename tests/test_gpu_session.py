"""cdimlab.gpu_session: the plan fits, keeps the priority order and equal Market counts, continues, survives failures.

No GPU is needed: rate tables are faked and the adapter that trains (``run_one``) is monkeypatched.
"""

from __future__ import annotations

import json
import time

import pytest

from cdimlab import gpu_session as gs

T4 = {"label": "fake T4", "sbir": {"trainer_img_per_s": 3_000.0}, "reid": {"trainer_img_per_s": 400.0},
      "overhead_s": {"fgsbir": 25.0, "reid": 120.0}, "safety_s": 30.0}  # fmt: skip
FAST = {"label": "fake future card", "sbir": {"trainer_img_per_s": 400_000.0},
        "reid": {"trainer_img_per_s": 200_000.0}, "overhead_s": {"fgsbir": 5.0, "reid": 10.0}, "safety_s": 10.0}  # fmt: skip
TABLES = {"h100_example": gs.EXAMPLE_RATES, "t4": T4, "fast": FAST}
ALL = gs.SBIR_ORDER + gs.REID_ORDER


@pytest.mark.parametrize("table", sorted(TABLES))
@pytest.mark.parametrize("minutes", [3, 8, 12, 40])
def test_plan_fits_within_minutes(table, minutes):
    rates = TABLES[table]
    plan = gs.plan_session(rates, minutes)
    total = sum(p.est_s for p in plan)
    assert total <= minutes * 60 - rates["safety_s"] + 1e-6
    assert plan == [] or abs(plan[-1].cumulative_s - total) < 0.5
    for p in plan:  # every estimate is the rate-table arithmetic
        per_it = p.batch_size * (3 if p.task == "fgsbir" else 1)
        key = "sbir" if p.task == "fgsbir" else "reid"
        want = p.iterations * per_it / rates[key]["trainer_img_per_s"] + rates["overhead_s"][p.task]
        assert p.est_s == pytest.approx(want, abs=0.06)
        assert p.iterations >= gs.MIN_ITERATIONS[p.task]


def test_example_h100_12_minutes_hand_computed():
    """budget 690 s; FG-SBIR capped at half: 345/4 - 20 s = 66.25 s * 14,800 / 384 = 2,553 -> 2,500 iterations;
    Market: (690 - 4 * (2,500 * 384 / 14,800 + 20)) / 2 - 60 = 115.1 s * 1,900 / 64 = 3,417 -> 3,400."""
    plan = gs.plan_session(gs.EXAMPLE_RATES, 12)
    assert [p.experiment for p in plan] == list(ALL)
    assert [p.iterations for p in plan] == [2_500] * 4 + [3_400] * 2
    assert plan[0].batch_size == 128 and plan[-1].batch_size == 64


def test_priority_order_and_equal_market_iterations():
    for rates in TABLES.values():
        for minutes in (4, 8, 12, 30, 600):
            names = [p.experiment for p in gs.plan_session(rates, minutes)]
            assert names == [n for n in ALL if n in names]  # a subsequence of the priority order
            assert names == list(ALL[: len(names)]) or names[:4] == list(gs.SBIR_ORDER)
            market = [p.iterations for p in gs.plan_session(rates, minutes) if p.task == "reid"]
            assert len(set(market)) <= 1


def test_full_recipe_when_everything_fits():
    plan = gs.plan_session(FAST, 10)
    sbir = [p for p in plan if p.task == "fgsbir"]
    assert [p.iterations for p in sbir] == [20_000] * 4 and all("full recipe" in p.note for p in sbir)
    assert [p.iterations for p in plan if p.task == "reid"] == [60_000, 60_000]


def test_short_budget_keeps_the_first_priorities():
    plan = gs.plan_session(T4, 4)  # 210 s: no Market run fits; FG-SBIR may take it all
    assert [p.experiment for p in plan] == ["shoes_vanilla"]
    assert gs.plan_session(T4, 0.5) == []


def test_already_done_runs_are_skipped_and_market_partner_matches():
    plan = gs.plan_session(gs.EXAMPLE_RATES, 12, already_done={"shoes_vanilla": 2500, "market_vanilla": 3000})
    names = [p.experiment for p in plan]
    assert "shoes_vanilla" not in names and "market_vanilla" not in names
    assert [p.iterations for p in plan if p.experiment == "market_ours"] == [3_000]
    assert names == ["shoes_ours", "chairs_vanilla", "chairs_ours", "market_ours"]
    assert gs.plan_session(gs.EXAMPLE_RATES, 12, already_done=ALL) == []


def test_names_ok_drops_runs_without_data():
    plan = gs.plan_session(gs.EXAMPLE_RATES, 12, names_ok=gs.SBIR_ORDER)
    assert [p.experiment for p in plan] == list(gs.SBIR_ORDER)
    assert plan[0].iterations > 2_500  # Market absent: FG-SBIR gets the whole budget


def _record(path, name, iterations):
    path.parent.mkdir(parents=True, exist_ok=True)
    rec = {"experiment": name, "metrics": {"acc@1": 0.5}, "schedule": {"iterations_run": iterations},
           "env": {"device": "cuda"}, "finished_utc": "2026-12-02T00:00:00Z"}  # fmt: skip
    path.write_text(json.dumps(rec))
    return rec


def test_already_done_reads_finished_records_only(tmp_path):
    _record(tmp_path / "full" / "shoes_vanilla.json", "shoes_vanilla", 2000)
    (tmp_path / "full" / "shoes_ours.json").write_text('{"experiment": "shoes_ours"}')  # not finished
    (tmp_path / "full" / "chairs_ours.json").write_text("{broken")
    assert gs.already_done(tmp_path) == {"shoes_vanilla": 2000}


def test_a_failing_run_does_not_stop_the_others(tmp_path, monkeypatch):
    calls = []

    def fake_run_one(name, iterations, *, out_root, force, **kw):
        calls.append((name, iterations, force))
        if name == "shoes_ours":
            raise RuntimeError("CUDA out of memory (fake)")
        return _record(out_root / "full" / f"{name}.json", name, iterations)

    monkeypatch.setattr(gs, "run_one", fake_run_one)
    _record(tmp_path / "full" / "shoes_vanilla.json", "shoes_vanilla", 2500)  # finished by a first call
    plan = gs.plan_session(gs.EXAMPLE_RATES, 12)
    log = gs.SessionLog(tmp_path / "logs")
    rows = gs.run_session(plan, time.monotonic() + 3600, log, data_root=None, out_root=tmp_path,
                          runs_root=None, device="cpu")  # fmt: skip
    status = {r["experiment"]: r["status"] for r in rows}
    assert status["shoes_vanilla"] == "already done"
    assert status["shoes_ours"].startswith("FAILED: RuntimeError: CUDA out of memory")
    assert all(status[n] == "done" for n in ALL[2:])
    assert [c[0] for c in calls] == list(ALL[1:])
    text = (tmp_path / "logs" / "gpu_session.log").read_text()
    assert "Traceback" in text and "chairs_ours: done" in text
    rec = json.loads((tmp_path / "full" / "market_ours.json").read_text())
    assert rec["gpu_session"]["planned_iterations"] == 3_400


def test_runs_that_no_longer_fit_are_skipped(tmp_path, monkeypatch):
    monkeypatch.setattr(gs, "run_one", lambda *a, **k: pytest.fail("must not run"))
    plan = gs.plan_session(gs.EXAMPLE_RATES, 12)
    rows = gs.run_session(plan[:1], time.monotonic() + 10, gs.SessionLog(None), data_root=None,
                          out_root=tmp_path, runs_root=None, device="cpu")  # fmt: skip
    assert rows[0]["status"].startswith("skipped: needs 1.4 min")


def test_non_bf16_precision_runs_in_fp32(tmp_path, monkeypatch):
    from cdimlab.precision import choose_precision

    seen = []
    monkeypatch.setattr(gs, "run_one", lambda name, it, **k: seen.append(k["overrides"]) or {})
    plan = gs.plan_session(gs.EXAMPLE_RATES, 12)[:1]
    for cap in ((7, 5), (9, 0)):
        gs.run_session(plan, time.monotonic() + 3600, gs.SessionLog(None), data_root=None, out_root=tmp_path,
                       runs_root=None, device="cpu", precision=choose_precision("cuda", capability=cap))  # fmt: skip
    assert seen == [{"amp": False}, None]  # the trainer's autocast is bf16: a T4 must not emulate it


def test_dry_run_prints_the_table_and_exits_0(tmp_path, capsys):
    rc = gs.main(["--dry-run", "--minutes", "12", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0
    assert "EXAMPLE" in out and "| experiment | iterations | batch | est. min | cumulative min |" in out
    assert "| shoes_vanilla | 2,500 | 128 |" in out and "| market_ours | 3,400 | 64 |" in out


def test_dry_run_with_rates_file_and_a_broken_one(tmp_path, capsys):
    path = tmp_path / "rates.json"
    path.write_text(json.dumps(T4))
    assert gs.main(["--dry-run", "--minutes", "12", "--rates", str(path), "--out", str(tmp_path)]) == 0
    assert "fake T4" in capsys.readouterr().out
    path.write_text("{}")
    with pytest.raises(SystemExit, match=r"--rates .*rates.json: not a rate table"):
        gs.main(["--dry-run", "--rates", str(path), "--out", str(tmp_path)])


def test_without_cuda_and_without_dry_run_exits_2(tmp_path, capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gs.main(["--out", str(tmp_path), "--log-dir", str(tmp_path / "logs")]) == 2
    assert "use --dry-run" in capsys.readouterr().err


def test_bench_report_has_rates_and_runs():
    rates = {"rows": [{"task": "FG-SBIR", "model_only": 100.0, "trainer": 80.0}], "cmc_map_s": 0.02,
             "cmc_shape": [3368, 19732], "env": {"device_name": "Fake", "device": "cuda", "torch": "x"}}  # fmt: skip
    rows = [
        {"experiment": "shoes_vanilla", "iterations": 2500, "est_s": 90.0, "wall_s": 60.0, "status": "done"}
    ]
    text = gs.bench_report(rates, rows, "precision: bf16 autocast (x)")
    assert (
        "| FG-SBIR | 100.0 | 80.0 | 0.80 |" in text and "| shoes_vanilla | 2,500 | 1.5 | 1.0 | done |" in text
    )


@pytest.mark.slow
def test_preflight_on_cpu_writes_a_rate_table_the_planner_reads(tmp_path):
    """The real adapters (bench at its tiny sizes), no data: the decode rate falls back to the example's."""
    log = gs.SessionLog(tmp_path)
    rates, prec = gs.preflight("cpu", tmp_path / "no_data", log, sizes="tiny", cmc_shape=(20, 60))
    assert prec.name == "fp32" and rates["precision"] == "fp32"
    assert rates["sbir"]["trainer_img_per_s"] > 0 and rates["reid"]["model_only_img_per_s"] > 0
    assert rates["cmc_map_s"] > 0 and rates["decode_img_per_s"] == gs.EXAMPLE_RATES["decode_img_per_s"]
    json.dumps(rates)  # serialisable as the session writes it
    gs.plan_session(rates, 60)  # planner accepts it (CPU rates: little or nothing fits)
    assert "precision: fp32 (cpu: fp32)" in (tmp_path / "gpu_session.log").read_text()


def test_main_end_to_end_with_fakes_then_a_second_call_continues(tmp_path, monkeypatch, capsys):
    """The whole CUDA path of main() with the card, the measurements and the training faked."""
    import torch

    from cdimlab.precision import choose_precision

    rates = dict(gs.EXAMPLE_RATES, label="measured on Fake Card", device_name="Fake Card",
                 rows=[{"task": "FG-SBIR", "model_only": 1e4, "trainer": 9e3}], cmc_map_s=0.02,
                 cmc_shape=[3368, 19732], env={"device_name": "Fake Card", "device": "cuda", "torch": "x"})  # fmt: skip
    calls = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(gs, "check_data", lambda root, log: list(gs.SBIR_ORDER))  # no Market data
    monkeypatch.setattr(gs, "preflight", lambda *a, **k: (rates, choose_precision("cuda", capability=(9, 0))))
    monkeypatch.setattr(gs, "run_one", lambda name, it, *, out_root, **k: calls.append(name)
                        or _record(out_root / "full" / f"{name}.json", name, it))  # fmt: skip
    args = ["--minutes", "12", "--out", str(tmp_path / "results"), "--bench-dir", str(tmp_path / "bench"),
            "--log-dir", str(tmp_path / "logs")]  # fmt: skip
    assert gs.main(args) == 1  # Market data missing: said, and the exit code says so
    assert calls == list(gs.SBIR_ORDER)
    report = (tmp_path / "bench" / "gpu_Fake_Card.md").read_text()
    assert "| shoes_vanilla |" in report and "precision: bf16 autocast" in report
    assert (
        json.loads((tmp_path / "bench" / "gpu_Fake_Card.rates.json").read_text())["device_name"]
        == "Fake Card"
    )
    assert "not run for lack of data" in (tmp_path / "logs" / "gpu_session.log").read_text()
    calls.clear()
    gs.main(args)  # second call: everything already recorded
    assert calls == []


def test_cli_forwards_gpu_session_dry_run(capsys):
    from cdimlab.cli import main as cli_main

    assert cli_main(["gpu-session", "--dry-run", "--minutes", "12"]) == 0
    out = capsys.readouterr().out
    assert "shoes_vanilla" in out and "market_ours" in out
