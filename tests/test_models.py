"""Backbones: tap shapes at the paper's and the smoke sizes, weights loading and its error messages."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from cdimlab.models import (
    InceptionV3Backbone,
    ResNet50Backbone,
    SketchANet,
    build_backbone,
    load_imagenet_weights,
    load_sketchanet_weights,
)
from cdimlab.models.weights import imagenet_filenames, load_npy_arrays


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    return ResNet50Backbone()


@pytest.fixture(scope="module")
def inception():
    torch.manual_seed(0)
    return InceptionV3Backbone()


def test_sketchanet_taps_paper_and_smoke_size():
    net = SketchANet(input_size=225).eval()
    with torch.no_grad():
        out = net.forward_taps(torch.zeros(2, 1, 225, 225), ("conv3", "conv4", "conv5"))
    assert out["conv3"].shape == out["conv4"].shape == (2, 256, 15, 15)
    assert out["conv5"].shape == (2, 256, 7, 7)  # pool5: 12,544 values
    assert out["final"].shape == (2, 256)
    assert (out["conv3"] >= 0).all()  # taps are after the ReLU
    small = SketchANet(input_size=113)
    assert small.tap_shapes() == {
        "conv3": (256, 5, 5),
        "conv4": (256, 5, 5),
        "conv5": (256, 2, 2),
        "final": (256,),
    }
    assert small(torch.zeros(3, 1, 113, 113)).shape == (3, 256)
    with pytest.raises(ValueError, match="input_size"):
        small(torch.zeros(1, 1, 225, 225))


def test_unknown_tap_lists_valid_names():
    with pytest.raises(ValueError, match=r"conv3.*conv4.*conv5"):
        SketchANet(113).forward_taps(torch.zeros(1, 1, 113, 113), ("fc6",))


def test_forward_equals_final_tap_and_tap_shapes_keeps_mode():
    torch.manual_seed(0)
    net = SketchANet(113).eval()
    x = torch.rand(2, 1, 113, 113)
    assert torch.equal(net(x), net.forward_taps(x, ("conv5",))["final"])
    net.train()
    net.tap_shapes()
    assert net.training and net.fc6.training


def test_resnet50_taps_paper_size(resnet):
    shapes = resnet.tap_shapes()
    assert shapes["res2"] == (256, 64, 32)
    assert shapes["res3"] == (512, 32, 16)
    for t in ("res4", "res4a", "res4b", "res4c", "res4d", "res4e", "res4f"):
        assert shapes[t] == (1024, 16, 8)
    for t in ("res5a", "res5b", "res5c"):
        assert shapes[t] == (2048, 8, 4)
    assert shapes["final"] == (2048,)
    assert resnet.tap_channels == {k: v[0] for k, v in shapes.items() if k != "final"}


def test_resnet50_smoke_size_batch_and_bn_untouched(resnet):
    before = resnet.bn1.running_mean.clone()
    assert resnet.tap_shapes((64, 32))["res5a"] == (2048, 2, 1)
    assert torch.equal(before, resnet.bn1.running_mean)  # tap_shapes runs in eval mode
    resnet.eval()
    with torch.no_grad():
        out = resnet.forward_taps(torch.rand(2, 3, 64, 32), ("res4", "res4f", "res5c"))
    assert torch.equal(out["res4"], out["res4f"])
    assert torch.allclose(out["final"], out["res5c"].mean(dim=(2, 3)))


def test_resnet50_last_stride_one():
    net = ResNet50Backbone(last_stride=1)
    assert net.tap_shapes((64, 32))["res5c"] == (2048, 4, 2)
    with pytest.raises(ValueError, match="last_stride"):
        ResNet50Backbone(last_stride=3)


def test_inception_taps(inception):
    shapes = inception.tap_shapes()
    assert shapes["Mixed_6e"] == (768, 17, 17)
    assert shapes["Mixed_7a"] == (1280, 8, 8)
    assert shapes["Mixed_7b"] == shapes["Mixed_7c"] == (2048, 8, 8)
    assert shapes["final"] == (2048,)
    assert inception.tap_shapes(75)["Mixed_7b"] == (2048, 1, 1)


def test_build_backbone_names():
    assert isinstance(build_backbone("sketchanet", input_size=113), SketchANet)
    with pytest.raises(ValueError, match="resnet50"):
        build_backbone("vgg16")
    with pytest.raises(ValueError, match="ImageNet"):
        build_backbone("sketchanet", weights="imagenet")


def _tf_layout(net: SketchANet, as_dict: bool, fc6_as_conv: bool) -> dict:
    """Export a SketchANet's weights the way the TF release stores them (HWIO convs, (in, out) fcs, NHWC flatten)."""
    out = {}
    c, h, w = net.pool5_shape
    for name in ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7"):
        W = getattr(net, name).weight.detach().numpy()
        b = getattr(net, name).bias.detach().numpy()
        if name.startswith("conv"):
            W = W.transpose(2, 3, 1, 0)
        elif name == "fc6":
            W = W.reshape(-1, c, h, w).transpose(2, 3, 1, 0)  # (H, W, C, out)
            if not fc6_as_conv:
                W = W.reshape(h * w * c, -1)  # (in in HWC order, out)
        else:
            W = W.T
        out[f"{name}_s1" if name == "conv1" else name] = {"weights": W, "biases": b} if as_dict else [W, b]
    return out


