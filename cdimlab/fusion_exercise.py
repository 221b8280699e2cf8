"""Grader of notebook 04's exercise ``04.fusion_forward``: the learner writes the paper's fusion forward pass.

The learner's ``my_fusion(taps, pooling)`` gets ``taps = {"conv5": (B, C, H, W) map, "final": (B, D) feature}``
and ``pooling`` (``"flatten"`` or ``"gap"``) and must return Eq. 1 of the paper: pool the mid-level map, L2-normalise
it, L2-normalise the final feature, concatenate ``[mid, final]``. The reference is
:class:`cdimlab.fusion.MidLevelFusion` itself, so the exercise and the library cannot drift apart. When the answer
is wrong, the grader tries the usual mistakes (no L2, one L2 over the whole vector, parts swapped, wrong pooling,
wrong flatten order, L2 over the batch) and names the one that reproduces the learner's output.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from cdimlab.fusion import FusionConfig, MidLevelFusion

ATOL = 1e-5
SHAPE = (3, 4, 3, 2)  # B, C, H, W of the random conv5 map
FINAL_DIM = 5


def _inputs(seed: int) -> dict[str, Tensor]:
    """Random taps (non-negative, like post-ReLU maps) on a fixed seed, so feedback is reproducible."""
    g = torch.Generator().manual_seed(seed)
    return {
        "conv5": torch.rand(SHAPE, generator=g) * 3.0,
        "final": torch.randn(SHAPE[0], FINAL_DIM, generator=g) * 2.0,
    }


def _reference(taps: dict[str, Tensor], pooling: str) -> Tensor:
    """The library's answer: MidLevelFusion with the paper's FG-SBIR settings (one tap, L2 per part, no FC)."""
    cfg = FusionConfig(("conv5",), pooling, None, True)
    fusion = MidLevelFusion({"conv5": SHAPE[1]}, {"conv5": SHAPE[2:]}, FINAL_DIM, cfg)
    with torch.no_grad():
        return fusion(taps)


def _mistakes(taps: dict[str, Tensor], pooling: str) -> list[tuple[str, Tensor]]:
    """(message, output) for each typical wrong implementation, most specific first."""
    fmap, final = taps["conv5"], taps["final"]
    flat, gap = fmap.flatten(1), fmap.mean(dim=(2, 3))
    mid = flat if pooling == "flatten" else gap
    l2 = lambda x: F.normalize(x, dim=1)  # noqa: E731
    out = [
        (
            "the parts are in the wrong order: concatenate [mid, final] (mid-level first).",
            [l2(final), l2(mid)],
        ),
        ("you forgot the L2 normalisation: L2-normalise the pooled map and the final feature.", [mid, final]),
        ("the mid-level part is not L2-normalised (the final part is).", [mid, l2(final)]),
        ("the final feature is not L2-normalised (the mid-level part is).", [l2(mid), final]),
        (
            "you L2-normalised the whole concatenation once; normalise each part separately.",
            [l2(torch.cat([mid, final], 1))],
        ),
        (
            "you normalised over the batch (dim=0); normalise each row (dim=1).",
            [F.normalize(mid, dim=0), F.normalize(final, dim=0)],
        ),
    ]
    if pooling == "flatten":
        hwc = fmap.permute(0, 2, 3, 1).flatten(1)
        out.append(
            (
                "the flatten order is wrong: flatten in (C, H, W) order, i.e. fmap.flatten(1).",
                [l2(hwc), l2(final)],
            )
        )
    else:
        mx = fmap.amax(dim=(2, 3))
        out.append(
            ("that is max pooling; GAP is the mean over H and W: fmap.mean(dim=(2, 3)).", [l2(mx), l2(final)])
        )
    return [(msg, torch.cat(parts, 1)) for msg, parts in out]


def _shape_hint(got: tuple[int, ...], pooling: str) -> str:
    """Why the output has the wrong shape, when the size tells."""
    b, c, h, w = SHAPE
    sizes = {"flatten": c * h * w + FINAL_DIM, "gap": c + FINAL_DIM}
    other = "gap" if pooling == "flatten" else "flatten"
    want = f"expected shape ({b}, {sizes[pooling]})"
    if len(got) == 2 and got[0] == b and got[1] == sizes[other]:
        how = "flatten keeps C*H*W values" if pooling == "flatten" else "GAP keeps one value per channel"
        return f"{want}: your size is that of {other} pooling; with pooling={pooling!r} {how}."
    if len(got) == 2 and got[1] in (FINAL_DIM, sizes[pooling] - FINAL_DIM):
        return f"{want}: concatenate the pooled mid-level part AND the final feature (torch.cat(..., dim=1))."
    if len(got) != 2 or got[0] != b:
        return f"{want}: one row per image, (batch, features)."
    return f"{want}."


def _as_output(got: Any) -> Tensor | None:
    """The learner's output as a float tensor (tensor, array or nested list), or None if it cannot be."""
    try:
        t = got.detach() if isinstance(got, Tensor) else torch.as_tensor(got)
        return t.to(torch.float32).cpu()
    except (TypeError, ValueError, RuntimeError):
        return None


def grade_fusion_forward(fn: Callable[..., Any]) -> tuple[str, str]:
    """Run ``fn(taps, pooling)`` for flatten and GAP against ``MidLevelFusion``.

    Returns ``(status, message)``: status ``"correct"``, ``"wrong"`` or ``"unanswered"`` (``fn`` returned None).
    """
    if not callable(fn):
        return "wrong", f"expected a function my_fusion(taps, pooling), got {type(fn).__name__}."
    for seed, pooling in enumerate(("flatten", "gap")):
        taps = _inputs(seed)
        want = _reference(taps, pooling)
        try:
            got = fn({k: v.clone() for k, v in taps.items()}, pooling)
        except Exception as err:  # a learner's bug: feedback, not a crash
            return "wrong", f"with pooling={pooling!r} your function raised {err!r}."
        if got is None:
            return "unanswered", "not answered yet (your function returns None) —"
        out = _as_output(got)
        if out is None:
            return "wrong", f"with pooling={pooling!r} it returned a {type(got).__name__}; return a tensor."
        if tuple(out.shape) != tuple(want.shape):
            return (
                "wrong",
                f"with pooling={pooling!r} it returned shape {tuple(out.shape)}; {_shape_hint(tuple(out.shape), pooling)}",
            )
        if torch.allclose(out, want, atol=ATOL):
            continue
        for msg, wrong in _mistakes(taps, pooling):
            if torch.allclose(out, wrong, atol=ATOL):
                return "wrong", f"with pooling={pooling!r}: {msg}"
        mid = want.shape[1] - FINAL_DIM
        bad = [
            name
            for name, sl in (
                (f"mid-level (first {mid} values)", slice(0, mid)),
                (f"final (last {FINAL_DIM} values)", slice(mid, None)),
            )
            if not torch.allclose(out[:, sl], want[:, sl], atol=ATOL)
        ]
        return "wrong", (
            f"with pooling={pooling!r} the {' and the '.join(bad)} part differs from MidLevelFusion's; each part "
            "should be a unit vector per row: pool, L2-normalise per part, concatenate [mid, final]."
        )
    return "correct", "matches cdimlab.fusion.MidLevelFusion for flatten and GAP pooling."
