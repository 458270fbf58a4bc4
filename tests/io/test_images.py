"""The 8-bit conversions that every image writer and scorer shares."""

import torch

from vaelab.data import to_float
from vaelab.io.images import to_uint8, to_uint8_nhwc


def test_to_uint8_inverts_to_float_and_rounds_and_clamps():
    levels = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16)
    assert torch.equal(to_uint8(to_float(levels)), levels)  # every level survives the round trip
    assert to_uint8(levels) is levels  # uint8 input is passed through
    x = torch.tensor([-0.5, 0.0, 0.5 / 255, 0.6 / 255, 1.0, 2.0])
    assert to_uint8(x).tolist() == [0, 0, 0, 1, 255, 255]  # nearest level (half to even), clamped


def test_to_uint8_nhwc_puts_channels_last():
    x = torch.zeros(2, 3, 4, 5)
    x[:, 1] = 1.0
    out = to_uint8_nhwc(x)
    assert out.shape == (2, 4, 5, 3) and out.dtype.name == "uint8"
    assert (out[..., 1] == 255).all() and (out[..., 0] == 0).all()
