"""Sketch-a-Net, the FG-SBIR tower of the paper (Yu et al. 2016/2017), with named taps.

Introduced in notebook 02. Layout at the paper's 1x225x225 input::

    conv1 64@15x15 s3 -> ReLU -> maxpool 3/2          64x71x71 -> 64x35x35
    conv2 128@5x5     -> ReLU -> maxpool 3/2          128x31x31 -> 128x15x15
    conv3 256@3x3 p1  -> ReLU                         256x15x15   (tap conv3)
    conv4 256@3x3 p1  -> ReLU                         256x15x15   (tap conv4)
    conv5 256@3x3 p1  -> ReLU -> maxpool 3/2          256x7x7     (tap conv5 = pool5, 12,544 values)
    fc6 512 -> ReLU -> fc7 256                                    (final = fc7; no dropout, as the official tower)

The paper fine-tunes a "step3" pre-trained model that is not obtainable today, so the network learns from scratch;
:func:`load_sketchanet_weights` reads a local weights file when a user has one. PyTorch's default init collapses this
tower (activations shrink ~2x per layer and fc7 is mostly its bias, so all embeddings point the same way); every
conv and fc layer is therefore Kaiming-normal (fan_in, ReLU gain) with zero biases (:func:`init_sketchanet`): each
layer keeps the scale of its input, and with zero biases the network is positively homogeneous, so L2(fc7) does
not depend on the input's contrast.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from cdimlab.models.base import Stage, TappedBackbone, pair
from cdimlab.models.weights import load_npy_arrays

SKETCHANET_LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7")


class SketchANet(TappedBackbone):
    """Sketch-a-Net with taps ``conv3``, ``conv4``, ``conv5`` (pooled) and final ``fc7`` (256-d).

    ``input_size`` (int or (H, W)) sizes ``fc6``: 225 is the paper's size; 113 is the CPU smoke size
    (``conv5`` is then 256x2x2). ``dropout`` (default 0: none, as in the official tower) adds a Dropout after
    ``fc6``, active in training mode only. Weights are initialised by :func:`init_sketchanet`.
    """

    tap_names = ("conv3", "conv4", "conv5")

    def __init__(
        self, input_size: int | tuple[int, int] = 225, dropout: float = 0.0, in_channels: int = 1
    ) -> None:
        super().__init__()
        self.input_size = pair(input_size)
        self.in_channels = in_channels
        self.final_dim = 256
        self.tap_channels = {"conv3": 256, "conv4": 256, "conv5": 256}
        self.conv1 = nn.Conv2d(in_channels, 64, 15, stride=3)
        self.conv2 = nn.Conv2d(64, 128, 5)
        self.conv3 = nn.Conv2d(128, 256, 3, padding=1)
        self.conv4 = nn.Conv2d(256, 256, 3, padding=1)
        self.conv5 = nn.Conv2d(256, 256, 3, padding=1)
        self.pool = nn.MaxPool2d(3, 2)
        self.relu = nn.ReLU(inplace=False)
        h, w = _pool5_size(self.input_size)
        self.pool5_shape = (256, h, w)
        self.fc6 = nn.Linear(256 * h * w, 512)
        self.drop6 = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc7 = nn.Linear(512, 256)
        init_sketchanet(self)

    def stages(self) -> Iterator[Stage]:
        """Network order; ``conv5`` is the map after the last max-pool (pool5), as in the paper."""
        yield "conv1", lambda x: self.pool(self.relu(self.conv1(x)))
        yield "conv2", lambda x: self.pool(self.relu(self.conv2(x)))
        yield "conv3", lambda x: self.relu(self.conv3(x))
        yield "conv4", lambda x: self.relu(self.conv4(x))
        yield "conv5", lambda x: self.pool(self.relu(self.conv5(x)))
        yield "fc6", lambda x: self.drop6(self.relu(self.fc6(self._flatten(x))))
        yield "fc7", self.fc7

    def _flatten(self, x: Tensor) -> Tensor:
        """Flatten pool5 in (C, H, W) order; a clear error when the input size differs from the constructor's."""
        if tuple(x.shape[1:]) != self.pool5_shape:
            raise ValueError(
                f"SketchANet was built for input_size={self.input_size} (pool5 {self.pool5_shape}) but got "
                f"pool5 {tuple(x.shape[1:])}; build SketchANet(input_size=<your crop size>)"
            )
        return x.flatten(1)


def init_sketchanet(model: nn.Module) -> nn.Module:
    """Kaiming-normal weights (fan_in, ReLU gain sqrt(2)) and zero biases for every conv and fc layer; in place.

    He et al. (2015): weight std sqrt(2 / fan_in) keeps the activation scale constant through ReLU layers, so the
    tower can learn from scratch (notebook 02 shows the collapse under PyTorch's default init).
    """
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return model


def _pool5_size(input_size: tuple[int, int]) -> tuple[int, int]:
    """Spatial size of pool5 for an input of ``input_size`` (the layer arithmetic, no forward pass)."""

    def one(n: int) -> int:
        n = (n - 15) // 3 + 1  # conv1
        n = (n - 3) // 2 + 1  # pool1
        n = n - 4  # conv2
        n = (n - 3) // 2 + 1  # pool2
        return (n - 3) // 2 + 1  # conv3-5 keep size; pool5

    h, w = one(input_size[0]), one(input_size[1])
    if h < 1 or w < 1:
        raise ValueError(f"SketchANet input_size={input_size} is too small; use at least 63x63 (paper: 225)")
    return h, w


