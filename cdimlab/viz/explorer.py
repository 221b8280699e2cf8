"""The feature-map explorer of notebook 07: pick an image pair, a layer and a filter; see both maps side by side.

Two layers, so that each can be tested on its own:

* :func:`render` is pure: images + maps + an :class:`ExplorerState` in, a ``matplotlib`` Figure out. Tests call it
  directly and compare pixels.
* :class:`FeatureMapExplorer` holds a model and two aligned image sets (sketch i <-> photo i, or camera A <-> camera
  B of one identity), computes feature maps lazily with a per-(pair, layer) cache, and wires ipywidgets 8 controls
  (pair slider, layer dropdown, filter slider, overlay toggle, alpha slider) to :func:`render` through an
  ``ipywidgets.Output``. Setting ``explorer.controls["filter"].value = 3`` in pytest re-renders exactly as moving
  the slider in JupyterLab does. Without ipywidgets or outside a kernel, :meth:`FeatureMapExplorer.show` falls back
  to a static figure and says so.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from matplotlib.figure import Figure
from torch import Tensor, nn

from cdimlab.models.base import TappedBackbone
from cdimlab.utils import resolve_device
from cdimlab.viz.feature_maps import (
    ImageLike,
    _check_pair_maps,
    as_batch,
    draw_heat,
    draw_image,
    new_figure,
    to_display,
    top_filters,
    upsample_map,
)


@dataclass(frozen=True)
class MatchScore:
    """How well a map tells the true partner from the others: ``a[pair]`` against every ``b[j]`` of the explorer.

    Distances are Euclidean between L2-normalised flattened maps (what the flatten fusion compares). ``rank`` is 1
    when the true partner is the closest; ties count against it (a dead filter ranks last). ``gap`` > 0 means the
    true partner is closer than the best wrong one.
    """

    rank: int
    n: int
    d_true: float
    d_wrong: float

    @property
    def gap(self) -> float:
        return self.d_wrong - self.d_true

    def text(self, what: str) -> str:
        return (f"{what}: true partner ranked {self.rank} of {self.n} "
                f"(distance {self.d_true:.2f} vs best wrong {self.d_wrong:.2f})")  # fmt: skip


def match_score(query: Tensor, candidates: Tensor, true_index: int) -> MatchScore:
    """:class:`MatchScore` of ``query`` (any shape) against ``candidates`` (N, ...) whose ``true_index`` is its partner."""
    if len(candidates) < 2:
        raise ValueError(f"match_score needs at least 2 candidates to rank, got {len(candidates)}")
    q = torch.nn.functional.normalize(query.reshape(1, -1).double(), dim=1)
    c = torch.nn.functional.normalize(candidates.reshape(len(candidates), -1).double(), dim=1)
    d = torch.cdist(q, c)[0]
    d_true = float(d[true_index])
    wrong = torch.cat([d[:true_index], d[true_index + 1 :]])
    rank = 1 + int((wrong <= d_true + 1e-12).sum())
    return MatchScore(rank, len(candidates), d_true, float(wrong.min()))


@dataclass(frozen=True)
class ExplorerState:
    """What the explorer shows: pair index, layer (tap name), filter index, overlay on/off and its alpha."""

    pair: int = 0
    layer: str = ""
    filter: int = 0
    overlay: bool = True
    alpha: float = 0.5


def _check_state(state: ExplorerState, num_filters: int) -> None:
    """ValueError naming the argument when the filter index or alpha is out of range."""
    if not 0 <= state.filter < num_filters:
        raise ValueError(
            f"filter={state.filter} is out of range: layer {state.layer!r} has {num_filters} filters "
            f"(valid: 0..{num_filters - 1})"
        )
    if not 0.0 <= state.alpha <= 1.0:
        raise ValueError(f"alpha={state.alpha} must be in [0, 1]")


def render(
    img_a: ImageLike,
    img_b: ImageLike,
    maps_a: Tensor,
    maps_b: Tensor,
    state: ExplorerState | None = None,
    *,
    labels: tuple[str, str] = ("sketch", "photo"),
    headline: str | None = None,
    **kwargs: Any,
) -> Figure:
    """Draw one explorer view: image A | filter map on A | image B | filter map on B (four axes).

    ``maps_a``/``maps_b`` are the ``(C, h, w)`` maps of the chosen layer for the two images. The state comes from
    ``state`` and/or keyword overrides (``layer=``, ``filter=``, ``pair=``, ``overlay=``, ``alpha=``). Titles name
    the pair, the layer and the filter; the figure title is ``headline`` when given (the explorer passes how the true
    partner ranks against the other images, see :class:`MatchScore`), else the layer, filter and mean activations.
    A filter index outside the layer raises ValueError naming ``filter``.
    """
    unknown = set(kwargs) - set(ExplorerState.__dataclass_fields__)
    if unknown:
        raise TypeError(f"render() got unknown arguments {sorted(unknown)}")
    state = replace(state or ExplorerState(), **kwargs)
    a, b = _check_pair_maps(maps_a, maps_b)
    _check_state(state, a.shape[0])
    f = state.filter
    layer = state.layer or "layer"
    fig = new_figure(10.0, 3.0)
    axes = fig.subplots(1, 4)
    for side, (img, maps, label) in enumerate(((img_a, a, labels[0]), (img_b, b, labels[1]))):
        shown = to_display(img)
        heat = upsample_map(maps[f], shown.shape[:2])
        draw_image(axes[2 * side], shown, f"{label} (pair {state.pair})")
        draw_heat(axes[2 * side + 1], shown, heat, state.alpha, state.overlay, f"{layer} filter {f}: {label}")
    default = f"mean activation {a[f].mean():.3g} / {b[f].mean():.3g}"
    fig.suptitle(f"{layer}, filter {f}: {headline or default}", fontsize=9)
    return fig


def _in_kernel() -> bool:
    """True inside a Jupyter kernel (where a widget can have a frontend); False in plain Python / pytest."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    ip = get_ipython()
    return ip is not None and getattr(ip, "kernel", None) is not None


