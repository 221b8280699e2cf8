"""Experiment registry: every trained row of Tables 3-11, the paper's numbers, shared runs; run_experiment records."""

from __future__ import annotations

import json

import pytest

from cdimlab.experiments import (
    EXPERIMENTS,
    LAPTOP_PAIRS,
    PAPER_TABLES,
    experiments_for_tables,
    get_experiment,
    run_experiment,
)
from cdimlab.fusion import FusionConfig


def test_tables_3_to_11_with_expected_row_counts():
    assert sorted(PAPER_TABLES) == list(range(3, 12))
    counts = {n: len(t.rows) for n, t in PAPER_TABLES.items()}
    # T3: 7 paper rows + our HOG row per category; T4: 11 cited + 2; T5: 5 + 2; T6: (3 + 2) x 2 settings
    assert counts == {3: 24, 4: 13, 5: 7, 6: 10, 7: 4, 8: 5, 9: 2, 10: 2, 11: 6}


def test_every_trained_row_has_an_experiment_and_cited_rows_have_none():
    for table in PAPER_TABLES.values():
        for row in table.rows:
            if row.cited:
                assert row.experiment is None, row
            else:
                assert row.experiment in EXPERIMENTS, row
                assert EXPERIMENTS[row.experiment].paper == row.paper, row
    trained = {r.experiment for t in PAPER_TABLES.values() for r in t.rows if r.experiment}
    laptop_only = {n for pair in LAPTOP_PAIRS for n in pair if EXPERIMENTS[n].table == 0}
    controlled = {f"{c}_{a}" for c in ("shape", "parts") for a in ("vanilla", "ours", "conv5")}
    assert trained | laptop_only | controlled == set(EXPERIMENTS)  # no orphan experiments
    assert all(set(EXPERIMENTS[n].profiles) == {"laptop"} for n in laptop_only)  # the laptop track's own rows
    assert all(set(EXPERIMENTS[n].profiles) == {"smoke"} and EXPERIMENTS[n].table == 0 for n in controlled)


def test_shared_rows_share_one_experiment():
    def name(table: int, label: str, group: str = "") -> str:
        return next(
            r.experiment for r in PAPER_TABLES[table].rows if r.label == label and r.group.startswith(group)
        )

    assert (
        name(3, "Ours", "QMUL-Shoe")
        == name(7, "conv5 (Ours)")
        == name(9, "Flattening (Ours)")
        == "shoes_ours"
    )
    assert name(4, "Ours") == name(8, "res5(a,b) (Ours)") == name(10, "GAP (Ours)") == "market_ours"
    names = experiments_for_tables(None)
    paper_rows = [n for n, e in EXPERIMENTS.items() if e.table != 0]  # table 0: the laptop track's own rows
    assert len(names) == len(set(names)) == len(paper_rows)
    assert names.index("market_vanilla") < names.index("market_vanilla_fusion")


@pytest.mark.parametrize(
    "name, metric, value",
    [
        ("shoes_ours", "acc@1", 0.6435),
        ("shoes_vanilla", "acc@10", 0.9217),
        ("chairs_ours", "acc@1", 0.8454),
        ("handbags_vanilla", "acc@1", 0.3988),
        ("market_ours", "mAP", 0.7555),
        ("market_ours", "mq_rank1", 0.9332),
        ("market_vanilla", "rank1", 0.8732),
        ("duke_ours", "mAP", 0.6388),
        ("cuhk03_labeled_ours", "rank1", 0.5150),
        ("cuhk03_detected_vanilla", "mAP", 0.3282),
        ("shoes_conv4_conv5", "acc@1", 0.6261),
        ("market_res4a_f", "mq_mAP", 0.8058),
        ("market_vanilla_fusion", "mAP", 0.7188),
        ("shoes_gap", "acc@1", 0.5826),
        ("market_flatten", "rank1", 0.8925),
        ("chairs_inception_fusion", "acc@10", 1.0),
        ("handbags_inception", "acc@1", 0.4583),
    ],
)
def test_paper_numbers_spot_checks(name, metric, value):
    assert EXPERIMENTS[name].paper[metric] == pytest.approx(value, abs=1e-6)


def test_attention_only_has_no_acc10_and_cited_rows_are_marked():
    assert "acc@10" not in EXPERIMENTS["shoes_attention"].paper
    dssa = [r for r in PAPER_TABLES[3].rows if r.label == "DSSA"]
    assert len(dssa) == 3 and all(r.cited == "[27]" and r.experiment is None for r in dssa)
    assert dssa[0].paper == {"acc@1": 0.6174, "acc@10": 0.9478}


