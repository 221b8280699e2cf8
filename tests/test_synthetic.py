"""Synthetic stand-ins (real formats, annotations, determinism, speed) and the dataset registry."""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import scipy.io as sio
from PIL import Image
from scipy.ndimage import gaussian_filter

from cdimlab.data.qmul import load_qmul_v1
from cdimlab.data.registry import SYNTH_DEFAULTS, SynthDefaults, ensure_synthetic, locate_dataset
from cdimlab.data.reid import load_reid, parse_market_name
from cdimlab.data.synthetic import synthetic_reid, synthetic_sbir

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def _tree_hash(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(folder).as_posix().encode() + p.read_bytes())
    return h.hexdigest()


@pytest.mark.parametrize("category", ["shoes", "chairs"])
def test_sbir_format_and_annotations(tmp_path, category):
    folder = synthetic_sbir(tmp_path, category, n_train=20, n_test=12, seed=0)
    assert folder == tmp_path / category
    mat = sio.loadmat(folder / f"{category}_sketch_db_train.mat")["data"]
    assert mat.dtype == np.uint8 and mat.shape == (20, 256, 256)
    ann = json.loads((folder / f"{category}_annotation.json").read_text())
    assert set(ann) == {"train", "test"} and set(ann["test"]) == {"images", "sketches", "triplets"}
    assert ann["test"]["images"][0] == "21.jpg" and len(ann["test"]["sketches"]) == 12
    for split, n in (("train", 20), ("test", 12)):
        s = load_qmul_v1(tmp_path, category, split)
        assert len(s) == n
        assert s.sketches.mean() > 220 and (s.sketches < 128).mean() > 0.005  # black strokes on white
        for i, t in enumerate(s.triplets):
            cands = s.candidates(i)
            assert len(t) == 45 and len(cands) == 10 and i in cands
            assert all(pos == i for pos, neg in t.tolist() if i in (pos, neg))  # true match always preferred


def test_sketch_resembles_its_own_photo(tmp_path):
    s = load_qmul_v1(synthetic_sbir(tmp_path, "shoes", 20, 10, seed=1).parent, "shoes", "train")

    def feat(a):
        f = gaussian_filter(255.0 - a.astype(float), sigma=(0, 4, 4)).reshape(len(a), -1)
        f -= f.mean(1, keepdims=True)
        return f / np.linalg.norm(f, axis=1, keepdims=True)

    sim = feat(s.sketches) @ feat(s.photos).T
    rank_of_true = (sim > np.diag(sim)[:, None]).sum(1)
    assert np.median(rank_of_true) < 5  # well above chance (median ~10) but not trivial
    assert not np.array_equal(s.sketches, s.photos)


@pytest.mark.parametrize("category", ["shoes", "chairs"])
def test_sbir_strokes_survive_resize_and_shapes_vary(tmp_path, category):
    """Strokes stay visible at 113 px (the Sketch-a-Net input) and instances differ in global extent."""
    s = load_qmul_v1(synthetic_sbir(tmp_path, category, 30, 2, seed=0).parent, category, "train")
    for a in (s.sketches, s.photos):
        small = np.stack([np.asarray(Image.fromarray(im).resize((113, 113), Image.BILINEAR)) for im in a])
        assert ((small < 128).mean(axis=(1, 2)) > 0.02).all()  # 1-px strokes would fade to grey here
    ink = s.photos < 128
    rows, cols = ink.any(2), ink.any(1)
    height = 256 - rows[:, ::-1].argmax(1) - rows.argmax(1)
    width = 256 - cols[:, ::-1].argmax(1) - cols.argmax(1)
    assert height.std() > 25 and width.std() > 12  # one shared outline gave ~10-20 px


def test_sbir_deterministic(tmp_path, monkeypatch):
    import time as time_mod

    a = synthetic_sbir(tmp_path / "a", "chairs", 10, 6, seed=5)
    # scipy stamps the MAT header with time.asctime(): the second run happens "a day later" and must still be equal
    monkeypatch.setattr(time_mod, "asctime", lambda *a: "Thu Jan  1 00:00:00 2099")
    b = synthetic_sbir(tmp_path / "b", "chairs", 10, 6, seed=5)
    c = synthetic_sbir(tmp_path / "c", "chairs", 10, 6, seed=6)
    assert _tree_hash(a) == _tree_hash(b) != _tree_hash(c)


