"""The fusion module (paper Eq. 1, Fig. 3c): dimensions of every Table 7-11 configuration, L2 parts, deep
supervision, channels_last and bf16 autocast."""

from __future__ import annotations

import pytest
import torch

from cdimlab.experiments import EXPERIMENTS, OURS_REID, OURS_SBIR, VANILLA_REID
from cdimlab.fusion import EmbeddingNet, FusionConfig, MidLevelFusion, ReIDNet, fusion_dim
from cdimlab.models import InceptionV3Backbone, ResNet50Backbone, SketchANet

SKETCH_225 = {"conv3": (256, 15, 15), "conv4": (256, 15, 15), "conv5": (256, 7, 7)}
RESNET_256x128 = {
    "res2": (256, 64, 32),
    "res3": (512, 32, 16),
    "res4": (1024, 16, 8),
    **{f"res4{c}": (1024, 16, 8) for c in "abcdef"},
    **{f"res5{c}": (2048, 8, 4) for c in "abc"},
}
INCEPTION_299 = {"Mixed_7b": (2048, 8, 8)}


def _dim(shapes: dict, final_dim: int, cfg: FusionConfig) -> int:
    """out_dim of a fusion built on the meta device (no memory even for a 131,072 x 1,024 FC)."""
    with torch.device("meta"):
        fusion = MidLevelFusion(
            {k: v[0] for k, v in shapes.items()}, {k: v[1:] for k, v in shapes.items()}, final_dim, cfg
        )
    return fusion.out_dim


@pytest.mark.parametrize(
    "taps,pooling,expected",
    [
        (("conv3",), "flatten", 256 * 15 * 15 + 256),  # Table 7
        (("conv4",), "flatten", 256 * 15 * 15 + 256),
        (("conv4", "conv5"), "flatten", 256 * 15 * 15 + 12_544 + 256),
        (("conv5",), "flatten", 12_800),  # Ours, Tables 7 and 9
        (("conv5",), "gap", 256 + 256),  # Table 9 GAP
        ((), "flatten", 256),  # Vanilla
    ],
)
def test_fgsbir_fusion_dims(taps, pooling, expected):
    assert _dim(SKETCH_225, 256, FusionConfig(taps, pooling)) == expected


@pytest.mark.parametrize(
    "taps,pooling,reduce_dim,expected",
    [
        (("res5a", "res5b"), "gap", 1024, 3072),  # Ours, Tables 8 and 10
        (("res2", "res3", "res4"), "gap", 1024, 3072),  # Table 8
        (tuple(f"res4{c}" for c in "abcdef"), "gap", 1024, 3072),
        (("res2", "res3", "res4", "res5a", "res5b"), "gap", 1024, 3072),
        (("res5a", "res5b"), "flatten", 1024, 3072),  # Table 10 flatten (131,072 -> FC 1024)
        (("res5a", "res5b"), "gap", None, 4096 + 2048),
        ((), "gap", None, 2048),  # Vanilla: pool5
    ],
)
def test_reid_fusion_dims(taps, pooling, reduce_dim, expected):
    assert _dim(RESNET_256x128, 2048, FusionConfig(taps, pooling, reduce_dim, l2_parts=False)) == expected


def test_reid_pooled_dims_before_fc():
    shapes = {k: v[0] for k, v in RESNET_256x128.items()}
    sizes = {k: v[1:] for k, v in RESNET_256x128.items()}
    with torch.device("meta"):
        f = MidLevelFusion(
            shapes, sizes, 2048, FusionConfig(("res2", "res3", "res4", "res5a", "res5b"), "gap", 1024)
        )
        g = MidLevelFusion(shapes, sizes, 2048, FusionConfig(("res5a", "res5b"), "flatten", 1024))
    assert f.reduce.in_features == 256 + 512 + 1024 + 2 * 2048
    assert g.reduce.in_features == 2 * 2048 * 8 * 4


