"""Synthetic stand-ins written in the real formats: a QMUL-V1-style FG-SBIR set and a Market-1501-style ReID set.

Introduced in notebook 00: every notebook runs on CPU in the smoke profile with these, and the same loaders read
them as the real data. They are built so that the paper's point can show up: every SBIR instance has its own global
shape (toe, heel, shaft, sole, proportions for shoes; seat, back, legs, arms for chairs), pairs of instances share a
rough shape (hard negatives), and all carry **local details** (buckles, bows, stripes, holes, laces on shoes; slats,
holes, cushions on chairs; logos, bags, shoe colours on people) of varying position and size, so identity rests
partly on mid-level local evidence. Strokes are 3-4 px at 256 px so they survive resizing to ~113-128 px.

FG-SBIR: the "photo edge map" is a clean render of an instance; the "sketch" is the same instance drawn again with
distortion (wobbly jittered strokes, a small affine warp, dropped and extra strokes). Each sketch gets 10 candidate
photos (the true match + its 9 nearest instances in generator-parameter space) and all 45 candidate pairs are
labelled by parameter similarity to the true instance. Deterministic for a seed; numpy + PIL ImageDraw only.
"""

from __future__ import annotations

import io
import itertools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.io as sio
from PIL import Image, ImageDraw

from ..utils import atomic_write_bytes, atomic_write_text
from .synthetic_reid import synthetic_reid  # noqa: F401  (the ReID half, re-exported: one import for both)

SBIR_TEMPLATES: dict[str, str] = {"shoes": "shoe", "chairs": "chair", "handbags": "bag"}
_DETAILS: dict[str, tuple[str, ...]] = {
    "shoe": ("buckle", "bow", "stripe", "holes", "laces"),
    "chair": ("slats", "hole", "cushion", "stripe", "bar"),
    "bag": ("buckle", "pocket", "stripe", "holes", "bow"),
}
Poly = list[tuple[float, float]]


# ------------------------------------------------------------------------------------------- FG-SBIR
SYNTH_VERSION = 2  # bump when the SBIR drawing changes, so cached synthetic sets get regenerated
_N_SHAPE = 10  # global shape parameters per instance (templates use the first 8-10)
IDENTITIES = ("mixed", "shape", "parts")  # where an instance's identity lives (synthetic_sbir's ``identity``)
_IDENTITY_STREAM = {"mixed": (), "shape": (1,), "parts": (2,)}  # "mixed" keeps the stand-ins' random stream
_DETAIL_SCALE = (
    1.8  # local details are drawn this much larger than their unit templates (visible at 113-128 px)
)


@dataclass
class _Instance:
    """Generator parameters of one object: global shape (per instance) and local details."""

    shape: np.ndarray  # _N_SHAPE global shape parameters in [0, 1]
    details: dict[str, tuple[float, float, float]]  # detail type -> (u, v, size) in the template's region

    def vector(self, kinds: tuple[str, ...]) -> np.ndarray:
        """Feature vector for similarity: shape + per detail type (present, u, v, size)."""
        parts = [self.shape]
        for k in kinds:
            u, v, s = self.details.get(k, (0.0, 0.0, 0.0))
            parts.append(np.array([1.5 if k in self.details else 0.0, u, v, s]))
        return np.concatenate(parts)


def _make_instances(
    template: str, n: int, rng: np.random.Generator, identity: str = "mixed"
) -> list[_Instance]:
    """Instances whose identity lives where ``identity`` says (one of :data:`IDENTITIES`).

    ``"mixed"`` (the course's stand-ins): pairs share a rough global shape (hard negatives), every instance has its
    own shape and 1-3 local details of varying position and size. ``"shape"``: own global shape, but ONE detail set
    drawn once and shared by all, so details say nothing about identity. ``"parts"``: ONE global shape shared by all,
    so only the local details (which, where, how large) tell instances apart; pairs share their detail kinds.
    """
    if identity not in IDENTITIES:
        raise ValueError(f"identity must be one of {IDENTITIES}, got {identity!r}")
    kinds = _DETAILS[template]

    def draw_details(chosen: np.ndarray | None = None) -> dict[str, tuple[float, float, float]]:
        if chosen is None:
            chosen = rng.choice(len(kinds), size=int(rng.integers(1, 4)), replace=False)
        return {
            kinds[k]: (float(rng.uniform()), float(rng.uniform()), float(rng.uniform()))
            for k in sorted(chosen)
        }

    out, family, pair_kinds = [], rng.uniform(0, 1, _N_SHAPE), None
    shared = draw_details() if identity == "shape" else None
    for i in range(n):
        if (
            identity == "parts"
        ):  # one shape for all; a pair shares its detail kinds, not their places or sizes
            if i % 2 == 0:
                pair_kinds = rng.choice(len(kinds), size=int(rng.integers(1, 4)), replace=False)
            out.append(_Instance(family.copy(), draw_details(pair_kinds)))
            continue
        if i % 2 == 0:
            family = rng.uniform(0, 1, _N_SHAPE)
        shape = np.clip(family + rng.normal(0, 0.2, _N_SHAPE), 0, 1)
        out.append(_Instance(shape, dict(shared) if shared is not None else draw_details()))
    return out