def test_reid_layout_queries_and_determinism(tmp_path):
    t0 = time.perf_counter()
    folder = synthetic_reid(tmp_path / "a")  # defaults
    assert time.perf_counter() - t0 < 15  # a few seconds on 2 shared cores
    assert folder.name == "Market-1501-v15.09.15"
    d = load_reid("market1501", tmp_path / "a")
    assert d.num_train_pids == 24 and d.num_query_pids == 24
    gallery_cams = defaultdict(set)
    for _, pid, cam in d.gallery:
        gallery_cams[pid].add(cam)
    qcams = defaultdict(list)
    for p, pid, cam in d.query:
        qcams[pid].append(cam)
        assert gallery_cams[pid] - {cam}, f"query {p} has no match in another camera"
    assert all(len(c) == len(set(c)) for c in qcams.values())  # one query per id per camera
    pids = [pid for _, pid, _ in d.gallery]
    assert pids.count(-1) == 12 and pids.count(0) == 12
    names = [Path(p).name for p, _, _ in d.train]
    assert all(parse_market_name(n) and len(n.split("_")) == 4 for n in names)
    assert _tree_hash(folder) == _tree_hash(synthetic_reid(tmp_path / "b"))
    assert _tree_hash(folder) != _tree_hash(synthetic_reid(tmp_path / "c", seed=1))


def test_registry_synthetic_then_cached(tmp_path):
    small = SynthDefaults(sbir_train=8, sbir_test=6, reid_train_ids=4, reid_test_ids=4)
    kw = {"synth": small, "cache_root": tmp_path / "cache"}
    loc = locate_dataset("shoes", tmp_path / "data", **kw)
    assert loc.synthetic and loc.path == tmp_path / "cache" / "synthetic" / "qmul_v1"
    assert not (tmp_path / "data").exists()  # nothing is written into the user's data root
    assert len(load_qmul_v1(loc.path, "shoes", "test")) == 6
    mtime = (loc.path / "shoes" / "shoes_sketch_db_test.mat").stat().st_mtime_ns
    assert locate_dataset("shoes", tmp_path / "data", **kw) == loc
    assert (loc.path / "shoes" / "shoes_sketch_db_test.mat").stat().st_mtime_ns == mtime  # not regenerated
    m = locate_dataset("market1501", tmp_path / "data", **kw)
    assert m.synthetic and load_reid("market1501", m.path).num_train_pids == 4
    c = locate_dataset("cuhk03_detected", tmp_path / "data", **kw)
    assert load_reid("cuhk03_detected", c.path).num_query_pids == 4
    hb = load_qmul_v1(locate_dataset("handbags", tmp_path / "data", **kw).path, "handbags", "train")
    assert hb.num_triplets == 0
    with pytest.raises(FileNotFoundError, match="download_qmul_v1.py"):
        locate_dataset("chairs", tmp_path / "empty", allow_synthetic=False)
    with pytest.raises(FileNotFoundError, match="prepare_reid.py market1501"):
        locate_dataset("market1501", tmp_path / "empty", allow_synthetic=False)
    with pytest.raises(ValueError, match="unknown dataset"):
        locate_dataset("mnist", tmp_path)
    assert SYNTH_DEFAULTS.sbir_train == 60


@pytest.mark.skipif(
    not (SHARED / "reid").is_dir() or not (SHARED / "qmul_v1").is_dir(), reason="no ../shared/data"
)
def test_registry_finds_real_data(tmp_path):
    (tmp_path / "reid").mkdir()
    (tmp_path / "qmul_v1").symlink_to(SHARED / "qmul_v1")  # links only: real data never copied
    (tmp_path / "reid" / "market1501").symlink_to(SHARED / "reid")
    assert locate_dataset("shoes", tmp_path, allow_synthetic=False).synthetic is False
    loc = locate_dataset("market1501", tmp_path, allow_synthetic=False)
    assert not loc.synthetic and loc.path == tmp_path / "reid" / "market1501"
    assert not (tmp_path / "synthetic").exists()


