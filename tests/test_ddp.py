"""DDP: the same fit loop under `torchrun --nproc_per_node=2` with gloo on the CPU.

Both ranks must end with identical weights (DDP averages gradients; each rank samples its own shard), and only
rank 0 may write checkpoints and logs.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent

SCRIPT = r"""
import os, sys
from pathlib import Path
import torch
import cdimlab.train as T
import cdimlab.train.loop as L
from cdimlab.fusion import EmbeddingNet, FusionConfig
from test_train import TinyBackbone, tiny_split, tiny_cfg, state_hash

out = Path(sys.argv[1])
rank = int(os.environ["RANK"])
saves = []
real_save = L.save_verified
def spy(obj, path):
    saves.append(str(path))
    return real_save(obj, path)
L.save_verified = spy
torch.manual_seed(rank)  # different init per rank: DDP must broadcast rank 0's weights
model = EmbeddingNet(TinyBackbone(1, 32), FusionConfig(("c2",), "gap"))
cfg = tiny_cfg(iterations=4, batch_size=8, checkpoint_every=2, eval_every=100)
res = T.fit_triplet(model, tiny_split(10), None, cfg, "cpu", out / "run", progress=False)
(out / f"hash_{rank}.txt").write_text(state_hash(res.model))
(out / f"saves_{rank}.txt").write_text("\n".join(saves))
(out / f"world_{rank}.txt").write_text(str(res.extra["world_size"]))
T.shutdown_distributed()
"""


@pytest.mark.slow
def test_two_gloo_ranks_hold_identical_weights_and_only_rank0_writes(tmp_path):
    script = tmp_path / "ddp_script.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), str(HERE.parent)]), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=0",
           "--rdzv_backend=c10d", "--rdzv_endpoint=127.0.0.1:0", str(script), str(tmp_path)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env, cwd=tmp_path)
    errors = [ln for ln in proc.stderr.splitlines() if "Error" in ln or "error" in ln]
    assert proc.returncode == 0, "\n".join(errors[:20]) + proc.stderr[-3000:]
    assert (tmp_path / "world_0.txt").read_text() == (tmp_path / "world_1.txt").read_text() == "2"
    h0, h1 = ((tmp_path / f"hash_{r}.txt").read_text() for r in (0, 1))
    assert h0 == h1
    saves0 = (tmp_path / "saves_0.txt").read_text().split()
    assert (tmp_path / "saves_1.txt").read_text() == ""
    assert any(s.endswith("checkpoint.pt") for s in saves0) and (tmp_path / "run" / "checkpoint.pt").is_file()


def test_epoch_sampler_ranks_partition_every_epoch():
    """Two ranks with their own state: each step their slices are disjoint, and over one epoch (10 items, 2 ranks
    x batch 5) they cover the set exactly once; the next epoch is a new order, the same on both ranks. Before,
    each rank shuffled the whole set with its own generator, so the ranks overlapped."""
    import torch

    from cdimlab.data import EpochSampler

    ranks = [EpochSampler(10, {}, rank=r, world=2, seed=3) for r in (0, 1)]
    gens = [
        torch.Generator().manual_seed(100 + r) for r in (0, 1)
    ]  # different per-rank streams: must not matter
    first = [s.sample(5, g) for s, g in zip(ranks, gens, strict=True)]
    assert sorted(torch.cat(first).tolist()) == list(range(10))
    second = [s.sample(5, g) for s, g in zip(ranks, gens, strict=True)]
    assert sorted(torch.cat(second).tolist()) == list(range(10))
    assert torch.cat(second).tolist() != torch.cat(first).tolist()  # a new epoch, a new order
    assert ranks[0].state["epoch"] == ranks[1].state["epoch"] == 1
    resumed = EpochSampler(
        10, dict(ranks[1].state), rank=1, world=2, seed=3
    )  # a checkpointed state continues
    assert resumed.sample(5).tolist() == EpochSampler(10, dict(ranks[1].state), 1, 2, 3).sample(5).tolist()
    with pytest.raises(ValueError, match="0 <= rank < world"):
        EpochSampler(10, {}, rank=2, world=2)


def test_multi_gpu_gets_sync_batchnorm_and_cpu_ranks_keep_batchnorm():
    """BatchNorm -> SyncBatchNorm only for CUDA ranks under torchrun (in place, same state-dict keys)."""
    import torch
    from torch import nn

    from cdimlab.train.distributed import DistInfo, sync_batchnorm

    def net():
        return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU())

    keys = list(net().state_dict())
    gpus = sync_batchnorm(net(), DistInfo(rank=0, world_size=2), torch.device("cuda", 0))
    assert isinstance(gpus[1], nn.SyncBatchNorm) and list(gpus.state_dict()) == keys
    for info, dev in (
        (DistInfo(rank=0, world_size=2), torch.device("cpu")),
        (DistInfo(), torch.device("cuda", 0)),
    ):
        assert type(sync_batchnorm(net(), info, dev)[1]) is nn.BatchNorm2d
