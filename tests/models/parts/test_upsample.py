"""Nearest 2x upsampling as a broadcast: the numbers and gradients of F.interpolate, in the input's
memory format (a channels-last batch stays channels-last, so the next convolution copies nothing)."""

import pytest
import torch
import torch.nn.functional as F

from vaelab.models.parts.layers import Upsample, upsample_nearest_2x


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_upsample_matches_interpolate_and_keeps_the_memory_format(channels_last, dtype):
    x = torch.randn(3, 5, 7, 6, dtype=dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    y = upsample_nearest_2x(x)
    ref = F.interpolate(x, scale_factor=2.0, mode="nearest")
    assert y.shape == (3, 5, 14, 12) and torch.equal(y, ref)
    assert y.is_contiguous(memory_format=torch.channels_last) == channels_last
    g = torch.randn_like(y)
    (grad,) = torch.autograd.grad(y, x, g)
    (ref_grad,) = torch.autograd.grad(ref, x, g)
    assert torch.allclose(grad.float(), ref_grad.float(), atol=1e-2 if dtype == torch.bfloat16 else 1e-6)


def test_upsample_layer_uses_interpolate_for_other_sizes():
    torch.manual_seed(0)
    layer = Upsample(4, 2, size=(7, 7))  # 4 -> 7, as in a 28x28 conv decoder
    x = torch.randn(2, 4, 4, 4)
    assert torch.equal(layer(x), layer.conv(F.interpolate(x, size=(7, 7), mode="nearest")))
    doubled = Upsample(4, 2, size=(8, 8))
    assert torch.equal(doubled(x), doubled.conv(upsample_nearest_2x(x)))
