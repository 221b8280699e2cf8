"""Backbones with named taps (notebooks 02, 03, 06): Sketch-a-Net, ResNet-50, InceptionV3 (the DSSA attention baseline is cdimlab.attention)."""

from __future__ import annotations

from typing import Any

from cdimlab.models.base import TappedBackbone
from cdimlab.models.inception import InceptionV3Backbone
from cdimlab.models.mobilenet import MobileNetV2Backbone
from cdimlab.models.resnet import ResNet50Backbone
from cdimlab.models.sketchanet import SketchANet, load_sketchanet_weights
from cdimlab.models.weights import load_imagenet_weights

BACKBONES: dict[str, type[TappedBackbone]] = {
    "sketchanet": SketchANet,
    "resnet50": ResNet50Backbone,
    "inception_v3": InceptionV3Backbone,
    "mobilenetv2": MobileNetV2Backbone,
}


def build_backbone(name: str, **kw: Any) -> TappedBackbone:
    """Build a backbone by name (``"sketchanet"``, ``"resnet50"``, ``"inception_v3"``, ``"mobilenetv2"``).

    ``kw`` go to its class. ``resnet50`` / ``inception_v3`` / ``mobilenetv2`` take ``weights=None | "imagenet" |
    path`` (default None: random init, no download); ``sketchanet`` takes ``input_size`` and ``weights=<local file>`` (see
    :func:`load_sketchanet_weights`).
    """
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {sorted(BACKBONES)}")
    if name == "sketchanet":
        weights = kw.pop("weights", None)
        model = SketchANet(**kw)
        if weights == "imagenet":
            raise ValueError(
                "sketchanet has no ImageNet weights; use weights=None or a local Sketch-a-Net file"
            )
        if weights is not None:
            load_sketchanet_weights(model, weights)
        return model
    return BACKBONES[name](**kw)


__all__ = [
    "BACKBONES",
    "InceptionV3Backbone",
    "MobileNetV2Backbone",
    "ResNet50Backbone",
    "SketchANet",
    "TappedBackbone",
    "build_backbone",
    "load_imagenet_weights",
    "load_sketchanet_weights",
]
