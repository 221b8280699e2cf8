"""Local ImageNet weights for the torchvision backbones: never downloaded, never silently random.

Introduced in notebook 03 (ImageNet weights for ReID). The course machines (and the GPU machines) have no internet, so
``weights="imagenet"`` looks for the file torchvision itself would have cached, or a path the user gives, and
otherwise fails with a message that names the file and the exact folder to put it in.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

# The torchvision weights enums that hold the canonical file names; the first one is preferred.
_ENUMS = {
    "resnet50": ("ResNet50_Weights", ("IMAGENET1K_V1", "IMAGENET1K_V2")),
    "inception_v3": ("Inception_V3_Weights", ("IMAGENET1K_V1",)),
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