def _curve(p0: tuple[float, float], c: tuple[float, float], p1: tuple[float, float], n: int = 8) -> Poly:
    """Quadratic Bezier from p0 to p1 with control point c (rounded toes, heel backs, chair tops)."""
    t = np.linspace(0, 1, n)[:, None]
    pts = (1 - t) ** 2 * np.array(p0) + 2 * (1 - t) * t * np.array(c) + t**2 * np.array(p1)
    return [tuple(p) for p in pts]


def _shoe_outline(s: np.ndarray) -> tuple[list[Poly], tuple[float, float, float, float]]:
    """Shoe/boot outline from 8 parameters: heel height, shaft height, shaft width, toe length, toe roundness,
    sole thickness, vamp height, heel shape. Returns polylines and the detail region (on the upper)."""
    base = 0.8
    heel = 0.02 + 0.2 * s[0]  # heel height
    shaft = 0.05 + 0.45 * s[1]  # shaft height above the ankle (low shoe .. tall boot)
    back = 0.1 + 0.12 * s[2]  # x of the shaft's back
    front = back + 0.16 + 0.14 * s[2]  # x of the shaft's front
    toe = 0.78 + 0.16 * s[3]  # x of the toe tip
    sole = 0.015 + 0.05 * s[5]  # sole thickness
    vamp = 0.1 + 0.12 * s[6]  # height of the toe box above the sole
    ankle = base - heel - 0.14 - 0.06 * s[6]
    top = ankle - shaft
    ball = 0.45 + 0.1 * s[3]  # where the forefoot meets the ground
    round_c = (toe + 0.02 + 0.06 * s[4], base - sole - vamp * (0.2 + 0.6 * s[4]))
    upper = [
        (back + 0.02, base - heel - sole),
        *_curve((back, base - heel - 0.08), (back - 0.04 * s[7], ankle), (back, top))[1:],
        (front, top),
        *_curve((front, top), (front - 0.02, ankle + 0.02), (ball + 0.1, base - sole - vamp))[1:],
        *_curve((ball + 0.1, base - sole - vamp), round_c, (toe, base - sole))[1:],
    ]
    sole_line = [(ball - 0.05, base - sole), (toe, base - sole), (toe + 0.01, base), (ball - 0.08, base),
                 (back + 0.18, base - heel)]  # fmt: skip
    heel_w = 0.06 + 0.06 * s[7]
    heel_block = [(back + 0.02, base - heel - sole), (back + 0.02 + 0.02 * s[7], base), (back + heel_w, base),
                  (back + heel_w + 0.04 + 0.06 * (1 - s[0]), base - heel), (back + 0.02, base - heel)]  # fmt: skip
    region = (back + 0.04, top + 0.05, min(toe - 0.1, front + 0.3), base - sole - 0.05)
    return [upper, sole_line, heel_block], region


