"""Tests for cdimlab.viz: feature maps, Grad-CAM for embeddings (package vs by-hand), galleries, result plots."""

from __future__ import annotations

from collections.abc import Iterator

import matplotlib
import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure
from torch import nn

from cdimlab.models.base import Stage, TappedBackbone
from cdimlab.viz import (
    SimilarityTarget,
    activation_similarity,
    as_batch,
    embedding_2d,
    embedding_gradcam,
    embedding_similarity,
    expose_tap,
    feature_maps,
    figure_pixels,
    gradcam_reference,
    pca_2d,
    plot_acc_at_k_curve,
    plot_cmc,
    plot_paper_vs_here,
    plot_training_curves,
    rank_of_true_match,
    ranked_rows,
    render_feature_maps,
    render_gradcam,
    render_ranked_gallery,
    to_display,
    top_filters,
)
from cdimlab.viz.gallery import MATCH_COLOUR, MISS_COLOUR, rank_label


class TinyTapped(TappedBackbone):
    """Stand-in backbone: conv -> tap "a" (8x16x16) -> conv s2 -> tap "b" (4x8x8) -> GAP -> fc -> final (6)."""

    tap_names = ("a", "b")

    def __init__(self, in_channels: int = 1) -> None:
        super().__init__()
        self.in_channels, self.final_dim, self.input_size = in_channels, 6, (16, 16)
        self.tap_channels = {"a": 8, "b": 4}
        self.conv_a = nn.Conv2d(in_channels, 8, 3, padding=1)
        self.conv_b = nn.Conv2d(8, 4, 3, stride=2, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 6)

    def stages(self) -> Iterator[Stage]:
        yield "a", lambda x: torch.relu(self.conv_a(x))
        yield "b", lambda x: torch.relu(self.bn(self.conv_b(x)))
        yield "final", lambda x: self.fc(x.mean(dim=(2, 3)))


class IdentityTap(TappedBackbone):
    """Tap "x" is the input itself; the embedding is its per-channel spatial mean (for hand-computed Grad-CAM)."""

    tap_names = ("x",)

    def __init__(self) -> None:
        super().__init__()
        self.in_channels, self.final_dim, self.input_size, self.tap_channels = 2, 2, (4, 4), {"x": 2}
        self.scale = nn.Parameter(torch.ones(()))  # a parameter so the model has a device

    def stages(self) -> Iterator[Stage]:
        yield "x", lambda x: x * self.scale
        yield "final", lambda x: x.mean(dim=(2, 3))


@pytest.fixture
def tiny() -> TinyTapped:
    torch.manual_seed(0)
    return TinyTapped()


# ------------------------------------------------------------------------------------------- feature maps
def test_feature_maps_match_forward_taps_and_restore_training(tiny):
    x = torch.rand(5, 1, 16, 16)
    tiny.train()
    fm = feature_maps(tiny, x, "b", "cpu", batch_size=2)
    assert fm.shape == (5, 4, 8, 8)
    assert tiny.training and tiny.bn.training, "feature_maps must restore the training flags"
    tiny.eval()
    with torch.no_grad():
        want = tiny.forward_taps(x, ["b"])["b"]
    torch.testing.assert_close(fm, want)  # eval-mode BatchNorm was used (running stats), batches concatenated


def test_feature_maps_applies_preprocess_and_finds_backbone_in_wrapper(tiny):
    from cdimlab.fusion import EmbeddingNet, FusionConfig

    net = EmbeddingNet(tiny, FusionConfig(taps=("b",), pooling="gap"))
    x = torch.rand(2, 1, 16, 16)
    a = feature_maps(net, x, "a", preprocess=lambda t: t - 0.5)
    b = feature_maps(tiny, x - 0.5, "a")
    torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="valid tap names"):
        feature_maps(tiny, x, "conv5")
    with pytest.raises(TypeError, match="TappedBackbone"):
        feature_maps(nn.Linear(2, 2), x, "a")


