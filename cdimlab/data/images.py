"""Image decoding for the ReID datasets: read one image, check a whole split, decode a split into one array.

Introduced in notebook 03 (ReID data) together with :mod:`cdimlab.data.reid`, which indexes the datasets and
re-exports these functions. Paths are files or ``"<zip path>::<member name>"`` (zips are read in place). Every
failure raises :class:`ImageDecodeError` naming the file (or ``zip::member``) and the fix.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import os
import re
import zipfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm.auto import tqdm

from ..utils import atomic_write_json, atomic_write_stream

ZIP_SEP = "::"
_SCRIPT = "python data_scripts/prepare_reid.py"


class ImageDecodeError(OSError):
    """An image file or zip member cannot be read or decoded; the message names it (``<zip>::<member>``) and the fix."""


_READ_ERRORS = (OSError, SyntaxError, ValueError, EOFError, KeyError, IndexError, zipfile.BadZipFile,
                Image.DecompressionBombError)  # fmt: skip


def _reason(exc: BaseException) -> str:
    """A short cause without PIL's ``<_io.BytesIO object at ...>`` (zip members are decoded from memory)."""
    if isinstance(exc, UnidentifiedImageError):
        return "not a recognised image (garbage or an empty file)"
    text = str(exc).strip("'\"") or type(exc).__name__
    return re.sub(r"<_io\.BytesIO object at 0x[0-9a-f]+>", "the data", text)


def _fix_hint(path: str) -> str:
    """What to do about a bad image at ``path``."""
    if ZIP_SEP in path:
        zpath = path.split(ZIP_SEP, 1)[0]
        return (f"The zip {zpath} is damaged or incomplete: download it again, or check it with "
                f"`{_SCRIPT} <dataset> --src {zpath} --dest <folder>`.")  # fmt: skip
    return (f"Re-extract the dataset (`{_SCRIPT} <dataset> --src <zip> --dest <folder> --force`), "
            "or delete the bad file if you know the dataset is fine without it.")  # fmt: skip


def _open_loaded(path: str, zip_cache: dict[str, zipfile.ZipFile] | None, draft: bool) -> Image.Image:
    """Open and fully decode ``path`` (``zip::member`` allowed); ``draft``: JPEGs at 1/8 scale, every byte parsed."""
    src: str | io.BytesIO = path
    if ZIP_SEP in path:
        zpath, member = path.split(ZIP_SEP, 1)
        zf = zip_cache.get(zpath) if zip_cache is not None else None
        if zf is None:
            zf = zipfile.ZipFile(zpath)
            if zip_cache is not None:
                zip_cache[zpath] = zf
        try:
            src = io.BytesIO(zf.read(member))
        finally:
            if zip_cache is None:
                zf.close()
    im = Image.open(src)
    if draft:
        im.draft(None, (1, 1))
    im.load()
    return im


def read_image(path: str | Path, zip_cache: dict[str, zipfile.ZipFile] | None = None) -> Image.Image:
    """Open one image as PIL RGB; ``"<zip>::<member>"`` paths are read from the zip without extracting.

    Raises :class:`ImageDecodeError` naming the file (or ``zip::member``) and the fix when it is truncated,
    not an image, or missing.
    """
    path = str(path)
    try:
        with _open_loaded(path, zip_cache, draft=False) as im:
            return im.convert("RGB")
    except _READ_ERRORS as exc:
        raise ImageDecodeError(f"cannot decode image {path}: {_reason(exc)}. {_fix_hint(path)}") from exc


def _paths_key(paths: Sequence[str], size: tuple[int, int]) -> str:
    h = hashlib.sha256(f"{size}".encode())
    for p in paths:
        h.update(p.encode() + b"\n")
    return h.hexdigest()


