"""The laptop track's summary: mean ± std over seeds, wins, verdicts, and its refusal of synthetic data."""

from __future__ import annotations

import json

import pytest

from cdimlab import laptop
from cdimlab.experiments import run_experiment


def _rec(name: str, seed: int, acc1: float, untrained: float, task: str = "fgsbir") -> dict:
    return {"experiment": name, "seed": seed, "task": task, "metrics": {"acc@1": acc1, "acc@10": 0.5},
            "untrained": {"acc@1": untrained, "acc@10": 0.4}, "chance": {"acc@1": 0.01, "acc@10": 0.1},
            "n_queries": 100}  # fmt: skip


def test_summary_means_stds_and_wins_against_hand_values(tmp_path):
    recs = {}
    for s, (v, o) in enumerate([(0.10, 0.20), (0.20, 0.30), (0.30, 0.25)]):
        recs[("shoes_mnv2_vanilla", s)] = _rec("shoes_mnv2_vanilla", s, v, 0.05)
        recs[("shoes_mnv2_ours", s)] = _rec("shoes_mnv2_ours", s, o, 0.15)
    recs[("shoes_mnv2_ours", 7)] = _rec("shoes_mnv2_ours", 7, 0.9, 0.1)  # no Vanilla partner: left out
    (p,) = laptop.summarize_pairs(recs)
    assert p.seeds == [0, 1, 2] and p.wins == 2 and p.n_queries == 100
    assert p.trained["vanilla"] == pytest.approx((0.2, 0.1))
    assert p.trained["ours"][0] == pytest.approx(0.25) and p.trained["ours"][1] == pytest.approx(0.05)
    assert p.untrained["ours"] == pytest.approx((0.15, 0.0))
    text = laptop.render_markdown([p])
    assert "no clear winner (Ours beat Vanilla on 2 of 3 seeds" in text
    assert "| shoes | mobilenetv2 | vanilla | acc@1 | 20.0 ± 10.0 | 5.0 ± 0.0 | 1.0 | 3 |  |" in text


def test_verdict_says_when_fusion_won_or_lost_everywhere():
    recs = {}
    for s in range(3):
        recs[("chairs_mnv2_vanilla", s)] = _rec("chairs_mnv2_vanilla", s, 0.30 + 0.01 * s, 0.3)
        recs[("chairs_mnv2_ours", s)] = _rec("chairs_mnv2_ours", s, 0.50 + 0.01 * s, 0.4)
    (p,) = laptop.summarize_pairs(recs)
    assert "fusion won on every seed (3/3), by 20.0 points" in laptop.verdict(p)
    # untrained: Ours 0.40 vs Vanilla 0.30, so 10 of the 20 trained points were there before any training
    assert "Ours was 10.0 points ahead of Vanilla: 50 % of the trained gap was there before training" in (
        laptop.verdict(p)
    )
    level = {k: dict(v, untrained={"acc@1": 0.3, "acc@10": 0.4}) for k, v in recs.items()}
    (lv,) = laptop.summarize_pairs(level)
    assert "Ours was level with Vanilla: the gap after training came from training" in laptop.verdict(lv)
    (one,) = laptop.summarize_pairs({k: v for k, v in recs.items() if k[1] == 0})
    assert "only 1 seed(s)" in laptop.verdict(one) and "won" not in laptop.verdict(one)
    swapped = {(n.replace("ours", "X").replace("vanilla", "ours").replace("X", "vanilla"), s): r
               for (n, s), r in recs.items()}  # fmt: skip
    (q,) = laptop.summarize_pairs(swapped)
    assert "fusion lost on every seed" in laptop.verdict(q)


def test_write_summary_reads_records_and_names_a_broken_one(tmp_path):
    folder = tmp_path / "laptop"
    folder.mkdir()
    for s in (0, 1):
        for name, v in (("shoes_mnv2_vanilla", 0.1), ("shoes_mnv2_ours", 0.2)):
            (folder / f"{name}.seed{s}.json").write_text(json.dumps(_rec(name, s, v + s / 10, 0.05)))
    paths = laptop.write_summary(tmp_path)
    assert "laptop: real data, CPU" in paths["markdown"].read_text() and paths["plot"].is_file()
    (folder / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="bad.json"):
        laptop.load_records(tmp_path)


def test_laptop_profile_never_uses_synthetic_data(tmp_path):
    with pytest.raises(FileNotFoundError, match="download_qmul_v1.py"):
        run_experiment("shoes_mnv2_ours", "laptop", data_root=tmp_path / "nothing", out_root=tmp_path / "r",
                       runs_root=tmp_path / "runs", progress=False)  # fmt: skip
    assert not (tmp_path / "r").exists()


def test_run_track_skips_a_dataset_whose_data_is_missing(tmp_path):
    logs: list[str] = []
    recs = laptop.run_track(
        [0], ["shoes"], tmp_path / "nothing", tmp_path / "r", tmp_path / "runs", log=logs.append
    )
    assert recs == [] and any("skipped shoes" in m and "download_qmul_v1.py" in m for m in logs)
    assert sum("shoes_mnv2" in m for m in logs) == 1  # the Ours run of a skipped dataset is not even tried
