"""HOG + linear ranking baseline: hand-checked HOG properties and a ranker that beats chance."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cdimlab.baselines import HOGConfig, fit_linear_ranker, hog_features, run_hog_baseline


def test_hog_dimension_and_block_normalisation():
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (3, 256, 256), dtype=np.uint8)
    f = hog_features(imgs)
    cfg = HOGConfig()
    assert f.shape == (3, 7 * 7 * 2 * 2 * 9) == (3, 1764)
    blocks = f.reshape(3, 49, 36)
    assert torch.allclose(blocks.norm(dim=-1), torch.ones(3, 49), atol=1e-4)  # L2-Hys: unit norm per block
    assert float(f.max()) <= 1.0 and cfg.clip == 0.2


def test_vertical_edge_votes_only_in_the_horizontal_gradient_bins():
    img = np.full((1, 64, 64), 255, np.uint8)
    img[:, :, 32:] = 0  # a vertical edge: horizontal gradient, orientation 0 deg (== 180 deg, unsigned)
    f = hog_features(img, HOGConfig(size=64)).reshape(-1, 9)
    energy = f.sum(0)
    assert energy[0] > 0 and energy[0] == pytest.approx(
        float(energy[8]), rel=1e-5
    )  # split between 10 and 170 deg
    assert float(energy[1:8].sum()) == pytest.approx(0.0, abs=1e-5)
    inverted = hog_features(255 - img, HOGConfig(size=64))
    assert torch.allclose(inverted.reshape(-1, 9), f, atol=1e-6)  # unsigned: polarity does not matter


def test_ranker_learns_to_match_noisy_copies():
    from cdimlab.data import QMULSplit, TripletSampler
    from cdimlab.metrics import acc_at_k, pairwise_distance

    g = torch.Generator().manual_seed(0)
    photos = torch.randn(40, 50, generator=g)
    sketches = photos + 0.8 * torch.randn(40, 50, generator=g)
    split = QMULSplit("t", "train", np.zeros((40, 1, 1), np.uint8), np.zeros((40, 1, 1), np.uint8), None,
                      [np.empty((0, 2), np.int64)] * 40)  # fmt: skip
    ranker = fit_linear_ranker(sketches, photos, TripletSampler(split), dim=20, steps=150)
    d = pairwise_distance(ranker.project(sketches), ranker.project(photos))
    assert acc_at_k(d, ks=(1,))[1] > 0.5  # chance is 1/40


def test_run_hog_baseline_on_synthetic_shoes(tmp_path):
    from cdimlab.data import load_qmul_v1, synthetic_sbir

    synthetic_sbir(tmp_path, "shoes", n_train=30, n_test=20)
    tr, te = load_qmul_v1(tmp_path, "shoes", "train"), load_qmul_v1(tmp_path, "shoes", "test")
    metrics, sched = run_hog_baseline(tr, te, smoke=True)
    assert metrics["acc@1"] > 1 / 20 and metrics["acc@1"] <= metrics["acc@10"]
    assert sched["steps"] == 100
