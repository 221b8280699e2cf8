"""The feature-map explorer: pure render() and the ipywidgets wiring, driven by setting widget values in pytest."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch
from torch import nn

from cdimlab.models.base import Stage, TappedBackbone
from cdimlab.viz import ExplorerState, FeatureMapExplorer, figure_pixels, render, top_filters


class TwoTaps(TappedBackbone):
    """Stand-in backbone with taps of different widths: "wide" 8x16x16 and "narrow" 4x8x8; final 4."""

    tap_names = ("wide", "narrow")

    def __init__(self) -> None:
        super().__init__()
        self.in_channels, self.final_dim, self.input_size = 1, 4, (16, 16)
        self.tap_channels = {"wide": 8, "narrow": 4}
        self.c1 = nn.Conv2d(1, 8, 3, padding=1)
        self.c2 = nn.Conv2d(8, 4, 3, stride=2, padding=1)

    def stages(self) -> Iterator[Stage]:
        yield "wide", lambda x: torch.relu(self.c1(x))
        yield "narrow", lambda x: torch.relu(self.c2(x))
        yield "final", lambda x: x.mean(dim=(2, 3))


@pytest.fixture
def explorer() -> FeatureMapExplorer:
    torch.manual_seed(0)
    imgs = torch.rand(3, 1, 16, 16)
    return FeatureMapExplorer(TwoTaps(), imgs, imgs.flip(-1), ["wide", "narrow"], "cpu")


def _maps(c: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.rand(c, 4, 4, generator=g), torch.rand(c, 4, 4, generator=g)


# ----------------------------------------------------------------------------------------------- render()
def test_render_layout_titles_and_state_overrides():
    a, b = _maps()
    fig = render(
        torch.rand(1, 16, 16), torch.rand(3, 16, 16), a, b, ExplorerState(pair=2, layer="conv5", filter=3)
    )
    assert len(fig.axes) == 4
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0] == "sketch (pair 2)" and titles[2] == "photo (pair 2)"
    assert "conv5 filter 3" in titles[1] and "conv5 filter 3" in titles[3]
    assert "conv5, filter 3" in fig._suptitle.get_text()
    fig2 = render(np.zeros((16, 16), np.uint8), np.zeros((16, 16), np.uint8), a, b, layer="res5a", filter=7,
                  labels=("camera A", "camera B"))  # fmt: skip
    assert "res5a filter 7: camera B" == fig2.axes[3].get_title()


def test_render_filter_overlay_and_alpha_change_the_pixels():
    a, b = _maps()
    img = torch.rand(1, 16, 16)
    base = figure_pixels(render(img, img, a, b, layer="x", filter=0))
    for change in ({"filter": 1}, {"overlay": False}, {"alpha": 0.9}):
        other = figure_pixels(render(img, img, a, b, ExplorerState(layer="x", filter=0), **change))
        assert (other != base).any(), f"{change} did not change the figure"
    again = figure_pixels(render(img, img, a, b, layer="x", filter=0))
    np.testing.assert_array_equal(again, base)  # pure: same inputs, same pixels


def test_render_rejects_bad_arguments():
    a, b = _maps()
    img = torch.rand(1, 16, 16)
    with pytest.raises(ValueError, match=r"filter=8 .*8 filters"):
        render(img, img, a, b, layer="x", filter=8)
    with pytest.raises(ValueError, match="filter=-1"):
        render(img, img, a, b, filter=-1)
    with pytest.raises(ValueError, match="alpha"):
        render(img, img, a, b, alpha=1.5)
    with pytest.raises(TypeError, match="colour"):
        render(img, img, a, b, colour="red")
    with pytest.raises(ValueError, match="same shape"):
        render(img, img, a, b[:4])


# ------------------------------------------------------------------------------------------- the widgets
def test_filter_slider_updates_state_and_figure(explorer):
    box = explorer.widget
    assert box.__class__.__name__ == "VBox"
    assert set(explorer.controls) == {"pair", "layer", "filter", "overlay", "alpha"}
    start = explorer.state.filter
    assert start == explorer.suggested_filters(1)[0], "the explorer starts on the best-matching filter"
    before = figure_pixels(explorer.last_figure)
    new = (start + 3) % 8
    explorer.controls["filter"].value = new
    assert explorer.state == ExplorerState(pair=0, layer="wide", filter=new, overlay=True, alpha=0.5)
    assert f"filter {new}" in explorer.last_figure.axes[1].get_title()
    assert (figure_pixels(explorer.last_figure) != before).any()
    explorer.controls["overlay"].value = False
    assert explorer.state.overlay is False and len(explorer.last_figure.axes[1].images) == 1


def test_layer_change_resizes_filter_slider_and_clamps(explorer):
    assert explorer.widget is not None
    explorer.controls["filter"].value = 7
    explorer.controls["layer"].value = "narrow"
    assert explorer.controls["filter"].max == 3
    assert explorer.state.layer == "narrow" and explorer.state.filter == 3
    assert "narrow filter 3" in explorer.last_figure.axes[1].get_title()
    assert explorer.last_figure.axes[1].images[-1].get_array().shape == (16, 16)  # upsampled from 8x8
    explorer.controls["layer"].value = "wide"
    assert explorer.controls["filter"].max == 7 and explorer.state.filter == 3


def test_feature_maps_are_cached_per_pair(explorer):
    assert explorer.widget is not None
    assert explorer.forward_passes == len(explorer), (
        "the headline ranks against every pair: one pass each, once"
    )
    explorer.controls["filter"].value = 2
    explorer.controls["layer"].value = "narrow"
    explorer.controls["alpha"].value = 0.2
    explorer.controls["pair"].value = 2
    assert explorer.forward_passes == len(explorer), (
        "slider moves and pair changes must not run the model again"
    )
    assert explorer.state.pair == 2
    explorer.controls["pair"].value = 0
    assert explorer.forward_passes == len(explorer)
    a, b = explorer.maps(2, "narrow")
    torch.testing.assert_close(
        b, explorer.backbone.forward_taps(explorer.images_b[2:3], ["narrow"])["narrow"][0]
    )
    assert "Filters that fire" in explorer.hint.value


def test_suggested_filters_and_errors(explorer):
    assert len(explorer.suggested_filters(3)) == 3
    a, b = explorer.maps(1, "narrow")
    assert explorer.suggested_filters(2, pair=1, layer="narrow") == top_filters(a, b, 2)
    with pytest.raises(ValueError, match="pair=5"):
        explorer.maps(5, "wide")
    with pytest.raises(ValueError, match="layer='conv5'"):
        explorer.maps(0, "conv5")
    with pytest.raises(ValueError, match="valid tap names"):
        FeatureMapExplorer(TwoTaps(), torch.rand(2, 1, 16, 16), torch.rand(2, 1, 16, 16), ["conv5"])
    with pytest.raises(ValueError, match="aligned"):
        FeatureMapExplorer(TwoTaps(), torch.rand(2, 1, 16, 16), torch.rand(3, 1, 16, 16), ["wide"])


def test_show_falls_back_to_static_figure_outside_a_kernel(explorer, capsys):
    explorer.show()
    assert "static figure" in capsys.readouterr().out
    assert explorer.last_figure is not None and len(explorer.last_figure.axes) == 4
    assert explorer._widget is None  # no widget was built
    explorer.show(mode="widget")  # builds the widget even without a frontend (nothing to display it to)
    assert explorer._widget is not None
    with pytest.raises(ValueError, match="mode"):
        explorer.show(mode="fancy")


def test_explorer_on_real_sketchanet_with_uint8_images():
    from cdimlab.models import build_backbone

    torch.manual_seed(0)
    net = build_backbone("sketchanet", input_size=113)
    sketches = np.random.default_rng(0).integers(0, 256, (2, 113, 113), dtype=np.uint8)
    ex = FeatureMapExplorer(net, sketches, sketches[::-1].copy(), ["conv3", "conv5"], "cpu",
                            preprocess=lambda x: x - 0.98)  # fmt: skip
    assert ex.widget is not None
    ex.controls["layer"].value = "conv5"
    ex.controls["filter"].value = 255
    assert ex.state.filter == 255 and ex.maps(0, "conv5")[0].shape == (256, 2, 2)


# ----------------------------------------------------------------------------------------------- match measure
def test_match_score_hand_computed():
    from cdimlab.viz.explorer import match_score

    q = torch.tensor([1.0, 0.0])
    cands = torch.tensor([[0.0, 1.0], [1.0, 0.1], [2.0, 0.0]])  # after L2: [0,1], ~[1,0.1], [1,0]
    s = match_score(q, cands, true_index=2)
    assert s.rank == 1 and s.n == 3 and s.d_true == pytest.approx(0.0)
    assert s.d_wrong == pytest.approx(float(torch.dist(torch.tensor([1.0, 0.0]), cands[1] / cands[1].norm())))
    assert s.gap > 0
    assert match_score(q, cands, true_index=0).rank == 3, "the farthest candidate ranks last"
    dead = match_score(torch.zeros(2), torch.zeros(3, 2), 1)
    assert dead.rank == 3, "ties count against the true partner: a dead filter ranks last"
    with pytest.raises(ValueError, match="at least 2"):
        match_score(q, cands[:1], 0)


def test_explorer_opens_on_the_layer_asked_and_headlines_the_rank(explorer):
    torch.manual_seed(0)
    imgs = torch.rand(3, 1, 16, 16)
    ex = FeatureMapExplorer(TwoTaps(), imgs, imgs.clone(), ["wide", "narrow"], "cpu", layer="narrow")
    assert ex.state.layer == "narrow" and ex.state.filter in range(4)
    title = ex.render()._suptitle.get_text()
    assert "ranked 1 of 3" in title and "whole narrow" in title, "identical partners rank first"
    assert ex.match(0, "narrow").d_true == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="layer='conv9'"):
        FeatureMapExplorer(TwoTaps(), imgs, imgs, ["wide"], "cpu", layer="conv9")
    assert "cosine" not in explorer.render()._suptitle.get_text()