# ------------------------------------------------------------------ no silent synthetic data (issue: trust)
def test_synthetic_fallback_says_so_on_stderr(tmp_path, capsys):
    small = SynthDefaults(sbir_train=8, sbir_test=6)
    loc = locate_dataset("shoes", tmp_path / "data", synth=small, cache_root=tmp_path / "cache")
    err = capsys.readouterr().err
    assert loc.synthetic and "SYNTHETIC" in err and str(tmp_path / "data" / "qmul_v1" / "shoes") in err
    d = loc.describe(tmp_path / "data")
    assert d["kind"] == "synthetic" and not d["path"].startswith("/")


def test_missing_data_without_synthetic_names_path_and_command(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        locate_dataset("shoes", tmp_path / "typo", allow_synthetic=False)
    assert str(tmp_path / "typo" / "qmul_v1" / "shoes") in str(e.value)
    assert "download_qmul_v1.py" in str(e.value)
    with pytest.raises(FileNotFoundError, match=r"official zip in .*reid"):
        locate_dataset("market1501", tmp_path / "typo", allow_synthetic=False)
    assert not (tmp_path / "typo").exists()


def test_partly_downloaded_qmul_is_an_error_not_synthetic(tmp_path):
    folder = tmp_path / "qmul_v1" / "chairs"
    folder.mkdir(parents=True)
    (folder / "chairs_sketch_db_test.mat").write_bytes(b"")  # the only file that arrived
    with pytest.raises(FileNotFoundError, match=r"incomplete: missing chairs_sketch_db_train\.mat"):
        locate_dataset("chairs", tmp_path, allow_synthetic=True, cache_root=tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_broken_market_folder_raises_the_loaders_error(tmp_path):
    market = tmp_path / "reid" / "market1501"
    (market / "bounding_box_train").mkdir(parents=True)
    (market / "bounding_box_test").mkdir()  # no query/ folder
    with pytest.raises((FileNotFoundError, ValueError), match="query"):
        locate_dataset("market1501", tmp_path, allow_synthetic=True, cache_root=tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_stray_file_in_reid_folder_is_not_a_dataset(tmp_path):
    (tmp_path / "reid").mkdir()
    (tmp_path / "reid" / "IMG_1234.jpg").write_bytes(b"\xff\xd8")
    with pytest.raises(FileNotFoundError, match="not found"):
        locate_dataset("market1501", tmp_path, allow_synthetic=False)


def test_describe_is_relative_to_the_data_root(tmp_path):
    from cdimlab.data.registry import DatasetLocation

    loc = DatasetLocation("shoes", tmp_path / "qmul_v1", synthetic=False)
    assert loc.describe(tmp_path) == {"name": "shoes", "kind": "real", "path": "<data>/qmul_v1"}


@pytest.mark.skipif(not (SHARED / "reid").is_dir(), reason="no ../shared/data/reid")
def test_market_zip_directly_in_reid_folder_is_found(tmp_path):
    (tmp_path / "reid").mkdir()
    zip_name = "Market-1501-v15.09.15.zip"
    (tmp_path / "reid" / zip_name).symlink_to(SHARED / "reid" / zip_name)  # as ../shared/data has it
    loc = locate_dataset("market1501", tmp_path, allow_synthetic=False)
    assert not loc.synthetic and loc.path.name == zip_name
    assert load_reid("market1501", loc.path).num_train_pids == 751


def test_synthetic_data_is_readable_by_others(tmp_path):
    old = os.umask(0o022)
    try:
        base = ensure_synthetic("shoes", tmp_path, SynthDefaults(sbir_train=8, sbir_test=6))
    finally:
        os.umask(old)
    assert (base / "shoes").stat().st_mode & 0o777 == 0o755
