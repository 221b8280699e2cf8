"""ImageBank and the pure transforms: crops are exact slices, flips exact mirrors, 10 views, determinism."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cdimlab.data.gpu import ImageBank
from cdimlab.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    SKETCH_MEAN,
    SKETCH_NORM_MEAN,
    SKETCH_NORM_STD,
    center_crop,
    crop_boxes,
    normalize,
    random_crop_flip,
    ten_crop_views,
)

IDENT = {"mean": (0.0,), "std": (1 / 255,)}  # output == pixel values, to compare with the source


def _imgs(n=6, h=12, w=10, c=None, seed=0):
    shape = (n, h, w) if c is None else (n, h, w, c)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def test_crop_boxes_equal_slices_and_flips():
    x = torch.from_numpy(_imgs(c=3)).permute(0, 3, 1, 2)
    ys, xs, fl = (
        torch.tensor([0, 1, 2, 3, 4, 0]),
        torch.tensor([0, 3, 1, 2, 0, 3]),
        torch.tensor([0, 1, 0, 1, 1, 0]).bool(),
    )
    out = crop_boxes(x, ys, xs, (8, 7), fl)
    for b in range(6):
        ref = x[b, :, ys[b] : ys[b] + 8, xs[b] : xs[b] + 7]
        assert torch.equal(out[b], ref.flip(-1) if fl[b] else ref)


def test_train_batch_is_a_crop_of_its_source_and_deterministic():
    imgs = _imgs(n=8)
    bank = ImageBank(imgs, "cpu", crop=(8, 7), flip=True, **IDENT)
    idx = torch.tensor([3, 0, 7, 3, 5])
    out = bank.train_batch(idx, torch.Generator().manual_seed(0))
    assert out.shape == (5, 1, 8, 7) and out.dtype == torch.float32
    n_flipped = 0
    for b, i in enumerate(idx.tolist()):
        src = torch.from_numpy(imgs[i]).float()
        got = out[b, 0]
        found = [(y, x, f) for y in range(5) for x in range(4) for f in (0, 1)
                 if torch.allclose(got, src[y : y + 8, x : x + 7].flip(-1) if f else src[y : y + 8, x : x + 7], atol=1e-3)]  # fmt: skip
        assert found, f"sample {b} is not a crop of image {i}"
        n_flipped += found[0][2]
    again = bank.train_batch(idx, torch.Generator().manual_seed(0))
    assert torch.equal(out, again)
    other = bank.train_batch(idx, torch.Generator().manual_seed(1))
    assert not torch.equal(out, other)


def test_flip_probability_half():
    x = torch.arange(4.0).view(1, 1, 1, 4).expand(4000, 1, 1, 4)
    out = random_crop_flip(x, None, True, torch.Generator().manual_seed(0))
    flipped = (out[:, 0, 0, 0] == 3).float().mean().item()
    assert abs(flipped - 0.5) < 0.03
    assert torch.equal(random_crop_flip(x, None, False, None), x)


def test_ten_views_order_distinct_and_centre():
    imgs = _imgs(n=3, h=16, w=16, c=3)
    bank = ImageBank(imgs, "cpu", crop=(11, 11), flip=True, **IDENT)
    x = torch.from_numpy(imgs).permute(0, 3, 1, 2).float()
    views = [bank.eval_batch(torch.arange(3), v) for v in range(10)]
    assert all(v.shape == (3, 3, 11, 11) for v in views)
    assert torch.allclose(views[4], x[:, :, 2:13, 2:13], atol=1e-3)  # view 4 = centre, unflipped
    assert torch.allclose(views[0], x[:, :, :11, :11], atol=1e-3)
    assert torch.allclose(views[3], x[:, :, 5:, 5:], atol=1e-3)
    for v in range(5):
        assert torch.equal(views[v + 5], views[v].flip(-1))
    flat = torch.stack([v.flatten() for v in views])
    assert len({tuple(r.tolist()) for r in flat}) == 10
    pure = ten_crop_views(x, (11, 11))
    assert torch.equal(pure[4], center_crop(x, (11, 11)))
    with pytest.raises(ValueError, match="view"):
        bank.eval_batch(torch.arange(3), 10)


def test_no_crop_resize_and_channels_last():
    imgs = _imgs(n=4, h=40, w=20, c=3)
    bank = ImageBank(imgs, "cpu", crop=None, flip=True, mean=IMAGENET_MEAN, std=IMAGENET_STD, out_size=(32, 16),
                     channels_last=True)  # fmt: skip
    out = bank.train_batch(torch.arange(4), torch.Generator().manual_seed(0))
    assert out.shape == (4, 3, 32, 16) and out.is_contiguous(memory_format=torch.channels_last)
    assert bank.data.dtype == torch.uint8 and bank.data.shape == (4, 3, 32, 16)
    ev = bank.eval_batch(torch.arange(4), 4)
    raw = bank.raw(torch.arange(4)).float() / 255
    ref = (raw - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    assert torch.allclose(ev, ref, atol=1e-5)
    assert torch.equal(bank.eval_batch(torch.arange(4), 9), ev.flip(-1))


def test_sketch_normalisation_matches_official_mean_subtraction():
    x = torch.tensor([[[[0, 250, 255]]]], dtype=torch.uint8)
    out = normalize(x, SKETCH_NORM_MEAN, SKETCH_NORM_STD)
    assert torch.allclose(out, x.float() - SKETCH_MEAN, atol=1e-3)
    with pytest.raises(ValueError, match="0-1 scale"):
        normalize(x, (SKETCH_MEAN,), (1.0,))
    with pytest.raises(ValueError, match="uint8"):
        ImageBank(np.zeros((2, 4, 4), np.float32), "cpu", crop=None, flip=False, mean=(0.5,), std=(0.5,))
    with pytest.raises(ValueError, match="crop"):
        ImageBank(np.zeros((2, 4, 4), np.uint8), "cpu", crop=(5, 5), flip=False, mean=(0.5,), std=(0.5,))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_bank_with_cpu_generator_matches_cpu():
    imgs = _imgs(n=8, h=20, w=20, c=3)
    cpu = ImageBank(imgs, "cpu", crop=(15, 15), flip=True, **IDENT)
    gpu = ImageBank(imgs, "cuda", crop=(15, 15), flip=True, **IDENT)
    idx = torch.arange(8)
    a = cpu.train_batch(idx, torch.Generator().manual_seed(0))
    b = gpu.train_batch(idx, torch.Generator().manual_seed(0))
    assert b.device.type == "cuda" and torch.allclose(a, b.cpu())
    c = gpu.train_batch(idx, torch.Generator(device="cuda").manual_seed(0))
    assert c.device.type == "cuda" and c.shape == a.shape
