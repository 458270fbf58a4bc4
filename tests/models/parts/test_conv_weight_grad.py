"""vaelab's Conv2d: a bf16 convolution trained on a CPU with a small output takes its weight gradient
from one GEMM over the unfolded input. The gradients must be torch's (same inputs, bf16 rounding), and
every other call must be nn.Conv2d's own path."""

import pytest
import torch
from torch import nn

from vaelab.models.parts.layers import Conv2d


def _pair(cin, cout, kernel, stride, bias):
    """A vaelab Conv2d and an nn.Conv2d with the same weights."""
    torch.manual_seed(0)
    ours = Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=bias)
    ref = nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=bias)
    ref.load_state_dict(ours.state_dict())
    return ours, ref


def _grads(module, x, g, autocast):
    x = x.detach().clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        y = module(x)
    y.backward(g)
    return y, [x.grad, *(p.grad for p in module.parameters())]


def _rel_err(a, b):
    return float((a.float() - b.float()).norm() / b.float().norm())


@pytest.mark.parametrize(
    ("cin", "cout", "kernel", "stride", "side", "bias"),
    [(16, 24, 3, 1, 7, False), (16, 24, 3, 1, 7, True), (8, 12, 3, 2, 14, True), (10, 6, 1, 1, 5, True)],
)
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("autocast", [False, True])
def test_gemm_weight_gradient_matches_torch(cin, cout, kernel, stride, side, bias, channels_last, autocast):
    ours, ref = _pair(cin, cout, kernel, stride, bias)
    if not autocast:  # a bf16 model; with autocast the parameters stay fp32
        ours, ref = ours.to(torch.bfloat16), ref.to(torch.bfloat16)
    x = torch.randn(5, cin, side, side).to(torch.float32 if autocast else torch.bfloat16)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        g = torch.randn_like(ref(x))
    y, grads = _grads(ours, x, g, autocast)
    assert "GemmWeightGrad" in type(y.grad_fn).__name__  # the GEMM route was taken
    y_ref, grads_ref = _grads(ref, x, g, autocast)
    assert y.dtype == y_ref.dtype == torch.bfloat16 and torch.equal(y, y_ref)  # the forward is oneDNN's
    for got, want in zip(grads, grads_ref, strict=True):
        assert got.dtype == want.dtype and got.shape == want.shape
        assert _rel_err(got, want) < 1e-2  # bf16 rounding of differently ordered sums


def test_other_calls_keep_torchs_path():
    conv = Conv2d(4, 4, 3, padding=1)
    small, large = torch.randn(2, 4, 7, 7), torch.randn(2, 4, 14, 14)

    def route(x, dtype=None, grad=True):
        with (
            torch.set_grad_enabled(grad),
            torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype is not None),
        ):
            y = conv(x)
        return type(y.grad_fn).__name__ if y.grad_fn is not None else None

    assert "GemmWeightGrad" in route(small, torch.bfloat16)
    assert "GemmWeightGrad" not in route(large, torch.bfloat16)  # 196 positions: oneDNN's kernel
    assert "GemmWeightGrad" not in route(small)  # fp32
    assert route(small, torch.bfloat16, grad=False) is None  # inference
    conv.gemm_weight_grad_max_positions = 0  # switched off
    assert "GemmWeightGrad" not in route(small, torch.bfloat16)


def test_compiled_bf16_convolution_gives_the_eager_gradients():
    """torch.compile traces the custom backward: same weight gradient as eager within bf16 rounding."""
    torch.manual_seed(0)
    net = nn.Sequential(Conv2d(8, 16, 3, padding=1), nn.SiLU(), Conv2d(16, 8, 3, stride=2, padding=1))
    x = torch.randn(4, 8, 7, 7).contiguous(memory_format=torch.channels_last)

    def weight_grads(fn):
        net.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = fn(x).float().square().mean()
        loss.backward()
        return [p.grad.clone() for p in net.parameters()]

    eager = weight_grads(net)
    compiled = weight_grads(torch.compile(net, fullgraph=True))
    for got, want in zip(compiled, eager, strict=True):
        assert _rel_err(got, want) < 2e-2
