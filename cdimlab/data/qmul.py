"""QMUL FG-SBIR V1 (Shoe, Chair, Handbag): loading, a validation split, and the official triplet sampler.

Introduced in notebook 02 (data) and used by the FG-SBIR notebooks (02, 04, 06, 07). File formats (see
``data_scripts/README.md``): ``<root>/<category>/<category>_{sketch,edge}_db_{train,test}.mat`` (key ``data``,
uint8 N x 256 x 256, black strokes on white; row i of both is the same instance), optional
``<category>_image_db_{split}.mat`` (RGB photos) and ``<category>_annotation.json`` with, per split and per sketch,
the human-labelled (pos, neg) photo pairs among that sketch's 10 candidate photos (0-based).

Handbags ship a *pseudo* annotation file (a byte copy of the shoes one), so its triplets are ignored and training
uses the true match as positive and any other photo as negative (``TripletSampler`` mode ``"true_match"``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import scipy.io as sio

QMUL_CATEGORIES: tuple[str, ...] = ("shoes", "chairs", "handbags")
#: Categories whose annotation JSON is not a real annotation of that category (training uses true matches).
PSEUDO_ANNOTATION_CATEGORIES: tuple[str, ...] = ("handbags",)
SPLITS: tuple[str, ...] = ("train", "test")
_FIX = "run `python data_scripts/download_qmul_v1.py --dest <data root>/qmul_v1` (or pass the right root)"


@dataclass
class QMULSplit:
    """One split of a QMUL V1 category: sketches, photo edge maps (row i matches sketch i) and triplets."""

    category: str
    split: str
    sketches: np.ndarray  # uint8 (N, 256, 256)
    photos: np.ndarray  # uint8 (N, 256, 256) photo edge maps
    images: np.ndarray | None  # uint8 (N, 256, 256, 3) RGB photos, when *_image_db_* exists
    triplets: list[np.ndarray] = field(default_factory=list)  # per sketch, int64 (M, 2) (pos, neg)

    def __len__(self) -> int:
        return int(self.sketches.shape[0])

    @property
    def num_triplets(self) -> int:
        """Total number of annotated (pos, neg) pairs."""
        return int(sum(len(t) for t in self.triplets))

    def candidates(self, i: int) -> np.ndarray:
        """Sorted photo ids appearing in sketch ``i``'s triplets (its candidate photos; 10 in QMUL V1)."""
        return np.unique(self.triplets[i]) if len(self.triplets[i]) else np.empty(0, dtype=np.int64)


def _load_mat_array(path: Path, key: str = "data") -> np.ndarray:
    """Read ``key`` from a .mat file, turning any parse failure into an error that names the file."""
    if not path.is_file():
        raise FileNotFoundError(f"QMUL file not found: {path}; {_FIX}")
    try:
        mat = sio.loadmat(str(path))
    except Exception as exc:  # scipy raises ValueError/TypeError/OSError/MatReadError on torn files
        raise ValueError(
            f"could not read {path} ({type(exc).__name__}: {exc}); the file is truncated or corrupt: "
            f"delete it and re-download it ({_FIX})"
        ) from exc
    if key not in mat:
        keys = [k for k in mat if not k.startswith("__")]
        raise ValueError(f"{path} has no variable {key!r} (found {keys}); is it a QMUL V1 file? {_FIX}")
    return np.asarray(mat[key])


def _check_gray(arr: np.ndarray, path: Path) -> np.ndarray:
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[1:] != (256, 256):
        raise ValueError(f"{path}: expected uint8 (N, 256, 256), got {arr.dtype} {arr.shape}; re-download it")
    return np.ascontiguousarray(arr)


def _check_rgb(arr: np.ndarray, n: int, path: Path) -> np.ndarray:
    """Accept (N, H, W, 3) or (N, 3, H, W) uint8 photos; return (N, H, W, 3)."""
    if arr.ndim == 4 and arr.shape[1] == 3 and arr.shape[-1] != 3:
        arr = arr.transpose(0, 2, 3, 1)
    if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[-1] != 3 or arr.shape[0] != n:
        raise ValueError(f"{path}: expected uint8 ({n}, H, W, 3) RGB photos, got {arr.dtype} {arr.shape}")
    return np.ascontiguousarray(arr)