def test_activation_similarity_and_top_filters_hand_computed():
    a = torch.zeros(4, 2, 2)
    b = torch.zeros(4, 2, 2)
    a[0] = b[0] = torch.tensor([[1.0, 2.0], [0.0, 1.0]])  # identical maps -> cos 1
    a[1, 0, 0], b[1, 1, 1] = 3.0, 3.0  # disjoint places -> cos 0
    a[2] = 5.0  # silent in b -> cos 0 (no division by zero)
    a[3] = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    b[3] = torch.tensor([[1.0, 1.0], [0.0, 0.0]]) * 0.1  # cos 1/sqrt(2), weak
    sim = activation_similarity(a, b)
    torch.testing.assert_close(sim, torch.tensor([1.0, 0.0, 0.0, 2**-0.5]))
    # filter 0: fires alike and strongly; filter 3: alike but weakly; 1 and 2 score 0 (ties keep order)
    assert top_filters(a, b, k=4) == [0, 3, 1, 2]
    assert top_filters(a[None], b[None], k=1) == [0]  # a leading batch of one is accepted
    with pytest.raises(ValueError, match="same shape"):
        top_filters(a, b[:2])


def test_render_feature_maps_layout_and_errors():
    maps = torch.rand(2, 8, 4, 4)
    fig = render_feature_maps(torch.rand(1, 16, 16), torch.rand(3, 16, 16), maps[0], maps[1], [1, 5, 7])
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 2 * 4
    assert fig.axes[0].get_title() == "sketch"
    assert "filter 5" in fig.axes[2].get_title()
    assert figure_pixels(fig).shape[-1] == 4
    with pytest.raises(ValueError, match="filters"):
        render_feature_maps(torch.rand(1, 16, 16), torch.rand(1, 16, 16), maps[0], maps[1], [8])


def test_to_display_and_as_batch_conventions():
    u8 = np.array([[0, 255], [51, 102]], dtype=np.uint8)
    np.testing.assert_allclose(to_display(u8), [[0, 1], [0.2, 0.4]])
    normalised = torch.tensor([[[-2.0, 0.0], [2.0, 2.0]]])  # (1, H, W) mean-subtracted sketch
    np.testing.assert_allclose(to_display(normalised), [[0, 0.5], [1, 1]])
    assert to_display(torch.rand(3, 5, 7)).shape == (5, 7, 3)
    assert to_display(np.zeros((5, 7, 3), np.uint8)).shape == (5, 7, 3)
    assert as_batch(np.zeros((2, 5, 7), np.uint8)).shape == (2, 1, 5, 7)
    assert as_batch(np.full((2, 5, 7, 3), 255, np.uint8)).max() == 1.0
    with pytest.raises(ValueError, match="images"):
        as_batch(torch.zeros(5))


# ------------------------------------------------------------------------------------------------ Grad-CAM
def test_similarity_target_values():
    t = SimilarityTarget(torch.tensor([1.0, 1.0]))
    torch.testing.assert_close(t(torch.tensor([1.0, 0.0])), torch.tensor(2**-0.5))
    torch.testing.assert_close(t(torch.tensor([[1.0, 0.0], [2.0, 2.0]])), torch.tensor([2**-0.5, 1.0]))
    dot = SimilarityTarget(torch.tensor([[1.0, 2.0]]), metric="dot")
    torch.testing.assert_close(dot(torch.tensor([3.0, 1.0])), torch.tensor(5.0))
    with pytest.raises(ValueError, match="metric"):
        SimilarityTarget(torch.ones(2), metric="l1")
    with pytest.raises(ValueError, match="dims"):
        t(torch.ones(3))


