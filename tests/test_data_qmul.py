"""QMUL V1 loading, validation split and the official triplet sampler (real data when ../shared/data exists)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.io as sio
import torch

from cdimlab.data.qmul import load_qmul_v1, train_val_split
from cdimlab.data.samplers import TripletSampler
from cdimlab.data.synthetic import synthetic_sbir

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "qmul_v1"
needs_real = pytest.mark.skipif(not (SHARED / "shoes").is_dir(), reason="../shared/data/qmul_v1 absent")


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("qmul")
    synthetic_sbir(root, "shoes", n_train=24, n_test=12, seed=3)
    synthetic_sbir(root, "handbags", n_train=12, n_test=6, seed=3)
    return root


@needs_real
@pytest.mark.parametrize("category,n_train,n_test", [("shoes", 304, 115), ("chairs", 200, 97)])
def test_real_counts_and_triplets(category, n_train, n_test):
    raw = json.loads((SHARED / category / f"{category}_annotation.json").read_text())
    for split, n in (("train", n_train), ("test", n_test)):
        s = load_qmul_v1(SHARED, category, split)
        assert len(s) == n and s.sketches.shape == (n, 256, 256) and s.photos.shape == (n, 256, 256)
        assert s.sketches.dtype == np.uint8 and s.images is None
        expected = sum(len(t) for t in raw[split]["triplets"])  # independent count from the raw JSON
        assert s.num_triplets == expected
        assert s.triplets[0].tolist() == raw[split]["triplets"][0]
        # each sketch has 10 candidates (45 pairs per annotator) and its true match is among them
        assert all(len(s.candidates(i)) == 10 and i in s.candidates(i) for i in range(n))
        print(f"{category}/{split}: {n} pairs, {s.num_triplets} annotated triplets")


def test_synthetic_loads_in_real_format(synth_root):
    s = load_qmul_v1(synth_root, "shoes", "train")
    assert len(s) == 24 and s.num_triplets == 24 * 45
    assert s.sketches.mean() > 200  # black strokes on white


def test_missing_folder_says_which_script(tmp_path):
    with pytest.raises(FileNotFoundError, match="download_qmul_v1.py"):
        load_qmul_v1(tmp_path, "shoes", "train")


def test_truncated_mat_names_file(synth_root, tmp_path):
    folder = tmp_path / "shoes"
    folder.mkdir()
    for f in (synth_root / "shoes").iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    bad = folder / "shoes_edge_db_train.mat"
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])
    with pytest.raises(ValueError, match=r"shoes_edge_db_train\.mat.*re-download"):
        load_qmul_v1(tmp_path, "shoes", "train")


def test_bad_triplet_index_and_count_mismatch(synth_root, tmp_path):
    folder = tmp_path / "shoes"
    folder.mkdir()
    for f in (synth_root / "shoes").iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    ann = json.loads((folder / "shoes_annotation.json").read_text())
    ann["train"]["triplets"][2][0] = [0, 999]
    (folder / "shoes_annotation.json").write_text(json.dumps(ann))
    with pytest.raises(ValueError, match="sketch 2.*outside"):
        load_qmul_v1(tmp_path, "shoes", "train")
    sio.savemat(folder / "shoes_edge_db_test.mat", {"data": np.zeros((5, 256, 256), np.uint8)})
    with pytest.raises(ValueError, match="12 sketches but .* 5 photos"):
        load_qmul_v1(tmp_path, "shoes", "test")


def test_image_db_both_layouts(synth_root, tmp_path):
    folder = tmp_path / "shoes"
    folder.mkdir()
    for f in (synth_root / "shoes").iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    rgb = np.random.default_rng(0).integers(0, 255, (12, 256, 256, 3), dtype=np.uint8)
    sio.savemat(folder / "shoes_image_db_test.mat", {"data": rgb.transpose(0, 3, 1, 2)})
    s = load_qmul_v1(tmp_path, "shoes", "test")
    assert s.images is not None and np.array_equal(s.images, rgb)
    sio.savemat(folder / "shoes_image_db_test.mat", {"data": rgb[:5]})
    with pytest.raises(ValueError, match="image_db_test"):
        load_qmul_v1(tmp_path, "shoes", "test")


def test_train_val_split_remaps_triplets(synth_root):
    s = load_qmul_v1(synth_root, "shoes", "train")
    tr, va = train_val_split(s, val_fraction=0.25, seed=1)
    assert (len(tr), len(va)) == (18, 6) and va.split == "val"
    perm = np.random.default_rng(1).permutation(24)
    val_ids, tr_ids = np.sort(perm[:6]), np.sort(perm[6:])
    for part, ids in ((tr, tr_ids), (va, val_ids)):
        assert np.array_equal(part.sketches, s.sketches[ids]) and np.array_equal(part.photos, s.photos[ids])
        for new_i, old_i in enumerate(ids):
            orig = {tuple(p) for p in s.triplets[old_i].tolist()}
            kept = {(int(ids[a]), int(ids[b])) for a, b in part.triplets[new_i].tolist()}
            inside = {p for p in orig if p[0] in set(ids) and p[1] in set(ids)}
            assert kept == inside  # remapped exactly; pairs leaving the subset dropped


def test_sampler_annotated_pairs_and_easy_share(synth_root):
    s = load_qmul_v1(synth_root, "shoes", "train")
    sampler = TripletSampler(s, easy_prob=0.25)
    assert sampler.mode == "annotated"
    g = torch.Generator().manual_seed(0)
    a, p, n = sampler.sample(20000, g)
    easy = 0
    for ai, pi, ni in zip(a.tolist()[:4000], p.tolist()[:4000], n.tolist()[:4000], strict=True):
        pairs = {tuple(t) for t in s.triplets[ai].tolist()}
        cand = set(s.candidates(ai).tolist())
        if ni in cand:
            assert (pi, ni) in pairs
        else:
            easy += 1
            assert ni != ai and any(pp == pi for pp, _ in pairs)
    assert abs(easy / 4000 - 0.25) < 0.025
    cand_mask = sampler.outside[a, n]  # vectorised check over all 20000 draws
    assert abs(cand_mask.float().mean().item() - 0.25) < 0.01
    a2, p2, n2 = sampler.sample(20000, torch.Generator().manual_seed(0))
    assert torch.equal(a, a2) and torch.equal(p, p2) and torch.equal(n, n2)
    a3, _, _ = sampler.sample(20000, torch.Generator().manual_seed(1))
    assert not torch.equal(a, a3)


def test_sampler_true_match_for_handbags(synth_root):
    s = load_qmul_v1(synth_root, "handbags", "train")
    assert s.num_triplets == 0  # pseudo annotations are ignored
    sampler = TripletSampler(s)
    assert sampler.mode == "true_match"
    a, p, n = sampler.sample(5000, torch.Generator().manual_seed(0))
    assert torch.equal(a, p) and bool((n != a).all()) and int(n.min()) >= 0 and int(n.max()) < len(s)
    assert len(torch.unique(n)) == len(s)  # any other photo can be a negative
    with pytest.raises(ValueError, match="true_match"):
        TripletSampler(s, mode="annotated")
