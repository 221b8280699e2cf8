"""cdimlab.course: the notebook glue (environment check, profiles, side-by-side training, small helpers)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from cdimlab import course


def test_package_versions_reports_missing_as_none():
    v = course.package_versions(("torch", "surely_not_a_real_package_xyz"))
    assert v["torch"] == torch.__version__
    assert v["surely_not_a_real_package_xyz"] is None


def test_widgets_unavailable_outside_a_kernel():
    assert course.widgets_available() is False


def test_datasets_status_on_an_empty_root(tmp_path):
    status = course.datasets_status(tmp_path)
    assert set(status) == set(course.REAL_DATASETS)
    assert set(status.values()) == {"missing"}
    assert not (tmp_path / "synthetic").exists(), "checking must not generate synthetic data"


def test_environment_report_has_what_notebook_00_checks(tmp_path):
    rep = course.environment_report(tmp_path)
    for key in ("python", "packages", "cuda", "device", "widgets", "datasets", "data_root"):
        assert key in rep
    assert rep["data_root"] == str(tmp_path)
    assert rep["cuda"] == torch.cuda.is_available()


def test_resolve_profile(tmp_path):
    assert course.resolve_profile("smoke") == "smoke"
    assert course.resolve_profile("auto", ("shoes",), tmp_path) == "smoke", "no real data: smoke, GPU or not"
    with pytest.raises(ValueError, match="profile"):
        course.resolve_profile("fast")


def test_chance_acc_at_k():
    assert course.chance_acc_at_k(115, 1) == pytest.approx(1 / 115)
    assert course.chance_acc_at_k(115, 10) == pytest.approx(10 / 115)
    assert course.chance_acc_at_k(5, 10) == 1.0
    with pytest.raises(ValueError):
        course.chance_acc_at_k(0, 1)


def test_loss_checks():
    falling = [1.0, 0.9, 0.8, 0.7, 0.5, 0.4, 0.3, 0.2]
    assert course.loss_went_down(falling) and course.loss_is_stable(falling)
    flat = [0.3, 0.31, 0.29, 0.3, 0.31, 0.3]
    assert not course.loss_went_down([0.3, 0.3, 0.3, 0.31]) and course.loss_is_stable(flat)
    assert not course.loss_is_stable([0.3, 0.3, 0.3, 0.9])
    assert not course.loss_is_stable([0.3, float("inf"), 0.2, 0.2])
    assert not course.loss_went_down([1.0]) and course.loss_is_stable([1.0]), (
        "one value: no progress, no blow-up"
    )
    with pytest.raises(ValueError, match="no loss values"):
        course.loss_went_down([float("nan")])


def test_losses_from_log_skips_evaluation_rows():
    log = [{"iteration": 4, "loss": 0.5}, {"iteration": 8, "val_acc@1": 0.2}, {"iteration": 8, "loss": 0.4}]
    assert course.losses_from_log(log) == [0.5, 0.4]


class _Fit:
    def __init__(self, model):
        self.model = model


def test_train_side_by_side_seeds_each_variant_alike():
    variants = {"a": lambda: nn.Linear(3, 2), "b": lambda: nn.Linear(3, 2)}
    seen = []

    def fit(model):
        seen.append(model.weight.detach().clone())
        return _Fit(model)

    runs = course.train_side_by_side(variants, fit, lambda m: {"acc@1": 0.5, "acc@10": 1.0}, seed=3)
    assert torch.equal(seen[0], seen[1]), "both variants start from the same random state"
    assert set(runs.metrics) == {"a", "b"} and runs.models["a"] is not runs.models["b"]
    table = runs.table()
    assert table.loc["a", "acc@1"] == 50.0 and table.loc["b", "acc@10"] == 100.0


def test_show_pairs_draws_two_rows():
    from cdimlab.viz.feature_maps import figure_pixels

    imgs = np.zeros((3, 16, 16), dtype=np.uint8)
    fig = course.show_pairs(imgs, imgs + 255, ("a", "b"))
    assert len(fig.axes) == 6
    assert figure_pixels(fig).shape[-1] == 4
    with pytest.raises(ValueError, match="at least one image"):
        course.show_pairs(imgs[:0], imgs[:0])
    fig3 = course.show_rows([imgs, imgs, imgs], ("a", "p", "n"))
    assert len(fig3.axes) == 9
    with pytest.raises(ValueError, match="one label per row"):
        course.show_rows([imgs], ("a", "b"))


def test_profile_config_applies_only_given_overrides():
    base = course.profile_config("shoes_vanilla", "smoke")
    same = course.profile_config("shoes_vanilla", "smoke", iterations=None)
    assert same == base
    changed = course.profile_config("shoes_vanilla", "smoke", iterations=3)
    assert changed.iterations == 3 and changed.batch_size == base.batch_size


def test_sbir_data_uses_the_synthetic_stand_in(tmp_path):
    data = course.sbir_data("shoes", tmp_path, seed=0)
    assert data.synthetic and len(data.val) > 0
    assert len(data.train) + len(data.val) > len(data.val)
    assert data.test.sketches.shape[1:] == (256, 256)


def test_two_camera_pairs_pick_two_cameras_of_one_identity(tmp_path):
    rd = course.reid_data("market1501", tmp_path, size=(64, 32), decode_train=False)
    a, b = course.two_camera_pairs(rd.data, n=3, size=(64, 32))
    assert a.shape == b.shape == (3, 64, 32, 3) and a.dtype == np.uint8
    assert all(not np.array_equal(a[i], b[i]) for i in range(3)), "two different images per identity"
    with pytest.raises(ValueError, match="two cameras"):
        course.two_camera_pairs(
            SimpleNamespace(name="one_cam", train=[("x.jpg", 0, 0), ("y.jpg", 0, 0)]), n=1
        )


def test_trained_model_loads_an_earlier_run(tmp_path):
    from cdimlab.experiments import build_model, get_experiment

    exp = get_experiment("shoes_vanilla")
    saved = build_model(exp, exp.config("smoke"))
    folder = tmp_path / "smoke" / "shoes_vanilla"
    folder.mkdir(parents=True)
    torch.save(saved.state_dict(), folder / "best_model.pt")
    model, cfg, source = course.trained_model("shoes_vanilla", "smoke", tmp_path / "data", "cpu", seed=1,
                                              runs_root=tmp_path)  # fmt: skip
    assert source.startswith("loaded") and not model.training
    assert cfg.sbir_input == exp.config("smoke").sbir_input
    for (k, a), b in zip(saved.state_dict().items(), model.state_dict().values(), strict=True):
        assert torch.equal(a, b), k


def test_trained_model_without_a_run_and_without_training(tmp_path):
    model, _, source = course.trained_model("shoes_ours", "smoke", tmp_path / "data", "cpu",
                                            train_if_missing=False, runs_root=tmp_path)  # fmt: skip
    assert source.startswith("untrained") and model.out_dim > 256


def test_dataset_switch_swaps_the_explorer_shown():
    from cdimlab.models import build_backbone
    from cdimlab.viz.explorer import FeatureMapExplorer

    net = build_backbone("sketchanet", input_size=113)
    imgs = torch.rand(2, 1, 113, 113)
    a = FeatureMapExplorer(net, imgs, imgs, taps=("conv5",))
    b = FeatureMapExplorer(net, imgs, imgs.flip(-1), taps=("conv4",))
    box = course.dataset_switch({"a": a, "b": b})
    choice = box.children[0]
    assert box.children[1] is a.widget
    choice.value = "b"
    assert box.children[1] is b.widget
    with pytest.raises(ValueError, match="empty"):
        course.dataset_switch({})


def test_paper_dataset_sizes_is_the_papers_table_1():
    t = course.paper_dataset_sizes()
    assert t.loc["QMUL-Shoe", "train"] == 304 and t.loc["QMUL-Shoe", "test"] == 115
    assert (t.loc["QMUL-Chair", "train"], t.loc["QMUL-Chair", "test"]) == (200, 97)
    assert (t.loc["QMUL-Handbag", "train"], t.loc["QMUL-Handbag", "test"]) == (400, 168)
    m = t.loc["Market-1501"]
    assert (m["train"], m["test"], m["train images"], m["query images"], m["gallery images"]) == (
        751, 750, 12_936, 3_368, 19_732)  # fmt: skip
    assert course.PAPER_URL.endswith("1711.08106")


def _fake_record(name: str, seed: int, acc1: float, untrained: float | None) -> dict:
    return {"experiment": name, "seed": seed, "task": "fgsbir", "metrics": {"acc@1": acc1, "acc@10": 1.0},
            "untrained": None if untrained is None else {"acc@1": untrained, "acc@10": 1.0},
            "chance": {"acc@1": 1 / 30, "acc@10": 1 / 3}, "n_queries": 30,
            "data": {"kind": "synthetic", "path": "<cache>"}}  # fmt: skip


def test_compare_over_seeds_runs_every_seed_and_summarises_by_hand():
    acc = {("shoes_vanilla", 0): 0.5, ("shoes_vanilla", 1): 0.6, ("shoes_vanilla", 2): 0.7,
           ("shoes_ours", 0): 0.6, ("shoes_ours", 1): 0.7, ("shoes_ours", 2): 0.8,
           ("shoes_hog", 0): 0.9, ("shoes_hog", 1): 0.9, ("shoes_hog", 2): 0.9}  # fmt: skip
    calls = []

    def fake_run(name, profile, seed, **kw):
        calls.append((name, profile, seed))
        return _fake_record(name, seed, acc[(name, seed)], None if name == "shoes_hog" else 0.4)

    cmp = course.compare_over_seeds(
        "shoes_vanilla", "shoes_ours", "smoke", (0, 1, 2), ("shoes_hog",), run=fake_run
    )
    assert len(calls) == 9 and {c[1] for c in calls} == {"smoke"}
    s = cmp.summary
    assert s.seeds == [0, 1, 2] and s.wins == 3 and s.n_queries == 30
    assert s.trained["vanilla"] == pytest.approx((0.6, 0.1)) and s.trained["ours"] == pytest.approx(
        (0.7, 0.1)
    )
    table = cmp.table()
    assert list(table["seeds"]) == [3, 3, 3] and list(table["n test queries"]) == [30, 30, 30]
    assert table.loc["Ours (shoes_ours)", "acc@1 mean (%)"] == pytest.approx(70.0)
    assert table.loc["Ours (shoes_ours)", "± std"] == pytest.approx(10.0)
    assert table.loc["Vanilla (shoes_vanilla)", "untrained (%)"] == pytest.approx(40.0)
    assert table.loc["shoes_hog", "chance (%)"] == pytest.approx(100 / 30, abs=0.01)
    assert np.isnan(table.loc["shoes_hog", "untrained (%)"])
    text = cmp.verdict()
    assert "no clear winner" in text and "3 of 3" in text, "a 10-point gap within a 10-point spread is no win"
    assert "30 test queries" in text and "3.3 points" in text and "synthetic" in text
    assert "before any training" not in text, "both sides started at 0.4: no head start"
    base = cmp.baselines()
    assert "untrained" in base and "12x chance" in base and "shoes_hog: 90.0%" in base and "it beats" in base
    assert cmp.figure() is not None


def test_compare_over_seeds_refuses_no_seeds():
    with pytest.raises(ValueError, match="seeds"):
        course.compare_over_seeds("shoes_vanilla", "shoes_ours", seeds=())


def test_laptop_results_without_records_says_how_to_make_them(tmp_path):
    view = course.laptop_results(("shoes", "chairs"), out_root=tmp_path)
    assert view.summaries == [] and view.figure() is None
    assert "No laptop records" in view.markdown() and "make laptop" in view.markdown()


def test_laptop_results_keeps_the_notebooks_datasets(tmp_path):
    import json

    folder = tmp_path / "laptop"
    folder.mkdir()
    for name in ("shoes_mnv2_vanilla", "shoes_mnv2_ours", "market_mnv2_vanilla", "market_mnv2_ours"):
        rec = _fake_record(name, 0, 0.5 if "vanilla" in name else 0.6, 0.2)
        if name.startswith("market"):
            rec.update(task="reid", metrics={"rank1": 0.5, "mAP": 0.3}, untrained={"rank1": 0.1},
                       chance={"rank1": 0.01, "mAP": 0.01})  # fmt: skip
        (folder / f"{name}.json").write_text(json.dumps(rec))
    view = course.laptop_results(("shoes",), out_root=tmp_path)
    assert [p.dataset for p in view.summaries] == ["shoes"]
    assert "| shoes |" in view.markdown() and "market1501" not in view.markdown()
    assert {p.dataset for p in course.laptop_results(None, out_root=tmp_path).summaries} == {
        "shoes",
        "market1501",
    }


def test_resolve_profile_accepts_laptop_and_names_missing_data(tmp_path, capsys):
    assert course.resolve_profile("laptop", ("shoes",), tmp_path) == "laptop"
    assert "missing here: ['shoes']" in capsys.readouterr().out


def test_verdict_says_when_trained_scores_sit_at_chance():
    recs = {(n, s): _fake_record(n, s, 1 / 30 + 0.01 * s, 1 / 30) for n in ("shoes_vanilla", "shoes_ours")
            for s in (0, 1)}  # fmt: skip
    cmp = course.SeedComparison(
        "smoke", recs, course.summarize_seed_pair(recs, "shoes_vanilla", "shoes_ours")
    )
    assert "trained Vanilla and Ours sit within one query" in cmp.verdict()


def test_explorer_model_prefers_a_laptop_run_with_spatial_maps(tmp_path):
    from cdimlab.experiments import build_model, get_experiment

    exp = get_experiment("shoes_ours")
    cfg = exp.config("laptop")
    folder = tmp_path / "laptop" / "shoes_ours"
    folder.mkdir(parents=True)
    torch.save(build_model(exp, cfg).state_dict(), folder / "best_model.pt")
    em = course.explorer_model("shoes_ours", "smoke", tmp_path / "data", "cpu", runs_root=tmp_path)
    assert (
        em.profile == "laptop" and em.experiment == "shoes_ours" and em.source.startswith("loaded the laptop")
    )
    assert em.layer == "conv5" and em.taps == ("conv3", "conv4", "conv5")
    c, h, w = em.model.backbone.tap_shapes()["conv5"]
    assert h >= 5 and w >= 5, "at the laptop input conv5 keeps a spatial layout"


def test_explorer_model_falls_back_to_the_profiles_model(tmp_path):
    from cdimlab.experiments import build_model, get_experiment

    exp = get_experiment("shoes_ours")
    folder = tmp_path / "smoke" / "shoes_ours"
    folder.mkdir(parents=True)
    torch.save(build_model(exp, exp.config("smoke")).state_dict(), folder / "best_model.pt")
    em = course.explorer_model("shoes_ours", "smoke", tmp_path / "data", "cpu", runs_root=tmp_path)
    assert em.profile == "smoke" and em.source.startswith("loaded") and em.layer == "conv5"


def test_verdict_names_a_head_start_that_training_did_not_create():
    acc = {"shoes_vanilla": (0.70, 0.73), "shoes_ours": (0.77, 0.79)}  # (trained, untrained)
    recs = {(n, s): _fake_record(n, s, acc[n][0], acc[n][1]) for n in acc for s in (0, 1)}
    cmp = course.SeedComparison(
        "smoke", recs, course.summarize_seed_pair(recs, "shoes_vanilla", "shoes_ours")
    )
    assert "Ours led by 6.0 points **before any training** (trained: 7.0)" in cmp.verdict()