def test_gradcam_hand_computed_on_identity_tap():
    """emb = spatial mean of x, dot target r: dS/dx_c = r_c / hw, so cam = minmax(relu(r0*x0 + r1*x1))."""
    model = IdentityTap()
    q = torch.randn(2, 4, 4)
    ref_img = torch.stack([torch.full((4, 4), 2.0), torch.full((4, 4), -1.0)])  # embedding r = (2, -1)
    expected = torch.relu(2 * q[0] - q[1])
    expected = ((expected - expected.min()) / (expected.max() - expected.min())).numpy()
    for fn in (embedding_gradcam, gradcam_reference):
        cam = fn(model, "x", q, ref_img, "cpu", metric="dot")
        np.testing.assert_allclose(cam, expected, atol=1e-5, err_msg=fn.__name__)


@pytest.mark.parametrize("tap", ["a", "b"])
def test_gradcam_package_agrees_with_reference(tiny, tap):
    torch.manual_seed(2)  # a pair whose map is not all zero at either tap (a Grad-CAM may legitimately be 0)
    q, r = torch.rand(1, 16, 16), torch.rand(1, 16, 16)
    tiny.train()
    cam_pkg = embedding_gradcam(tiny, tap, q, r, "cpu")
    cam_ref = gradcam_reference(tiny, tap, q, r, "cpu")
    assert cam_pkg.shape == (16, 16) and cam_pkg.dtype == np.float32
    assert cam_pkg.min() >= 0.0 and cam_pkg.max() <= 1.0 + 1e-6 and cam_pkg.max() > 0.99
    np.testing.assert_allclose(cam_pkg, cam_ref, atol=1e-4)
    assert tiny.training and tiny.bn.training, "training flags must be restored"
    assert "stages" not in tiny.__dict__, "the tap probe must be removed"
    assert all(p.grad is None for p in tiny.parameters()), "gradients must not leak into the model"
    by_module = embedding_gradcam(tiny, tiny.conv_a, q, r)  # a module of the model works as target too
    np.testing.assert_allclose(by_module, gradcam_reference(tiny, tiny.conv_a, q, r), atol=1e-4)
    tiny.fc.bias.grad = torch.ones(6)  # a training step's gradient, mid-step
    embedding_gradcam(tiny, tap, q, r, "cpu")
    torch.testing.assert_close(tiny.fc.bias.grad, torch.ones(6))


def test_gradcam_on_fused_embedding_with_frozen_weights_and_rgb(tiny):
    """EmbeddingNet (fusion of tap b with the final feature), weights frozen, ReIDNet.embed and 3-channel input."""
    from cdimlab.fusion import EmbeddingNet, FusionConfig, ReIDNet

    net = EmbeddingNet(tiny, FusionConfig(taps=("b",), pooling="flatten"))
    for p in net.parameters():
        p.requires_grad_(False)
    q, r = torch.rand(1, 16, 16), torch.rand(1, 16, 16)
    np.testing.assert_allclose(
        embedding_gradcam(net, "a", q, r), gradcam_reference(net, "a", q, r), atol=1e-4
    )
    torch.manual_seed(0)
    reid = ReIDNet(TinyTapped(in_channels=3), FusionConfig(taps=("b",), pooling="gap"), num_classes=5)
    qc, rc = torch.rand(3, 16, 16), torch.rand(3, 16, 16)
    cam = embedding_gradcam(reid, "b", qc, rc)
    np.testing.assert_allclose(cam, gradcam_reference(reid, "b", qc, rc), atol=1e-4)
    net.eval()
    with torch.no_grad():
        want = torch.nn.functional.cosine_similarity(net(q[None]), net(r[None]))[0]
    net.train()
    assert embedding_similarity(net, q, r) == pytest.approx(float(want), abs=1e-6)
    assert net.training
    with pytest.raises(ValueError, match="valid tap names"):
        embedding_gradcam(net, "res5a", q, r)
    with pytest.raises(ValueError, match="one image"):
        embedding_gradcam(net, "a", torch.rand(2, 1, 16, 16), r)