def test_inception_mixed_7b_dims():
    assert _dim(INCEPTION_299, 2048, FusionConfig(("Mixed_7b",), "flatten")) == 2048 * 64 + 2048
    assert _dim(INCEPTION_299, 2048, FusionConfig(("Mixed_7b",), "gap")) == 4096


def test_paper_fusion_configs_in_the_catalogue_and_fusion_dim_on_real_backbones():
    assert OURS_SBIR == FusionConfig(("conv5",), "flatten", None, True) == EXPERIMENTS["shoes_ours"].fusion
    assert (
        OURS_REID == FusionConfig(("res5a", "res5b"), "gap", 1024, False) == EXPERIMENTS["market_ours"].fusion
    )
    assert VANILLA_REID.vanilla and not VANILLA_REID.l2_parts
    assert fusion_dim(SketchANet(225), OURS_SBIR) == 12_800
    assert fusion_dim(SketchANet(113), OURS_SBIR) == 256 * 2 * 2 + 256


def test_reidnet_state_dict_helpers_recover_class_count_and_backbone():
    net = ReIDNet(SketchANet(113), FusionConfig(), num_classes=7)
    state = net.state_dict()
    assert ReIDNet.num_classes_in(state) == 7
    assert ReIDNet.backbone_state(state).keys() == net.backbone.state_dict().keys()
    with pytest.raises(ValueError, match="classifier.weight"):
        ReIDNet.num_classes_in(net.backbone.state_dict())


def test_every_net_has_embed_and_backbone():
    bb = SketchANet(113)
    emb, reid = EmbeddingNet(bb, FusionConfig()).eval(), ReIDNet(SketchANet(113), FusionConfig(), 3)
    x = torch.zeros(2, 1, 113, 113)
    assert bb.backbone is bb and emb.backbone is bb and isinstance(reid.backbone, SketchANet)
    assert torch.equal(emb.embed(x), emb(x)) and bb.embed(x).shape == (2, 256)
    assert reid.embed(x).shape == (2, 256)


def test_fusion_config_validation_and_describe():
    with pytest.raises(ValueError, match="pooling"):
        FusionConfig(("conv5",), "max")
    with pytest.raises(ValueError, match="duplicates"):
        FusionConfig(("conv5", "conv5"))
    with pytest.raises(ValueError, match="reduce_dim"):
        FusionConfig(("res5a",), "gap", 0)
    assert FusionConfig(["conv4", "conv5"]).taps == ("conv4", "conv5")  # lists become tuples (hashable)
    assert OURS_SBIR.describe() == "conv5 flatten + fc7"
    assert OURS_REID.describe() == "res5a+res5b gap -> FC1024 + pool5 (no L2)"
    assert "Vanilla" in FusionConfig().describe()
    with pytest.raises(ValueError, match="valid tap names"):
        EmbeddingNet(SketchANet(113), FusionConfig(("res5a",)))


def test_l2_parts_have_unit_norm_and_vanilla():
    torch.manual_seed(0)
    net = EmbeddingNet(SketchANet(113), FusionConfig(("conv4", "conv5"))).eval()
    x = torch.rand(3, 1, 113, 113)
    parts = net.parts(x)
    conv4, conv5 = parts["mid"][:, : 256 * 25], parts["mid"][:, 256 * 25 :]
    # each flattened tap is L2-normalised on its own: conv4 (6,400 values here) cannot drown conv5 (1,024)
    torch.testing.assert_close(conv4.norm(dim=1), torch.ones(3))
    torch.testing.assert_close(conv5.norm(dim=1), torch.ones(3))
    taps = net.backbone.forward_taps(x, ("conv4", "conv5"))
    torch.testing.assert_close(conv5, torch.nn.functional.normalize(taps["conv5"].flatten(1), dim=1))
    torch.testing.assert_close(parts["final"].norm(dim=1), torch.ones(3))
    emb = net(x)
    assert emb.shape == (3, net.out_dim) and net.out_dim == 256 * 25 + 256 * 4 + 256
    torch.testing.assert_close(emb, torch.cat([parts["mid"], parts["final"]], 1))
    vanilla = EmbeddingNet(net.backbone, FusionConfig()).eval()
    fc7 = net.backbone(x)
    torch.testing.assert_close(vanilla(x), torch.nn.functional.normalize(fc7, dim=1))
    raw = EmbeddingNet(net.backbone, FusionConfig(l2_parts=False)).eval()
    torch.testing.assert_close(raw(x), fc7)