@pytest.mark.parametrize("as_dict,fc6_as_conv", [(False, False), (True, True)])
def test_load_sketchanet_npy_tf_layout(tmp_path, as_dict, fc6_as_conv):
    torch.manual_seed(1)
    src = SketchANet(113).eval()
    path = tmp_path / "sketchanet.npy"
    np.save(path, _tf_layout(src, as_dict, fc6_as_conv), allow_pickle=True)
    dst = load_sketchanet_weights(SketchANet(113).eval(), path)
    x = torch.rand(2, 1, 113, 113)
    assert torch.allclose(dst(x), src(x), atol=1e-5)


def test_load_sketchanet_state_dict_and_errors(tmp_path):
    src = SketchANet(113).eval()
    torch.save(src.state_dict(), tmp_path / "w.pt")
    dst = load_sketchanet_weights(SketchANet(113).eval(), tmp_path / "w.pt")
    assert torch.equal(dst.conv1.weight, src.conv1.weight)
    bad = {"conv1": [np.zeros((15, 15, 1, 64)), np.zeros(64)]}
    np.save(tmp_path / "bad.npy", bad, allow_pickle=True)
    with pytest.raises(ValueError, match=r"bad\.npy.*conv2.*Expected layers"):
        load_sketchanet_weights(SketchANet(113), tmp_path / "bad.npy")
    with pytest.raises(ValueError, match=r"w\.pt.*fc6\.weight"):  # trained at 113, loaded at 225
        load_sketchanet_weights(SketchANet(225), tmp_path / "w.pt")


class _RunsCode:
    """Unpickling this calls ``fn(*args)``: stands for a malicious weights file."""

    def __init__(self, fn, args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def _npy_with_pickle(path: Path, obj) -> Path:
    """A .npy file exactly as np.save writes a 0-d object array, holding ``pickle(obj)``."""
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": "|O", "fortran_order": False, "shape": ()})
        pickle.dump(obj, fh, protocol=3)
    return path


def test_load_npy_arrays_reads_dicts_of_arrays(tmp_path):
    src = {"conv1": [np.arange(6, dtype=np.float32).reshape(2, 3), np.ones(2)], "fc": {"w": np.float32(2.5)}}
    np.save(tmp_path / "ok.npy", src, allow_pickle=True)
    got = load_npy_arrays(tmp_path / "ok.npy")
    assert list(got) == ["conv1", "fc"] and got["fc"]["w"] == np.float32(2.5)
    assert np.array_equal(got["conv1"][0], src["conv1"][0]) and got["conv1"][0].dtype == np.float32
    np.save(tmp_path / "plain.npy", np.eye(3))  # a numeric array needs no pickle at all
    assert np.array_equal(load_npy_arrays(tmp_path / "plain.npy"), np.eye(3))


@pytest.mark.parametrize("how", ["os.system", "open"])
def test_load_npy_arrays_refuses_code_without_running_it(tmp_path, how):
    marker = tmp_path / "pwned"
    evil = (
        _RunsCode(os.system, (f"touch {marker}",))
        if how == "os.system"
        else _RunsCode(open, (str(marker), "w"))
    )
    path = _npy_with_pickle(tmp_path / "evil.npy", {"conv1": [np.zeros(2), evil]})
    name = "system" if how == "os.system" else "open"
    with pytest.raises(ValueError, match=rf"evil\.npy: refused to unpickle \w+\.{name}"):
        load_npy_arrays(path)
    with pytest.raises(ValueError, match="refused"):
        load_sketchanet_weights(SketchANet(113), path)
    assert not marker.exists()


def test_imagenet_weights_missing_message(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    with pytest.raises(FileNotFoundError) as err:
        ResNet50Backbone(weights="imagenet")
    msg = str(err.value)
    assert "resnet50-0676ba61.pth" in msg and str(folder) in msg and "download" in msg
    with pytest.raises(FileNotFoundError, match="inception_v3_google-0cc3c7bd.pth"):
        load_imagenet_weights(torch.nn.Module(), "inception_v3")
    with pytest.raises(FileNotFoundError, match="nothere.pth"):
        ResNet50Backbone(weights=tmp_path / "nothere.pth")


def test_imagenet_weights_load_from_cache(tmp_path, monkeypatch, resnet):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    folder.mkdir(parents=True)
    state = dict(resnet.state_dict())
    state["fc.weight"], state["fc.bias"] = torch.zeros(1000, 2048), torch.zeros(1000)  # torchvision's head
    torch.save(state, folder / imagenet_filenames("resnet50")[0])
    net = ResNet50Backbone(weights="imagenet")
    assert torch.equal(net.layer4[2].conv3.weight, resnet.layer4[2].conv3.weight)
    assert net.weights_file == folder / "resnet50-0676ba61.pth"
    del state["layer1.0.conv1.weight"]
    torch.save(state, tmp_path / "broken.pth")
    with pytest.raises(ValueError, match=r"broken\.pth.*layer1\.0\.conv1\.weight"):
        ResNet50Backbone(weights=tmp_path / "broken.pth")
