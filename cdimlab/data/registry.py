"""Where each dataset lives: real data when present; for the smoke profile only, a synthetic stand-in.

Introduced in notebook 00 (setup): experiments name a dataset (``shoes``, ``market1501`` ...) and call
``locate_dataset``. Layout under the data root (``default_data_root()``: ``$CDIMLAB_DATA`` or ``<repo>/data``):

    qmul_v1/<category>/...            real QMUL V1 (data_scripts/download_qmul_v1.py)
    reid/market1501/                  real Market-1501, prepared folder or the official zip inside it
    reid/Market-1501-v15.09.15.zip    ... or the official zip (or its folder) directly in reid/
    reid/dukemtmc/ reid/cuhk03/       other ReID data (data_scripts/prepare_reid.py)

Synthetic stand-ins (same formats, deterministic) are generated once in the project cache
(``default_cache_root()``: ``$CDIMLAB_CACHE`` or ``<repo>/.cache``) as ``synthetic/qmul_v1/<category>/`` and
``synthetic/reid/<name>/``; only when the real dataset is absent altogether and the caller allows it (the smoke
profile), with a note on stderr. ``DatasetLocation.path`` is what the loader takes:
``load_qmul_v1(loc.path, loc.name, split)`` or ``load_reid(loc.name, loc.path)``; ``loc.describe()`` is what a
results record says about the data.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from ..utils import REPO_ROOT, atomic_write_text, default_data_root
from .reid import load_reid
from .synthetic import SYNTH_VERSION, synthetic_reid, synthetic_sbir


@dataclass(frozen=True)
class SynthDefaults:
    """Sizes of the synthetic stand-ins (the smoke profile's data), kept in one place."""

    sbir_train: int = 60
    sbir_test: int = 30
    reid_train_ids: int = 24
    reid_test_ids: int = 24
    reid_cams: int = 4
    reid_distractors: int = 12
    reid_junk: int = 12
    reid_size: tuple[int, int] = (128, 64)
    seed: int = 0


SYNTH_DEFAULTS = SynthDefaults()
CONTROLLED_SIZES = (1000, 100)  # train, test instances of the controlled sets: one query = 1 point, not 3.3


@dataclass(frozen=True)
class DatasetInfo:
    """One dataset: its kind, where the real copy lives under the data root, and the script that prepares it."""

    name: str
    kind: str  # "sbir" | "reid"
    real_subdir: str  # relative to the data root
    script: str
    synth_layout: str  # synthetic generator: SBIR category, or ReID layout
    synth_seed_offset: int = 0
    synth_identity: str = (
        "mixed"  # SBIR: where identity lives (synthetic_sbir); "" real_subdir: synthetic only
    )
    synth_sizes: tuple[int, int] | None = None  # SBIR (train, test) instances when not SynthDefaults' sizes

    @property
    def synthetic_only(self) -> bool:
        """True for the controlled stand-ins (``shoes_shape``, ``shoes_parts``), which have no real counterpart."""
        return not self.real_subdir


DATASETS: dict[str, DatasetInfo] = {
    d.name: d
    for d in (
        DatasetInfo(
            "shoes", "sbir", "qmul_v1", "python data_scripts/download_qmul_v1.py --categories shoes", "shoes"
        ),
        DatasetInfo(
            "chairs",
            "sbir",
            "qmul_v1",
            "python data_scripts/download_qmul_v1.py --categories chairs",
            "chairs",
        ),
        DatasetInfo(
            "handbags",
            "sbir",
            "qmul_v1",
            "python data_scripts/download_qmul_v1.py --categories handbags",
            "handbags",
        ),  # fmt: skip
        # notebook 06's controlled sets: identity in global shape only / in small local parts only (no real data)
        DatasetInfo("shoes_shape", "sbir", "", "", "shoes", 0, "shape", CONTROLLED_SIZES),
        DatasetInfo("shoes_parts", "sbir", "", "", "shoes", 0, "parts", CONTROLLED_SIZES),
        DatasetInfo(
            "market1501",
            "reid",
            "reid/market1501",
            "python data_scripts/prepare_reid.py market1501 --src <zip> --dest <root>/reid/market1501",
            "market1501",
            0,
        ),  # fmt: skip
        DatasetInfo(
            "dukemtmc",
            "reid",
            "reid/dukemtmc",
            "python data_scripts/prepare_reid.py dukemtmc --src <your copy> --dest <root>/reid/dukemtmc "
            "(DukeMTMC-reID was withdrawn by its creators: only for holders of a copy)",
            "dukemtmc",
            1,
        ),  # fmt: skip
        DatasetInfo(
            "cuhk03_labeled",
            "reid",
            "reid/cuhk03",
            "python data_scripts/prepare_reid.py cuhk03 --src <zip or folder> --dest <root>/reid/cuhk03",
            "cuhk03",
            2,
        ),  # fmt: skip
        DatasetInfo(
            "cuhk03_detected",
            "reid",
            "reid/cuhk03",
            "python data_scripts/prepare_reid.py cuhk03 --src <zip or folder> --dest <root>/reid/cuhk03",
            "cuhk03",
            2,
        ),  # fmt: skip
    )
}


@dataclass(frozen=True)
class DatasetLocation:
    """Where a dataset was found; ``synthetic`` tells whether it is the stand-in."""

    name: str
    path: Path
    synthetic: bool

    def describe(self, data_root: str | Path | None = None) -> dict[str, str]:
        """What a results record says about the data: ``{"name", "kind": "real"|"synthetic", "path"}``.

        ``path`` is relative to the data root (real data) or the project cache (synthetic), written
        ``<data>/...`` or ``<cache>/...``, so that committed records hold no absolute path of the machine.
        """
        bases = [("<cache>", default_cache_root())]
        if data_root is not None:
            bases.insert(0, ("<data>", Path(data_root).expanduser()))
        bases.append(("<data>", default_data_root()))
        shown = self.path.name
        for label, base in bases:
            try:
                shown = f"{label}/{self.path.relative_to(base).as_posix()}"
                break
            except ValueError:
                continue
        return {"name": self.name, "kind": "synthetic" if self.synthetic else "real", "path": shown}


def default_cache_root() -> Path:
    """The project's cache folder (git-ignored): ``$CDIMLAB_CACHE`` if set, else ``<repo>/.cache``.

    Synthetic stand-ins are generated here, never inside a data root the user gave (which may be read-only).
    """
    env = os.environ.get("CDIMLAB_CACHE")
    return Path(env).expanduser() if env else REPO_ROOT / ".cache"


def _sbir_files(name: str) -> list[str]:
    """The four files every QMUL V1 category needs (sketch and photo-edge databases of both splits)."""
    return [f"{name}_{db}_db_{split}.mat" for db in ("sketch", "edge") for split in ("train", "test")]


def _reid_candidates(info: DatasetInfo, root: Path) -> list[Path]:
    """Places a ReID dataset may sit: its prepared folder (or zip) ``<root>/reid/<name>/``, or, for Market-1501,
    the official zip or folder directly in ``<root>/reid/`` (as the dataset's authors ship it)."""
    out = [root / info.real_subdir]
    if info.name == "market1501":
        parent = root / "reid"
        out += sorted(parent.glob("Market-1501*.zip")) + sorted(
            p for p in parent.glob("Market-1501*") if p.is_dir()
        )
    return [p for p in out if p.exists()]


def _real_present(info: DatasetInfo, root: Path) -> Path | None:
    """The real data's path; None when it is absent altogether. Present but broken raises the loader's error.

    SBIR: ``<root>/qmul_v1/<category>/`` exists -> all four ``.mat`` files must be there (a partly failed
    download is an error, not a reason to use synthetic data). ReID: a candidate place exists -> it is indexed
    by :func:`cdimlab.data.reid.load_reid`, whose errors name the file and the fix.
    """
    if info.synthetic_only:
        return None
    if info.kind == "sbir":
        folder = root / info.real_subdir / info.name
        if not folder.exists():
            return None
        missing = [f for f in _sbir_files(info.name) if not (folder / f).is_file()]
        if missing:
            raise FileNotFoundError(
                f"dataset {info.name!r} at {folder} is incomplete: missing {', '.join(missing)}. "
                f"Finish the download with: {info.script} --dest {root / info.real_subdir}"
            )
        return root / info.real_subdir
    for place in _reid_candidates(info, root):
        load_reid(info.name, place)  # indexing only (file listing); raises with the file and the fix
        return place
    return None


def ensure_synthetic(name: str, root: str | Path, synth: SynthDefaults = SYNTH_DEFAULTS) -> Path:
    """Generate the synthetic ``name`` under ``<root>/synthetic`` (once; again when sizes or seed change).

    Returns the path the loader takes (see module docstring). Used by ``locate_dataset`` and make_synthetic.py.
    """
    info, root = DATASETS[name], Path(root)
    seed = synth.seed + info.synth_seed_offset
    if info.kind == "sbir":
        base = root / "synthetic" / "qmul_v1"
        marker = base / info.name / ".synthetic.json"
        n_train, n_test = info.synth_sizes or (synth.sbir_train, synth.sbir_test)
        params = {
            "n_train": n_train,
            "n_test": n_test,
            "seed": seed,
            "version": SYNTH_VERSION,
        } | ({"identity": info.synth_identity} if info.synth_identity != "mixed" else {})
        if not _marker_ok(marker, params):
            synthetic_sbir(base, info.synth_layout, n_train, n_test, seed,
                           identity=info.synth_identity, name=info.name)  # fmt: skip
            atomic_write_text(marker, json.dumps(params))
        return base
    base = root / "synthetic" / "reid" / info.real_subdir.split("/")[-1]
    marker = base / ".synthetic.json"
    params = {k: v for k, v in asdict(synth).items() if k.startswith("reid_")} | {"seed": seed}
    params["reid_size"] = list(synth.reid_size)
    if not _marker_ok(marker, params):
        synthetic_reid(base, synth.reid_train_ids, synth.reid_test_ids, synth.reid_cams, synth.reid_distractors,
                       synth.reid_junk, seed, synth.reid_size, layout=info.synth_layout)  # fmt: skip
        atomic_write_text(marker, json.dumps(params))
    return base


def _marker_ok(marker: Path, params: dict) -> bool:
    try:
        return json.loads(marker.read_text()) == params
    except (OSError, ValueError):
        return False


def locate_dataset(
    name: str,
    root: str | Path | None = None,
    allow_synthetic: bool = True,
    synth: SynthDefaults = SYNTH_DEFAULTS,
    cache_root: str | Path | None = None,
) -> DatasetLocation:
    """Real data under ``root`` (default: ``$CDIMLAB_DATA`` or ``<repo>/data``), else (smoke only) the stand-in.

    Synthetic data is used only when ``allow_synthetic`` and the real dataset is absent altogether; it is
    generated under ``cache_root`` (default :func:`default_cache_root`), never under ``root``, and a note on
    stderr says so. Real data that is present but broken raises the loader's error. With
    ``allow_synthetic=False`` (the ``laptop`` and ``full`` profiles) a missing dataset raises
    FileNotFoundError naming the path looked at and the command that prepares it.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known: {sorted(DATASETS)}")
    info = DATASETS[name]
    root = Path(root).expanduser() if root is not None else default_data_root()
    real = _real_present(info, root)
    if real is not None:
        return DatasetLocation(name, real, synthetic=False)
    looked = root / info.real_subdir / (info.name if info.kind == "sbir" else "")
    if not allow_synthetic and info.synthetic_only:
        raise FileNotFoundError(
            f"dataset {name!r} is a controlled synthetic set with no real counterpart: run it in the smoke "
            "profile (--profile smoke), the only one that uses synthetic data"
        )
    if not allow_synthetic:
        raise FileNotFoundError(
            f"dataset {name!r} not found: looked in {looked}"
            + (f" and for the official zip in {root / 'reid'}" if name == "market1501" else "")
            + f". Prepare it with: {info.script} (or pass --data <your data root>)"
        )
    cache = Path(cache_root).expanduser() if cache_root is not None else default_cache_root()
    if info.synthetic_only:
        return DatasetLocation(name, ensure_synthetic(name, cache, synth), synthetic=True)
    print(
        f"note: {name!r} not found under {looked}; using its SYNTHETIC stand-in from {cache / 'synthetic'} "
        f"(smoke profile only). Real data: {info.script}",
        file=sys.stderr,
    )
    return DatasetLocation(name, ensure_synthetic(name, cache, synth), synthetic=True)
