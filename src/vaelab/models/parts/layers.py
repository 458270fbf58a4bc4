"""Small building blocks shared by encoder and decoder parts."""

from __future__ import annotations

import torch
from torch import nn

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "elu": nn.ELU,
    "tanh": nn.Tanh,
}


def activation(name: str) -> nn.Module:
    """Return a fresh activation module by its config name."""
    return _ACTIVATIONS[name]()


def mlp(in_features: int, hidden_dims: tuple[int, ...], out_features: int, act: str) -> nn.Sequential:
    """Linear layers with an activation between them and none after the last (it outputs parameters)."""
    layers: list[nn.Module] = []
    width = in_features
    for hidden in hidden_dims:
        layers += [nn.Linear(width, hidden), activation(act)]
        width = hidden
    layers.append(nn.Linear(width, out_features))
    return nn.Sequential(*layers)


def halved_sides(side: int, n: int) -> list[int]:
    """Spatial sides after each of ``n`` stride-2, padding-1, 3x3 convolutions: 28 -> 14 -> 7 -> 4."""
    sides = [side]
    for _ in range(n):
        sides.append((sides[-1] - 1) // 2 + 1)
    return sides


def patched_shape(shape: tuple[int, int, int], patch: int, what: str) -> tuple[int, int, int]:
    """(C, H, W) as a part with ``patch`` > 1 sees it: each patch x patch block of pixels becomes
    patch² channels of one position, (C * patch², H / patch, W / patch). The patch must divide both
    sides, else a ValueError names the part and what would work."""
    c, h, w = shape
    if h % patch or w % patch:
        raise ValueError(
            f"{what}: patch {patch} does not divide the image sides {h}x{w}; use a patch that divides "
            "both (1 turns patching off)"
        )
    return (c * patch * patch, h // patch, w // patch)


def to_patches(patch: int) -> nn.Module:
    """Space-to-depth (``PixelUnshuffle``) for an encoder's input; the identity for ``patch`` = 1.

    Why: a convolution over 1-3 channels at full resolution cannot fill the CPU's 16-wide vector lanes
    along channels, and its im2col traffic costs more than its arithmetic (docs/performance.md); four
    channels at half the side hold the same pixels and feed the first convolution four times the depth.
    Neither module has parameters, so saved models with ``patch`` = 1 keep their weight names.
    """
    return nn.PixelUnshuffle(patch) if patch > 1 else nn.Identity()


def from_patches(patch: int) -> nn.Module:
    """Depth-to-space (``PixelShuffle``) for a decoder's output: the last convolution predicts patch²
    values per position at 1/patch of the side (sub-pixel convolution, Shi et al. 2016)."""
    return nn.PixelShuffle(patch) if patch > 1 else nn.Identity()


def upsample_nearest_2x(x: torch.Tensor) -> torch.Tensor:
    """Nearest-neighbour 2x upsampling of a (B, C, H, W) batch: a broadcast and one copy, in ``x``'s
    memory format (the same numbers as ``F.interpolate(x, scale_factor=2, mode="nearest")``).

    ``F.interpolate`` on a channels-last bf16 batch made it contiguous, upsampled, and left the
    next convolution to convert back, forward and backward: 14 ms of copies in a 150 ms bf16 step
    of configs/residual.yaml (docs/performance.md); the broadcast's backward is one reduction.
    """
    n, c, h, w = x.shape
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        nhwc = x.permute(0, 2, 3, 1)[:, :, None, :, None, :].expand(n, h, 2, w, 2, c)
        return nhwc.reshape(n, 2 * h, 2 * w, c).permute(0, 3, 1, 2)
    return x[:, :, :, None, :, None].expand(n, c, h, 2, w, 2).reshape(n, c, 2 * h, 2 * w)


class Upsample(nn.Module):
    """Double the side (nearest neighbour, no checkerboard artefacts) and change width with a 3x3 conv.

    ``size`` gives the exact output side instead (4 -> 7 in a 28x28 conv decoder); else the side doubles.
    """

    def __init__(self, cin: int, cout: int, size: tuple[int, int] | None = None) -> None:
        super().__init__()
        self.size = size
        self.conv = nn.Conv2d(cin, cout, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.size is None or tuple(self.size) == (2 * x.shape[-2], 2 * x.shape[-1]):
            return self.conv(upsample_nearest_2x(x))
        return self.conv(nn.functional.interpolate(x, size=self.size, mode="nearest"))


def conv_stack(width: int, n: int, act: str) -> list[nn.Module]:
    """``n`` stride-1 3x3 convolutions of one width, each followed by the activation."""
    layers: list[nn.Module] = []
    for _ in range(n):
        layers += [nn.Conv2d(width, width, 3, padding=1), activation(act)]
    return layers