def _chair_outline(s: np.ndarray) -> tuple[list[Poly], tuple[float, float, float, float]]:
    """Chair from 10 parameters: seat width, seat height, back height, back top shape (flat..arched), leg length,
    leg splay, arm rests, seat depth, overall size, stretcher bar. Returns polylines and the detail region (on the back)."""
    sw = 0.18 + 0.16 * s[0]
    sy = 0.5 + 0.12 * s[1]
    bh = 0.18 + 0.25 * s[2]
    lh = 0.15 + 0.2 * s[4]
    splay = 0.08 * s[5]
    depth = 0.04 + 0.08 * s[7]
    x0, x1 = 0.5 - sw, 0.5 + sw
    bx0, bx1, by = x0 + depth, x1 - depth, sy - depth
    seat = [(x0, sy), (x1, sy), (bx1, by), (bx0, by), (x0, sy)]
    arch = 0.12 * (s[3] - 0.3)
    back = [(bx0, by), (bx0, by - bh), *_curve((bx0, by - bh), (0.5, by - bh - 2 * arch), (bx1, by - bh))[1:],
            (bx1, by)]  # fmt: skip
    bottom = min(sy + lh, 0.97)
    legs = [[(x0, sy), (x0 - splay, bottom)], [(x1, sy), (x1 + splay, bottom)],
            [(bx0 + 0.02, sy), (bx0 + 0.02 - splay / 2, bottom - depth)],
            [(bx1 - 0.02, sy), (bx1 - 0.02 + splay / 2, bottom - depth)]]  # fmt: skip
    polys = [seat, back, *legs]
    if s[6] > 0.5:  # arm rests
        ah = 0.08 + 0.08 * s[6]
        polys += [[(x0, sy), (x0, sy - ah), (bx0, by - ah)], [(x1, sy), (x1, sy - ah), (bx1, by - ah)]]
    if s[9] > 0.5:  # a stretcher bar between the front legs, at a varying height
        t = 0.3 + 0.4 * s[9]
        polys.append([(x0 - splay * t, sy + (bottom - sy) * t), (x1 + splay * t, sy + (bottom - sy) * t)])
    region = (bx0 + 0.06, by - bh + 0.06, bx1 - 0.06, by - 0.06)
    k, c = 0.75 + 0.35 * s[8], np.array([0.5, 0.6])  # overall size of the chair

    def scale(q: tuple[float, float]) -> tuple[float, float]:
        return tuple(c + k * (np.array(q) - c))

    polys = [[scale(q) for q in poly] for poly in polys]
    (rx0, ry0), (rx1, ry1) = scale(region[:2]), scale(region[2:])
    return polys, (rx0, ry0, rx1, ry1)


def _bag_outline(s: np.ndarray) -> tuple[list[Poly], tuple[float, float, float, float]]:
    """Handbag from 8 parameters: width, height, handle height, taper, handle width, bottom roundness, flap."""
    w, h, hh, tilt = 0.22 + 0.14 * s[0], 0.18 + 0.14 * s[1], 0.08 + 0.2 * s[2], 0.1 * s[3]
    x0, x1, y1 = 0.5 - w, 0.5 + w, 0.85
    yt = y1 - 2 * h
    rb = 0.06 * s[5]
    body = [(x0 + tilt, yt), (x0, y1 - rb), (x0 + rb, y1), (x1 - rb, y1), (x1, y1 - rb), (x1 - tilt, yt),
            (x0 + tilt, yt)]  # fmt: skip
    hw = w * (0.3 + 0.5 * s[4])
    handle = [(0.5 - hw + t * 2 * hw, yt - hh * np.sin(np.pi * t)) for t in np.linspace(0, 1, 11)]
    polys = [body, handle]
    if s[6] > 0.5:  # flap
        polys.append([(x0 + tilt, yt), (0.5, yt + 0.1 + 0.1 * s[7]), (x1 - tilt, yt)])
    region = (x0 + 0.08, yt + 0.1, x1 - 0.08, y1 - 0.08)
    return polys, region


_OUTLINES = {"shoe": _shoe_outline, "chair": _chair_outline, "bag": _bag_outline}


def _circle(cx: float, cy: float, r: float, n: int = 10) -> Poly:
    return [(cx + r * np.cos(a), cy + r * np.sin(a)) for a in np.linspace(0, 2 * np.pi, n + 1)]


