"""Synthetic Market-1501-style ReID stand-ins (also DukeMTMC-reID and CUHK03-NP layouts), written in the real format.

Introduced in notebook 00 with :mod:`cdimlab.data.synthetic` (the FG-SBIR half): people are drawn as coloured
figures with local details (logos, bags, shoe colours) seen by several cameras with their own lighting, plus
distractors (identity 0) and junk (identity -1) in the gallery, so the same loaders and metrics run on them as on
the real data. Deterministic for a seed; numpy + PIL ImageDraw only.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ..utils import dir_mode

# ----------------------------------------------------------------------------------------------- ReID
_PALETTE = np.array(
    [[200, 30, 30], [30, 60, 200], [30, 150, 60], [230, 200, 40], [240, 240, 240], [25, 25, 25], [130, 70, 30],
     [150, 50, 170], [240, 130, 30], [120, 120, 120], [60, 190, 200], [240, 160, 180]], dtype=float)  # fmt: skip


@dataclass
class _Person:
    top: int
    bottom: int
    shoes: int
    hat: int  # -1 none
    bag: int  # -1 none
    bag_side: int
    logo: int  # -1 none, else colour; logo shape from logo_shape
    logo_shape: int
    logo_pos: float
    stripes: bool
    skin: float


def _make_person(rng: np.random.Generator) -> _Person:
    k = len(_PALETTE)
    return _Person(
        top=int(rng.integers(k)), bottom=int(rng.integers(k)), shoes=int(rng.integers(k)),
        hat=int(rng.integers(k)) if rng.uniform() < 0.3 else -1, bag=int(rng.integers(k)) if rng.uniform() < 0.5 else -1,
        bag_side=int(rng.integers(2)), logo=int(rng.integers(k)) if rng.uniform() < 0.7 else -1,
        logo_shape=int(rng.integers(3)), logo_pos=float(rng.uniform(0.3, 0.7)), stripes=bool(rng.uniform() < 0.3),
        skin=float(rng.uniform(0.5, 1.0)),
    )  # fmt: skip


@dataclass
class _Camera:
    bg: np.ndarray  # (2, 3) gradient colours
    light: float
    tint: np.ndarray


def _make_camera(rng: np.random.Generator) -> _Camera:
    return _Camera(
        bg=rng.uniform(40, 220, (2, 3)), light=float(rng.uniform(0.7, 1.2)), tint=rng.uniform(0.9, 1.1, 3)
    )


def _col(idx: int, cam: _Camera, shade: float = 1.0) -> tuple[int, int, int]:
    c = np.clip(_PALETTE[idx] * cam.light * cam.tint * shade, 0, 255)
    return tuple(int(v) for v in c)


def _draw_person(p: _Person | None, cam: _Camera, rng: np.random.Generator, size: tuple[int, int],
                 junk: bool = False) -> Image.Image:  # fmt: skip
    """One bounding box: camera background, a person with a per-image pose (shift/scale/lean)."""
    h, w = size
    grad = np.linspace(0, 1, h)[:, None, None]
    bg = (cam.bg[0] * (1 - grad) + cam.bg[1] * grad) * np.ones((1, w, 1))
    bg = bg + rng.normal(0, 6, bg.shape)
    img = Image.fromarray(np.clip(bg, 0, 255).astype(np.uint8), "RGB")
    if p is None:  # distractor: background clutter only
        d = ImageDraw.Draw(img)
        for _ in range(3):
            x, y = rng.uniform(0, w), rng.uniform(0, h)
            d.rectangle(
                [x, y, x + rng.uniform(5, 20), y + rng.uniform(5, 40)],
                fill=tuple(int(v) for v in rng.uniform(0, 255, 3)),
            )
        return img
    sc, dx, dy = rng.uniform(0.85, 1.05), rng.uniform(-0.08, 0.08) * w, rng.uniform(-0.04, 0.04) * h
    cx = w / 2 + dx
    layer = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    d = ImageDraw.Draw(layer)

    def y(v: float) -> float:
        return h * (0.5 + (v - 0.5) * sc) + dy

    def x(v: float) -> float:
        return cx + v * w * sc

    skin = tuple(int(v) for v in np.clip(np.array([230, 190, 160]) * p.skin * cam.light, 0, 255))
    d.ellipse([x(-0.13), y(0.04), x(0.13), y(0.17)], fill=skin)
    if p.hat >= 0:
        d.rectangle([x(-0.15), y(0.02), x(0.15), y(0.07)], fill=_col(p.hat, cam))
    d.rectangle([x(-0.22), y(0.18), x(0.22), y(0.52)], fill=_col(p.top, cam))
    if p.stripes:
        for k in range(3):
            d.line(
                [x(-0.22), y(0.25 + 0.08 * k), x(0.22), y(0.25 + 0.08 * k)],
                fill=_col(p.top, cam, 0.5),
                width=2,
            )
    if p.logo >= 0:
        lx, ly, r = x(0.0), y(0.2 + 0.3 * p.logo_pos), 0.06 * w * sc
        box = [lx - r, ly - r, lx + r, ly + r]
        [
            d.ellipse,
            d.rectangle,
            lambda b, fill: d.polygon([(b[0], b[3]), (b[2], b[3]), ((b[0] + b[2]) / 2, b[1])], fill=fill),
        ][p.logo_shape](box, fill=_col(p.logo, cam))
    d.rectangle([x(-0.2), y(0.52), x(-0.02), y(0.9)], fill=_col(p.bottom, cam))
    d.rectangle([x(0.02), y(0.52), x(0.2), y(0.9)], fill=_col(p.bottom, cam, 0.9))
    d.rectangle([x(-0.22), y(0.9), x(-0.02), y(0.95)], fill=_col(p.shoes, cam))
    d.rectangle([x(0.02), y(0.9), x(0.22), y(0.95)], fill=_col(p.shoes, cam))
    if p.bag >= 0:
        side = -1 if p.bag_side == 0 else 1
        d.rectangle([x(side * 0.22 - 0.08), y(0.42), x(side * 0.22 + 0.08), y(0.6)], fill=_col(p.bag, cam))
    layer = layer.rotate(float(rng.uniform(-6, 6)), resample=Image.BILINEAR, center=(cx, h * 0.9))
    img.paste(layer, (0, 0), layer)
    if junk:  # a badly cropped box: only a slice of the person
        arr = np.asarray(img).copy()
        arr[: int(h * rng.uniform(0.4, 0.7))] = arr[-1:].mean(axis=(0, 1))
        img = Image.fromarray(arr)
    return img


_LAYOUT_FOLDER = {"market1501": "Market-1501-v15.09.15", "dukemtmc": "DukeMTMC-reID", "cuhk03": "cuhk03-np"}


def _name(layout: str, pid: int, cam: int, frame: int, bb: int) -> str:
    """A file name in the dataset's own convention (all parse with ``([-\\d]+)_c(\\d)``)."""
    p = f"{pid:04d}" if pid >= 0 else "-1"
    if layout == "market1501":
        return f"{p}_c{cam}s1_{frame:06d}_{bb:02d}.jpg"
    if layout == "dukemtmc":
        return f"{p}_c{cam}_f{frame:07d}.jpg"
    return f"{p}_c{cam}_{frame:d}.png"


