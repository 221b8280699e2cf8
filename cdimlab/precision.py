"""Numeric precision of a training run, chosen from what the card really has (not what it emulates).

Introduced in notebook 08 (performance). ``torch.cuda.is_bf16_supported()`` answers True on a T4 (sm_75) or a
V100 (sm_70) because bf16 can be emulated there, slowly. bf16 tensor cores exist from compute capability 8.0
(A100, A10, RTX 30xx, H100), so :func:`choose_precision` picks bf16 autocast only there, fp16 autocast with a
gradient scaler below (fp16 has too few exponent bits for small gradients, the scaler keeps them from flushing to
zero), and fp32 when asked or on the CPU. ``capability`` fakes a card, which is how the CPU tests cover the T4,
V100, A100 and H100 branches. :meth:`Precision.describe` is the line a run prints first.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch

BF16_MIN_CAPABILITY = (8, 0)
NAMES = ("bf16", "fp16", "fp32")


@dataclass(frozen=True)
class Precision:
    """What a run computes in: ``name`` ("bf16" | "fp16" | "fp32"), the autocast ``dtype`` (None = no autocast),
    whether the loss needs a gradient scaler (fp16 only) and why this was chosen (``reason``)."""

    name: str
    dtype: torch.dtype | None
    needs_grad_scaler: bool
    reason: str

    def label(self) -> str:
        """``"fp16 + GradScaler"``, ``"bf16 autocast"`` or ``"fp32"``."""
        if self.name == "fp16":
            return "fp16 + GradScaler"
        return "bf16 autocast" if self.name == "bf16" else "fp32"

    def describe(self) -> str:
        """One line for the start of a run, e.g. ``precision: fp16 + GradScaler (Tesla T4, sm_75: no bf16 hardware)``."""
        return f"precision: {self.label()} ({self.reason})"


def _normalise_request(requested: str | bool) -> str:
    """Accept ``"auto"``/``"bf16"``/``"fp16"``/``"fp32"`` and the booleans of ``TrainConfig.amp`` (True = auto)."""
    if requested is True:
        return "auto"
    if requested is False:
        return "fp32"
    req = str(requested).lower()
    if req not in ("auto", *NAMES):
        raise ValueError(
            f"choose_precision: requested must be 'auto', 'bf16', 'fp16' or 'fp32', got {requested!r}"
        )
    return req


def _card(
    dev: torch.device, capability: tuple[int, int] | None, name: str | None
) -> tuple[tuple[int, int], str]:
    """(compute capability, card name) of ``dev``: the faked values when given, else asked from CUDA."""
    if capability is None:
        if not torch.cuda.is_available():
            raise ValueError(
                "choose_precision: device is CUDA but torch sees no CUDA GPU; pass device='cpu', "
                "or capability=(major, minor) to fake a card in a test"
            )
        capability = tuple(torch.cuda.get_device_capability(dev))
        name = name or torch.cuda.get_device_name(dev)
    major, minor = (int(c) for c in capability)
    return (major, minor), (name or "CUDA card")


def choose_precision(
    device: str | torch.device,
    requested: str | bool = "auto",
    capability: tuple[int, int] | None = None,
    device_name: str | None = None,
) -> Precision:
    """The precision a run on ``device`` should use.

    CUDA: ``auto`` -> bf16 autocast when the compute capability is >= 8.0, else fp16 autocast + GradScaler;
    ``fp32`` -> fp32 (TF32 convolutions/matmuls may still be on from sm_80: the reason says so). ``bf16`` asked on
    a card below 8.0 is an error (it would be emulated). CPU: fp32 (``auto``/``fp32``); bf16/fp16 asked on the
    CPU is an error. ``capability``/``device_name`` fake a card (tests), e.g. (7, 5) for a T4.
    """
    req = _normalise_request(requested)
    dev = torch.device(device)
    if dev.type != "cuda":
        if req in ("bf16", "fp16"):
            raise ValueError(
                f"choose_precision: {req} was requested on {dev.type}; mixed precision is for CUDA here. "
                "Use requested='fp32' or 'auto' on the CPU"
            )
        return Precision("fp32", None, False, f"{dev.type}: fp32")
    cap, name = _card(dev, capability, device_name)
    sm = f"{name}, sm_{cap[0]}{cap[1]}"
    has_bf16 = cap >= BF16_MIN_CAPABILITY
    if req == "fp32":
        tf32 = ": TF32 matmuls/convolutions allowed by torch.backends" if has_bf16 and _tf32_on() else ""
        return Precision("fp32", None, False, f"{sm}: fp32 as requested{tf32}")
    if req == "bf16" and not has_bf16:
        raise ValueError(
            f"choose_precision: bf16 was requested but {sm} has no bf16 hardware (needs compute capability "
            ">= 8.0; torch would emulate it slowly). Use requested='fp16' or 'auto' (fp16 + GradScaler)"
        )
    if req == "bf16" or (req == "auto" and has_bf16):
        return Precision("bf16", torch.bfloat16, False, f"{sm}: bf16 hardware")
    why = "fp16 as requested" if req == "fp16" else "no bf16 hardware"
    return Precision("fp16", torch.float16, True, f"{sm}: {why}")


def _tf32_on() -> bool:
    """Whether cuDNN convolutions or CUDA matmuls may use TF32 (PyTorch allows it for convolutions by default)."""
    return bool(torch.backends.cudnn.allow_tf32 or torch.backends.cuda.matmul.allow_tf32)


def autocast_context(precision: Precision, device: str | torch.device) -> AbstractContextManager:
    """``torch.autocast`` in ``precision.dtype`` on ``device``, or a no-op context for fp32."""
    if precision.dtype is None:
        return nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=precision.dtype)


def make_grad_scaler(precision: Precision, device: str | torch.device) -> torch.amp.GradScaler:
    """A GradScaler that is enabled only when ``precision`` needs one (fp16); disabled it passes losses through."""
    dev = torch.device(device)
    return torch.amp.GradScaler(dev.type, enabled=precision.needs_grad_scaler and dev.type == "cuda")
