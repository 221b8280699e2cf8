"""ReID indexing (Market/Duke/CUHK03 layouts, zips, CUHK03 original release) and image decoding."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import scipy.io as sio

import cdimlab.data.images as reid_images
from cdimlab.data import reid
from cdimlab.data.reid import (
    ImageDecodeError,
    check_images,
    decode_images,
    load_reid,
    parse_market_name,
    read_image,
)
from cdimlab.data.synthetic import synthetic_reid

SHARED_ZIP = Path(__file__).resolve().parents[2] / "shared" / "data" / "reid" / "Market-1501-v15.09.15.zip"


@pytest.fixture(scope="module")
def market(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("reid")
    folder = synthetic_reid(out, n_train_ids=6, n_test_ids=6, n_cams=3, n_distractors=3, n_junk=2, seed=1)
    for sub in ("bounding_box_train", "query"):
        (folder / sub / "Thumbs.db").write_bytes(b"not an image")
    return folder


def test_parse_names():
    assert parse_market_name("0002_c1s1_000451_03.jpg") == (2, 0)
    assert parse_market_name("/x/y/-1_c3s2_000001_01.jpg") == (-1, 2)
    assert parse_market_name("0005_c2_f0046985.jpg") == (5, 1)  # DukeMTMC-reID
    assert parse_market_name("a.zip::M/query/0000_c6s1_000001_00.jpg") == (0, 5)
    with pytest.raises(ValueError, match="cannot parse"):
        parse_market_name("readme.txt")


def _check_market(d, folder: Path):
    files = {
        s: sorted(p.name for p in (folder / s).glob("*.jpg"))
        for s in ("bounding_box_train", "bounding_box_test", "query", "gt_bbox")
    }
    assert len(d.train) == len(files["bounding_box_train"]) and len(d.query) == len(files["query"])
    assert len(d.gallery) == len(files["bounding_box_test"]) and len(d.gt_bbox) == len(files["gt_bbox"])
    train_pids = sorted({int(n.split("_")[0]) for n in files["bounding_box_train"]})
    by_name = {Path(p.split("::")[-1]).name: (lab, cam) for p, lab, cam in d.train}
    for n in files["bounding_box_train"]:  # relabelled in sorted pid order; camid 0-based
        assert by_name[n] == (train_pids.index(int(n.split("_")[0])), int(n.split("_c")[1][0]) - 1)
    assert d.num_train_pids == 6 and d.num_query_pids == 6 and d.num_gallery_pids == 6
    assert {pid for _, pid, _ in d.gallery} >= {-1, 0}  # junk and distractors kept
    assert all(pid > 0 for _, pid, _ in d.query)


def test_market_folder_parent_and_zip(market, tmp_path):
    _check_market(load_reid("market1501", market), market)
    _check_market(load_reid("market1501", market.parent), market)  # parent of the dataset folder
    zpath = tmp_path / "m.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        for p in sorted(market.rglob("*")):
            zf.write(p, p.relative_to(market.parent).as_posix())
    dz = load_reid("market1501", zpath)
    _check_market(dz, market)
    assert "::" in dz.query[0][0]
    a = decode_images([p for p, _, _ in dz.query[:3]], size=(32, 16), progress=False)
    b = decode_images(
        [p for p, _, _ in load_reid("market1501", market).query[:3]], size=(32, 16), progress=False
    )
    assert a.shape == (3, 32, 16, 3) and a.dtype == np.uint8 and np.array_equal(a, b)
    ext = load_reid("market1501", zpath, cache_dir=tmp_path / "extracted")  # extract once, atomically
    assert Path(ext.query[0][0]).is_file() and (tmp_path / "extracted" / ".extracted.json").is_file()
    assert not list(tmp_path.glob(".extracted.*"))


def test_decode_threads_match_single_thread(market):
    d = load_reid("market1501", market)
    paths = [p for p, _, _ in d.train + d.gallery + d.query]
    assert len(paths) >= 64  # enough for 2 threads (>= 32 images each)
    one = decode_images(paths, size=(32, 16), progress=False, workers=1)
    assert np.array_equal(decode_images(paths, size=(32, 16), progress=False, workers=3), one)


def test_decode_cache(market, tmp_path, monkeypatch):
    paths = [p for p, _, _ in load_reid("market1501", market).query[:4]]
    cache = tmp_path / "q.npy"
    first = decode_images(paths, size=(64, 32), progress=False, cache=cache)
    ref = np.asarray(read_image(paths[0]).resize((32, 64), reid.Image.BILINEAR))
    assert np.array_equal(first[0], ref)
    monkeypatch.setattr(
        reid_images, "read_image", lambda *a, **k: (_ for _ in ()).throw(AssertionError("decoded again"))
    )
    assert np.array_equal(decode_images(paths, size=(64, 32), progress=False, cache=cache), first)
    with pytest.raises(AssertionError, match="decoded again"):  # other paths -> cache not reused
        decode_images(paths[:2], size=(64, 32), progress=False, cache=cache)


def test_duke_and_cuhk03_np_layouts(tmp_path):
    duke = synthetic_reid(tmp_path / "d", n_train_ids=4, n_test_ids=4, n_cams=3, seed=2, layout="dukemtmc")
    d = load_reid("dukemtmc", duke)
    assert d.gt_bbox is None and d.num_train_pids == 4 and len(d.query) > 0
    cu = synthetic_reid(tmp_path / "c", n_train_ids=4, n_test_ids=4, seed=2, layout="cuhk03")
    lab, det = load_reid("cuhk03_labeled", cu.parent), load_reid("cuhk03_detected", cu)
    assert "/labeled/" in lab.query[0][0] and "/detected/" in det.query[0][0]
    assert lab.num_train_pids == det.num_train_pids == 4


def test_errors_name_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="withdrawn"):
        load_reid("dukemtmc", tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="prepare_reid.py"):
        load_reid("market1501", tmp_path / "empty")
    with pytest.raises(ValueError, match="unknown ReID dataset"):
        load_reid("viper", tmp_path)


def _fake_cuhk03_original(folder: Path, n_pairs=2, n_persons=3) -> dict[str, np.ndarray]:
    """A tiny cuhk-03.mat in the MATLAB v7.3 layout (HDF5 object references) + new-protocol config files."""
    import h5py

    rng = np.random.default_rng(0)
    images = {}
    with h5py.File(folder / "cuhk-03.mat", "w") as f:
        refs = f.create_group("#refs#")
        k = 0
        for kind in ("labeled", "detected"):
            pair_refs = []
            for pair in range(n_pairs):
                cells = np.empty((10, n_persons), dtype=h5py.ref_dtype)  # stored transposed: (10, persons)
                for pid in range(n_persons):
                    for j in range(10):
                        if j in (4, 9):  # empty cells, as in the real file
                            ds = refs.create_dataset(f"e{k}", data=np.zeros(2, np.uint64))
                        else:
                            img = rng.integers(0, 255, (20 + j, 10, 3), dtype=np.uint8)
                            ds = refs.create_dataset(f"i{k}", data=img.T)
                            images[f"{kind}/{pair + 1}_{pid + 1:03d}_{1 if j < 5 else 2}_{j + 1:02d}.png"] = (
                                img
                            )
                        cells[j, pid] = ds.ref
                        k += 1
                pair_refs.append(refs.create_dataset(f"c{k}", data=cells).ref)
                k += 1
            f.create_dataset(kind, data=np.array([pair_refs], dtype=h5py.ref_dtype))
    for kind in ("labeled", "detected"):
        names = sorted(n.split("/")[1] for n in images if n.startswith(kind))
        labels = np.array([(int(n[0]) - 1) * n_persons + int(n[2:5]) for n in names])
        cams = np.array([int(n[6]) for n in names])
        idx = np.arange(1, len(names) + 1)
        train, rest = idx[labels <= n_persons], idx[labels > n_persons]
        query = np.array(
            [i for i in rest if names[i - 1].endswith("_01.png") or names[i - 1].endswith("_06.png")]
        )
        gallery = np.array([i for i in rest if i not in set(query.tolist())])
        sio.savemat(folder / f"cuhk03_new_protocol_config_{kind}.mat", {
            "filelist": np.array(names, dtype=object).reshape(-1, 1), "labels": labels.reshape(-1, 1),
            "camId": cams.reshape(-1, 1), "train_idx": train.reshape(-1, 1), "query_idx": query.reshape(-1, 1),
            "gallery_idx": gallery.reshape(-1, 1)})  # fmt: skip
    return images


def test_cuhk03_original_release(tmp_path):
    images = _fake_cuhk03_original(tmp_path)
    d = load_reid("cuhk03_labeled", tmp_path)
    assert (
        len(d.train) == 3 * 8 and d.num_train_pids == 3 and len(d.query) == 3 * 2 and len(d.gallery) == 3 * 6
    )
    assert {cam for _, _, cam in d.query} == {0, 1} and {pid for _, pid, _ in d.query} == {4, 5, 6}
    p, _, _ = d.query[0]
    assert np.array_equal(np.asarray(read_image(p)), images["labeled/" + Path(p).name])
    again = load_reid("cuhk03_labeled", tmp_path)  # extracted once: the cache is reused
    assert again.query == d.query and (tmp_path / "cuhk03_png" / "labeled" / ".complete.json").is_file()
    assert len(load_reid("cuhk03_detected", tmp_path).train) == 24


@pytest.mark.skipif(not SHARED_ZIP.is_file(), reason="../shared/data/reid absent")
def test_real_market_zip_indexes_without_extracting():
    d = load_reid("market1501", SHARED_ZIP)
    assert (len(d.train), len(d.query), len(d.gallery)) == (12936, 3368, 19732)
    assert (d.num_train_pids, d.num_query_pids) == (751, 750)
    assert (
        sum(pid == -1 for _, pid, _ in d.gallery) == 3819 and sum(pid == 0 for _, pid, _ in d.gallery) == 2798
    )
    assert sorted({lab for _, lab, _ in d.train}) == list(range(751))
    x = decode_images([p for p, _, _ in d.query[:3]], progress=False)
    assert x.shape == (3, 256, 128, 3) and x.std() > 5
    assert (
        not shutil.which("nothing-extracted-here")
        and not (SHARED_ZIP.parent / "Market-1501-v15.09.15").exists()
    )


def _copy_with_damage(market: Path, tmp_path: Path, n_bad: int = 1) -> tuple[Path, list[Path]]:
    """A copy of ``market`` whose first ``n_bad`` query images are truncated to a third (a broken download)."""
    folder = tmp_path / market.name
    shutil.copytree(market, folder)
    victims = sorted((folder / "query").glob("*.jpg"))[:n_bad]
    for v in victims:
        data = v.read_bytes()
        v.write_bytes(data[: len(data) // 3])
    return folder, victims


def test_truncated_jpeg_error_names_the_file_and_the_fix(market, tmp_path):
    folder, (victim,) = _copy_with_damage(market, tmp_path)
    d = load_reid("market1501", folder)
    with pytest.raises(ImageDecodeError) as err:
        decode_images([p for p, _, _ in d.query], size=(32, 16), progress=False, workers=1)
    msg = str(err.value)
    assert str(victim) in msg and "truncated" in msg and "prepare_reid.py" in msg and "delete" in msg
    assert isinstance(err.value, OSError)  # callers catching OSError keep working
    with pytest.raises(ImageDecodeError, match="not a recognised image"):
        read_image(folder / "bounding_box_train" / "Thumbs.db")  # garbage bytes under an image reader


def test_bad_zip_member_is_named_zip_colon_colon_member(market, tmp_path):
    zpath = tmp_path / "m.zip"
    good = sorted((market / "query").glob("*.jpg"))[0]
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("M/query/0001_c1s1_000001_00.jpg", b"\xff\xd8 not really a jpeg")
        zf.writestr("M/query/0001_c2s1_000001_00.jpg", good.read_bytes()[:200])
    for member, why in (
        ("M/query/0001_c1s1_000001_00.jpg", "not a recognised image"),
        ("M/query/0001_c2s1_000001_00.jpg", "truncated"),
    ):
        with pytest.raises(ImageDecodeError) as err:
            read_image(f"{zpath}::{member}")
        msg = str(err.value)
        assert f"{zpath}::{member}" in msg and why in msg.lower() and "BytesIO" not in msg
        assert f"The zip {zpath} is damaged" in msg  # the fix: download the zip again
    with pytest.raises(ImageDecodeError, match=r"m\.zip::M/query/missing\.jpg"):
        read_image(f"{zpath}::M/query/missing.jpg")


def test_appledouble_and_dot_files_are_not_indexed(market, tmp_path):
    folder = tmp_path / market.name
    shutil.copytree(market, folder)
    n_train = len(load_reid("market1501", folder).train)
    for name in ("._0001_c1s1_000151_01.jpg", ".0002_c1s1_000151_01.jpg"):
        (folder / "bounding_box_train" / name).write_bytes(b"\x00\x05\x16\x07 AppleDouble resource fork")
    d = load_reid("market1501", folder)
    assert len(d.train) == n_train and not any("/." in p for p, _, _ in d.train)
    zpath = tmp_path / "mac.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        for p in sorted(folder.rglob("*")):
            zf.write(p, p.relative_to(tmp_path).as_posix())
        zf.writestr(f"__MACOSX/{folder.name}/bounding_box_train/._0003_c1s1_000151_01.jpg", b"\x00\x05")
    dz = load_reid("market1501", zpath)
    assert len(dz.train) == n_train and not any("._" in p or "__MACOSX" in p for p, _, _ in dz.train)


def test_check_images_lists_every_bad_file_in_one_error(market, tmp_path):
    folder, victims = _copy_with_damage(market, tmp_path, n_bad=7)
    d = load_reid("market1501", folder)
    assert check_images(d.train, "train") == len(d.train)  # entries accepted; a clean split passes
    assert check_images([p for p, _, _ in d.gallery], "gallery", workers=2) == len(d.gallery)
    with pytest.raises(ImageDecodeError) as err:
        check_images(d.query, "market1501 query", workers=2)
    msg = str(err.value)
    assert msg.startswith(f"7 of {len(d.query)} market1501 query cannot be decoded")
    listed = [v for v in victims if str(v) in msg]
    assert len(listed) == 5 and "... and 2 more" in msg and "prepare_reid.py" in msg
    assert all(
        str(p) not in msg for p, _, _ in d.query if Path(p) not in victims
    )  # good files are not blamed