class FeatureMapExplorer:
    """Interactive explorer over aligned pairs ``(images_a[i], images_b[i])`` for the layers in ``taps``.

    ``images_*`` are float model inputs ``(N, C, H, W)`` (or uint8 arrays, see :func:`cdimlab.viz.as_batch`);
    ``preprocess`` is applied before the model (not to the displayed image). Feature maps are computed for one
    pair at a time, all requested taps in one forward pass, and cached per (pair, layer). Introduced in notebook 07.
    """

    def __init__(
        self,
        model: nn.Module,
        images_a: ImageLike,
        images_b: ImageLike,
        taps: Sequence[str],
        device: str | torch.device = "cpu",
        *,
        labels: tuple[str, str] = ("sketch", "photo"),
        preprocess: Callable[[Tensor], Tensor] | None = None,
        initial: ExplorerState | None = None,
        layer: str | None = None,
    ) -> None:
        if not isinstance(getattr(model, "backbone", None), TappedBackbone):
            raise TypeError(
                f"model is a {type(model).__name__} without a cdimlab backbone; pass a backbone from "
                "cdimlab.models.build_backbone(...) or a net built on one (EmbeddingNet, ReIDNet, AttentionNet)"
            )
        self.backbone = model.backbone
        self.images_a = as_batch(images_a, "images_a")
        self.images_b = as_batch(images_b, "images_b")
        if len(self.images_a) != len(self.images_b) or len(self.images_a) == 0:
            raise ValueError(
                f"images_a and images_b must be non-empty and aligned (pair i = images_a[i], images_b[i]); "
                f"got {len(self.images_a)} and {len(self.images_b)} images"
            )
        self.taps = self.backbone.check_taps(taps)
        if not self.taps:
            raise ValueError(f"taps must name at least one layer of {self.backbone.tap_names}")
        self.device = resolve_device(device)
        self.labels = labels
        self.preprocess = preprocess
        self._cache: dict[tuple[int, str], tuple[Tensor, Tensor]] = {}
        self.forward_passes = 0
        self.last_figure: Figure | None = None
        if layer is not None and layer not in self.taps:
            raise ValueError(f"layer={layer!r} is not one of the explorer's taps {list(self.taps)}")
        # start on ``layer`` (default: the first tap), on the filter that fires most strongly and alike there
        if initial is None:
            self.state = ExplorerState(layer=layer or self.taps[0])
            self.state = replace(self.state, filter=self.suggested_filters(1)[0])
        else:
            self.state = initial if initial.layer in self.taps else replace(initial, layer=self.taps[0])
        self._widget = None
        self._syncing = False
        self.controls: dict[str, Any] = {}

    # ---- data -----------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.images_a)

    @torch.no_grad()
    def maps(self, pair: int, layer: str) -> tuple[Tensor, Tensor]:
        """``(maps_a, maps_b)``, each ``(C, h, w)``, for one pair and layer; cached, all taps computed at once."""
        if not 0 <= pair < len(self):
            raise ValueError(f"pair={pair} is out of range: there are {len(self)} pairs (0..{len(self) - 1})")
        if layer not in self.taps:
            raise ValueError(f"layer={layer!r} is not one of the explorer's taps {list(self.taps)}")
        if (pair, layer) not in self._cache:
            x = torch.stack([self.images_a[pair], self.images_b[pair]]).to(self.device)
            x = self.preprocess(x) if self.preprocess is not None else x
            flags = {m: m.training for m in self.backbone.modules()}
            self.backbone.eval()
            try:
                out = self.backbone.forward_taps(x, self.taps)
            finally:
                for m, flag in flags.items():
                    m.training = flag
            self.forward_passes += 1
            for tap in self.taps:
                fm = out[tap].float().cpu()
                self._cache[(pair, tap)] = (fm[0], fm[1])
        return self._cache[(pair, layer)]

    def num_filters(self, layer: str) -> int:
        """Channels of ``layer`` (from the backbone's ``tap_channels`` when given, else from a forward pass)."""
        channels = getattr(self.backbone, "tap_channels", {}) or {}
        return (
            int(channels[layer]) if layer in channels else int(self.maps(self.state.pair, layer)[0].shape[0])
        )

    def suggested_filters(self, k: int = 5, pair: int | None = None, layer: str | None = None) -> list[int]:
        """Top-``k`` filters (:func:`cdimlab.viz.top_filters`) for ``pair``/``layer`` (default: the current ones)."""
        a, b = self.maps(self.state.pair if pair is None else pair, layer or self.state.layer)
        return top_filters(a, b, k)

    def match(self, pair: int, layer: str, filter: int | None = None) -> MatchScore:
        """How image A of ``pair`` ranks its true partner among all B images, by the whole ``layer`` map or by one
        ``filter``'s map (computes the maps of every pair at that layer once; they are cached)."""
        if len(self) < 2:
            raise ValueError("match needs at least 2 pairs in the explorer (one true partner, one wrong)")
        a = self.maps(pair, layer)[0]
        bs = torch.stack([self.maps(j, layer)[1] for j in range(len(self))])
        if filter is not None:
            a, bs = a[filter], bs[:, filter]
        return match_score(a, bs, pair)

    def headline(self, state: ExplorerState | None = None) -> str:
        """The figure title: how this filter's map, and the whole layer, rank the true partner (needs 2+ pairs)."""
        st = state or self.state
        if len(self) < 2:
            return "one pair only: no other image to rank against"
        one, whole = self.match(st.pair, st.layer, st.filter), self.match(st.pair, st.layer)
        return f"{one.text('this filter')}; {whole.text(f'whole {st.layer}')}"

    def render(self, state: ExplorerState | None = None) -> Figure:
        """Figure for ``state`` (default: the current state); stores it as :attr:`last_figure`."""
        st = state or self.state
        a, b = self.maps(st.pair, st.layer)
        self.last_figure = render(self.images_a[st.pair], self.images_b[st.pair], a, b, st, labels=self.labels,
                                  headline=self.headline(st))  # fmt: skip
        return self.last_figure

    # ---- widgets --------------------------------------------------------------------------------------------
    @property
    def widget(self):
        """The ipywidgets ``VBox`` (controls + output), built on first access; ImportError without ipywidgets."""
        if self._widget is None:
            self._widget = self._build_widget()
        return self._widget

    def _build_widget(self):
        """Create the controls, observe their ``value`` and render the first view into the Output."""
        import ipywidgets as w

        st = self.state
        c = {
            "pair": w.IntSlider(value=st.pair, min=0, max=len(self) - 1, description="pair"),
            "layer": w.Dropdown(options=list(self.taps), value=st.layer, description="layer"),
            "filter": w.IntSlider(
                value=st.filter, min=0, max=self.num_filters(st.layer) - 1, description="filter"
            ),
            "overlay": w.ToggleButton(value=st.overlay, description="overlay on image"),
            "alpha": w.FloatSlider(value=st.alpha, min=0.0, max=1.0, step=0.05, description="alpha"),
        }
        c["filter"].continuous_update = False
        c["pair"].continuous_update = False
        self.controls = c
        self.hint = w.HTML()
        self.output = w.Output()
        for key, ctrl in c.items():
            ctrl.observe(self._on_change, names="value")
            ctrl.add_class(f"cdimlab-{key}")
        self.output.add_class("cdimlab-output")
        self._refresh()
        rows = [w.HBox([c["pair"], c["layer"]]), w.HBox([c["filter"], c["overlay"], c["alpha"]]), self.hint]
        box = w.VBox([*rows, self.output])
        box.add_class("cdimlab-explorer")
        return box

    def _on_change(self, change: dict) -> None:
        """Copy the controls into :attr:`state` (the filter range follows the layer) and re-render."""
        if self._syncing:
            return
        c = self.controls
        layer = c["layer"].value
        nf = self.num_filters(layer)
        if c["filter"].max != nf - 1:
            self._syncing = True  # changing max may clamp value; that event must not render a stale state
            try:
                c["filter"].max = nf - 1
            finally:
                self._syncing = False
        self.state = ExplorerState(
            pair=int(c["pair"].value),
            layer=layer,
            filter=min(int(c["filter"].value), nf - 1),
            overlay=bool(c["overlay"].value),
            alpha=float(c["alpha"].value),
        )
        self._refresh()

    def _refresh(self) -> None:
        """Render the current state into the Output widget and update the suggested-filters hint."""
        fig = self.render()
        self.hint.value = (
            f"<small>Filters that fire strongly and alike on this pair at {self.state.layer}: "
            f"{', '.join(map(str, self.suggested_filters(5)))}</small>"
        )
        if _in_kernel():
            from IPython.display import clear_output, display

            with self.output:
                clear_output(wait=True)
                display(fig)

    def show(self, mode: str = "auto") -> None:
        """Display the explorer: the widget (``mode="widget"``), a static figure (``"static"``), or ``"auto"``.

        ``auto`` uses the widget inside a Jupyter kernel with ipywidgets installed; otherwise (plain Python,
        ``CDIMLAB_STATIC_WIDGETS=1``, ipywidgets missing) it shows the static figure of the current state with a
        note. Returns None (so a notebook cell ending in ``explorer.show()`` does not display twice); the widget
        is :attr:`widget` and the figure :attr:`last_figure`.
        """
        if mode not in ("auto", "widget", "static"):
            raise ValueError(f"mode must be 'auto', 'widget' or 'static', got {mode!r}")
        in_kernel = _in_kernel()
        use_widget = mode == "widget" or (
            mode == "auto" and in_kernel and os.environ.get("CDIMLAB_STATIC_WIDGETS", "") != "1"
        )
        if use_widget:
            try:
                box = self.widget
            except ImportError as err:
                if mode == "widget":
                    raise ImportError(
                        "the explorer widget needs ipywidgets>=8: pip install ipywidgets"
                    ) from err
            else:
                if in_kernel:
                    from IPython.display import display

                    display(box)
                return
        fig = self.render()
        print(
            "Interactive controls are unavailable here (no Jupyter kernel with ipywidgets); showing a static "
            f"figure of {self.state}. Draw another view with explorer.render(ExplorerState(...))."
        )
        if in_kernel:
            from IPython.display import display

            display(fig)