def _expected_shapes(model: SketchANet) -> dict[str, tuple[tuple[int, ...], tuple[int, ...]]]:
    """PyTorch (weight, bias) shapes of each layer of ``model``."""
    return {
        n: (tuple(getattr(model, n).weight.shape), tuple(getattr(model, n).bias.shape))
        for n in SKETCHANET_LAYERS
    }


def _find_layer(raw: dict, name: str) -> object | None:
    """Entry for layer ``name`` in a TF-release dict: exact key, else the one key starting with ``name``."""
    if name in raw:
        return raw[name]
    hits = [k for k in raw if str(k).startswith(name + "_") or str(k) == name]
    return raw[hits[0]] if len(hits) == 1 else None


def _wb(entry: object) -> tuple[np.ndarray, np.ndarray]:
    """(W, b) from ``[W, b]``, ``(W, b)`` or ``{"weights": W, "biases": b}``."""
    if isinstance(entry, dict):
        w = entry.get("weights", entry.get("W", entry.get("w")))
        b = entry.get("biases", entry.get("b", entry.get("bias")))
    else:
        w, b = entry  # type: ignore[misc]
    return np.asarray(w, dtype=np.float32), np.asarray(b, dtype=np.float32)


def _to_torch_weight(
    name: str, w: np.ndarray, want: tuple[int, ...], pool5: tuple[int, int, int]
) -> np.ndarray:
    """Convert one TF-layout weight to the PyTorch layout ``want``.

    Conv kernels are HWIO -> OIHW. ``fc6`` may be stored as a 7x7 conv kernel (HWIO) or as an (in, out) matrix
    whose input index runs over TF's (H, W, C) flattening; both become PyTorch's (out, C*H*W) in (C, H, W) order.
    Other fc layers are (in, out) -> transposed. A weight already in PyTorch layout is kept.
    """
    if w.shape == want and name.startswith("conv"):
        return w
    if name.startswith("conv") and w.ndim == 4:
        return w.transpose(3, 2, 0, 1)
    c, h, wd = pool5
    if name == "fc6" and w.ndim == 4:  # (H, W, C, out) conv form
        return w.transpose(3, 2, 0, 1).reshape(w.shape[3], -1)
    if name == "fc6" and w.ndim == 2 and w.shape == (c * h * wd, want[0]):
        return w.reshape(h, wd, c, want[0]).transpose(3, 2, 0, 1).reshape(want[0], -1)
    if w.ndim == 2 and w.shape == (want[1], want[0]) and w.shape != want:
        return w.T
    return w


def load_sketchanet_weights(model: SketchANet, path: str | os.PathLike) -> SketchANet:
    """Load local Sketch-a-Net weights into ``model`` (in place) and return it.

    Accepted files: a ``.npy`` pickled dict (read by :func:`cdimlab.models.weights.load_npy_arrays`, which admits
    only arrays, dtypes and plain containers) in the TF release layout ``{layer: [W, b]}`` or
    ``{layer: {"weights": W, "biases": b}}`` with layers ``conv1..conv5, fc6, fc7`` (a suffix such as
    ``conv1_s1`` is accepted; HWIO conv kernels are converted to OIHW), or a PyTorch state dict saved with
    ``torch.save`` (``.pt``/``.pth``, keys ``conv1.weight`` ...). Layers missing from the file or with the wrong
    shape raise a ValueError naming the file and the expected keys and shapes. Introduced in notebook 02.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Sketch-a-Net weights file {path} does not exist")
    expected = _expected_shapes(model)
    if path.suffix == ".npy":
        raw = load_npy_arrays(path)  # arrays only: never runs code from the file
        if not isinstance(raw, dict):
            raise ValueError(f"{path}: expected a pickled dict {{layer: [W, b]}}, got {type(raw).__name__}")
        state = {}
        for name, (w_shape, _) in expected.items():
            entry = _find_layer(raw, name)
            if entry is None:
                raise ValueError(
                    _mismatch(path, expected, f"layer {name!r} not found (file has {sorted(raw)})")
                )
            w, b = _wb(entry)
            state[f"{name}.weight"] = torch.from_numpy(
                np.ascontiguousarray(_to_torch_weight(name, w, w_shape, model.pool5_shape))
            )
            state[f"{name}.bias"] = torch.from_numpy(b.reshape(-1))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        if not isinstance(state, dict):
            raise ValueError(f"{path}: expected a state dict, got {type(state).__name__}")
        state = {k.removeprefix("module.").removeprefix("backbone."): v for k, v in state.items()}
    for name, (w_shape, b_shape) in expected.items():
        for key, want in ((f"{name}.weight", w_shape), (f"{name}.bias", b_shape)):
            if key not in state:
                raise ValueError(_mismatch(path, expected, f"key {key!r} missing"))
            if tuple(state[key].shape) != want:
                raise ValueError(
                    _mismatch(path, expected, f"{key} has shape {tuple(state[key].shape)}, expected {want}")
                )
    model.load_state_dict({k: torch.as_tensor(v) for k, v in state.items() if k.split(".")[0] in expected})
    return model


def _mismatch(path: Path, expected: dict, detail: str) -> str:
    """Error text: the file, what is wrong, and the keys/shapes the model expects."""
    want = ", ".join(f"{n}: W{w} b{b}" for n, (w, b) in expected.items())
    return (
        f"{path} does not match this SketchANet ({detail}). Expected layers {list(expected)} "
        f"(PyTorch shapes {want}); build SketchANet(input_size=...) with the size the weights were trained at"
    )