def _load_triplets(path: Path, split: str, n: int) -> list[np.ndarray]:
    """Per-sketch (M, 2) int64 arrays from the annotation JSON, validated against ``n`` photos."""
    try:
        ann = json.loads(path.read_text())
        raw = ann[split]["triplets"]
    except FileNotFoundError:
        raise FileNotFoundError(f"QMUL annotation file not found: {path}; {_FIX}") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not a valid QMUL annotation file ({exc!r}); re-download it") from exc
    if len(raw) != n:
        raise ValueError(
            f"{path}: {len(raw)} triplet lists for split {split!r} but {n} sketches; re-download it"
        )
    out = []
    for i, t in enumerate(raw):
        arr = np.asarray(t, dtype=np.int64).reshape(-1, 2)
        if arr.size and (arr.min() < 0 or arr.max() >= n):
            raise ValueError(f"{path}: sketch {i} of {split!r} has photo indices outside 0..{n - 1}")
        out.append(arr)
    return out


def load_qmul_v1(root: str | Path, category: str, split: str) -> QMULSplit:
    """Load ``<root>/<category>/`` split ``"train"`` or ``"test"`` as a validated ``QMULSplit``.

    ``images`` is filled when ``<category>_image_db_<split>.mat`` exists. For handbags (pseudo annotations) and
    when the annotation JSON is absent for a non-annotated category, every sketch gets an empty triplet list.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    folder = Path(root) / category
    if not folder.is_dir():
        raise FileNotFoundError(f"no folder {folder} for QMUL category {category!r}; {_FIX}")
    sk_path = folder / f"{category}_sketch_db_{split}.mat"
    ph_path = folder / f"{category}_edge_db_{split}.mat"
    sketches = _check_gray(_load_mat_array(sk_path), sk_path)
    photos = _check_gray(_load_mat_array(ph_path), ph_path)
    n = sketches.shape[0]
    if photos.shape[0] != n:
        raise ValueError(f"{sk_path.name} has {n} sketches but {ph_path.name} has {photos.shape[0]} photos")
    img_path = folder / f"{category}_image_db_{split}.mat"
    images = _check_rgb(_load_mat_array(img_path), n, img_path) if img_path.is_file() else None
    if category in PSEUDO_ANNOTATION_CATEGORIES:
        triplets = [np.empty((0, 2), dtype=np.int64) for _ in range(n)]
    else:
        triplets = _load_triplets(folder / f"{category}_annotation.json", split, n)
    return QMULSplit(category, split, sketches, photos, images, triplets)


def _subset(split: QMULSplit, keep: np.ndarray, name: str) -> QMULSplit:
    """Rows ``keep`` of a split; triplet indices remapped, pairs pointing outside the subset dropped."""
    remap = np.full(len(split), -1, dtype=np.int64)
    remap[keep] = np.arange(len(keep))
    trips = []
    for i in keep:
        t = remap[split.triplets[i]] if len(split.triplets[i]) else np.empty((0, 2), dtype=np.int64)
        trips.append(t[(t >= 0).all(axis=1)].reshape(-1, 2))
    images = None if split.images is None else split.images[keep]
    return replace(split, split=name, sketches=split.sketches[keep], photos=split.photos[keep], images=images,
                   triplets=trips)  # fmt: skip


def train_val_split(
    split: QMULSplit, val_fraction: float = 0.1, seed: int = 0
) -> tuple[QMULSplit, QMULSplit]:
    """Carve a validation set of sketch/photo pairs out of ``split`` (never select models on the test set).

    A seeded permutation picks ``round(N * val_fraction)`` (at least 1) instances; both parts keep their
    original order, triplet indices are remapped, and pairs that point outside a part are dropped.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    n = len(split)
    n_val = min(max(1, round(n * val_fraction)), n - 1)
    perm = np.random.default_rng(seed).permutation(n)
    val_idx, train_idx = np.sort(perm[:n_val]), np.sort(perm[n_val:])
    return _subset(split, train_idx, "train"), _subset(split, val_idx, "val")


# The sampler lives with its sibling in cdimlab.data.samplers; importing it from here keeps old code working.