def _encode(img: Image.Image, png: bool) -> bytes:
    """PNG or JPEG bytes with fixed settings, so a seed gives the same bytes."""
    buf = io.BytesIO()
    if png:
        img.save(buf, format="PNG", optimize=False)
    else:
        img.save(buf, format="JPEG", quality=90, optimize=False, progressive=False, subsampling=2)
    return buf.getvalue()


def synthetic_reid(
    out_dir: str | Path,
    n_train_ids: int = 24,
    n_test_ids: int = 24,
    n_cams: int = 4,
    n_distractors: int = 12,
    n_junk: int = 12,
    seed: int = 0,
    size: tuple[int, int] = (128, 64),
    layout: str = "market1501",
) -> Path:
    """Write a Market-1501-style folder of procedurally drawn people; returns the dataset folder.

    ``layout="market1501"``: ``<out>/Market-1501-v15.09.15/{bounding_box_train,bounding_box_test,query,gt_bbox}``
    named ``PPPP_cCsS_FFFFFF_BB.jpg``; ``"dukemtmc"``: ``<out>/DukeMTMC-reID/`` (no gt_bbox); ``"cuhk03"``:
    ``<out>/cuhk03-np/{labeled,detected}/...`` (PNG, 2 cameras). Each id appears in 2..n_cams cameras with 2-3
    images per camera; test ids give one query per camera they appear in, the rest go to the gallery; the test set
    also holds junk (``-1``) and distractors (``0000``). Deterministic for a seed (fixed JPEG settings).
    """
    if layout not in _LAYOUT_FOLDER:
        raise ValueError(f"layout must be one of {tuple(_LAYOUT_FOLDER)}, got {layout!r}")
    if layout == "cuhk03":
        n_cams = 2
    if n_cams < 2:
        raise ValueError("n_cams must be >= 2 (ReID matches across cameras)")
    rng = np.random.default_rng(seed)
    dataset = Path(out_dir) / _LAYOUT_FOLDER[layout]
    staging = _staging(dataset)
    pids = np.sort(rng.choice(np.arange(1, 1502), n_train_ids + n_test_ids, replace=False))
    order = rng.permutation(len(pids))
    train_pids, test_pids = set(pids[order[:n_train_ids]].tolist()), set(pids[order[n_train_ids:]].tolist())
    try:
        subsets = ["labeled", "detected"] if layout == "cuhk03" else [""]
        for sub_i, sub in enumerate(subsets):
            cams = [_make_camera(rng) for _ in range(n_cams)]
            people = {int(p): _make_person(np.random.default_rng([seed, int(p)])) for p in pids}
            put = _Writer(staging / sub if sub else staging, layout, rng, 1000 * (sub_i + 1))
            for pid in (int(p) for p in pids):
                seen = np.sort(rng.choice(n_cams, size=int(rng.integers(2, n_cams + 1)), replace=False))
                for cam in seen:
                    n_img = int(rng.integers(2, 4))
                    imgs = [_draw_person(people[pid], cams[cam], rng, size) for _ in range(n_img)]
                    if pid in train_pids:
                        for im in imgs:
                            put("bounding_box_train", pid, int(cam), im)
                        continue
                    put("query", pid, int(cam), imgs[0], bb=0)
                    for im in imgs[1:]:
                        put("bounding_box_test", pid, int(cam), im)
                    if layout == "market1501":
                        put("gt_bbox", pid, int(cam), imgs[0], bb=0)
                        put("gt_bbox", pid, int(cam), _draw_person(people[pid], cams[cam], rng, size), bb=0)
            for _ in range(n_junk):
                pid = int(rng.choice(sorted(test_pids)))
                cam = int(rng.integers(n_cams))
                put("bounding_box_test", -1, cam, _draw_person(people[pid], cams[cam], rng, size, junk=True))
            for _ in range(n_distractors):
                cam = int(rng.integers(n_cams))
                put("bounding_box_test", 0, cam, _draw_person(None, cams[cam], rng, size))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return _publish(staging, dataset)


class _Writer:
    """Writes one box image under a fresh, increasing frame number, named in the layout's convention."""

    def __init__(self, base: Path, layout: str, rng: np.random.Generator, frame: int) -> None:
        self.base, self.layout, self.rng, self.frame = base, layout, rng, frame

    def __call__(self, folder: str, pid: int, cam: int, img: Image.Image, bb: int = 1) -> None:
        self.frame += int(self.rng.integers(5, 50))
        path = self.base / folder / _name(self.layout, pid, cam + 1, self.frame, bb)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(_encode(img, png=self.layout == "cuhk03"))


def _staging(final: Path) -> Path:
    """A fresh temp folder beside ``final`` (same file system, so publishing is one rename)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}."))
    staging.chmod(dir_mode())  # mkdtemp makes it 0700: learners on a shared machine must read it
    return staging


def _publish(staging: Path, final: Path) -> Path:
    """Replace ``final`` by ``staging`` (rename); a reader never sees a half-written dataset folder."""
    if final.exists():
        shutil.rmtree(final)
    os.replace(staging, final)
    return final