def test_expose_tap_restores_backbone_after_error(tiny):
    with pytest.raises(RuntimeError, match="boom"), expose_tap(tiny, "a"):
        raise RuntimeError("boom")
    assert "stages" not in tiny.__dict__
    with expose_tap(tiny, "a") as probe:
        seen = []
        probe.register_forward_hook(lambda _m, _i, out: seen.append(out.shape))
        tiny(torch.rand(2, 1, 16, 16))
    assert seen == [torch.Size([2, 8, 16, 16])]


def test_gradcam_on_sketchanet_and_render_grayscale():
    from cdimlab.models import build_backbone

    torch.manual_seed(0)
    net = build_backbone("sketchanet", input_size=113)
    q, r = torch.rand(1, 113, 113), torch.rand(1, 113, 113)
    cam_q = embedding_gradcam(net, "conv5", q, r)
    cam_r = embedding_gradcam(net, "conv5", r, q)
    np.testing.assert_allclose(cam_q, gradcam_reference(net, "conv5", q, r), atol=1e-4)
    fig = render_gradcam(q, r, cam_q, cam_r, layer="conv5", similarity=0.5)
    assert len(fig.axes) == 4 and "conv5" in fig._suptitle.get_text()
    assert fig.axes[0].images[0].get_cmap().name == "gray"  # 1-channel sketch drawn in gray
    assert len(fig.axes[1].images) == 2  # image + heat overlay
    assert len(render_gradcam(q, r, cam_q).axes) == 3
    with pytest.raises(ValueError, match="cam_q"):
        render_gradcam(q, r, cam_q[:10])


# ------------------------------------------------------------------------------------------------ gallery
def test_rank_of_true_match_hand_computed_and_agrees_with_metrics():
    d = np.array([[0.1, 0.5, 0.3], [0.2, 0.4, 0.4], [0.9, 0.1, 0.5]])
    # query 1 ties its match with item 2: rank 2 or 3 -> expected 2.5 (updated: the old rule said 2, the query's
    # favour); query 2 has one item strictly closer -> 2
    np.testing.assert_array_equal(rank_of_true_match(d), [1, 2.5, 2])
    np.testing.assert_array_equal(rank_of_true_match([d, d + 1.0]), [1, 2.5, 2])  # views are averaged
    np.testing.assert_array_equal(rank_of_true_match(d, true_match=[2, 0, 1]), [2, 1, 1])
    assert rank_label(d) == ["rank 1", "rank 2-3 (2-way tie)", "rank 2"]
    from cdimlab.metrics import acc_at_k, hit_probability, true_match_ties

    rng = np.random.default_rng(0)
    dist = rng.integers(0, 5, size=(30, 30)).astype(np.float32)  # many ties
    ranks = rank_of_true_match(dist)
    before, tied = true_match_ties(dist)
    np.testing.assert_allclose(ranks, before.numpy() + (tied.numpy() + 1) / 2)
    for k, v in acc_at_k(dist, ks=(1, 5, 10)).items():
        assert np.isclose(hit_probability(before, tied, k).mean(), v)
    with pytest.raises(ValueError, match="non-finite"):
        rank_of_true_match(np.full((3, 3), np.nan))


def test_constant_distances_rank_in_the_middle():
    ranks = rank_of_true_match(np.ones((5, 5)))
    np.testing.assert_array_equal(ranks, [3.0] * 5)  # uniform on 1..5; the old rule put every match first
    assert rank_label(np.ones((5, 5)))[0] == "rank 1-5 (5-way tie)"
    from cdimlab.viz.plots import acc_at_k_curve

    np.testing.assert_allclose(
        acc_at_k_curve(np.ones((5, 5)), ks=(1, 2, 5)), [0.2, 0.4, 1.0]
    )  # the same rule


