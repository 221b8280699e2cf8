"""The controlled shape-vs-parts experiment: summaries by hand, wording both ways, and the committed records."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cdimlab import controlled
from cdimlab.baselines import pixel_matcher
from cdimlab.experiments import get_experiment, run_experiment


def _record(name: str, seed: int, acc1: float, untrained: float) -> dict:
    return {"experiment": name, "seed": seed, "task": "fgsbir", "metrics": {"acc@1": acc1, "acc@10": 0.9},
            "untrained": {"acc@1": untrained, "acc@10": 0.8}, "chance": {"acc@1": 0.01, "acc@10": 0.1},
            "n_queries": 100, "data": {"kind": "synthetic", "path": "<cache>"}}  # fmt: skip


def _result(monkeypatch, acc: dict[str, tuple[list[float], float]]) -> controlled.ControlledResult:
    """A ControlledResult from made-up records: name -> (trained acc@1 per seed 0-2, untrained acc@1)."""
    calls = []

    def fake_run(name, profile, seed, **kw):
        calls.append((name, profile, seed, kw["out_root"]))
        trained, untrained = acc[name]
        return _record(name, seed, trained[seed], untrained)

    monkeypatch.setattr(controlled, "pixel_scores", lambda cond, data_root=None: {0.0: 0.2, 8.0: 0.5})
    res = controlled.run_controlled((0, 1, 2), "OUT", run=fake_run)
    assert len(calls) == 18 and {c[1] for c in calls} == {"smoke"} and {c[3] for c in calls} == {"OUT"}
    return res


def test_gaps_table_and_verdict_when_the_switch_moves_the_advantage(monkeypatch):
    res = _result(monkeypatch, {
        "shape_vanilla": ([0.50, 0.52, 0.48], 0.30), "shape_ours": ([0.51, 0.51, 0.50], 0.35),
        "shape_conv5": ([0.50, 0.50, 0.50], 0.33),
        "parts_vanilla": ([0.50, 0.45, 0.55], 0.38), "parts_ours": ([0.60, 0.57, 0.63], 0.55),
        "parts_conv5": ([0.51, 0.46, 0.55], 0.45),
    })  # fmt: skip
    assert res.gaps("parts") == pytest.approx([0.10, 0.12, 0.08])
    assert res.gaps("shape") == pytest.approx([0.01, -0.01, 0.02])
    assert res.gaps("parts", key="untrained") == pytest.approx([0.17] * 3)
    t = res.table()
    row = t.loc[("parts", "conv4 flatten + fc7")]
    assert row["acc@1 (%)"] == pytest.approx(60.0) and row["± std"] == pytest.approx(3.0)
    assert row["gap to Vanilla (points)"] == pytest.approx(10.0) and row["gap ± std"] == pytest.approx(2.0)
    assert row["beats Vanilla"] == "3/3" and row["untrained (%)"] == pytest.approx(55.0)
    assert t.loc[("shape", "conv4 flatten + fc7"), "beats Vanilla"] == "2/3"
    assert t.loc[("shape", "pixel matcher, no learning (best blur)"), "acc@1 (%)"] == pytest.approx(50.0)
    text = res.verdict()
    assert "identity in **parts**: Ours (conv4) - Vanilla = +10.0 ± 2.0" in text and "+17.0 ± 0.0" in text
    assert "After training, the switch moved fusion's advantage: 9.3 points more" in text
    assert "Before training, the switch moved fusion's advantage: 12.0 points more" in text
    # parts: Vanilla 0.50 - 0.38, Ours 0.60 - 0.55
    assert "training moved Vanilla by +12.0 and Ours by +5.0 points" in text
    assert res.moved("untrained") == (pytest.approx(0.12), True)
    assert "adds +0.7 (parts)" in text and "still has a layout" in text
    assert (
        "seeds [0, 1, 2]" in res.markdown()
        and "| parts | Vanilla (fc7 only) | 50.0 | 5.0 | 38.0 |  |" in res.markdown()
    )


def test_verdict_says_so_when_the_switch_does_not_move_it(monkeypatch):
    same = {f"{c}_{a}": ([0.50, 0.40, 0.60] if a == "vanilla" else [0.52, 0.38, 0.63], 0.3)
            for c in ("shape", "parts") for a in ("vanilla", "ours", "conv5")}  # fmt: skip
    text = _result(monkeypatch, same).verdict()
    assert "After training, the switch did not move fusion's advantage by more than the spread" in text
    assert "no sign of the paper's mechanism after training" in text and "(+0.0 points)" in text
    assert "not clearly less than conv4" in text


def test_main_prints_each_run_and_writes_the_summary(monkeypatch, tmp_path, capsys):
    def fake_run(name, profile, seed, **kw):
        return _record(name, seed, 0.5 + 0.1 * name.endswith("_ours"), 0.3)

    monkeypatch.setattr(controlled, "run_experiment", fake_run)
    monkeypatch.setattr(controlled, "pixel_scores", lambda cond, data_root=None: {0.0: 0.2, 8.0: 0.5})
    assert controlled.main(["--seeds", "0", "1", "--out", str(tmp_path / "c")]) == 0
    out = capsys.readouterr().out
    assert "[1/12] shape_vanilla seed 0: acc@1 0.50 (untrained 0.30)" in out and "[12/12]" in out
    assert (tmp_path / "c" / "controlled.png").stat().st_size > 10_000
    assert "seeds [0, 1]" in (tmp_path / "c" / "SUMMARY.md").read_text()


def test_pixel_matcher_by_hand():
    photos = np.full((3, 32, 32), 255, np.uint8)
    for i in range(3):  # one black square per photo, at its own place
        photos[i, 4 + 8 * i : 10 + 8 * i, 4:10] = 0
    assert pixel_matcher(photos, photos, (0, 2)) == {0.0: 1.0, 2.0: 1.0}
    blank = np.full_like(photos, 255)
    assert pixel_matcher(blank, photos, (0,))[0.0] == pytest.approx(1 / 3), "all tied: chance, never credit"
    shuffled = photos[[1, 2, 0]]
    assert pixel_matcher(shuffled, photos, (0,))[0.0] == 0.0


def test_catalogue_arms_differ_only_in_fusion():
    for cond in ("shape", "parts"):
        exps = [get_experiment(f"{cond}_{a}") for a in ("vanilla", "ours", "conv5")]
        assert {e.dataset for e in exps} == {f"shoes_{cond}"} and {e.table for e in exps} == {0}
        assert len({e.config("smoke") for e in exps}) == 1, "same recipe for every arm"
        assert [e.fusion.taps for e in exps] == [(), ("conv4",), ("conv5",)]
        assert set(exps[0].profiles) == {"smoke"}, "synthetic-only: no laptop or full profile"


@pytest.mark.slow
def test_committed_record_is_reproduced_from_scratch(tmp_path):
    """Re-run one committed controlled record (parts, Ours, seed 1: ~40 s) and get the same numbers."""
    committed = json.loads((controlled.ROOT / "smoke" / "parts_ours.seed1.json").read_text())
    rec = run_experiment("parts_ours", "smoke", out_root=tmp_path / "r", runs_root=tmp_path / "runs", seed=1,
                         progress=False)  # fmt: skip
    assert rec["metrics"] == pytest.approx(committed["metrics"], abs=1e-9)
    assert rec["untrained"] == pytest.approx(committed["untrained"], abs=1e-9)
    assert rec["schedule"]["best_iteration"] == committed["schedule"]["best_iteration"]


def test_committed_records_cover_every_arm_and_seed():
    for cond in controlled.CONDITIONS:
        for arm in ("vanilla", "ours", "conv5"):
            for seed in controlled.SEEDS:
                suffix = f".seed{seed}" if seed else ""
                rec = json.loads((controlled.ROOT / "smoke" / f"{cond}_{arm}{suffix}.json").read_text())
                assert rec["data"]["kind"] == "synthetic" and rec["n_queries"] == 100 and rec["seed"] == seed
                assert rec["chance"]["acc@1"] == pytest.approx(0.01)
                assert "/work" not in json.dumps(rec) and "/tmp" not in json.dumps(rec)