def _detail(kind: str, cx: float, cy: float, k: float = 1.0) -> list[Poly]:
    """Polylines of one local detail centred at (cx, cy), ``k`` times its unit size (~0.05-0.15 across at k=1)."""

    def p(dx: float, dy: float) -> tuple[float, float]:
        return (cx + k * dx, cy + k * dy)

    if kind == "buckle":
        return [[p(-0.04, -0.03), p(0.04, -0.03), p(0.04, 0.03), p(-0.04, 0.03), p(-0.04, -0.03)],
                [p(0, -0.03), p(0, 0.03)]]  # fmt: skip
    if kind == "bow":
        return [[p(0, 0), p(-0.05, -0.03), p(-0.05, 0.03), p(0, 0), p(0.05, -0.03), p(0.05, 0.03), p(0, 0)]]
    if kind == "stripe":
        return [[p(-0.08, -0.02), p(0.08, 0.02)], [p(-0.08, 0.02), p(0.08, 0.06)]]
    if kind == "hole":
        return [_circle(cx, cy, 0.04 * k, 12)]
    if kind == "holes":
        return [_circle(*p(-0.05 + 0.05 * j, 0), 0.014 * k, 6) for j in range(3)]
    if kind == "laces":
        return [[p(-0.05, -0.04 + 0.03 * j), p(0.05, -0.01 + 0.03 * j)] for j in range(3)]
    if kind == "slats":
        return [[p(-0.04 + 0.04 * j, -0.08), p(-0.04 + 0.04 * j, 0.08)] for j in range(3)]
    if kind == "cushion":
        return [[p(-0.07, 0.02), p(-0.05, -0.03), p(0.05, -0.03), p(0.07, 0.02), p(-0.07, 0.02)]]
    if kind == "bar":
        return [[p(-0.1, 0), p(0.1, 0)], [p(-0.1, 0.03), p(0.1, 0.03)]]
    if kind == "pocket":
        return [[p(-0.06, -0.04), p(-0.06, 0.04), p(0.06, 0.04), p(0.06, -0.04)],
                [p(-0.06, -0.04), p(0, 0), p(0.06, -0.04)]]  # fmt: skip
    raise ValueError(f"unknown detail {kind!r}")


def _strokes(template: str, inst: _Instance) -> tuple[list[Poly], list[Poly]]:
    """(global outline strokes, local detail strokes) of an instance; details sit in the outline's region."""
    outline, (x0, y0, x1, y1) = _OUTLINES[template](inst.shape)
    local: list[Poly] = []
    for kind, (u, v, size) in inst.details.items():
        local.extend(
            _detail(kind, x0 + u * (x1 - x0), y0 + v * (y1 - y0), _DETAIL_SCALE * (0.7 + 0.6 * size))
        )
    return outline, local


def _wobble(poly: Poly, rng: np.random.Generator, amp: float) -> Poly:
    """Resample a polyline every ~0.02 units and add smooth noise: a hand-drawn stroke."""
    pts = np.asarray(poly, dtype=float)
    dense = [pts[0]]
    for a, b in itertools.pairwise(pts):
        k = max(2, int(np.linalg.norm(b - a) / 0.02))
        dense.extend(a + (b - a) * t for t in np.linspace(0, 1, k + 1)[1:])
    d = np.asarray(dense)
    noise = np.cumsum(rng.normal(0, amp, d.shape), axis=0)
    noise -= np.linspace(0, 1, len(d))[:, None] * noise[-1]  # keep ends close to the original
    return [tuple(p) for p in d + noise]


def _render(polys: list[Poly], width: int, size: int = 256) -> np.ndarray:
    """Draw unit-coordinate polylines black on white, uint8 (size, size)."""
    img = Image.new("L", (size, size), 255)
    draw = ImageDraw.Draw(img)
    for p in polys:
        draw.line([(x * size, y * size) for x, y in p], fill=0, width=width, joint="curve")
    return np.asarray(img, dtype=np.uint8)


def _sketch(template: str, inst: _Instance, rng: np.random.Generator) -> np.ndarray:
    """The instance drawn from memory: affine warp, wobbly strokes, dropped/extra strokes."""
    outline, local = _strokes(template, inst)
    local = [p for p in local if rng.uniform() > 0.15]  # a missed detail stroke
    polys = outline + local
    if rng.uniform() < 0.3:  # a spurious stroke
        cx, cy = rng.uniform(0.25, 0.75, 2)
        polys.append([(cx, cy), (cx + rng.uniform(-0.1, 0.1), cy + rng.uniform(-0.1, 0.1))])
    ang, sc = rng.uniform(-0.08, 0.08), rng.uniform(0.9, 1.05)
    rot = sc * np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
    shift = rng.uniform(-0.04, 0.04, 2)
    warped = [[tuple(rot @ (np.array(p) - 0.5) + 0.5 + shift) for p in poly] for poly in polys]
    return _render([_wobble(p, rng, 0.0025) for p in warped], width=int(rng.integers(3, 5)))


