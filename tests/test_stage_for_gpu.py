"""data_scripts/stage_for_gpu.py: bundles under the limit with manifests, verified and unpacked on arrival.

Small fake data in tmp (a QMUL-like tree and a Market-like official zip); one plan-only run on the real data.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REAL = Path("/work/shared/data")


def _load():
    spec = importlib.util.spec_from_file_location("stage_for_gpu", REPO / "data_scripts" / "stage_for_gpu.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["stage_for_gpu"] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


sg = _load()
MARKET = {"bounding_box_train": ["0002_c1s1_000451_03.jpg", "0002_c2s1_000301_01.jpg"],
          "bounding_box_test": ["0000_c1s1_000151_01.jpg", "-1_c1s1_000401_03.jpg", "0003_c1s1_000601_01.jpg"],
          "query": ["0003_c2s1_000301_00.jpg"], "gt_bbox": ["0003_c2s1_000301_00.jpg", "0003_c2s1_000326_00.jpg"]}  # fmt: skip


def _fake_root(tmp: Path, jpeg_bytes: int = 300) -> Path:
    root = tmp / "src"
    for cat in ("shoes", "chairs"):
        d = root / "qmul_v1" / cat
        d.mkdir(parents=True)
        for db in ("sketch", "edge"):
            for split in ("train", "test"):
                (d / f"{cat}_{db}_db_{split}.mat").write_bytes(f"{cat}{db}{split}".encode() * 50)
        (d / f"{cat}_annotation.json").write_text(json.dumps({"train": {}, "test": {}}))
    (root / "qmul_v1" / "SHA256SUMS").write_text("x  shoes/a.mat\n")
    (root / "reid").mkdir()
    with zipfile.ZipFile(root / "reid" / "Market-1501-v15.09.15.zip", "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("Market-1501-v15.09.15/readme.txt", "readme")
        z.writestr("Market-1501-v15.09.15/bounding_box_train/Thumbs.db", "junk")
        for folder, names in MARKET.items():
            for i, n in enumerate(names):
                z.writestr(f"Market-1501-v15.09.15/{folder}/{n}", bytes([i % 256]) * jpeg_bytes + n.encode())
    return root


def test_plan_lists_every_bundle_and_required_files(tmp_path, capsys):
    bundles = sg.plan_bundles(_fake_root(tmp_path))
    by = {b.name: b for b in bundles}
    assert list(by) == ["qmul", "market_train", "market_test", "market_gt_bbox"]
    assert len(by["qmul"].entries) == 2 * 5 + 1  # 4 .mat + annotation per category, SHA256SUMS
    assert sorted(e.arcname for e in by["market_train"].entries) == [f"bounding_box_train/{n}"
                                                                     for n in sorted(MARKET["bounding_box_train"])]  # fmt: skip
    assert len(by["market_test"].entries) == 4 and by["market_test"].unpack_to == "reid/market1501"
    assert sg.main(["--src", str(tmp_path / "src"), "--plan", "--dest", str(tmp_path / "out")]) == 0
    assert (
        "market_gt_bbox" in capsys.readouterr().out and not (tmp_path / "out").exists()
    )  # --plan writes nothing


def test_stage_then_check_unpacks_into_the_loader_layout(tmp_path, capsys):
    src, dest = _fake_root(tmp_path), tmp_path / ".gpu" / "bundles"
    assert sg.main(["--src", str(src), "--dest", str(dest)]) == 0
    out = capsys.readouterr().out
    for name in ("qmul", "market_train", "market_test", "market_gt_bbox"):
        assert (dest / name / f"{name}.zip").is_file() and f"wrote {dest / name}" in out
    man = json.loads((dest / "market_test" / "manifest.json").read_text())
    assert man["unpack_to"] == "reid/market1501" and len(man["files"]) == 4
    assert sg.main(["--check", str(dest)]) == 0
    data = tmp_path / ".gpu" / "data"  # default: DIR/../data
    for cat in ("shoes", "chairs"):
        got = (data / "qmul_v1" / cat / f"{cat}_edge_db_test.mat").read_bytes()
        assert got == (src / "qmul_v1" / cat / f"{cat}_edge_db_test.mat").read_bytes()
    for folder, names in MARKET.items():
        assert sorted(p.name for p in (data / "reid" / "market1501" / folder).iterdir()) == sorted(names)
    assert not (data / "reid" / "market1501" / "bounding_box_train" / "Thumbs.db").exists()
    assert not list((data / "reid" / "market1501").glob(".*"))  # no staging leftovers


def test_staged_data_is_what_the_loaders_read(tmp_path):
    from cdimlab.data import load_reid, locate_dataset

    src, dest = _fake_root(tmp_path), tmp_path / "b"
    assert sg.main(["--src", str(src), "--dest", str(dest)]) == 0
    assert sg.main(["--check", str(dest), "--unpack-to", str(tmp_path / "data")]) == 0
    loc = locate_dataset("market1501", tmp_path / "data", allow_synthetic=False)
    data = load_reid("market1501", loc.path)
    assert (len(data.train), len(data.query), len(data.gallery), len(data.gt_bbox)) == (2, 1, 3, 2)


def test_check_detects_a_corrupt_archive_and_a_wrong_file(tmp_path):
    src, dest = _fake_root(tmp_path), tmp_path / "b"
    assert sg.main(["--src", str(src), "--dest", str(dest)]) == 0
    z = dest / "market_train" / "market_train.zip"
    raw = bytearray(z.read_bytes())
    raw[40] ^= 0xFF
    z.write_bytes(bytes(raw))
    with pytest.raises(
        SystemExit, match=r"market_train.zip does not match .*manifest.json.*transfer it again"
    ):
        sg.main(["--check", str(dest), "--only", "market_train", "--unpack-to", str(tmp_path / "d")])
    assert not (tmp_path / "d" / "reid" / "market1501" / "bounding_box_train").exists()
    # a manifest whose file digest disagrees (archive digest updated): caught per file, nothing unpacked
    man_path = dest / "qmul" / "manifest.json"
    man = json.loads(man_path.read_text())
    man["files"][0][2] = "0" * 64
    man_path.write_text(json.dumps(man))
    with pytest.raises(SystemExit, match=r"qmul.zip::.* wrong size or sha256"):
        sg.main(["--check", str(dest), "--only", "qmul", "--unpack-to", str(tmp_path / "d")])
    assert not (tmp_path / "d" / "qmul_v1" / "shoes").exists()


def test_missing_required_bundle_is_reported(tmp_path, capsys):
    src, dest = _fake_root(tmp_path), tmp_path / "b"
    assert sg.main(["--src", str(src), "--dest", str(dest)]) == 0
    import shutil

    shutil.rmtree(dest / "market_test")
    assert sg.main(["--check", str(dest), "--unpack-to", "none"]) == 1
    assert "bundle market_test not found" in capsys.readouterr().err


def test_over_the_limit_fails_clearly_and_optional_is_skipped(tmp_path, capsys):
    import random

    src = _fake_root(tmp_path)  # then its Market zip is replaced by incompressible files
    rnd = random.Random(0)
    zpath = src / "reid" / "Market-1501-v15.09.15.zip"
    with zipfile.ZipFile(zpath, "w", zipfile.ZIP_DEFLATED) as z:
        for folder, names in MARKET.items():
            for n in names:
                size = 400_000 if folder == "gt_bbox" else 20_000
                z.writestr(f"Market-1501-v15.09.15/{folder}/{n}", rnd.randbytes(size))
    limit = "0.5"  # MiB: gt_bbox (2 x 400 KB) is over it, the rest fits
    assert sg.main(["--src", str(src), "--dest", str(tmp_path / "b"), "--limit-mib", limit]) == 0
    out = capsys.readouterr().out
    assert "SKIPPED: does not fit (optional)" in out and not (tmp_path / "b" / "market_gt_bbox").exists()
    assert sg.main(["--src", str(src), "--dest", str(tmp_path / "c"), "--limit-mib", "0.01", "--plan"]) == 1
    assert "bundle qmul would be" in capsys.readouterr().err
    # a bundle whose real size exceeds the limit although the plan said it fits: removed, named error
    b = sg.plan_bundles(src)[1]
    with pytest.raises(SystemExit, match=r"bundle market_train is .* MiB > 0.001 MiB \(removed\)"):
        sg.write_bundle(b, tmp_path, 0.001)
    assert not (tmp_path / "market_train").exists() and not list(tmp_path.glob(".market_train.*"))


def test_missing_source_names_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="download_qmul_v1.py"):
        sg.plan_bundles(tmp_path)


@pytest.mark.skipif(not (REAL / "reid").is_dir(), reason="real data not on this machine")
def test_real_data_plan_fits_in_64_mib(capsys):
    """Plan only (no big files written): every bundle, including gt_bbox, is estimated under 64 MiB."""
    bundles = sg.plan_bundles(REAL)
    keep, problems = sg.print_plan(bundles, sg.LIMIT_MIB)
    assert problems == [] and [b.name for b in keep] == [
        "qmul",
        "market_train",
        "market_test",
        "market_gt_bbox",
    ]
    counts = {b.name: len(b.entries) for b in bundles}
    assert counts["market_train"] == 12_936 and counts["market_test"] == 3_368 + 19_732
    assert counts["market_gt_bbox"] == 25_259 and counts["qmul"] >= 10
    assert all(b.estimate() < 64 * sg.MIB for b in bundles)
