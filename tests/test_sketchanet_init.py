"""Sketch-a-Net learns from scratch: an init whose activations and embeddings do not collapse (issue 9, item 4).

Under PyTorch's default init, on these stroke images, the std of conv5 is ~0.06x that of conv1 and L2(fc7) of
different images have mean pairwise cosine ~0.998 (input on the 0-1 scale); Kaiming-normal with zero biases gives
a ratio of ~2 and a cosine of ~0.9. The bounds sit far from both.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cdimlab.models import SketchANet


def stroke_images(n: int, size: int, seed: int = 0) -> torch.Tensor:
    """``n`` random line drawings, ink 1.0 on background 0.0, strokes 3 px wide: ``(n, 1, size, size)``."""
    g = torch.Generator().manual_seed(seed)
    img = torch.zeros(n, 1, size, size)
    t = torch.linspace(0, 1, 2 * size).unsqueeze(1)
    for i in range(n):
        for _ in range(6):
            p0, p1 = torch.rand(2, 2, generator=g) * (size - 1)
            pts = (p0 + t * (p1 - p0)).round().long()
            img[i, 0, pts[:, 0], pts[:, 1]] = 1.0
    return F.max_pool2d(img, 3, 1, 1)


def stage_outputs(net: SketchANet, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Output of every stage (conv1 .. fc7) of ``net`` in eval mode."""
    net.eval()
    out = {}
    with torch.no_grad():
        for name, fn in net.stages():
            x = fn(x)
            out[name] = x
    return out


def mean_pairwise_cosine(e: torch.Tensor) -> float:
    """Mean cosine over the pairs of distinct rows of ``e``."""
    e = F.normalize(e, dim=1)
    n = e.shape[0]
    return float(((e @ e.T).sum() - n) / (n * (n - 1)))


@pytest.mark.parametrize("seed", [0, 1])
def test_activation_std_does_not_collapse(seed):
    torch.manual_seed(seed)
    net = SketchANet(113)
    outs = stage_outputs(net, stroke_images(12, 113, seed) * 255.0 - 250.42)  # the pipeline's x - 250.42
    assert outs["conv5"].std() / outs["conv1"].std() > 0.5  # default init: ~0.06
    assert outs["fc7"].std() / outs["conv1"].std() > 0.5


@pytest.mark.parametrize("seed", [0, 1])
def test_embeddings_of_different_images_differ(seed):
    torch.manual_seed(seed)
    net = SketchANet(225)
    fc7 = stage_outputs(net, stroke_images(12, 225, seed))["fc7"]
    assert mean_pairwise_cosine(fc7) < 0.95  # default init: ~0.998


def test_embedding_direction_ignores_input_contrast():
    # zero biases + ReLU + max-pool: fc7(c * x) == c * fc7(x) for c > 0 (default init's biases break this)
    torch.manual_seed(0)
    net = SketchANet(113).eval()
    x = stroke_images(4, 113) - 0.5
    with torch.no_grad():
        assert torch.allclose(net(7.0 * x), 7.0 * net(x), rtol=1e-4, atol=1e-4)


def test_biases_zero_and_weights_kaiming():
    torch.manual_seed(0)
    net = SketchANet(113)
    layers = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len(layers) == 7
    for m in layers:
        assert torch.count_nonzero(m.bias) == 0
        fan_in = m.weight[0].numel()
        assert m.weight.std().item() == pytest.approx((2.0 / fan_in) ** 0.5, rel=0.15)


def test_no_dropout_by_default_and_optional_dropout():
    assert not any(isinstance(m, nn.Dropout) for m in SketchANet(113).modules())
    net = SketchANet(113, dropout=0.5)
    assert [m.p for m in net.modules() if isinstance(m, nn.Dropout)] == [0.5]
