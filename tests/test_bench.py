"""bench's laptop row: the MobileNetV2 ReID step of the laptop track, model-only vs the real trainer."""

from __future__ import annotations

from dataclasses import replace

import torch

from cdimlab.bench import SIZES, bench_laptop


def test_laptop_row_times_the_laptop_recipe_without_imagenet_weights():
    row = bench_laptop(torch.device("cpu"), replace(SIZES["tiny"], steps=1, n_ids=8))
    assert row["task"] == "laptop: ReID MobileNetV2 128x64, batch 64"
    assert row["model_only"] > 0 and row["trainer"] > 0