def test_flatten_size_mismatch_is_explained():
    net = EmbeddingNet(SketchANet(113), OURS_SBIR)
    with pytest.raises(ValueError, match="input"):
        net.fusion({"conv5": torch.zeros(1, 256, 7, 7), "final": torch.zeros(1, 256)})


def test_deep_supervision_gradients_reach_taps_through_embedding():
    torch.manual_seed(0)
    net = EmbeddingNet(SketchANet(113), OURS_SBIR)
    x = torch.rand(2, 1, 113, 113)
    mid_dim = net.fusion.mid_dim
    (net(x)[:, :mid_dim] * torch.randn(2, mid_dim)).sum().backward()  # loss on the mid part only
    assert net.backbone.conv5.weight.grad.abs().sum() > 0  # the mid layer is supervised directly...
    assert not net.backbone.fc7.weight.grad.any()  # ...through a path that bypasses the top layers
    net.zero_grad(set_to_none=True)
    net(x).pow(2).sum().backward()
    assert all(p.grad is not None for p in net.parameters())


def test_reidnet_gradients_and_shapes():
    torch.manual_seed(0)
    model = ReIDNet(ResNet50Backbone(input_size=(32, 16)), OURS_REID, num_classes=5)
    x = torch.rand(2, 3, 32, 16)  # smallest size ResNet-50 runs at: res5 is 1x1
    assert model.out_dim == 3072
    emb = model.embed(x)
    assert emb.shape == (2, 3072)
    mid_dim = model.embedder.fusion.mid_dim
    emb[:, :mid_dim].sum().backward()  # mid part = FC(GAP(res5a) ++ GAP(res5b))
    res5 = model.backbone.layer4
    assert res5[0].conv3.weight.grad.abs().sum() > 0 and res5[1].conv3.weight.grad.abs().sum() > 0
    assert not res5[2].conv3.weight.grad.any()  # res5c only feeds pool5
    model.zero_grad(set_to_none=True)
    logits = model(x)
    assert logits.shape == (2, 5)
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 3])).backward()
    assert res5[2].conv3.weight.grad.any() and model.classifier.weight.grad.any()
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(
            model.embed(x)[:, mid_dim:], model.backbone(x)
        )  # l2_parts=False: raw pool5
    with pytest.raises(ValueError, match="num_classes"):
        ReIDNet(SketchANet(113), FusionConfig(), 0)


def test_channels_last_and_bf16_autocast():
    torch.manual_seed(0)
    net = EmbeddingNet(SketchANet(113), OURS_SBIR).eval()
    x = torch.rand(2, 1, 113, 113)
    with torch.no_grad():
        ref = net(x)
        net_cl = net.to(memory_format=torch.channels_last)
        out = net_cl(x.to(memory_format=torch.channels_last))
        torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-4)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            emb = net(x)
            parts = net.parts(x)
    assert emb.dtype == torch.float32 and emb.shape == ref.shape
    torch.testing.assert_close(parts["mid"].norm(dim=1), torch.ones(2))
    assert torch.nn.functional.cosine_similarity(emb, ref).min() > 0.98


def test_inception_embedding_smoke():
    torch.manual_seed(0)
    net = EmbeddingNet(InceptionV3Backbone(input_size=75), FusionConfig(("Mixed_7b",), "flatten")).eval()
    with torch.no_grad():
        emb = net(torch.rand(2, 3, 75, 75))
    assert emb.shape == (2, 2048 + 2048)
