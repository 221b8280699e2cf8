"""Local weights files: ImageNet weights for the torchvision backbones (never downloaded, never silently random),
and a ``.npy`` reader that admits only arrays (for the TF Sketch-a-Net release).

Introduced in notebook 03 (ImageNet weights for ReID). The course machines (and the GPU machines) have no internet, so
``weights="imagenet"`` looks for the file torchvision itself would have cached, or a path the user gives, and
otherwise fails with a message that names the file and the exact folder to put it in.
"""

from __future__ import annotations

import os
import pickle
from collections import OrderedDict
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import numpy.lib.format as npformat
import torch
from torch import nn

# The torchvision weights enums that hold the canonical file names; the first one is preferred.
_ENUMS = {
    "resnet50": ("ResNet50_Weights", ("IMAGENET1K_V1", "IMAGENET1K_V2")),
    "inception_v3": ("Inception_V3_Weights", ("IMAGENET1K_V1",)),
    "mobilenet_v2": ("MobileNet_V2_Weights", ("IMAGENET1K_V1", "IMAGENET1K_V2")),
}
# Keys of the torchvision checkpoint the backbones drop on purpose (classifier heads).
_DROPPED_PREFIXES = ("fc.", "AuxLogits.")


def imagenet_filenames(arch: str) -> list[str]:
    """torchvision's checkpoint file names for ``arch`` (e.g. ``resnet50-0676ba61.pth``), preferred first."""
    if arch not in _ENUMS:
        raise ValueError(f"no ImageNet weights known for arch={arch!r}; choose one of {sorted(_ENUMS)}")
    import torchvision.models as tvm

    enum_name, members = _ENUMS[arch]
    enum = getattr(tvm, enum_name)
    return [Path(getattr(enum, m).url).name for m in members]


def imagenet_cache_dir() -> Path:
    """Where torchvision caches checkpoints: ``torch.hub.get_dir()/checkpoints`` (honours ``$TORCH_HOME``)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def find_imagenet_weights(arch: str, path: str | os.PathLike | None = None) -> Path:
    """The weights file to load: ``path`` if given (must exist), else the first cached torchvision file.

    Raises FileNotFoundError naming the file and the folder when nothing is found.
    """
    if path is not None:
        p = Path(path).expanduser()
        if not p.is_file():
            raise FileNotFoundError(f"ImageNet weights file {p} for {arch} does not exist")
        return p
    names = imagenet_filenames(arch)
    folder = imagenet_cache_dir()
    for name in names:
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(
        f"ImageNet weights for {arch} not found: expected {names[0]} in {folder} "
        f"(also accepted there: {names[1:] or 'none'}). This machine cannot download them; copy the file from "
        f"a machine with internet (torchvision downloads it to its own {folder}) into {folder}, or pass "
        f"weights=<path to the .pth file>, or use weights=None for random initialisation."
    )


def load_imagenet_weights(model: nn.Module, arch: str, path: str | os.PathLike | None = None) -> Path:
    """Load torchvision ImageNet weights for ``arch`` into ``model`` (in place); return the file used.

    ``model`` holds torchvision's module names (our backbones do, minus the classifier): checkpoint keys under
    ``fc.`` / ``AuxLogits.`` that the model lacks are dropped; any other missing or unexpected key is an error
    naming the file. ``path`` overrides the torchvision cache lookup (see :func:`find_imagenet_weights`).
    """
    file = find_imagenet_weights(arch, path)
    state = torch.load(file, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    state = {k.removeprefix("module."): v for k, v in state.items()}
    own = model.state_dict()
    state = {k: v for k, v in state.items() if k in own or not k.startswith(_DROPPED_PREFIXES)}
    # Old checkpoints lack BatchNorm's num_batches_tracked counters; they are not weights.
    missing = sorted(k for k in set(own) - set(state) if not k.endswith("num_batches_tracked"))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise ValueError(
            f"{file} does not match the {arch} backbone: missing keys {missing[:5]}{'...' if len(missing) > 5 else ''}"
            f", unexpected keys {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}"
        )
    model.load_state_dict(state, strict=False)
    return file


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """An unpickler that can build numpy arrays, dtypes and scalars, nothing else.

    Plain containers (dict, list, tuple, str, numbers) come from pickle opcodes and need no class lookup; every
    class or function a pickle names goes through :meth:`find_class`, which refuses anything outside
    :data:`_NPY_ALLOWED`, so a crafted file cannot make ``pickle`` call ``os.system`` or similar.
    """

    def __init__(self, file: BinaryIO, source: Path) -> None:
        super().__init__(file, encoding="latin1")  # latin1: Python 2 pickles (the TF release) hold str bytes
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        obj = _NPY_ALLOWED.get((module, name))
        if obj is None:
            raise ValueError(
                f"{self.source}: refused to unpickle {module}.{name}; a weights .npy may hold only numpy arrays "
                "in dicts/lists/tuples. If you trust this file, convert it once to a PyTorch state dict "
                "(torch.save) on a machine where you may run its code."
            )
        return obj


# (module, name) -> the object a numpy-array pickle may refer to. _reconstruct and scalar are taken from numpy's
# own reduce results, so this works whether numpy calls its core package numpy.core (1.x) or numpy._core (2.x).
_RECONSTRUCT = np.empty(0).__reduce__()[0]
_SCALAR = np.float32(0).__reduce__()[0]
_NPY_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("collections", "OrderedDict"): OrderedDict,
    **{(f"numpy.{core}.multiarray", "_reconstruct"): _RECONSTRUCT for core in ("core", "_core")},
    **{(f"numpy.{core}.multiarray", "scalar"): _SCALAR for core in ("core", "_core")},
}


def load_npy_arrays(path: str | os.PathLike) -> Any:
    """Read a ``.npy`` file without running code: a plain array, or a pickled object made only of arrays.

    ``np.load(allow_pickle=True)`` would let a crafted file run any code. Here the .npy header is read with
    ``numpy.lib.format``; a numeric array loads as usual, and an object array (how ``np.save`` stores a dict,
    e.g. the TF Sketch-a-Net release ``{layer: [W, b]}``) is unpickled by :class:`_ArrayOnlyUnpickler`. A 0-d
    object array is unwrapped to the object it holds. Any other class in the pickle is a ValueError naming the file
    and the class. Introduced in notebook 02.
    """
    path = Path(path)
    with open(path, "rb") as fh:
        try:
            version = npformat.read_magic(fh)
        except ValueError as err:
            raise ValueError(f"{path} is not a .npy file ({err})") from err
        if version == (1, 0):
            shape, _, dtype = npformat.read_array_header_1_0(fh)
        elif version == (2, 0):
            shape, _, dtype = npformat.read_array_header_2_0(fh)
        else:
            raise ValueError(f"{path}: .npy format version {version} is not supported here (1.0 and 2.0 are)")
        if not dtype.hasobject:
            fh.seek(0)
            return np.load(fh, allow_pickle=False)
        try:
            arr = _ArrayOnlyUnpickler(fh, path).load()
        except (pickle.UnpicklingError, EOFError, TypeError, AttributeError) as err:
            raise ValueError(
                f"{path}: its pickled content cannot be read ({type(err).__name__}: {err})"
            ) from err
    if isinstance(arr, np.ndarray) and arr.dtype == object and arr.shape == ():
        return arr.item()
    return arr
