"""The speed switches change speed, not the maths: each path's loss on a fixed batch against eager fp32."""

import copy

import pytest
import torch
from torch import nn

from vaelab.config import load_config
from vaelab.models import VAE
from vaelab.objectives import build_objective
from vaelab.perf import count_flops, cpu_features, matmul_peak
from vaelab.training.step import amp_settings, build_step, resolve_precision, step_flops
from vaelab.training.trainer import build_optimizer

CONV = [
    "model.encoder.name=conv",
    "model.encoder.channels=[8,16]",
    "model.encoder.hidden_dim=32",
    "model.decoder.name=conv",
    "model.decoder.channels=[16,8]",
    "model.decoder.hidden_dim=32",
]
MLP = ["model.encoder.hidden_dims=[64]", "model.decoder.hidden_dims=[64]"]


def _setup(*overrides: str):
    config = load_config(
        overrides=["model.image_shape=[1,12,12]", "model.latent_dim=4", "train.device=cpu", *overrides]
    )
    torch.manual_seed(0)
    model = VAE(config.model)
    x = torch.bernoulli(torch.full((16, 1, 12, 12), 0.3), generator=torch.Generator().manual_seed(1))
    return config, model, x


def _one_step(config, model, x):
    """Loss of one step on ``x`` with a fixed noise seed, and the weights after the update."""
    model = copy.deepcopy(model)
    if config.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    step = build_step(
        model,
        build_objective(config.objective),
        build_optimizer(model, config),
        config.train,
        torch.device("cpu"),
    )
    torch.manual_seed(123)
    loss = step(x)[0].loss.item()
    return loss, torch.cat([p.detach().flatten() for p in model.parameters()])


@pytest.mark.parametrize(
    ("arch", "switch", "rel"),
    [
        (CONV, "train.channels_last=true", 1e-5),  # same kernels' maths, other memory order
        (MLP, "train.precision=bf16", 2e-2),  # 8-bit mantissa in the matmuls
        (CONV, "train.precision=bf16", 2e-2),
    ],
)
def test_switch_gives_the_reference_loss(arch, switch, rel):
    config, model, x = _setup(*arch)
    ref_loss, ref_w = _one_step(config, model, x)
    fast_config, _, _ = _setup(*arch, switch)
    loss, w = _one_step(fast_config, model, x)
    assert loss == pytest.approx(ref_loss, rel=rel)
    if rel < 1e-4:  # the same gradients, so the same Adam update (in bf16 tiny gradients may flip sign,
        # and Adam's first step moves every weight by lr * sign(g), so weights are not compared there)
        assert (w - ref_w).abs().max() < 1e-6


def test_compiled_step_gives_the_reference_loss(monkeypatch):
    """torch.compile (inductor) of forward + objective: same loss and update within float rounding.
    ``fallback_random`` makes the compiled graph draw the reparameterisation noise from torch's
    generator, as eager does, so both paths see the same z."""
    import torch._inductor.config as inductor_config

    monkeypatch.setattr(inductor_config, "fallback_random", True)
    config, model, x = _setup(*MLP)
    ref_loss, ref_w = _one_step(config, model, x)
    compiled_config, _, _ = _setup(*MLP, "train.compile=true")
    loss, w = _one_step(compiled_config, model, x)
    assert loss == pytest.approx(ref_loss, rel=1e-5)
    assert (w - ref_w).abs().max() < 1e-6


def test_compiled_step_is_one_graph_even_on_a_cold_kl_dispatch():
    """The first kl_divergence call for a pair of types runs torch.distributions' dispatch (``min`` over
    a generator), which dynamo cannot trace: compiled first, the step broke into three graphs. The step
    builder runs the function once eagerly first, so the compiled step is one graph."""
    import torch.distributions.kl as kl_module
    from torch._dynamo.utils import counters

    kl_module._KL_MEMOIZE.clear()  # as in a fresh process
    torch._dynamo.reset()
    counters.clear()
    config, model, x = _setup(*MLP, "train.compile=true")
    optimizer = build_optimizer(model, config)
    step = build_step(model, build_objective(config.objective), optimizer, config.train, torch.device("cpu"))
    for _ in range(2):
        step(x)
    assert counters["stats"]["unique_graphs"] == 1
    assert not counters["graph_break"]


