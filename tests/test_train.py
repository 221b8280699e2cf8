"""Training engine: smoke training lowers the loss and beats chance, resume equality, NaN handling, eval."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from cdimlab.models.base import Stage, TappedBackbone
from cdimlab.train import (
    TrainConfig,
    embed_images,
    evaluate_reid,
    evaluate_sbir,
    fit_classifier,
    fit_triplet,
    load_checkpoint,
    plot_learning_curves,
    read_log,
    write_log_csv,
)


class TinyBackbone(TappedBackbone):
    """Two small conv stages (taps ``c1``, ``c2``) + GAP + linear final: trains in seconds on a CPU."""

    tap_names = ("c1", "c2")

    def __init__(self, in_channels: int = 1, input_size: int | tuple[int, int] = 32, width: int = 8) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.input_size = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
        self.final_dim = 16
        self.tap_channels = {"c1": width, "c2": 2 * width}
        self.conv1 = nn.Sequential(
            nn.Conv2d(in_channels, width, 5, stride=2, padding=2), nn.BatchNorm2d(width), nn.ReLU()
        )
        self.conv2 = nn.Sequential(
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU()
        )
        self.fc = nn.Linear(2 * width, 16)

    def stages(self) -> Iterator[Stage]:
        yield "c1", self.conv1
        yield "c2", self.conv2
        yield "final", lambda x: self.fc(x.mean(dim=(2, 3)))


def tiny_split(n: int = 12, seed: int = 0, size: int = 256):
    """A QMUL-like split whose sketch i is a noisy copy of photo i (so retrieval is learnable fast)."""
    from cdimlab.data import QMULSplit

    rng = np.random.default_rng(seed)
    photos = np.full((n, size, size), 255, np.uint8)
    for i in range(n):
        for _ in range(4):
            y, x = rng.integers(0, size - 64, 2)
            photos[i, y : y + rng.integers(16, 64), x : x + rng.integers(16, 64)] = 0
    noise = rng.random((n, size, size)) < 0.02
    sketches = np.where(noise, 255 - photos, photos).astype(np.uint8)
    return QMULSplit("tiny", "train", sketches, photos, None, [np.empty((0, 2), np.int64)] * n)


def state_hash(model: torch.nn.Module) -> str:
    """sha256 over the bytes of every tensor of a state dict (sorted keys)."""
    import hashlib

    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def tiny_cfg(**kw) -> TrainConfig:
    """A CPU-sized config for the tiny backbone (32x32 crops of images resized to 40)."""
    base = dict(iterations=6, batch_size=6, lr=0.05, optimizer="sgd", eval_every=3, patience=100,
                checkpoint_every=3, log_every=1, sbir_input=32, sbir_resize=40, eval_protocol="center",
                eval_batch_size=32, seed=0)  # fmt: skip
    base.update(kw)
    return TrainConfig(**base)


def tiny_embedder(seed: int = 0):
    from cdimlab.fusion import EmbeddingNet, FusionConfig

    torch.manual_seed(seed)
    return EmbeddingNet(TinyBackbone(1, 32), FusionConfig(("c2",), "gap"))


def test_triplet_smoke_lowers_loss_and_beats_chance(tmp_path):
    split = tiny_split(12)
    model = tiny_embedder()
    cfg = tiny_cfg(iterations=60, batch_size=12, lr=0.05, eval_every=20, checkpoint_every=1000, log_every=10)
    res = fit_triplet(model, split, split, cfg, "cpu", tmp_path, progress=False)
    losses = [r["loss"] for r in res.log if "loss" in r]
    assert losses[-1] < 0.6 * losses[0], losses
    acc = evaluate_sbir(res.model, split, "cpu", "10view", cfg)
    assert acc["acc@1"] > 3 / 12  # chance is 1/12
    assert (tmp_path / "checkpoint.pt").is_file() and (tmp_path / "best_model.pt").is_file()
    log = read_log(tmp_path / "log.csv")
    assert {"iteration", "loss", "lr", "img_per_s", "val_acc@1"} <= set(log.columns)
    assert res.best_iteration in (20, 40, 60)


def test_sketchanet_runs_through_fit_triplet_at_smoke_size(tmp_path):
    """The real Sketch-a-Net at the smoke input (113 crop of 128) runs two steps and evaluates (10 views)."""
    from cdimlab.experiments import EXPERIMENTS, build_model

    exp = EXPERIMENTS["shoes_ours"]
    cfg = replace(exp.config("smoke"), iterations=2, batch_size=2, eval_every=2, eval_batch_size=8)
    res = fit_triplet(
        build_model(exp, cfg), tiny_split(6), tiny_split(4, seed=1), cfg, "cpu", None, progress=False
    )
    assert res.iterations_run == 2
    acc = evaluate_sbir(res.model, tiny_split(4, seed=1), "cpu", "10view", cfg)
    assert 0.0 <= acc["acc@1"] <= acc["acc@10"] == 1.0  # 4 photos: acc@10 is trivially 1


def test_real_sketchanet_learns_synthetic_shoes_through_fit_triplet(tmp_path):
    """The course's own pipeline (synthetic QMUL-format shoes -> ImageBank -> fit_triplet -> real Sketch-a-Net at the
    smoke size) lowers the triplet loss: true-match triplets, the smoke recipe (Adam 1e-4, batch 16)."""
    from cdimlab.data import load_qmul_v1, synthetic_sbir
    from cdimlab.experiments import EXPERIMENTS, build_model

    synthetic_sbir(tmp_path / "qmul", "shoes", n_train=30, n_test=10, seed=0)
    train = load_qmul_v1(tmp_path / "qmul", "shoes", "train")
    exp = EXPERIMENTS["shoes_vanilla"]
    cfg = replace(exp.config("smoke"), iterations=100, eval_every=10**6, log_every=10)
    torch.manual_seed(0)
    res = fit_triplet(
        build_model(exp, cfg), train, None, cfg, "cpu", None, progress=False, sampler_mode="true_match"
    )
    losses = [r["loss"] for r in res.log if "loss" in r]
    # losses[0] is the mean of the first 10 steps; Kaiming init already learns in them (0.195 at margin 0.3)
    assert losses[0] > 0.1 and np.mean(losses[-2:]) < 0.75 * losses[0], losses


class _Kill(Exception):
    pass


def test_resume_gives_identical_weights(tmp_path):
    split, val = tiny_split(10), tiny_split(4, seed=3)
    cfg = tiny_cfg(iterations=6, checkpoint_every=3, eval_every=2)
    straight = fit_triplet(tiny_embedder(), split, val, cfg, "cpu", tmp_path / "a", progress=False)

    def kill(it: int, loss: float) -> None:
        if it == 4:  # after the checkpoint at 3: iteration 4 is lost, as in a real crash
            raise _Kill

    with pytest.raises(_Kill):
        fit_triplet(tiny_embedder(), split, val, cfg, "cpu", tmp_path / "b", progress=False, callback=kill)
    assert load_checkpoint(tmp_path / "b" / "checkpoint.pt")["iteration"] == 3
    resumed = fit_triplet(tiny_embedder(seed=123), split, val, cfg, "cpu", tmp_path / "b", resume=True,
                          progress=False)  # fmt: skip
    for (k, v), (k2, v2) in zip(
        straight.model.state_dict().items(), resumed.model.state_dict().items(), strict=True
    ):
        assert k == k2 and torch.equal(v, v2), k
    last_a = load_checkpoint(tmp_path / "a" / "checkpoint.pt")
    last_b = load_checkpoint(tmp_path / "b" / "checkpoint.pt")
    assert last_a["iteration"] == last_b["iteration"] == 6
    for k, v in last_a["model"].items():
        assert torch.equal(v, last_b["model"][k]), k
    assert [r.get("loss") for r in last_a["log"]] == [r.get("loss") for r in last_b["log"]]


def test_classifier_resume_gives_identical_weights(tmp_path):
    from cdimlab.fusion import FusionConfig, ReIDNet

    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (20, 32, 16, 3), dtype=np.uint8)
    labels = torch.as_tensor(rng.integers(0, 4, 20))
    cfg = tiny_cfg(
        iterations=6, optimizer="adam", lr=1e-3, lr_decay=0.5, lr_decay_every=2, reid_input=(32, 16)
    )

    def net():
        torch.manual_seed(0)
        return ReIDNet(TinyBackbone(3, (32, 16)), FusionConfig(("c1",), "gap", 8, False), 4)

    a = fit_classifier(net(), imgs, labels, cfg, "cpu", tmp_path / "a", progress=False)

    def kill(it, loss):
        if it == 5:
            raise _Kill

    with pytest.raises(_Kill):
        fit_classifier(net(), imgs, labels, cfg, "cpu", tmp_path / "b", progress=False, callback=kill)
    b = fit_classifier(net(), imgs, labels, cfg, "cpu", tmp_path / "b", resume=True, progress=False)
    for k, v in a.model.state_dict().items():
        assert torch.equal(v, b.model.state_dict()[k]), k
    assert a.log[-1]["lr"] == pytest.approx(1e-3 * 0.5**3)  # decayed every 2 of 6 iterations


def test_nan_loss_stops_with_clear_error_and_keeps_checkpoint(tmp_path):
    model = tiny_embedder()
    cfg = tiny_cfg(iterations=10, checkpoint_every=2, eval_every=100)
    state = {}

    def poison(it, loss):
        if it == 4:
            state["bytes"] = (tmp_path / "checkpoint.pt").read_bytes()
            model.backbone.fc.register_forward_hook(lambda m, i, o: o * float("nan"))

    with pytest.raises(FloatingPointError, match=r"iteration 5.*lower the learning rate"):
        fit_triplet(model, tiny_split(8), None, cfg, "cpu", tmp_path, progress=False, callback=poison)
    assert (tmp_path / "checkpoint.pt").read_bytes() == state["bytes"]
    assert load_checkpoint(tmp_path / "checkpoint.pt")["iteration"] == 4


def test_classifier_smoke_lowers_loss_and_beats_chance():
    """Identity classification on synthetic people: the loss drops and rank-1 beats chance (1 / #gallery ids)."""
    import tempfile

    from cdimlab.data import decode_images, load_reid, synthetic_reid
    from cdimlab.fusion import FusionConfig, ReIDNet

    with tempfile.TemporaryDirectory() as d:
        root = synthetic_reid(d, n_train_ids=8, n_test_ids=8, n_distractors=4, n_junk=4, size=(32, 16))
        data = load_reid("market1501", root)
        cfg = tiny_cfg(
            iterations=60, batch_size=16, optimizer="adam", lr=3e-3, reid_input=(32, 16), log_every=20
        )
        imgs = decode_images([e[0] for e in data.train], size=(32, 16), progress=False)
        labels = torch.as_tensor([e[1] for e in data.train])
        torch.manual_seed(0)
        net = ReIDNet(TinyBackbone(3, (32, 16)), FusionConfig(("c1",), "gap", 8, False), data.num_train_pids)
        res = fit_classifier(net, imgs, labels, cfg, "cpu", None, progress=False)
        losses = [r["loss"] for r in res.log]
        assert losses[-1] < 0.75 * losses[0], losses
        metrics = evaluate_reid(res.model, data, "cpu", multi_query=True, cfg=cfg)
    chance = _chance_rank1(data)  # expected rank-1 of a random ranking, computed from the split
    assert metrics["rank1"] > 1.5 * chance, (metrics, chance)
    assert set(metrics) >= {"mAP", "rank1", "rank5", "rank10", "mq_mAP", "mq_rank1"}
    assert 0 <= metrics["mAP"] <= 1 and metrics["rank1"] <= metrics["rank5"] <= metrics["rank10"]


def _chance_rank1(data) -> float:
    """Mean over queries of (#valid true matches / #valid gallery items): rank-1 of a random ranking."""
    out = []
    for _, pid, cam in data.query:
        valid = [(p, c) for _, p, c in data.gallery if p != -1 and not (p == pid and c == cam)]
        hits = sum(p == pid for p, _ in valid)
        if hits:
            out.append(hits / len(valid))
    return float(np.mean(out))


def test_embed_images_shapes_and_views():
    from cdimlab.data import ImageBank

    bank = ImageBank(
        tiny_split(5).photos, "cpu", crop=(32, 32), flip=False, mean=[0.5], std=[0.5], out_size=(40, 40)
    )
    out = embed_images(tiny_embedder(), bank, "cpu", batch_size=2, views=(0, 4, 9))
    assert out.shape == (3, 5, 16 + 16)  # (views, N, mid 16 + final 16)
    assert not torch.equal(out[0], out[1])


def test_train_config_validates():
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig(optimizer="rmsprop")
    with pytest.raises(ValueError, match="eval_protocol"):
        TrainConfig(eval_protocol="5view")


def test_plot_learning_curves(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    rows = [{"iteration": 1, "loss": 1.0}, {"iteration": 2, "loss": 0.5}, {"iteration": 2, "val_acc@1": 0.3}]
    write_log_csv(rows, tmp_path / "log.csv")
    fig = plot_learning_curves(tmp_path)
    ax = fig.axes[0]
    assert ax.get_lines()[0].get_ydata().tolist() == [1.0, 0.5]


def test_resume_refuses_a_checkpoint_of_another_recipe(tmp_path):
    fit_triplet(tiny_embedder(), tiny_split(6), None, tiny_cfg(iterations=2), "cpu", tmp_path, progress=False)
    longer = tiny_cfg(iterations=3)  # a longer schedule may resume ...
    res = fit_triplet(
        tiny_embedder(), tiny_split(6), None, longer, "cpu", tmp_path, resume=True, progress=False
    )
    assert res.iterations_run == 3 and res.extra["resumed_from"] == 2
    with pytest.raises(
        ValueError, match=r"cannot resume .*'lr': \(0.05, 0.1\).*resume='fresh'"
    ):  # ... another lr not
        fit_triplet(tiny_embedder(), tiny_split(6), None, tiny_cfg(iterations=4, lr=0.1), "cpu", tmp_path,
                    resume=True, progress=False)  # fmt: skip


def test_early_stopping_keeps_best_weights_and_stays_stopped_on_resume(tmp_path):
    cfg = tiny_cfg(
        iterations=40, eval_every=2, patience=2, lr=1e-12, checkpoint_every=1000
    )  # lr ~0: no improvement (lr must be > 0)
    res = fit_triplet(
        tiny_embedder(), tiny_split(6), tiny_split(4, seed=2), cfg, "cpu", tmp_path, progress=False
    )
    # stops exactly `patience` evaluations (of every 2 iterations) after the best one
    assert res.stopped_early and res.iterations_run < 40 and res.best_iteration == res.iterations_run - 2 * 2
    best = torch.load(tmp_path / "best_model.pt", weights_only=True)
    assert all(torch.equal(v, res.model.state_dict()[k]) for k, v in best.items())
    again = fit_triplet(tiny_embedder(), tiny_split(6), tiny_split(4, seed=2), cfg, "cpu", tmp_path, resume=True,
                        progress=False)  # fmt: skip
    assert again.iterations_run == res.iterations_run and again.stopped_early


def test_cuda_style_lazy_loss_reads_log_the_same_and_still_stop_on_nan(tmp_path, monkeypatch):
    """On CUDA the loss is summed on the device and read only at log steps / checkpoints (no per-step sync).
    Exercise that path on the CPU: same logged losses as reading every step; a NaN still stops the run at the next
    read and the last good checkpoint is left untouched."""
    import cdimlab.train.loop as loop_mod

    cfg = tiny_cfg(iterations=8, checkpoint_every=4, eval_every=100, log_every=2)
    eager = fit_triplet(tiny_embedder(), tiny_split(8), None, cfg, "cpu", None, progress=False)
    monkeypatch.setattr(loop_mod, "read_loss_every_step", lambda device: False)
    lazy = fit_triplet(tiny_embedder(), tiny_split(8), None, cfg, "cpu", None, progress=False)
    assert [r["loss"] for r in lazy.log] == pytest.approx([r["loss"] for r in eager.log], rel=1e-6)

    model, calls = tiny_embedder(), {"n": 0}

    def poison_after_five_steps(module, inputs, output):
        calls["n"] += 1  # one forward per step (the triplet batch goes through the tower at once)
        return output * float("nan") if calls["n"] > 5 else output

    model.backbone.fc.register_forward_hook(poison_after_five_steps)
    with pytest.raises(FloatingPointError, match=r"iteration 6"):
        fit_triplet(model, tiny_split(8), None, cfg, "cpu", tmp_path, progress=False)
    assert load_checkpoint(tmp_path / "checkpoint.pt")["iteration"] == 4


def test_img_per_s_counts_training_steps_only_not_evaluation(monkeypatch):
    """A fake clock: each training step takes 1 s, each validation 1,000 s. img/s must be images per second of
    training steps (12 images per step of 4 triplets), as if evaluation took no time; before this fix it read
    60 / 3,005 s = 0.02."""
    import cdimlab.train.fit as fit_mod
    import cdimlab.train.loop as loop_mod

    clock = {"t": 0.0}
    monkeypatch.setattr(loop_mod.time, "perf_counter", lambda: clock["t"])
    real_eval, real_step = fit_mod.evaluate_sbir, loop_mod.TrainLoop.step

    def slow_eval(*args, **kwargs):
        clock["t"] += 1_000.0
        return real_eval(*args, **kwargs)

    def one_second_step(self, it, loss, need_value=False):
        clock["t"] += 1.0
        return real_step(self, it, loss, need_value)

    monkeypatch.setattr(fit_mod, "evaluate_sbir", slow_eval)
    monkeypatch.setattr(loop_mod.TrainLoop, "step", one_second_step)
    cfg = tiny_cfg(iterations=6, batch_size=4, eval_every=2, log_every=2)
    res = fit_triplet(tiny_embedder(), tiny_split(8), tiny_split(8, seed=1), cfg, "cpu", None, progress=False)
    assert sum("val_acc@1" in r for r in res.log) == 3  # the three slow evaluations did run
    # 6 steps, the first untimed (warm-up): steps 2..6 = 5 x 12 images in 5 clock seconds
    assert res.img_per_s == pytest.approx(12.0)
    assert [r["img_per_s"] for r in res.log if "img_per_s" in r][-1] == pytest.approx(12.0)


def test_resume_continues_the_fp16_loss_scale(tmp_path, monkeypatch):
    """fp16 runs (T4, V100) keep a GradScaler; its scale is part of the run. An enabled scaler whose scale doubles
    every step: after a kill and resume, the final scale equals the uninterrupted run's (it restarted before)."""
    import cdimlab.train.loop as loop_mod

    def doubling_scaler(precision, device):
        return torch.amp.GradScaler("cpu", init_scale=2.0**4, growth_interval=1, enabled=True)

    monkeypatch.setattr(loop_mod, "make_grad_scaler", doubling_scaler)
    split, cfg = tiny_split(8), tiny_cfg(iterations=6, checkpoint_every=3, eval_every=100)

    def kill(it: int, loss: float) -> None:
        if it == 4:
            raise _Kill

    straight = fit_triplet(tiny_embedder(), split, None, cfg, "cpu", tmp_path / "a", progress=False)
    with pytest.raises(_Kill):
        fit_triplet(tiny_embedder(), split, None, cfg, "cpu", tmp_path / "b", progress=False, callback=kill)
    assert load_checkpoint(tmp_path / "b" / "checkpoint.pt")["scaler"]["scale"] == 2.0 ** (4 + 3)
    fit_triplet(tiny_embedder(), split, None, cfg, "cpu", tmp_path / "b", resume=True, progress=False)
    a, b = (load_checkpoint(tmp_path / d / "checkpoint.pt")["scaler"] for d in "ab")
    assert a["scale"] == b["scale"] == 2.0 ** (4 + 6)
    assert straight.iterations_run == 6


def test_finite_but_diverged_weights_never_replace_the_last_good_checkpoint(tmp_path):
    """Weights blown up 1e6x (finite; the L2-normalised loss stays finite too) are refused at the next checkpoint:
    FloatingPointError naming the divergence, and the checkpoint on disk stays the healthy one of iteration 4."""
    from cdimlab.train.loop import largest_weight

    model = tiny_embedder()
    cfg = tiny_cfg(iterations=10, checkpoint_every=2, eval_every=100)

    def blow_up(it, loss):
        if it == 4:  # after the checkpoint at 4
            with torch.no_grad():
                model.backbone.fc.weight.mul_(1e6)

    with pytest.raises(FloatingPointError, match=r"weights diverged \(largest \|w\| = .* at iteration 6"):
        fit_triplet(model, tiny_split(8), None, cfg, "cpu", tmp_path, progress=False, callback=blow_up)
    ck = load_checkpoint(tmp_path / "checkpoint.pt")
    assert ck["iteration"] == 4
    kept = tiny_embedder()
    kept.load_state_dict(ck["model"])
    assert largest_weight(kept) < 10.0 < largest_weight(model)


def test_sbir_flip_false_keeps_the_pose_and_batch_negatives_is_validated():
    """``sbir_flip=False``: a training bank crops but never mirrors (an asymmetric image at full-size crop comes
    back identical every time); ``batch_negatives`` must lie in [0, 1]."""
    from cdimlab.data import sbir_bank

    img = np.zeros((1, 40, 40), np.uint8)
    img[0, :, :10] = 255  # bright left edge: a flip would move it right
    g = torch.Generator().manual_seed(0)
    fixed = sbir_bank(img, "cpu", crop=40, train=True, flip=False)
    batches = [fixed.train_batch([0], g) for _ in range(8)]
    assert all(torch.equal(b, batches[0]) for b in batches)
    flipping = sbir_bank(img, "cpu", crop=40, train=True)
    assert any(not torch.equal(flipping.train_batch([0], g), batches[0]) for _ in range(16))
    with pytest.raises(ValueError, match=r"batch_negatives must be in \[0, 1\]"):
        tiny_cfg(batch_negatives=1.5)
    with pytest.raises(ValueError, match="sbir_flip must be True or False"):
        tiny_cfg(sbir_flip="no")


def test_compile_trains_like_eager_and_saves_plain_keys(tmp_path):
    """``TrainConfig.compile=True`` (torch.compile of the training module; inductor on the CPU here) gives the
    eager losses and a checkpoint with the model's own key names (no ``_orig_mod.`` prefix), so a compiled run
    resumes and evaluates like any other."""
    cfg = tiny_cfg(iterations=3, eval_every=100, checkpoint_every=100, log_every=1)
    eager = fit_triplet(tiny_embedder(), tiny_split(8), None, cfg, "cpu", None, progress=False)
    compiled = fit_triplet(tiny_embedder(), tiny_split(8), None, replace(cfg, compile=True), "cpu", tmp_path,
                           progress=False)  # fmt: skip
    assert [r["loss"] for r in compiled.log] == pytest.approx(
        [r["loss"] for r in eager.log], rel=1e-4, abs=1e-6
    )
    keys = list(load_checkpoint(tmp_path / "checkpoint.pt")["model"])
    assert keys == list(tiny_embedder().state_dict()) and not any("_orig_mod" in k for k in keys)
