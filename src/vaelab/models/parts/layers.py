"""Small building blocks shared by encoder and decoder parts."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vaelab.errors import ConfigError

Shape = tuple[int, int, int]  # (channels, height, width) of an image or a part's output

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
    sides, else a ConfigError names the part and what would work."""
    c, h, w = shape
    if h % patch or w % patch:
        raise ConfigError(
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


def _unfold_nhwc(
    x: torch.Tensor,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    out: tuple[int, int],
) -> torch.Tensor:
    """The input patches of every output position as rows, (N * Ho * Wo, kh * kw * C) in (kh, kw, C)
    order: the layout of a channels-last weight, so the GEMM's result is the weight gradient as is.
    Strided slices and one stack, not ``as_strided``: inductor may lay the padded tensor out anew, and
    an ``as_strided`` view of it then reads the wrong elements (a test compares compiled gradients)."""
    (kh, kw), (sh, sw), (ph, pw), (ho, wo) = kernel, stride, padding, out
    xp = F.pad(x.permute(0, 2, 3, 1), (0, 0, pw, pw, ph, ph))  # (N, H + 2ph, W + 2pw, C)
    taps = [xp[:, i : i + sh * ho : sh, j : j + sw * wo : sw] for i in range(kh) for j in range(kw)]
    return torch.stack(taps, dim=3).reshape(-1, kh * kw * x.shape[1])


def gemm_weight_grad(
    x: torch.Tensor,
    grad_out: torch.Tensor,
    weight_shape: torch.Size | tuple[int, ...],
    stride: tuple[int, int],
    padding: tuple[int, int],
) -> tuple[torch.Tensor, torch.Tensor]:
    """The gradients of a convolution's weight (``weight_shape``, groups 1, dilation 1) and bias from
    its input ``x`` and output gradient: (OC x N*Ho*Wo) @ (N*Ho*Wo x kh*kw*C), one GEMM, and a row sum."""
    oc, c, kh, kw = weight_shape
    g = grad_out.permute(1, 0, 2, 3).reshape(oc, -1)  # (OC, N * Ho * Wo)
    rows = _unfold_nhwc(x, (kh, kw), stride, padding, tuple(grad_out.shape[2:]))
    grad_w = (g @ rows).view(oc, kh, kw, c).permute(0, 3, 1, 2)
    return grad_w, g.sum(1, dtype=torch.float32).to(g.dtype)


class _GemmWeightGradConv2d(torch.autograd.Function):
    """``F.conv2d`` whose backward takes the input gradient from oneDNN and the weight gradient (and
    the bias's) from one matmul over the unfolded input."""

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding):  # type: ignore[override]
        ctx.save_for_backward(x, weight)
        ctx.stride, ctx.padding, ctx.has_bias = stride, padding, bias is not None
        return F.conv2d(x, weight, bias, stride, padding)

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        x, weight = ctx.saved_tensors
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.ops.aten.convolution_backward(
                grad_out, x, weight, None, list(ctx.stride), list(ctx.padding), [1, 1], False, [0, 0], 1,
                [True, False, False],
            )[0]  # fmt: skip
        if ctx.needs_input_grad[1] or (ctx.has_bias and ctx.needs_input_grad[2]):
            grad_w, grad_b = gemm_weight_grad(x, grad_out, weight.shape, ctx.stride, ctx.padding)
            grad_b = grad_b if ctx.has_bias else None
        return grad_x, grad_w, grad_b, None, None


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` (same parameters, same saved weights) whose bf16 weight gradient on a CPU, for
    small outputs (<= ``gemm_weight_grad_max_positions`` positions per image), is one GEMM over the
    unfolded input instead of oneDNN's backward-weights kernel.

    Why: on a CPU with AMX, oneDNN's bf16 backward-weights convolution runs at a third of its forward
    (128 channels at 7x7: 214 GFLOP/s against 738), and it was 61% of configs/residual.yaml's bf16
    step; the GEMM (OC x N*H*W) @ (N*H*W x 9C) runs 1.6-1.8x faster (benchmark conv_kernels), the
    bf16 + compile step 1.10x (docs/performance.md). For larger maps the unfolded input (9x the
    activations) costs more than it saves, and in fp32 oneDNN's kernel is as fast as its forward, so
    everything else is untouched.
    """

    # Output positions per image (Ho x Wo) up to which the GEMM route is taken: 7x7 maps (49) and
    # smaller, not 14x14 (196: measured slower). 0 turns it off for this module (benchmarks compare).
    gemm_weight_grad_max_positions: int = 64

    def _conv_forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if not self._gemm_weight_grad(x):
            return super()._conv_forward(x, weight, bias)
        if torch.is_autocast_enabled("cpu"):  # cast as autocast would, then run the function outside it
            dtype = torch.get_autocast_dtype("cpu")
            x, weight = x.to(dtype), weight.to(dtype)
            bias = None if bias is None else bias.to(dtype)
            with torch.autocast("cpu", enabled=False):
                return _GemmWeightGradConv2d.apply(x, weight, bias, self.stride, self.padding)
        return _GemmWeightGradConv2d.apply(x, weight, bias, self.stride, self.padding)

    def _gemm_weight_grad(self, x: torch.Tensor) -> bool:
        """Whether this call takes the GEMM route: training a bf16 convolution on a CPU, small output."""
        if x.device.type != "cpu" or not (torch.is_grad_enabled() and self.weight.requires_grad):
            return False
        bf16 = x.dtype == torch.bfloat16 or (
            torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
        )
        if not bf16 or self.groups != 1 or self.dilation != (1, 1) or self.padding_mode != "zeros":
            return False
        if isinstance(self.padding, str):
            return False
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        ho, wo = (x.shape[-2] + 2 * ph - kh) // sh + 1, (x.shape[-1] + 2 * pw - kw) // sw + 1
        return ho * wo <= self.gemm_weight_grad_max_positions


class Upsample(nn.Module):
    """Double the side (nearest neighbour, no checkerboard artefacts) and change width with a 3x3 conv.

    ``size`` gives the exact output side instead (4 -> 7 in a 28x28 conv decoder); else the side doubles.
    """

    def __init__(self, cin: int, cout: int, size: tuple[int, int] | None = None) -> None:
        super().__init__()
        self.size = size
        self.conv = Conv2d(cin, cout, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.size is None or tuple(self.size) == (2 * x.shape[-2], 2 * x.shape[-1]):
            return self.conv(upsample_nearest_2x(x))
        return self.conv(nn.functional.interpolate(x, size=self.size, mode="nearest"))


def conv_stack(width: int, n: int, act: str) -> list[nn.Module]:
    """``n`` stride-1 3x3 convolutions of one width, each followed by the activation."""
    layers: list[nn.Module] = []
    for _ in range(n):
        layers += [Conv2d(width, width, 3, padding=1), activation(act)]
    return layers
