"""The hand-crafted row of Table 3: HOG features + a linear ranking model, written from scratch.

Introduced in notebook 06 (why deep features: a baseline you can read in full). HOG (Dalal & Triggs): image
gradients -> per-pixel orientation (unsigned, 0-180 degrees) and magnitude -> orientation histograms in
``cell x cell`` pixel cells (each vote split linearly between the two nearest bins) -> blocks of 2x2 cells,
L2-normalised, clipped at 0.2 and renormalised (L2-Hys). The ranking model is rankSVM-like: a linear map ``W``
learned with a triplet hinge on HOG vectors of (sketch, matching photo, other photo), so that the projected sketch
lies closer to its photo than to the other by a margin.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from cdimlab.data import TripletSampler
from cdimlab.metrics import acc_at_k, pairwise_distance


@dataclass(frozen=True)
class HOGConfig:
    """HOG parameters: images are resized to ``size`` x ``size``; ``cell`` pixels per cell, ``bins`` orientations,
    ``block`` x ``block`` cells per normalisation block (stride one cell), L2-Hys clip ``clip``."""

    size: int = 64
    cell: int = 8
    bins: int = 9
    block: int = 2
    clip: float = 0.2


def hog_features(images: np.ndarray | Tensor, cfg: HOGConfig = HOGConfig()) -> Tensor:
    """HOG descriptors of grey images (N, H, W) uint8 or float -> float32 (N, D).

    D = (size/cell - block + 1)^2 * block^2 * bins (1,764 with the defaults). Dark strokes on white or white on
    black give the same descriptor (unsigned orientations, magnitudes only).
    """
    x = torch.as_tensor(np.asarray(images)).float()
    if x.dim() != 3:
        raise ValueError(f"hog_features expects grey images (N, H, W), got shape {tuple(x.shape)}")
    x = F.interpolate(x[:, None] / 255.0, size=(cfg.size, cfg.size), mode="bilinear", antialias=True)
    gx = F.pad(x[..., :, 2:] - x[..., :, :-2], (1, 1, 0, 0))
    gy = F.pad(x[..., 2:, :] - x[..., :-2, :], (0, 0, 1, 1))
    mag = torch.sqrt(gx**2 + gy**2)[:, 0]
    ang = torch.rad2deg(torch.atan2(gy, gx))[:, 0] % 180.0
    pos = ang / (180.0 / cfg.bins) - 0.5  # bin centres at (b + 0.5) * width
    lo = torch.floor(pos)
    w_hi = pos - lo
    lo_bin = lo.long() % cfg.bins
    hi_bin = (lo_bin + 1) % cfg.bins
    n, h, w = mag.shape
    votes = torch.zeros(n, cfg.bins, h, w)
    votes.scatter_add_(1, lo_bin[:, None], (mag * (1 - w_hi))[:, None])
    votes.scatter_add_(1, hi_bin[:, None], (mag * w_hi)[:, None])
    cells = F.avg_pool2d(votes, cfg.cell) * cfg.cell**2  # (N, bins, cy, cx) histogram per cell
    blocks = cells.unfold(2, cfg.block, 1).unfold(3, cfg.block, 1)  # (N, bins, by, bx, block, block)
    blocks = blocks.permute(0, 2, 3, 4, 5, 1).reshape(n, blocks.shape[2], blocks.shape[3], -1)
    blocks = F.normalize(blocks, dim=-1, eps=1e-6).clamp(max=cfg.clip)
    blocks = F.normalize(blocks, dim=-1, eps=1e-6)
    return blocks.reshape(n, -1)


@dataclass
class LinearRanker:
    """A linear map ``W`` (D x k) and the feature mean; ``project`` gives the ranking embedding."""

    W: Tensor
    mean: Tensor

    def project(self, feats: Tensor) -> Tensor:
        return (feats - self.mean) @ self.W


def fit_linear_ranker(
    sketch_feats: Tensor,
    photo_feats: Tensor,
    sampler: Any,
    dim: int = 128,
    steps: int = 300,
    batch_size: int = 128,
    lr: float = 1e-2,
    margin: float = 1.0,
    seed: int = 0,
) -> LinearRanker:
    """Learn ``W`` with a triplet hinge (rankSVM-like) on HOG features, starting from PCA of both domains.

    ``sampler`` is a :class:`cdimlab.data.TripletSampler` (index triplets). Adam, a few hundred steps: seconds on
    a CPU. Squared distances in the projected space; a small weight decay keeps ``W`` bounded (the SVM's norm term).
    """
    g = torch.Generator().manual_seed(seed)
    both = torch.cat([sketch_feats, photo_feats])
    mean = both.mean(0)
    _, _, v = torch.linalg.svd(both - mean, full_matrices=False)
    k = min(dim, v.shape[0])
    W = v[:k].T.clone().contiguous().requires_grad_(True)
    opt = torch.optim.Adam([W], lr=lr, weight_decay=1e-4)
    s_c, p_c = sketch_feats - mean, photo_feats - mean
    for _ in range(steps):
        a, p, n = sampler.sample(batch_size, g)
        za, zp, zn = s_c[a] @ W, p_c[p] @ W, p_c[n] @ W
        loss = F.relu(margin + (za - zp).pow(2).sum(1) - (za - zn).pow(2).sum(1)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return LinearRanker(W.detach(), mean)


def run_hog_baseline(
    train: Any, test: Any, seed: int = 0, smoke: bool = False, cfg: HOGConfig = HOGConfig()
) -> tuple[dict[str, float], dict[str, Any]]:
    """Fit HOG + linear ranker on ``train`` (QMULSplit), evaluate acc@1/acc@10 on ``test``.

    Returns (metrics, schedule). Used for the "HOG + linear ranking" row of Table 3.
    """

    steps = 100 if smoke else 500
    ranker = fit_linear_ranker(
        hog_features(train.sketches, cfg), hog_features(train.photos, cfg), TripletSampler(train), steps=steps,
        seed=seed,
    )  # fmt: skip
    d = pairwise_distance(
        ranker.project(hog_features(test.sketches, cfg)), ranker.project(hog_features(test.photos, cfg))
    )
    acc = acc_at_k(d, ks=(1, 10))
    return {"acc@1": float(acc[1]), "acc@10": float(acc[10])}, {"steps": steps, "hog": cfg.__dict__}


def pixel_matcher(
    sketches: np.ndarray, photos: np.ndarray, sigmas: tuple[float, ...] = (0, 2, 4, 8)
) -> dict[float, float]:
    """acc@1 of matching each sketch to the photo whose blurred pixels it correlates with best, per blur ``sigma``.

    No learning: ink (255 - pixel) blurred with a Gaussian of ``sigma`` pixels (0: none), centred and L2-normalised
    per image; distance = 1 - cosine. It works only because sketch and photo are pose-aligned (a template matcher):
    the floor any learned model should be read against (notebook 06, the controlled experiment).
    """
    from scipy.ndimage import gaussian_filter

    def feats(images: np.ndarray, sigma: float) -> Tensor:
        ink = 255.0 - np.asarray(images, dtype=np.float32)
        if sigma > 0:
            ink = gaussian_filter(ink, sigma=(0, sigma, sigma))
        f = torch.from_numpy(ink.reshape(len(ink), -1))
        return F.normalize(f - f.mean(1, keepdim=True), dim=1)

    return {float(s): acc_at_k(1 - feats(sketches, s) @ feats(photos, s).T, ks=(1,))[1] for s in sigmas}
