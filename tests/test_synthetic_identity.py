"""The controlled stand-ins of notebook 06: one switch says whether identity lives in global shape or in local parts."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from cdimlab.data.qmul import load_qmul_v1
from cdimlab.data.registry import CONTROLLED_SIZES, DATASETS, locate_dataset
from cdimlab.data.synthetic import IDENTITIES, _make_instances, _strokes, synthetic_sbir


def _instances(identity: str, n: int = 12) -> list:
    return _make_instances("shoe", n, np.random.default_rng(0), identity)


def test_parts_share_one_shape_and_differ_only_in_details():
    insts = _instances("parts")
    assert all(np.array_equal(i.shape, insts[0].shape) for i in insts)
    outlines = [_strokes("shoe", i)[0] for i in insts]
    assert all(o == outlines[0] for o in outlines), "the drawn outline is the same for every instance"
    details = [i.details for i in insts]
    assert len({tuple(sorted(d.items())) for d in details}) == len(insts), "every instance has its own parts"
    assert all(set(details[k]) == set(details[k + 1]) for k in range(0, len(insts), 2)), "pairs share kinds"


def test_shape_instances_share_one_detail_set_and_differ_in_shape():
    insts = _instances("shape")
    assert all(i.details == insts[0].details for i in insts)
    assert len({i.shape.tobytes() for i in insts}) == len(insts)


def test_mixed_instances_vary_in_both():
    insts = _instances("mixed")
    assert len({i.shape.tobytes() for i in insts}) == len(insts)
    assert len({tuple(sorted(i.details.items())) for i in insts}) == len(insts)


def test_photo_pixels_differ_only_near_the_parts(tmp_path):
    """Rendered: two 'parts' photos agree on every pixel away from their local details; two 'shape' photos do not."""
    for identity, should_agree in (("parts", True), ("shape", False)):
        folder = synthetic_sbir(tmp_path, "shoes", 4, 2, seed=0, identity=identity, name=f"shoes_{identity}")
        photos = load_qmul_v1(folder.parent, f"shoes_{identity}", "train").photos
        differ = photos[0] != photos[1]
        assert differ.any()
        assert (differ.mean() < 0.05) == should_agree, (identity, differ.mean())


def test_name_sets_folder_and_file_prefix_and_streams_differ(tmp_path):
    a = synthetic_sbir(tmp_path, "shoes", 4, 2, seed=0, identity="parts", name="shoes_parts")
    assert a == tmp_path / "shoes_parts" and (a / "shoes_parts_sketch_db_test.mat").is_file()
    assert (a / "shoes_parts_annotation.json").is_file()
    b = synthetic_sbir(tmp_path, "shoes", 4, 2, seed=0)
    assert b == tmp_path / "shoes" and (b / "shoes_edge_db_train.mat").is_file()


def test_bad_identity_names_the_choices(tmp_path):
    with pytest.raises(
        ValueError, match=r"identity must be one of \('mixed', 'shape', 'parts'\), got 'local'"
    ):
        synthetic_sbir(tmp_path, "shoes", 4, 2, identity="local")
    assert IDENTITIES == ("mixed", "shape", "parts")


def test_controlled_sets_are_synthetic_only_and_sized_for_one_point_per_query(tmp_path, monkeypatch):
    assert CONTROLLED_SIZES[1] == 100, "100 test queries: one query is one point of acc@1"
    for name in ("shoes_shape", "shoes_parts"):
        assert DATASETS[name].synthetic_only and DATASETS[name].synth_sizes == CONTROLLED_SIZES
        monkeypatch.setitem(DATASETS, name, replace(DATASETS[name], synth_sizes=(6, 4)))  # seconds, not 11 s
        with pytest.raises(FileNotFoundError, match=r"no real counterpart: run it in the smoke profile"):
            locate_dataset(name, tmp_path / "data", allow_synthetic=False)
        loc = locate_dataset(name, tmp_path / "data", cache_root=tmp_path / "cache")
        assert loc.synthetic and loc.describe()["kind"] == "synthetic"
        test = load_qmul_v1(loc.path, name, "test")
        assert len(test) == 4 and len(load_qmul_v1(loc.path, name, "train")) == 6
        assert (loc.path / name / ".synthetic.json").read_text().count(DATASETS[name].synth_identity) == 1
    assert not DATASETS["shoes"].synthetic_only