def _in_threads(
    n: int, workers: int | None, desc: str, progress: bool, work: Callable[[int, int, tqdm], None]
) -> None:
    """Run ``work(start, stop, bar)`` over ``range(n)`` split into >= 32-item chunks, one per thread."""
    n_workers = max(1, min(workers or min(8, os.cpu_count() or 1), n // 32 or 1))
    bounds = np.linspace(0, n, n_workers + 1).astype(int)
    with tqdm(total=n, desc=desc, disable=not progress, leave=False) as bar:
        if n_workers == 1:
            work(0, n, bar)
            return
        with ThreadPoolExecutor(n_workers) as pool:
            for job in [pool.submit(work, a, b, bar) for a, b in itertools.pairwise(bounds)]:
                job.result()


def _decode_range(paths: Sequence[str], out: np.ndarray, start: int, stop: int, bar: tqdm) -> None:
    """Decode ``paths[start:stop]`` into ``out`` (one thread; its own zip handles)."""
    h, w = out.shape[1:3]
    zips: dict[str, zipfile.ZipFile] = {}
    try:
        for i in range(start, stop):
            img = read_image(paths[i], zips)
            if img.size != (w, h):
                img = img.resize((w, h), Image.BILINEAR)
            out[i] = np.asarray(img)
            bar.update(1)
    finally:
        for zf in zips.values():
            zf.close()


def check_images(images: Sequence[str | Path | tuple], what: str = "images", workers: int | None = None,
                 progress: bool = False, show: int = 5) -> int:  # fmt: skip
    """Decode every image once, cheaply, and raise ONE :class:`ImageDecodeError` listing the bad ones.

    ``images``: paths or ``(path, pid, cam)`` entries (``ReIDData.train`` / ``.query`` / ``.gallery``); ``what``
    names the split in the message, which lists the first ``show`` bad files and how many there are. JPEGs are
    decoded at 1/8 scale (libjpeg still parses every byte, so truncation is caught) in threads: a cost far below
    ``decode_images``. Run it on every split before training, so a bad query image fails before hours of work,
    not after them. Returns the number of images checked.
    """
    paths = [str(x[0]) if isinstance(x, tuple) else str(x) for x in images]
    bad: list[str | None] = [None] * len(paths)

    def work(start: int, stop: int, bar: tqdm) -> None:
        zips: dict[str, zipfile.ZipFile] = {}
        try:
            for i in range(start, stop):
                try:
                    _open_loaded(paths[i], zips, draft=True).close()
                except _READ_ERRORS as exc:
                    bad[i] = _reason(exc)
                bar.update(1)
        finally:
            for zf in zips.values():
                zf.close()

    _in_threads(len(paths), workers, f"check {what}", progress, work)
    errors = [(p, r) for p, r in zip(paths, bad, strict=True) if r is not None]
    if errors:
        listed = "".join(f"\n  - {p}: {r}" for p, r in errors[:show])
        more = f"\n  ... and {len(errors) - show} more" if len(errors) > show else ""
        raise ImageDecodeError(
            f"{len(errors)} of {len(paths)} {what} cannot be decoded:{listed}{more}\n{_fix_hint(errors[0][0])}"
        )
    return len(paths)


def decode_images(
    paths: Sequence[str],
    size: tuple[int, int] = (256, 128),
    progress: bool = True,
    cache: str | Path | None = None,
    workers: int | None = None,
) -> np.ndarray:
    """Decode and resize (PIL bilinear) images to one uint8 (N, H, W, 3) array; ``size`` = (H, W).

    ``cache``: an ``.npy`` path; reused when its sidecar ``<cache>.json`` records the same paths and size,
    otherwise (re)written atomically after decoding. ``workers``: decoding threads (PIL releases the GIL;
    default ``min(8, cpu_count)``); the result does not depend on it. A bad image raises
    :class:`ImageDecodeError` naming it.
    """
    h, w = int(size[0]), int(size[1])
    key = _paths_key(paths, (h, w))
    if cache is not None:
        cache, meta = Path(cache), Path(str(cache) + ".json")
        if cache.is_file() and meta.is_file() and json.loads(meta.read_text()).get("key") == key:
            arr = np.load(cache)
            if arr.shape == (len(paths), h, w, 3):
                return arr
    out = np.empty((len(paths), h, w, 3), dtype=np.uint8)
    _in_threads(len(paths), workers, "decode images", progress,
                lambda a, b, bar: _decode_range(paths, out, a, b, bar))  # fmt: skip
    if cache is not None:
        atomic_write_stream(cache, lambda fh: np.save(fh, out))
        atomic_write_json(meta, {"key": key, "n": len(paths), "size": [h, w]})
    return out
