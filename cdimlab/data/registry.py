"""Where each dataset lives: real data when present, else a deterministic synthetic stand-in generated on demand.

Introduced in notebook 00 (setup): experiments name a dataset (``shoes``, ``market1501`` ...) and call
``locate_dataset``; on a laptop without the real data the smoke profile transparently gets the synthetic version,
in the same format, so the same loaders run everywhere. Layout under the data root (``default_data_root()``):

    qmul_v1/<category>/...            real QMUL V1 (data_scripts/download_qmul_v1.py)
    reid/market1501/ reid/dukemtmc/ reid/cuhk03/     real ReID data (data_scripts/prepare_reid.py)
    synthetic/qmul_v1/<category>/...  synthetic/reid/<name>/...   (generated once, cached)

``DatasetLocation.path`` is what the loader takes: ``load_qmul_v1(loc.path, loc.name, split)`` or
``load_reid(loc.name, loc.path)``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from ..utils import atomic_write_text, default_data_root
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


@dataclass(frozen=True)
class DatasetInfo:
    """One dataset: its kind, where the real copy lives under the data root, and the script that prepares it."""

    name: str
    kind: str  # "sbir" | "reid"
    real_subdir: str  # relative to the data root
    script: str
    synth_layout: str  # synthetic generator: SBIR category, or ReID layout
    synth_seed_offset: int = 0


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


def _real_present(info: DatasetInfo, root: Path) -> Path | None:
    """The real data's path if its key files exist (no decoding), else None."""
    base = root / info.real_subdir
    if info.kind == "sbir":
        ok = (base / info.name / f"{info.name}_sketch_db_test.mat").is_file()
        return base if ok else None
    if not base.is_dir():
        return None
    from .reid import load_reid

    try:
        load_reid(info.name, base)  # indexing only: file listing
    except (FileNotFoundError, ValueError):
        return None
    return base


def ensure_synthetic(name: str, root: str | Path, synth: SynthDefaults = SYNTH_DEFAULTS) -> Path:
    """Generate the synthetic ``name`` under ``<root>/synthetic`` (once; again when sizes or seed change).

    Returns the path the loader takes (see module docstring). Used by ``locate_dataset`` and make_synthetic.py.
    """
    info, root = DATASETS[name], Path(root)
    seed = synth.seed + info.synth_seed_offset
    if info.kind == "sbir":
        base = root / "synthetic" / "qmul_v1"
        marker = base / info.name / ".synthetic.json"
        params = {
            "n_train": synth.sbir_train,
            "n_test": synth.sbir_test,
            "seed": seed,
            "version": SYNTH_VERSION,
        }
        if not _marker_ok(marker, params):
            synthetic_sbir(base, info.synth_layout, synth.sbir_train, synth.sbir_test, seed)
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
) -> DatasetLocation:
    """Real data under ``root`` (default: ``$CDIMLAB_DATA`` or ``<repo>/data``) if present, else the synthetic one.

    With ``allow_synthetic=False`` and no real data, raises FileNotFoundError naming the script to run.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known: {sorted(DATASETS)}")
    info = DATASETS[name]
    root = Path(root).expanduser() if root is not None else default_data_root()
    real = _real_present(info, root)
    if real is not None:
        return DatasetLocation(name, real, synthetic=False)
    if not allow_synthetic:
        raise FileNotFoundError(
            f"dataset {name!r} not found under {root / info.real_subdir}; prepare it with: {info.script} "
            f"(or pass allow_synthetic=True to use the synthetic stand-in)"
        )
    return DatasetLocation(name, ensure_synthetic(name, root, synth), synthetic=True)