def test_ranked_rows_reid_excludes_junk_and_same_camera():
    d = np.array([[0.1, 0.2, 0.3, 0.4, 0.5]])
    g_pids, g_cams = [-1, 7, 7, 3, 7], [1, 0, 1, 1, 1]
    (row,) = ranked_rows(d, [0], k=3, q_pids=[7], g_pids=g_pids, q_camids=[0], g_camids=g_cams)
    # gallery 0 is junk, gallery 1 is the same identity in the same camera: both dropped
    np.testing.assert_array_equal(row.indices, [2, 3, 4])
    np.testing.assert_array_equal(row.is_match, [True, False, True])
    with pytest.raises(ValueError, match="q_pids and g_pids"):
        ranked_rows(d, [0], q_pids=[7])


def test_render_ranked_gallery_frames_matches():
    imgs = np.random.default_rng(0).integers(0, 255, (4, 12, 10), dtype=np.uint8)
    d = np.array([[0.0, 1, 2, 3], [0.5, 0.9, 0.1, 2], [3, 2, 1, 0], [1, 1, 1, 1]])
    fig = render_ranked_gallery(imgs, imgs, d, k=3, queries=[0, 1])
    assert len(fig.axes) == 2 * 4
    to_hex = matplotlib.colors.to_hex
    frame = [to_hex(ax.spines["left"].get_edgecolor()) for ax in fig.axes]
    # row 0: gallery 0 (match) first; row 1: gallery 2, 0, 1 -> match (1) third
    assert frame[1:4] == [MATCH_COLOUR, MISS_COLOUR, MISS_COLOUR]
    assert frame[5:8] == [MISS_COLOUR, MISS_COLOUR, MATCH_COLOUR]
    assert "rank 3" in fig.axes[4].get_title()
    tied = render_ranked_gallery(imgs, imgs, d, k=2, queries=[3])  # row 3 is all ones: a 4-way tie
    assert "rank 1-4 (4-way tie)" in tied.axes[0].get_title()
    reid = render_ranked_gallery(imgs, imgs, d, k=2, q_pids=[1, 2, 3, 4], g_pids=[1, 2, 3, 4])
    assert len(reid.axes) == 4 * 3
    with pytest.raises(ValueError, match="query"):
        render_ranked_gallery(imgs[:2], imgs, d)


# -------------------------------------------------------------------------------------------------- plots
def test_plot_training_curves_from_csv_and_frame(tmp_path):
    log = pd.DataFrame(
        {"iteration": [10, 20, 30, 40], "loss": [1.0, 0.8, 0.7, 0.6], "lr": [1e-3] * 4,
         "val_acc1": [np.nan, 0.2, np.nan, 0.4]}
    )  # fmt: skip
    path = tmp_path / "run" / "log.csv"
    path.parent.mkdir()
    log.to_csv(path, index=False)
    fig = plot_training_curves({"vanilla": path, "fusion": log.assign(loss=log.loss / 2), "dir": path.parent})
    assert [ax.get_title() for ax in fig.axes] == ["loss", "val_acc1"]
    loss_ax, val_ax = fig.axes
    assert len(loss_ax.lines) == 3
    np.testing.assert_allclose(val_ax.lines[0].get_xydata(), [[20, 0.2], [40, 0.4]])  # NaN rows skipped
    np.testing.assert_allclose(loss_ax.lines[1].get_ydata(), [0.5, 0.4, 0.35, 0.3])
    assert len(plot_training_curves({"a": log}, columns=["lr"]).axes) == 1
    with pytest.raises(FileNotFoundError, match="missing"):
        plot_training_curves({"missing": tmp_path / "nope.csv"})


def test_plot_acc_at_k_curve_matches_metrics():
    from cdimlab.metrics import acc_at_k

    torch.manual_seed(0)
    dists = {"vanilla": torch.rand(20, 20), "fusion": torch.rand(20, 20) + 2 * (1 - torch.eye(20))}
    fig = plot_acc_at_k_curve(dists, ks=range(1, 11))
    for line, dist in zip(fig.axes[0].lines, dists.values(), strict=True):
        ref = acc_at_k(dist, ks=(1, 5, 10))
        y = line.get_ydata()
        np.testing.assert_allclose([y[0], y[4], y[9]], [100 * ref[1], 100 * ref[5], 100 * ref[10]])
    assert fig.axes[0].lines[1].get_ydata()[0] == 100.0