@pytest.mark.parametrize("mode", ["default", "reduce-overhead"])
def test_compile_mode_reaches_torch_compile(monkeypatch, mode):
    """``train.compile_mode`` is torch.compile's ``mode`` (reduce-overhead: CUDA graphs on a GPU)."""
    seen = []
    monkeypatch.setattr(torch, "compile", lambda fn, mode: seen.append(mode) or fn)
    config, model, x = _setup(*MLP, "train.compile=true", f"train.compile_mode={mode}")
    optimizer = build_optimizer(model, config)
    step = build_step(model, build_objective(config.objective), optimizer, config.train, torch.device("cpu"))
    assert torch.isfinite(step(x)[0].loss) and seen == [mode]
    with pytest.raises(ValueError, match="compile_mode"):
        _setup("train.compile_mode=fast")


@pytest.mark.parametrize(
    ("flags", "expected"), [({}, "fp32"), ({"avx512_bf16"}, "bf16"), ({"amx_bf16"}, "bf16")]
)
def test_auto_precision_is_bf16_only_where_the_cpu_runs_it_fast(monkeypatch, flags, expected):
    from vaelab import perf

    monkeypatch.setattr(perf, "cpu_features", lambda: {f: f in flags for f in perf.MATMUL_CPU_FEATURES})
    assert resolve_precision("auto", "cpu") == expected
    assert amp_settings("auto", "cpu") == amp_settings(expected, "cpu")
    assert resolve_precision("fp32", "cpu") == "fp32" and resolve_precision("bf16", "cpu") == "bf16"
    config, model, _ = _setup(*MLP, "train.precision=auto")
    assert (
        step_flops(model, build_objective(config.objective), config.train, torch.device("cpu")).precision
        == expected
    )


def test_fp16_needs_cuda_and_bf16_needs_no_loss_scaling():
    assert amp_settings("fp32", "cpu").dtype is None
    assert amp_settings("bf16", "cpu") == amp_settings("bf16", "cuda")
    assert not amp_settings("bf16", "cuda").grad_scaling  # bf16 has fp32's exponent range
    fp16 = amp_settings("fp16", "cuda")
    assert fp16.dtype == torch.float16 and fp16.grad_scaling
    with pytest.raises(ValueError, match="fp16 needs a CUDA GPU"):
        amp_settings("fp16", "cpu")
    config, model, _ = _setup(*MLP, "train.precision=fp16")
    with pytest.raises(ValueError, match="use bf16 on a CPU"):
        build_step(
            model,
            build_objective(config.objective),
            build_optimizer(model, config),
            config.train,
            torch.device("cpu"),
        )


def test_flop_counter_matches_a_hand_count_for_a_linear_layer():
    """y = x W^T + b, x: (B, in): forward 2*in*out*B FLOPs; backward the same twice (dL/dx, dL/dW)."""
    b, n_in, n_out = 8, 20, 30
    layer = nn.Linear(n_in, n_out)
    x = torch.randn(b, n_in, requires_grad=True)
    assert count_flops(lambda: layer(x)) == 2 * n_in * n_out * b
    assert count_flops(lambda: layer(x).sum().backward()) == 3 * 2 * n_in * n_out * b


def test_step_flops_of_the_mlp_and_the_logged_rates():
    config, model, _ = _setup("model.encoder.hidden_dims=[64]", "model.decoder.hidden_dims=[]")
    flops = step_flops(model, build_objective(config.objective), config.train, torch.device("cpu"))
    # encoder 144->64->(2x4), decoder 4->144; input of the first layer needs no gradient (x 2, not 3)
    per_image = 2 * (2 * 144 * 64) + 3 * 2 * (64 * 8 + 4 * 144)
    assert flops.per_image == per_image
    rates = flops.rates(1000.0)
    assert rates["gflop_per_s"] == pytest.approx(per_image * 1000 / 1e9)
    assert rates["peak_fraction"] == pytest.approx(per_image * 1000 / flops.peak)
    assert flops.rates(1000.0, processes=2)["peak_fraction"] == pytest.approx(rates["peak_fraction"] / 2)


def test_matmul_peak_is_measured_once_and_cpu_features_are_booleans():
    assert matmul_peak("fp32", n=128, seconds=0.01) == matmul_peak("fp32", n=128, seconds=0.01)
    assert 0 < matmul_peak("fp32", n=128, seconds=0.01) < float("inf")  # a rate, whatever the load
    with pytest.raises(ValueError, match="precision must be one of"):
        matmul_peak("fp64")
    assert set(cpu_features()) >= {"avx512_bf16", "amx_bf16"}
    assert all(isinstance(v, bool) for v in cpu_features().values())
