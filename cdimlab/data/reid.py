"""Person re-identification datasets: Market-1501, DukeMTMC-reID, CUHK03 (labelled / detected).

Introduced in notebook 03 (ReID data) and used by the ReID notebooks (03, 05, 06, 07). ``load_reid`` only *indexes*
a dataset (file names -> identity, camera); ``decode_images`` turns paths into one uint8 array for
``cdimlab.data.gpu.ImageBank`` and ``check_images`` verifies that a split decodes (both from
:mod:`cdimlab.data.images`, re-exported here). Dot-files (macOS ``._*.jpg``) and ``__MACOSX/`` are never indexed.

Where the data may be (``root``): the dataset folder itself (holding ``bounding_box_train`` ...), a parent of it,
or the official zip (e.g. ``Market-1501-v15.09.15.zip``), also a folder holding just that zip. A zip is **read in
place, never extracted**: its images get paths of the form ``"<zip path>::<member name>"``, which ``read_image`` and
``decode_images`` understand (so a read-only copy works and indexing costs only the zip listing). Pass
``cache_dir`` to ``load_reid`` to extract the zip there once instead (atomically: temp folder + rename) and get
ordinary file paths.

DukeMTMC-reID has been withdrawn by its creators; it is supported only for people who already hold a copy.
CUHK03: the "CUHK03-NP" layout (``labeled/`` and ``detected/`` folders laid out like Market-1501) or the original
release (``cuhk-03.mat``, MATLAB v7.3/HDF5, + ``cuhk03_new_protocol_config_{labeled,detected}.mat``), whose images
are extracted once to PNGs under ``<root>/cuhk03_png/<labeled|detected>/`` (atomically).
"""

from __future__ import annotations

import hashlib
import re
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from ..utils import atomic_directory, atomic_write_json
from .images import ZIP_SEP, ImageDecodeError, check_images, decode_images, read_image

REID_DATASETS: tuple[str, ...] = ("market1501", "dukemtmc", "cuhk03_labeled", "cuhk03_detected")
IMAGE_EXTS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp")
_NAME_RE = re.compile(r"([-\d]+)_c(\d)")
DUKE_WITHDRAWN = (
    "DukeMTMC-reID has been withdrawn by its creators and is no longer distributed; cdimlab supports it only "
    "for people who already hold a copy"
)
#: Market-1501 per-folder content digests (sha256 of the `sha256sum -- <sorted files>` text), from data/README.md.
MARKET1501_DIGESTS: dict[str, tuple[int, str]] = {
    "bounding_box_train": (12936, "db44dc1aa72e8e72bc61b2a69ae609798873741231dc6eec706be82debfbc972"),
    "bounding_box_test": (19732, "d4e0084e534f7e6d1a70fdd330ebdf469f75d7b730a28ef2983e3038e377b504"),
    "query": (3368, "cfe719cc4369e1f6ba1f0b87500390a18e5f42df2322569d0919677661a6ed68"),
    "gt_bbox": (25259, "f85466231d1e02ab73c1bcbed5c093633af2a4f24a2ac2a5e3bbd43997ef8dc2"),
    "gt_query": (6736, "2b8b79dec6a9edc7d5cfc7fc9df6d4ceaf32d3da92115b1fe7087d57065a6d14"),
}
_SCRIPT = "python data_scripts/prepare_reid.py"

Item = tuple[str, int, int]
__all__ = [
    "REID_DATASETS", "ImageDecodeError", "ReIDData", "check_images", "decode_images", "folder_digest", "load_reid",
    "parse_market_name", "read_image",
]  # fmt: skip


@dataclass
class ReIDData:
    """An indexed ReID dataset: (path, identity, camera) per image for train / query / gallery (/ gt_bbox)."""

    name: str
    root: Path
    train: list[Item]  # (path, label relabelled 0..K-1 sorted by pid, camid 0-based)
    query: list[Item]  # (path, original pid, camid 0-based)
    gallery: list[Item]  # junk (-1) and distractors (0) kept; metrics drop junk
    gt_bbox: list[Item] | None  # Market-1501 multi-query boxes (original pids)
    num_train_pids: int
    num_query_pids: int
    num_gallery_pids: int