def test_plot_cmc_and_paper_vs_here():
    cmc = np.linspace(0.5, 1.0, 50)
    fig = plot_cmc({"vanilla": cmc, "fusion": (cmc * 0.9, 0.42)}, max_rank=10)
    lines = fig.axes[0].lines
    assert len(lines[0].get_xdata()) == 10 and lines[0].get_ydata()[0] == 50.0
    assert "mAP 42.0%" in lines[1].get_label()
    df = pd.DataFrame(
        {"row": ["Vanilla", "Ours", "cited"], "paper": [35.7, 42.6, 50.0], "here": [30.0, 40.0, None]}
    )
    fig = plot_paper_vs_here(df, title="Table 3")
    bars = fig.axes[0].patches
    assert [b.get_width() for b in bars[:3]] == [35.7, 42.6, 50.0]
    np.testing.assert_allclose([b.get_width() for b in bars[3:5]], [30.0, 40.0])
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["Vanilla", "Ours", "cited"]
    assert any("-5.7" in t.get_text() for t in fig.axes[0].texts)
    with pytest.raises(ValueError, match="paper"):
        plot_paper_vs_here(df.drop(columns=["paper"]))


def test_pca_2d_recovers_principal_axes_deterministically():
    rng = np.random.default_rng(0)
    t = rng.normal(size=200)
    s = rng.normal(size=200) * 0.3
    x = np.stack([3 * t, s, 0.01 * rng.normal(size=200)], axis=1) + 5.0  # main axis e0, then e1
    xy = pca_2d(x)
    xc = x - x.mean(0)
    vt = np.linalg.svd(xc, full_matrices=False)[2]
    np.testing.assert_allclose(np.abs(xy), np.abs(xc @ vt[:2].T), atol=1e-6)  # the exact PCA, up to sign
    assert xy[:, 0].var() > 50 * xy[:, 1].var()  # first axis carries the 3*t spread
    np.testing.assert_array_equal(xy, pca_2d(torch.from_numpy(x)))
    fig = embedding_2d(x, labels=np.arange(200) % 5, domains=["sketch", "photo"] * 100)
    assert len(fig.axes[0].collections) == 2
    with pytest.raises(ValueError, match="labels"):
        embedding_2d(x, labels=[0, 1])


def test_no_pyplot_figures_are_left_open():
    import matplotlib.pyplot as plt

    before = set(plt.get_fignums())
    render_feature_maps(
        torch.rand(1, 8, 8), torch.rand(1, 8, 8), torch.rand(2, 2, 2), torch.rand(2, 2, 2), [0]
    )
    plot_cmc({"a": np.ones(5)})
    assert set(plt.get_fignums()) == before


def test_figures_display_as_png_without_pyplot():
    """Jupyter shows a pyplot-free figure through its own _repr_png_ (the inline backend may not be loaded)."""
    fig = plot_cmc({"a": np.linspace(0.2, 1.0, 5)})
    png = fig._repr_png_()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000


def test_upsample_map_scales_to_unit_range_and_takes_tensors_that_need_grad():
    """Min-max to [0, 1] (a hand-checked 2x2 stays itself); a map that requires grad -- like one on a GPU, a
    tensor .numpy() refuses -- is detached and brought to the CPU; a flat map gives zeros, not NaN."""
    import numpy as np
    import torch

    from cdimlab.viz.feature_maps import upsample_map

    m = torch.tensor([[0.0, 2.0], [4.0, 6.0]], requires_grad=True)
    out = upsample_map(m, (2, 2))
    assert isinstance(out, np.ndarray) and np.allclose(out, [[0, 1 / 3], [2 / 3, 1]])
    assert upsample_map(np.full((3, 3), 5.0), (6, 6)).tolist() == np.zeros((6, 6)).tolist()