def test_configs_follow_the_paper():
    ours, van = EXPERIMENTS["shoes_ours"], EXPERIMENTS["market_vanilla"]
    assert ours.fusion == FusionConfig(("conv5",), "flatten", None, True)
    assert EXPERIMENTS["market_ours"].fusion == FusionConfig(("res5a", "res5b"), "gap", 1024, False)
    full = ours.config("full")
    assert (full.optimizer, full.lr, full.batch_size, full.margin, full.iterations) == (
        "sgd",
        1e-3,
        128,
        0.3,
        20000,
    )
    rf = van.config("full")
    assert (rf.optimizer, rf.lr, rf.batch_size, rf.iterations, rf.lr_decay) == (
        "adam",
        3.5e-4,
        64,
        60000,
        0.95,
    )
    assert EXPERIMENTS["cuhk03_labeled_ours"].config("full").lr == 5e-4
    assert ours.config("smoke").sbir_input == 113 and van.config("smoke").reid_input == (64, 32)
    assert EXPERIMENTS["market_vanilla_fusion"].eval_only_from == "market_vanilla"


def test_unknown_experiment_lists_valid_names():
    with pytest.raises(ValueError, match="shoes_ours"):
        get_experiment("shoes_best")


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    """Run one FG-SBIR row (2 iterations), the HOG row and a ReID pair (2 iterations + eval-only) on synthetic data."""
    root = tmp_path_factory.mktemp("exp")
    kw = dict(data_root=root / "data", out_root=root / "results", device="cpu", runs_root=root / "runs",
              progress=False)  # fmt: skip
    recs = {
        "shoes_vanilla": run_experiment("shoes_vanilla", "smoke", config_overrides={"iterations": 2}, **kw),
        "shoes_hog": run_experiment("shoes_hog", "smoke", **kw),
        "market_vanilla": run_experiment("market_vanilla", "smoke", config_overrides={"iterations": 2}, **kw),
        "market_vanilla_fusion": run_experiment("market_vanilla_fusion", "smoke", **kw),
    }
    return root, recs


def test_run_experiment_writes_complete_records(tiny_runs):
    root, recs = tiny_runs
    for name, rec in recs.items():
        path = root / "results" / "smoke" / f"{name}.json"
        assert json.loads(path.read_text())["metrics"] == rec["metrics"]
        for key in ("metrics", "config", "seed", "schedule", "wall_s", "env", "data", "paper"):
            assert key in rec, (name, key)
        assert rec["data"]["synthetic"] is True
        assert {"torch", "device_name", "git_commit"} <= set(rec["env"])
    assert recs["shoes_vanilla"]["schedule"]["iterations_run"] == 2
    assert set(recs["shoes_vanilla"]["metrics"]) == {"acc@1", "acc@10"}
    assert set(recs["market_vanilla"]["metrics"]) >= {"mAP", "rank1", "mq_mAP", "mq_rank1"}
    assert recs["market_vanilla_fusion"]["schedule"] == {"eval_only_from": "market_vanilla"}
    assert recs["shoes_hog"]["metrics"]["acc@1"] > 1 / 30  # 30 synthetic test photos: beats chance


def test_run_experiment_skips_existing_results(tiny_runs):
    root, recs = tiny_runs
    again = run_experiment("shoes_vanilla", "smoke", root / "data", root / "results", "cpu",
                           runs_root=root / "runs", progress=False)  # fmt: skip
    assert again["finished_utc"] == recs["shoes_vanilla"]["finished_utc"]


def test_records_hold_untrained_chance_and_no_machine_paths(tiny_runs):
    root, recs = tiny_runs
    rec = recs["shoes_vanilla"]
    assert rec["chance"] == {"acc@1": 1 / 30, "acc@10": 10 / 30} and rec["n_queries"] == 30
    assert set(rec["untrained"]) == {"acc@1", "acc@10"}
    assert (
        recs["market_vanilla"]["untrained"]["rank1"] >= 0 and 0 < recs["market_vanilla"]["chance"]["mAP"] < 1
    )
    assert recs["shoes_hog"]["untrained"] is None  # nothing to train, no floor of its own; chance still given
    assert recs["shoes_hog"]["chance"]["acc@1"] == 1 / 30
    text = json.dumps(rec)
    assert str(root) not in text and rec["data"]["kind"] == "synthetic"
    assert not rec["schedule"]["run_dir"].startswith("/")
    # the untrained score is the same network at the very weights training started from (same seed)
    from cdimlab.experiments import build_model, evaluate, load_data
    from cdimlab.utils import seed_everything

    exp = get_experiment("shoes_vanilla")
    cfg = exp.config("smoke")
    data = load_data(exp, "smoke", root / "data", cfg=cfg)
    seed_everything(0)
    assert evaluate(exp, build_model(exp, cfg), data, cfg, "cpu") == rec["untrained"]