def parse_market_name(name: str) -> tuple[int, int]:
    """``"0002_c1s1_000451_03.jpg"`` -> (pid 2, camid 0): the ``([-\\d]+)_c(\\d)`` pattern, camid 0-based."""
    m = _NAME_RE.search(Path(name.split(ZIP_SEP)[-1]).name)
    if m is None:
        raise ValueError(f"cannot parse identity/camera from image name {name!r} (expected PPPP_cC...)")
    return int(m.group(1)), int(m.group(2)) - 1


# --------------------------------------------------------------------------------------------- locating
def _hidden(rel: str) -> bool:
    """Dot-files (macOS ``._x.jpg`` AppleDouble, ``.DS_Store``) and ``__MACOSX/`` entries: never data."""
    parts = rel.split("/")
    return parts[-1].startswith(".") or "__MACOSX" in parts


class _Source:
    """A file tree to list: a directory or a zip (members addressed as ``zip::member``)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.is_zip = path.is_file() and zipfile.is_zipfile(path)
        self._names: list[str] | None = None

    def names(self) -> list[str]:
        """Zip member names (files only; macOS ``__MACOSX/`` and ``._*`` AppleDouble entries, dot-files skipped)."""
        if self._names is None:
            with zipfile.ZipFile(self.path) as zf:
                self._names = [n for n in zf.namelist() if not n.endswith("/") and not _hidden(n)]
        return self._names

    def has_dir(self, rel: str) -> bool:
        if not self.is_zip:
            return (self.path / rel).is_dir()
        prefix = rel.rstrip("/") + "/"
        return any(n.startswith(prefix) for n in self.names())

    def images(self, rel: str) -> list[str]:
        """Sorted image paths directly in folder ``rel`` (non-image files such as Thumbs.db skipped)."""
        if not self.is_zip:
            folder = self.path / rel
            return sorted(
                str(p)
                for p in folder.iterdir()
                if p.suffix.lower() in IMAGE_EXTS and not _hidden(p.name) and p.is_file()
            )
        prefix = rel.rstrip("/") + "/"
        out = [n for n in self.names() if n.startswith(prefix) and "/" not in n[len(prefix) :]]
        return sorted(f"{self.path}{ZIP_SEP}{n}" for n in out if Path(n).suffix.lower() in IMAGE_EXTS)


def _find_prefix(src: _Source, marker: str) -> str | None:
    """The relative folder (``""`` = top) under which ``marker`` (e.g. ``bounding_box_train``) lives, depth <= 3."""
    if src.is_zip:
        hits = sorted({n[: n.index(marker + "/")] for n in src.names() if (marker + "/") in n}, key=len)
        return hits[0] if hits and hits[0].count("/") <= 3 else None
    for depth in range(4):
        pattern = "/".join(["*"] * depth + [marker]) if depth else marker
        for p in sorted(src.path.glob(pattern)):
            if p.is_dir():
                rel = p.relative_to(src.path).as_posix()
                return rel[: len(rel) - len(marker)]
    return None


def _extract_zip(zip_path: Path, cache_dir: Path) -> Path:
    """Extract ``zip_path`` into ``cache_dir`` once: into a temp folder beside it, then one rename."""
    cache_dir = Path(cache_dir)
    if (cache_dir / ".extracted.json").is_file():
        return cache_dir
    with atomic_directory(cache_dir) as tmp, zipfile.ZipFile(zip_path) as zf:
        for member in tqdm(zf.infolist(), desc=f"extract {zip_path.name}", leave=False):
            zf.extract(member, tmp)
        atomic_write_json(tmp / ".extracted.json", {"zip": str(zip_path), "size": zip_path.stat().st_size})
    return cache_dir


def _resolve_source(root: Path, name: str, cache_dir: Path | None) -> _Source:
    """Directory, zip, or directory holding exactly one zip -> the source to index."""
    if not root.exists():
        raise FileNotFoundError(
            f"{name}: {root} does not exist; prepare the data with `{_SCRIPT} {name} ...`"
        )
    if root.is_dir():
        zips = sorted(root.glob("*.zip"))
        if _find_prefix(_Source(root), "bounding_box_train") is None and len(zips) == 1:
            root = zips[0]
    if root.is_file():
        if not zipfile.is_zipfile(root):
            raise ValueError(f"{root} is neither a folder nor a readable zip file; re-download it")
        if cache_dir is not None:
            return _Source(_extract_zip(root, cache_dir))
    return _Source(root)


# ---------------------------------------------------------------------------------------------- indexing
def _items(paths: Sequence[str], drop_junk: bool = False) -> list[Item]:
    out = []
    for p in paths:
        pid, cam = parse_market_name(p)
        if drop_junk and pid == -1:
            continue
        out.append((p, pid, cam))
    return out


def _relabel(items: list[Item]) -> list[Item]:
    """Train identities -> labels 0..K-1 in sorted pid order."""
    pids = sorted({pid for _, pid, _ in items})
    lut = {pid: i for i, pid in enumerate(pids)}
    return [(p, lut[pid], cam) for p, pid, cam in items]


def _build(name: str, root: Path, train: list[Item], query: list[Item], gallery: list[Item],
           gt_bbox: list[Item] | None) -> ReIDData:  # fmt: skip
    train = _relabel([t for t in train if t[1] != -1])
    return ReIDData(
        name=name, root=root, train=train, query=query, gallery=gallery, gt_bbox=gt_bbox,
        num_train_pids=len({t[1] for t in train}),
        num_query_pids=len({t[1] for t in query}),
        num_gallery_pids=len({t[1] for t in gallery if t[1] not in (-1, 0)}),
    )  # fmt: skip


def _load_market_layout(name: str, src: _Source, marker_prefix: str, with_gt_bbox: bool) -> ReIDData:
    folders = ("bounding_box_train", "bounding_box_test", "query")
    for f in folders:
        if not src.has_dir(marker_prefix + f):
            raise FileNotFoundError(f"{name}: folder {marker_prefix + f!r} missing in {src.path}; "
                                    f"re-prepare it with `{_SCRIPT} {name.split('_')[0]} --src ... --dest ...`")  # fmt: skip
    train, gallery, query = (_items(src.images(marker_prefix + f)) for f in folders)
    gt = None
    if with_gt_bbox and src.has_dir(marker_prefix + "gt_bbox"):
        gt = _items(src.images(marker_prefix + "gt_bbox"))
    return _build(name, src.path, train, query, gallery, gt)


def load_reid(name: str, root: str | Path, cache_dir: str | Path | None = None) -> ReIDData:
    """Index ReID dataset ``name`` ("market1501" | "dukemtmc" | "cuhk03_labeled" | "cuhk03_detected") at ``root``.

    ``root``: the dataset folder, a parent of it, its zip, or a folder holding the zip (see module docstring).
    Train labels are relabelled 0..K-1 (sorted pid); query/gallery keep the original pids, junk (-1) and
    distractors (0) stay in the gallery list. Nothing is decoded here. DukeMTMC-reID: withdrawn by its
    creators, supported only for holders of a copy.
    """
    if name not in REID_DATASETS:
        raise ValueError(f"unknown ReID dataset {name!r}; choose from {REID_DATASETS}")
    root = Path(root).expanduser()
    cache = None if cache_dir is None else Path(cache_dir)
    if name == "dukemtmc" and not root.exists():
        raise FileNotFoundError(f"dukemtmc: {root} does not exist. {DUKE_WITHDRAWN}; point root at your copy")
    if name.startswith("cuhk03") and root.is_dir() and _find_cuhk03_original(root) is not None:
        return _load_cuhk03_original(name, _find_cuhk03_original(root))
    src = _resolve_source(root, name, cache)
    marker = "bounding_box_train"
    if name.startswith("cuhk03"):
        kind = name.split("_")[1]
        marker = f"{kind}/bounding_box_train"
    prefix = _find_prefix(src, marker)
    if prefix is None:
        hint = f" {DUKE_WITHDRAWN}." if name == "dukemtmc" else ""
        raise FileNotFoundError(
            f"{name}: no '{marker}' folder found in {src.path} (searched 3 levels deep).{hint} "
            f"Prepare the data with `{_SCRIPT} {name.split('_')[0]} --src <zip or folder> --dest <folder>`"
        )
    if name.startswith("cuhk03"):
        prefix += marker.split("/")[0] + "/"
    return _load_market_layout(name, src, prefix, with_gt_bbox=(name == "market1501"))


# ----------------------------------------------------------------------------------- CUHK03 original release
def _find_cuhk03_original(root: Path) -> Path | None:
    """The folder holding ``cuhk-03.mat`` (root or one level down), if any."""
    for cand in [root, *sorted(p for p in root.iterdir() if p.is_dir())]:
        if (cand / "cuhk-03.mat").is_file():
            return cand
    return None


def _extract_cuhk03_images(mat_path: Path, kind: str, out_dir: Path) -> Path:
    """Write every image of ``kind`` in ``cuhk-03.mat`` as ``{pair}_{pid:03d}_{view}_{img:02d}.png``, once, atomically.

    The file is MATLAB v7.3 (HDF5): ``f[kind]`` holds one reference per camera pair to a (10, n_persons)
    cell array (stored transposed) of image references; empty cells are skipped. Views 1/2 = images 1-5 / 6-10.
    """
    import h5py

    if (out_dir / ".complete.json").is_file():
        return out_dir
    with atomic_directory(out_dir) as tmp:
        count = 0
        with h5py.File(mat_path, "r") as f:
            for pair, pair_ref in enumerate(np.asarray(f[kind]).ravel()):
                cells = np.asarray(f[pair_ref]).T  # (n_persons, 10)
                for pid in tqdm(range(cells.shape[0]), desc=f"cuhk03 {kind} pair {pair + 1}", leave=False):
                    for j, ref in enumerate(cells[pid]):
                        img = np.asarray(f[ref]).T
                        if img.ndim != 3 or img.size < 3:
                            continue
                        view = 1 if j < 5 else 2
                        Image.fromarray(img.astype(np.uint8)).save(
                            tmp / f"{pair + 1}_{pid + 1:03d}_{view}_{j + 1:02d}.png"
                        )
                        count += 1
        atomic_write_json(tmp / ".complete.json", {"source": str(mat_path), "images": count})
    return out_dir


def _mat_strings(arr: np.ndarray) -> list[str]:
    """A scipy-loaded MATLAB cell array of strings -> list of str."""
    return [
        str(np.asarray(x).ravel()[0]) if np.asarray(x).dtype.kind in "OU" else str(x) for x in arr.ravel()
    ]


def _load_cuhk03_original(name: str, folder: Path) -> ReIDData:
    """CUHK03 original release + the new-protocol (767/700) split file -> ``ReIDData`` (PNG paths)."""
    import scipy.io as sio

    kind = name.split("_")[1]
    cfg_path = folder / f"cuhk03_new_protocol_config_{kind}.mat"
    if not cfg_path.is_file():
        raise FileNotFoundError(
            f"{cfg_path} missing: CUHK03 needs the new-protocol split file next to cuhk-03.mat"
        )
    img_dir = _extract_cuhk03_images(folder / "cuhk-03.mat", kind, folder / "cuhk03_png" / kind)
    cfg = sio.loadmat(str(cfg_path))
    files = _mat_strings(cfg["filelist"])
    labels = np.asarray(cfg["labels"]).ravel().astype(int)
    cams = np.asarray(cfg["camId"]).ravel().astype(int) - 1

    def part(key: str) -> list[Item]:
        idx = np.asarray(cfg[key]).ravel().astype(int) - 1  # MATLAB 1-based
        return [(str(img_dir / files[i]), int(labels[i]), int(cams[i])) for i in idx]

    missing = [p for p, _, _ in part("query_idx")[:5] if not Path(p).is_file()]
    if missing:
        raise FileNotFoundError(f"{missing[0]} listed in {cfg_path.name} was not extracted; delete {img_dir}")
    return _build(name, folder, part("train_idx"), part("query_idx"), part("gallery_idx"), None)


# ------------------------------------------------------------------------------------------------ digests
def folder_digest(files: Sequence[tuple[str, bytes]] | Sequence[Path]) -> str:
    """sha256 of the text ``sha256sum -- <files sorted by name (C locale)>`` prints: lines ``"<hex>  <name>\\n"``.

    ``files``: paths (names = base names) or (name, content) pairs. Callers exclude Thumbs.db.
    """
    pairs = [(p.name, p.read_bytes()) if isinstance(p, Path) else p for p in files]
    pairs = sorted(pairs, key=lambda t: t[0].encode())
    text = "".join(f"{hashlib.sha256(data).hexdigest()}  {n}\n" for n, data in pairs)
    return hashlib.sha256(text.encode()).hexdigest()
