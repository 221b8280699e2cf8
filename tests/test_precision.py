"""cdimlab.precision: bf16 only where the card has it, fp16 + GradScaler below, fp32 on request or on the CPU.

The cards are faked with ``capability=`` so every branch runs on a CPU-only machine.
"""

from __future__ import annotations

import pytest
import torch

from cdimlab.precision import Precision, autocast_context, choose_precision, make_grad_scaler

CARDS = {"T4": ((7, 5), "Tesla T4"), "V100": ((7, 0), "Tesla V100-SXM2-16GB"),
         "A100": ((8, 0), "NVIDIA A100-SXM4-40GB"), "H100": ((9, 0), "NVIDIA H100 80GB HBM3")}  # fmt: skip


@pytest.mark.parametrize(
    ("card", "name", "dtype", "scaler"),
    [("T4", "fp16", torch.float16, True), ("V100", "fp16", torch.float16, True),
     ("A100", "bf16", torch.bfloat16, False), ("H100", "bf16", torch.bfloat16, False)],
)  # fmt: skip
def test_auto_follows_compute_capability(card, name, dtype, scaler):
    cap, dev_name = CARDS[card]
    p = choose_precision("cuda", capability=cap, device_name=dev_name)
    assert (p.name, p.dtype, p.needs_grad_scaler) == (name, dtype, scaler)
    assert dev_name in p.reason and f"sm_{cap[0]}{cap[1]}" in p.reason


def test_t4_describe_line():
    p = choose_precision("cuda", capability=(7, 5), device_name="Tesla T4")
    assert p.describe() == "precision: fp16 + GradScaler (Tesla T4, sm_75: no bf16 hardware)"
    h = choose_precision("cuda", capability=(9, 0), device_name="NVIDIA H100")
    assert h.describe() == "precision: bf16 autocast (NVIDIA H100, sm_90: bf16 hardware)"


def test_bf16_is_not_trusted_from_is_bf16_supported(monkeypatch):
    """A T4 says is_bf16_supported() == True (emulation); the choice must still be fp16."""
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert choose_precision("cuda", capability=(7, 5)).name == "fp16"


def test_fp32_on_request_and_on_cpu():
    p = choose_precision("cuda", "fp32", capability=(9, 0))
    assert (p.name, p.dtype, p.needs_grad_scaler) == ("fp32", None, False)
    assert choose_precision("cuda", False, capability=(7, 5)).name == "fp32"  # TrainConfig.amp=False
    assert choose_precision("cuda", True, capability=(8, 6)).name == "bf16"  # TrainConfig.amp=True = auto
    c = choose_precision("cpu")
    assert (c.name, c.dtype, c.needs_grad_scaler) == ("fp32", None, False)
    assert c.describe() == "precision: fp32 (cpu: fp32)"


def test_explicit_fp16_on_bf16_card():
    p = choose_precision("cuda", "fp16", capability=(9, 0))
    assert (p.name, p.needs_grad_scaler) == ("fp16", True) and "as requested" in p.reason


def test_errors_name_the_argument_and_the_fix():
    with pytest.raises(ValueError, match=r"no bf16 hardware.*requested='fp16'"):
        choose_precision("cuda", "bf16", capability=(7, 0))
    with pytest.raises(ValueError, match=r"requested='fp32' or 'auto'"):
        choose_precision("cpu", "fp16")
    with pytest.raises(ValueError, match="requested must be"):
        choose_precision("cpu", "half")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_cuda_without_gpu_or_fake_capability_is_an_error():
    with pytest.raises(ValueError, match="capability=.*fake"):
        choose_precision("cuda")


def test_autocast_context_dtype():
    bf16 = choose_precision("cuda", capability=(9, 0))
    a = torch.randn(4, 4)
    with autocast_context(bf16, "cpu"):  # the CPU autocast stands in for CUDA's
        assert (a @ a).dtype == torch.bfloat16
    with autocast_context(choose_precision("cpu"), "cpu"):
        assert (a @ a).dtype == torch.float32


def test_grad_scaler_enabled_only_for_fp16_on_cuda():
    fp32 = Precision("fp32", None, False, "test")
    scaler = make_grad_scaler(fp32, "cpu")
    assert not scaler.is_enabled()
    loss = torch.tensor(2.0)
    assert scaler.scale(loss) is loss  # disabled: passes through
    fp16 = choose_precision("cuda", capability=(7, 5))
    assert not make_grad_scaler(fp16, "cpu").is_enabled()  # no CUDA scaler on a CPU tensor