def test_other_seeds_get_their_own_record_and_run_folder(tiny_runs):
    root, _ = tiny_runs
    rec = run_experiment("shoes_vanilla", "smoke", root / "data", root / "results", "cpu", seed=1,
                         runs_root=root / "runs", progress=False, config_overrides={"iterations": 2})  # fmt: skip
    assert rec["seed"] == 1 and (root / "results" / "smoke" / "shoes_vanilla.seed1.json").is_file()
    assert (root / "runs" / "smoke" / "shoes_vanilla.seed1").is_dir()
    with pytest.raises(ValueError, match="seed must be a non-negative int"):
        run_experiment("shoes_vanilla", "smoke", root / "data", root / "results", "cpu", seed=-1)


def test_laptop_and_full_never_fall_back_to_synthetic_data(tmp_path):
    for profile, name in (("full", "shoes_ours"), ("laptop", "shoes_ours"), ("full", "market_ours")):
        with pytest.raises(FileNotFoundError, match="Prepare it with"):
            run_experiment(
                name, profile, tmp_path / "typo", tmp_path / "r", "cpu", runs_root=tmp_path / "runs"
            )
    assert not (tmp_path / "r").exists() and not (tmp_path / "typo").exists()


def _copy_runs(tiny_runs, tmp_path):
    """A private copy of the fixture's data/results/runs (the tests below rewrite records and run folders)."""
    import shutil

    root, _ = tiny_runs
    shutil.copytree(root, tmp_path / "r", symlinks=True)
    return tmp_path / "r"


def test_records_say_whether_the_run_resumed_and_the_checkpoint_names_its_experiment(tiny_runs, tmp_path):
    from cdimlab.experiments import load_trained
    from cdimlab.train import CheckpointError, load_checkpoint

    root, recs = tiny_runs
    assert recs["shoes_vanilla"]["resumed"] is False
    folder = root / "runs" / "smoke" / "shoes_vanilla"
    ident = load_checkpoint(folder / "checkpoint.pt")["identity"]
    assert ident["experiment"] == "shoes_vanilla" and ident["data"] == "synthetic"
    assert ident["model"]["class"] == "EmbeddingNet" and ident["model"]["fusion"]["taps"] == []
    renamed = _copy_runs(tiny_runs, tmp_path) / "runs" / "smoke" / "renamed"
    (renamed.parent / "shoes_vanilla").rename(renamed)
    model, cfg = load_trained(renamed)  # the experiment comes from the checkpoint, not the folder name
    assert cfg.iterations == 2 and type(model).__name__ == "EmbeddingNet"
    with pytest.raises(CheckpointError, match=r"another run \(experiment: checkpoint 'shoes_vanilla'"):
        load_trained(renamed, get_experiment("shoes_ours"))


def test_torn_or_stale_synthetic_records_are_run_again(tiny_runs, tmp_path, monkeypatch, capsys):
    import cdimlab.experiments.runner as runner
    from cdimlab.data.registry import DatasetLocation

    root = _copy_runs(tiny_runs, tmp_path)
    kw = dict(data_root=root / "data", out_root=root / "results", device="cpu", runs_root=root / "runs",
              progress=False)  # fmt: skip
    record = root / "results" / "smoke" / "shoes_hog.json"
    old = json.loads(record.read_text())
    record.write_text(record.read_text()[:200])  # torn by a kill mid-write of an older, non-atomic tool
    again = run_experiment("shoes_hog", "smoke", **kw)
    assert again["finished_utc"] != old["finished_utc"] and "is torn or unreadable" in capsys.readouterr().err

    real = runner.locate_dataset  # real data "arrives": only the question "is real data present?" says yes

    def located(name, root=None, allow_synthetic=True, **k):
        return (
            DatasetLocation(name, "x", synthetic=False)
            if not allow_synthetic
            else real(name, root, True, **k)
        )

    monkeypatch.setattr(runner, "locate_dataset", located)
    before = json.loads((root / "results" / "smoke" / "shoes_vanilla.json").read_text())
    rec = run_experiment("shoes_vanilla", "smoke", config_overrides={"iterations": 2}, **kw)
    assert rec["finished_utc"] != before["finished_utc"] and rec["resumed"] is False
    assert "made on synthetic data, and real data is present now" in capsys.readouterr().err
    assert list((root / "runs" / "smoke" / "shoes_vanilla").glob("old-*/checkpoint.pt"))  # kept, not resumed
