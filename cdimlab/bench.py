"""Throughput benchmark: is the trainer bound by the model (good) or by its input pipeline (bad)?

Introduced in notebook 08 (performance, beside the tables). For each task it times (a) a model-only training step on random tensors
already on the device and (b) the real fit loop (ImageBank + sampler + loss + optimiser, same model and batch),
and reports img/s of both and their ratio (close to 1 = the data never waits). It also times ``cmc_map`` at
Market-1501 scale (3,368 queries x 19,732 gallery). Paper sizes on CUDA, small sizes on the CPU. Not a test: a
report written to ``bench/<device>.md``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cdimlab.data import QMULSplit
from cdimlab.experiments import EXPERIMENTS, build_model
from cdimlab.losses import cross_entropy, triplet_ranking_loss
from cdimlab.metrics import cmc_map
from cdimlab.train import TrainConfig, auto_flag, autocast, fit_classifier, fit_triplet, make_optimizer
from cdimlab.utils import atomic_write_text, env_info, resolve_device


@dataclass(frozen=True)
class BenchSizes:
    """Sizes of one benchmark setting."""

    sbir_input: int
    sbir_resize: int | None
    sbir_batch: int
    reid_input: tuple[int, int]
    reid_batch: int
    steps: int
    n_images: int
    n_ids: int


SIZES = {
    "paper": BenchSizes(225, None, 128, (256, 128), 64, 30, 600, 150),
    "smoke": BenchSizes(113, 128, 8, (64, 32), 16, 12, 64, 16),
    "tiny": BenchSizes(87, 96, 2, (32, 16), 4, 1, 16, 4),  # tests only
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def model_only_rate(model: torch.nn.Module, x: torch.Tensor, loss_fn, cfg: TrainConfig, steps: int) -> float:
    """img/s of forward + loss + backward + optimiser step on a fixed batch ``x`` already on the device."""
    device = x.device
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = (
            True  # as the trainer sets it (cdimlab.train.loop): same kernels for both
        )
    model.train()
    opt = make_optimizer(model.parameters(), cfg)
    if auto_flag(cfg.channels_last, device):
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)

    def step() -> None:
        with autocast(cfg.amp, device):
            out = model(x).float()
        loss = loss_fn(out)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()  # warm-up (allocations, cuDNN autotuning)
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return steps * x.shape[0] / (time.perf_counter() - t0)


def _fake_split(n: int, seed: int = 0) -> Any:
    """A QMUL-like split of random 256x256 images (true-match triplets), for timing only."""
    rng = np.random.default_rng(seed)
    imgs = rng.integers(0, 256, (2, n, 256, 256), dtype=np.uint8)
    return QMULSplit("bench", "train", imgs[0], imgs[1], None, [np.empty((0, 2), np.int64)] * n)


def bench_sbir(device: torch.device, s: BenchSizes) -> dict[str, Any]:
    """Sketch-a-Net (Ours fusion) triplet training: model-only vs fit_triplet img/s."""
    exp = EXPERIMENTS["shoes_ours"]
    cfg = replace(exp.config("full"), sbir_input=s.sbir_input, sbir_resize=s.sbir_resize, batch_size=s.sbir_batch,
                  iterations=s.steps + 1, eval_every=10**9, checkpoint_every=10**9, log_every=10**9)  # fmt: skip
    b = s.sbir_batch
    torch.manual_seed(0)
    x = torch.randn(3 * b, 1, s.sbir_input, s.sbir_input, device=device)
    model = build_model(exp, cfg).to(device)
    only = model_only_rate(model, x, lambda e: triplet_ranking_loss(*e.split(b), margin=0.3), cfg, s.steps)
    res = fit_triplet(build_model(exp, cfg), _fake_split(s.n_images), None, cfg, device, None, progress=False)
    return {"task": f"FG-SBIR Sketch-a-Net triplet {s.sbir_input}px, batch {b}x3", "model_only": only,
            "trainer": res.img_per_s}  # fmt: skip


def bench_reid(device: torch.device, s: BenchSizes) -> dict[str, Any]:
    """ResNet-50 (Ours fusion) identity classification: model-only vs fit_classifier img/s."""
    exp = EXPERIMENTS["market_ours"]
    cfg = replace(exp.config("full"), reid_input=s.reid_input, batch_size=s.reid_batch, iterations=s.steps + 1,
                  checkpoint_every=10**9, log_every=10**9)  # fmt: skip
    b, (h, w) = s.reid_batch, s.reid_input
    torch.manual_seed(0)
    x = torch.randn(b, 3, h, w, device=device)
    y = torch.randint(0, s.n_ids, (b,), device=device)
    model = build_model(exp, cfg, num_classes=s.n_ids).to(device)
    only = model_only_rate(model, x, lambda out: cross_entropy(out, y), cfg, s.steps)
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (s.n_images, h, w, 3), dtype=np.uint8)
    labels = torch.as_tensor(rng.integers(0, s.n_ids, s.n_images))
    model = build_model(exp, cfg, num_classes=s.n_ids)
    res = fit_classifier(model, imgs, labels, cfg, device, None, progress=False)
    return {
        "task": f"ReID ResNet-50 classifier {h}x{w}, batch {b}",
        "model_only": only,
        "trainer": res.img_per_s,
    }


def bench_laptop(device: torch.device, s: BenchSizes) -> dict[str, Any]:
    """The laptop track's ReID step (MobileNetV2, 128x64, batch 64, Ours fusion): model-only vs fit_classifier.

    Random weights (timing does not depend on them, and CI has no ImageNet file); the trainer's ImageBank path on
    the CPU must stay within 0.9x of the model-only rate (the model, not the input pipeline, bounds training).
    """
    exp = replace(EXPERIMENTS["market_mnv2_ours"], weights=None)
    cfg = replace(exp.config("laptop"), iterations=s.steps + 1, checkpoint_every=10**9, log_every=10**9)
    b, (h, w) = cfg.batch_size, tuple(cfg.reid_input)
    torch.manual_seed(0)
    x = torch.randn(b, 3, h, w, device=device)
    y = torch.randint(0, s.n_ids, (b,), device=device)
    only = model_only_rate(build_model(exp, cfg, num_classes=s.n_ids).to(device), x,
                           lambda out: cross_entropy(out, y), cfg, s.steps)  # fmt: skip
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (max(s.n_images, 2 * b), h, w, 3), dtype=np.uint8)
    labels = torch.as_tensor(rng.integers(0, s.n_ids, len(imgs)))
    res = fit_classifier(
        build_model(exp, cfg, num_classes=s.n_ids), imgs, labels, cfg, device, None, progress=False
    )
    return {
        "task": f"laptop: ReID MobileNetV2 {h}x{w}, batch {b}",
        "model_only": only,
        "trainer": res.img_per_s,
    }


def bench_cmc(device: torch.device, shape: tuple[int, int] = (3368, 19732), repeats: int = 3) -> float:
    """Seconds for ``cmc_map`` on random distances of ``shape`` (Market-1501 test scale by default)."""
    g = torch.Generator().manual_seed(0)
    q, n = shape
    dist = torch.rand(q, n, generator=g).to(device)
    qp = torch.randint(1, 751, (q,), generator=g)
    gp = torch.randint(-1, 751, (n,), generator=g)
    qp[: min(q, n)] = gp[: min(q, n)].clamp(min=1)
    gp[: min(q, n)] = qp[: min(q, n)]
    qc, gc = torch.randint(0, 6, (q,), generator=g), torch.randint(0, 6, (n,), generator=g)
    qc[: min(q, n)] = (gc[: min(q, n)] + 1) % 6
    args = [t.to(device) for t in (qp, gp, qc, gc)]
    cmc_map(dist, *args)  # warm-up
    _sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        cmc_map(dist, *args)
        _sync(device)
        times.append(time.perf_counter() - t0)
    return float(min(times))


def format_table(
    rows: list[dict[str, Any]], cmc_s: float, cmc_shape: tuple[int, int], info: dict[str, Any]
) -> str:
    """Markdown report of the benchmark."""
    lines = [
        f"# cdimlab bench on {info['device_name']} ({info['device']})",
        "",
        f"torch {info['torch']}, git {str(info.get('git_commit'))[:10]}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "",
        "| workload | model-only img/s | trainer img/s | trainer / model-only |",
        "|---|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['task']} | {r['model_only']:,.1f} | {r['trainer']:,.1f} | {r['trainer'] / r['model_only']:.2f} |"
        )
    lines += ["", f"`cmc_map` on {cmc_shape[0]:,} x {cmc_shape[1]:,} random distances: {cmc_s:.3f} s", ""]
    return "\n".join(lines)


def run_bench(
    device: str | torch.device = "auto",
    sizes: str = "auto",
    steps: int | None = None,
    out_dir: str | os.PathLike | None = "bench",
    cmc_shape: tuple[int, int] = (3368, 19732),
) -> tuple[str, Path | None]:
    """Run the benchmark and write ``<out_dir>/<device>.md`` atomically; returns (markdown text, path).

    ``sizes="auto"`` picks ``paper`` on CUDA and ``smoke`` on the CPU; ``steps`` overrides the timed steps.
    """
    dev = resolve_device(device)
    key = ("paper" if dev.type == "cuda" else "smoke") if sizes == "auto" else sizes
    if key not in SIZES:
        raise ValueError(f"sizes must be 'auto' or one of {sorted(SIZES)}, got {sizes!r}")
    s = SIZES[key] if steps is None else replace(SIZES[key], steps=steps)
    rows = [bench_sbir(dev, s), bench_reid(dev, s)]
    if key != "tiny":
        rows.append(bench_laptop(dev, s))
    cmc_s = bench_cmc(dev, cmc_shape)
    info = env_info(dev)
    text = format_table(rows, cmc_s, cmc_shape, info)
    path = None
    if out_dir is not None:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in f"{dev.type}_{info['device_name']}")
        path = atomic_write_text(Path(out_dir) / f"{safe}.md", text)
    return text, path