def _annotations(vectors: np.ndarray) -> tuple[list[list[list[int]]], list[np.ndarray]]:
    """Per sketch: 10 candidates (true match + 9 nearest) and all 45 pairs ordered (closer, farther)."""
    n = len(vectors)
    dist = np.linalg.norm(vectors[:, None] - vectors[None], axis=-1)
    out, cands = [], []
    for i in range(n):
        order = np.argsort(dist[i], kind="stable")
        cand = [i] + [int(j) for j in order if j != i][: min(9, n - 1)]
        pairs = []
        for a, b in itertools.combinations(cand, 2):
            pairs.append([a, b] if (dist[i, a], a) <= (dist[i, b], b) else [b, a])
        out.append(pairs)
        cands.append(np.array(cand))
    return out, cands


# the 116 bytes of free text at the start of a MAT v5 file: scipy writes the current time there, so two runs a
# second apart differed byte for byte; a fixed text keeps a seed's files identical (the version/endian tag follows)
MAT_HEADER = b"MATLAB 5.0 MAT-file, cdimlab synthetic stand-in".ljust(116, b" ")


def _save_mat(path: Path, data: np.ndarray) -> None:
    buf = io.BytesIO()
    sio.savemat(buf, {"data": data}, do_compression=True)
    atomic_write_bytes(path, MAT_HEADER + buf.getvalue()[len(MAT_HEADER) :])


def synthetic_sbir(
    out_dir: str | Path,
    category: str = "shoes",
    n_train: int = 60,
    n_test: int = 30,
    seed: int = 0,
    identity: str = "mixed",
    name: str | None = None,
) -> Path:
    """Write ``<out_dir>/<name>/`` in QMUL V1 format (sketch/edge .mat per split + annotation JSON).

    ``category`` picks the template (shoes: shoe outlines, chairs, handbags). Returns the category folder.
    Handbags also get an annotation file (like the real one, it is not used: true-match training).
    ``identity`` says where an instance's identity lives (``"mixed"``, ``"shape"``, ``"parts"``: see
    :func:`_make_instances`; the controlled experiment of notebook 06); ``name`` (default ``category``) names the
    folder and the file prefix, e.g. ``shoes_parts``.
    """
    if category not in SBIR_TEMPLATES:
        raise ValueError(f"synthetic_sbir: category must be one of {tuple(SBIR_TEMPLATES)}, got {category!r}")
    if identity not in IDENTITIES:
        raise ValueError(f"synthetic_sbir: identity must be one of {IDENTITIES}, got {identity!r}")
    template = SBIR_TEMPLATES[category]
    kinds = _DETAILS[template]
    rng = np.random.default_rng([seed, list(SBIR_TEMPLATES).index(category), *_IDENTITY_STREAM[identity]])
    name = name or category
    folder = Path(out_dir) / name
    ann: dict[str, dict[str, list]] = {}
    offset = 0
    for split, n in (("train", n_train), ("test", n_test)):
        if n < 2:
            raise ValueError(f"n_{split} must be >= 2, got {n}")
        insts = _make_instances(template, n, rng, identity)
        photos = np.stack([_render(_wobble_free(template, i), width=3) for i in insts])
        sketches = np.stack([_sketch(template, i, rng) for i in insts])
        triplets, _ = _annotations(np.stack([i.vector(kinds) for i in insts]))
        _save_mat(folder / f"{name}_sketch_db_{split}.mat", sketches)
        _save_mat(folder / f"{name}_edge_db_{split}.mat", photos)
        ann[split] = {
            "images": [f"{offset + k + 1}.jpg" for k in range(n)],
            "sketches": [f"{offset + k + 1}.png" for k in range(n)],
            "triplets": triplets,
        }
        offset += n
    atomic_write_text(
        folder / f"{name}_annotation.json", json.dumps({"test": ann["test"], "train": ann["train"]})
    )
    return folder


def _wobble_free(template: str, inst: _Instance) -> list[Poly]:
    """Clean strokes of an instance (the photo edge map)."""
    outline, local = _strokes(template, inst)
    return outline + local
