"""The recipe of a training run (:class:`TrainConfig`), what a fit loop returns, and the runtime switches.

Introduced in notebook 02. One frozen dataclass holds every knob; the ``full`` profile of each experiment in
:mod:`cdimlab.experiments.catalogue` is the paper's recipe. The input-size fields are read by the evaluation
helpers through :func:`sbir_sizes` / :attr:`TrainConfig.reid_input`, and the runtime flags (``amp``,
``channels_last``) through :func:`auto_flag` and :func:`autocast`, so nothing else needs the whole config.
"""

from __future__ import annotations

import math
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cdimlab.precision import autocast_context, choose_precision

OPTIMIZERS = ("sgd", "adam")
DISTANCES = ("euclidean", "sqeuclidean")  # as cdimlab.losses.triplet_ranking_loss accepts
PROTOCOLS = ("10view", "center")


def is_int(value: Any) -> bool:
    """An int that is not a bool (``True`` is not an iteration count)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """A finite real number (int or float, not bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check(name: str, value: Any, ok: bool, want: str) -> None:
    """Raise the ValueError of one invalid field: its name, its value and what it must be."""
    if not ok:
        raise ValueError(f"TrainConfig.{name} must be {want}, got {value!r}")


@dataclass(frozen=True)
class TrainConfig:
    """Every knob of a training run; the ``full`` profile holds the paper's recipe (Sec. 4.1 of the paper).

    Recipe: ``iterations`` .. ``label_smoothing``. ``lr_decay`` is applied every ``lr_decay_every`` iterations
    (StepLR); ``lr_decay=1.0`` keeps the rate fixed (the FG-SBIR recipe). For ReID we decay by 0.95 every 1,000
    iterations: over the paper's 60K iterations that ends at 0.95**60 = 4.6% of the initial rate.
    Early stopping: ``eval_every``/``patience`` on the validation split (FG-SBIR only; never on test).
    Runtime: ``amp``/``channels_last`` "auto" = on for CUDA (bf16 autocast), off on the CPU; ``compile``.
    Input: ``sbir_input``/``sbir_resize`` (crop size and the size the 256x256 images are resized to first:
    225/256 full, 113/128 smoke); ``reid_input`` (H, W) (256x128 full, 64x32 smoke); ``sketch_std``: the
    Sketch-a-Net input is ``(x/255 - 250.42/255) / sketch_std``. The official code used ``x - 250.42`` on the
    0-255 scale (``sketch_std = 1/255``) with its pre-trained "step3" weights; from random initialisation that
    scale trains markedly slower (loss after 75 triplet iterations on real QMUL shoes: 0.26 at 1/255 vs 0.13 at
    0.2, same seed), so we use the same mean and a unit-scale divisor. Set ``1/255`` with step3 weights.
    From-scratch FG-SBIR on a CPU budget (the laptop Sketch-a-Net): ``sbir_flip=False`` keeps every training
    image in the pose the test sees (QMUL's shoes all point one way: independent flips make half the pairs
    mirror images, which a random-init tower must first learn to undo); ``batch_negatives`` w mixes
    ``(1 - w) * (paper's triplet loss) + w * (the same hinge over every other photo of the batch as a negative)``:
    15 negatives per sketch instead of 1 at no extra forward pass (:func:`cdimlab.losses.batch_triplet_loss`).
    Evaluation protocol: ``eval_protocol`` ("10view" | "center"), ``eval_batch_size``. Data selection:
    ``val_fraction``, ``max_ids`` (smoke on real ReID data: keep only this many identities), ``seed``.
    """

    iterations: int = 20_000
    batch_size: int = 128
    lr: float = 1e-3
    optimizer: str = "sgd"  # "sgd" | "adam"
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_decay: float = 1.0
    lr_decay_every: int = 1_000
    margin: float = 0.3
    distance: str = "euclidean"  # "euclidean" | "sqeuclidean"
    label_smoothing: float = 0.0
    batch_negatives: float = 0.0  # FG-SBIR: weight of the in-batch negatives term (0: the paper's loss only)
    eval_every: int = 500
    patience: int = 10
    checkpoint_every: int = 1_000
    log_every: int = 50
    amp: str | bool = "auto"
    channels_last: str | bool = "auto"
    compile: bool = False
    sbir_input: int = 225
    sbir_resize: int | None = None
    sketch_std: float = 0.2
    sbir_flip: bool = True  # FG-SBIR training: random horizontal flips (each image on its own)
    reid_input: tuple[int, int] = (256, 128)
    eval_protocol: str = "10view"  # "10view" | "center" (FG-SBIR test protocol)
    eval_batch_size: int = 256
    val_fraction: float = 0.1
    max_ids: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> TrainConfig:
        """Check every field up front (before any file is touched); a ValueError names the field and the fix."""
        for name in ("iterations", "batch_size", "eval_every", "patience", "checkpoint_every", "log_every",
                     "lr_decay_every", "sbir_input", "eval_batch_size"):  # fmt: skip
            _check(name, getattr(self, name), is_int(getattr(self, name)) and getattr(self, name) >= 1,
                   "an integer >= 1")  # fmt: skip
        for name in ("lr", "margin", "sketch_std"):
            _check(
                name, getattr(self, name), is_number(getattr(self, name)) and getattr(self, name) > 0, "> 0"
            )
        _check(
            "weight_decay", self.weight_decay, is_number(self.weight_decay) and self.weight_decay >= 0, ">= 0"
        )
        _check("batch_negatives", self.batch_negatives,
               is_number(self.batch_negatives) and 0 <= self.batch_negatives <= 1, "in [0, 1]")  # fmt: skip
        _check("sbir_flip", self.sbir_flip, isinstance(self.sbir_flip, bool), "True or False")
        for name in ("momentum", "label_smoothing", "val_fraction"):
            value = getattr(self, name)
            _check(name, value, is_number(value) and 0 <= value < 1, "in [0, 1)")
        _check("lr_decay", self.lr_decay, is_number(self.lr_decay) and 0 < self.lr_decay <= 1, "in (0, 1]")
        _check("optimizer", self.optimizer, self.optimizer in OPTIMIZERS, f"one of {OPTIMIZERS}")
        _check("distance", self.distance, self.distance in DISTANCES, f"one of {DISTANCES}")
        _check("eval_protocol", self.eval_protocol, self.eval_protocol in PROTOCOLS, f"one of {PROTOCOLS}")
        for name in ("amp", "channels_last"):
            _check(
                name,
                getattr(self, name),
                getattr(self, name) in ("auto", True, False),
                "'auto', True or False",
            )
        _check(
            "sbir_resize",
            self.sbir_resize,
            self.sbir_resize is None or (is_int(self.sbir_resize) and self.sbir_resize >= self.sbir_input),
            "None or an integer >= sbir_input",
        )
        size = tuple(self.reid_input) if isinstance(self.reid_input, (tuple, list)) else ()
        _check("reid_input", self.reid_input, len(size) == 2 and all(is_int(v) and v >= 1 for v in size),
               "two integers >= 1 (H, W)")  # fmt: skip
        _check("max_ids", self.max_ids, self.max_ids is None or (is_int(self.max_ids) and self.max_ids >= 1),
               "None or an integer >= 1")  # fmt: skip
        _check("seed", self.seed, is_int(self.seed) and self.seed >= 0, "an integer >= 0")
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (for results JSON and checkpoints)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """The config saved by :meth:`to_dict` (in a checkpoint or a results file); unknown keys are a ValueError."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(
                f"TrainConfig.from_dict: unknown field(s) {unknown}; valid fields: {sorted(known)}"
            )
        out = dict(values)
        if "reid_input" in out:
            out["reid_input"] = tuple(out["reid_input"])
        return cls(**out)


@dataclass
class FitResult:
    """What a fit loop returns: the model (best-val weights loaded), the log rows and bookkeeping."""

    model: nn.Module
    log: list[dict[str, Any]]
    iterations_run: int
    stopped_early: bool
    best_iteration: int | None
    best_val: float | None
    img_per_s: float
    wall_s: float
    out_dir: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def auto_flag(flag: str | bool, device: torch.device) -> bool:
    """``"auto"`` -> on for CUDA only; booleans pass through (``amp``, ``channels_last``)."""
    return device.type == "cuda" if flag == "auto" else bool(flag)


def autocast(amp: str | bool, device: torch.device) -> AbstractContextManager:
    """Mixed-precision context for ``amp`` on ``device`` (:func:`cdimlab.precision.choose_precision`: bf16 on
    cards with bf16 hardware, fp16 below, fp32 on the CPU or when ``amp`` is off); a no-op for fp32."""
    if not auto_flag(amp, device):
        return nullcontext()
    return autocast_context(choose_precision(device, "auto"), device)


def make_optimizer(params, cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD (momentum, weight decay) or Adam, as ``cfg.optimizer`` says."""
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def make_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig):
    """Step decay: multiply the rate by ``cfg.lr_decay`` every ``cfg.lr_decay_every`` iterations."""
    return torch.optim.lr_scheduler.StepLR(opt, step_size=max(1, cfg.lr_decay_every), gamma=cfg.lr_decay)
