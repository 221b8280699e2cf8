"""DSSA attention only (cdimlab.attention): the mask is a spatial distribution, the attended map feeds fc6/fc7."""

from __future__ import annotations

import pytest
import torch

from cdimlab.attention import AttentionNet, SpatialAttention
from cdimlab.models import SketchANet


def test_mask_sums_to_one_over_space_and_shapes():
    torch.manual_seed(0)
    net = AttentionNet(SketchANet(113)).eval()
    x = torch.rand(3, 1, 113, 113)
    emb, mask = net(x), net.attention_map(x)
    assert emb.shape == (3, 256) and net.out_dim == 256 and net.embed(x).shape == (3, 256)
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(3))  # embedding = L2(fc7)
    assert mask.shape == (3, 2, 2)  # conv5 (pool5) is 2x2 at the smoke size
    torch.testing.assert_close(mask.sum(dim=(1, 2)), torch.ones(3))
    assert net.backbone is net.backbone.backbone


def test_zero_second_conv_gives_a_uniform_mask_and_a_residual_of_conv5():
    torch.manual_seed(0)
    net = AttentionNet(SketchANet(113)).eval()
    torch.nn.init.zeros_(net.attention.conv2.weight)
    torch.nn.init.zeros_(net.attention.conv2.bias)
    x = torch.rand(2, 1, 113, 113)
    torch.testing.assert_close(net.attention_map(x), torch.full((2, 2, 2), 0.25))
    # uniform mask: attended = conv5 * (1 + 1/4); the final feature is fc7(fc6(flatten(attended)))
    bb = net.backbone
    with torch.no_grad():
        conv5 = bb.forward_taps(x, ("conv5",))["conv5"]
        want = bb.fc7(bb.drop6(bb.relu(bb.fc6((conv5 * 1.25).flatten(1)))))
    torch.testing.assert_close(net(x), torch.nn.functional.normalize(want, dim=1))


def test_gradients_reach_the_attention_convs():
    torch.manual_seed(0)
    net = AttentionNet(SketchANet(113))
    net(torch.rand(2, 1, 113, 113)).sum().backward()
    for conv in (net.attention.conv1, net.attention.conv2):
        assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0


def test_unknown_tap_names_the_valid_ones():
    with pytest.raises(ValueError, match="conv5"):
        AttentionNet(SketchANet(113), tap="pool9")
    assert SpatialAttention(8, hidden=4)(torch.rand(1, 8, 3, 3)).shape == (1, 1, 3, 3)
