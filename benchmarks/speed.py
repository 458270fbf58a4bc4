"""How fast vaelab trains, evaluates and samples on a CPU: the training step under each speed switch, where
its time goes, single convolutions, pythae's MNIST network beside it, and torchrun over processes."""

from __future__ import annotations

import functools
import itertools
import re
import statistics
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F

from benchmarks.harness import REPO, benchmark, images_per_s, measure, round_robin, usable_cores, vaelab
from vaelab.config import load_config
from vaelab.data import batches as batches_of
from vaelab.data import load_dataset, to_float
from vaelab.evaluation import iw_log_likelihood_batch
from vaelab.generation import sample
from vaelab.io.metrics import read_metrics
from vaelab.models import VAE
from vaelab.objectives import build_objective
from vaelab.perf import DTYPES, count_flops, matmul_peak
from vaelab.runtime import seed_everything
from vaelab.training.step import build_step, step_flops
from vaelab.training.trainer import build_optimizer, resolve_model_config

SEED_CONFIG = str(REPO / "configs" / "seed.yaml")
CPU, CHANNELS_LAST = torch.device("cpu"), torch.channels_last
# Each speed switch as config overrides; a variant joins switches with "+" (bf16+compile).
SWITCHES = {
    "fp32": [],
    "bf16": ["train.precision=bf16"],
    "channels_last": ["train.channels_last=true"],
    "compile": ["train.compile=true"],
    "nchw": ["train.channels_last=false"],  # for configs that switch channels_last on
    "noflush": ["train.flush_denormals=false"],
    "onednn_wgrad": [],  # oneDNN's weight gradient for every convolution, not vaelab's GEMM route
}
# configs/residual.yaml (patch 2): the stem, 64 channels at 14x14, the stride-2 step, 128 at 7x7, the
# decoder's widths back, and the 4-channel output convolution.
RESIDUAL_SHAPES = ("4x64@14", "64x64@14", "64x128@14/2", "128x128@7", "128x64@14", "64x4@14")
LITERATURE_PASSES = 5000 * 10_000  # the literature's evaluation: K = 5000 on the 10,000 test images


def setup(config_file: str, overrides: Iterable[str] = (), image_shape: Iterable[int] = (1, 28, 28)):
    """Config, model, objective, training step (what ``vaelab train`` runs) and one fixed batch for
    ``config_file`` on the CPU: binarised pixels for a Bernoulli likelihood, 8-bit levels otherwise."""
    config = load_config(config_file, ["train.device=cpu", *overrides])
    config = resolve_model_config(config, tuple(image_shape))
    seed_everything(config.train.seed)
    model = VAE(config.model)
    if config.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    objective = build_objective(config.objective)
    step = build_step(model, objective, build_optimizer(model, config), config.train, CPU)
    gen, shape = torch.Generator().manual_seed(0), (config.train.batch_size, *config.model.image_shape)
    if config.model.likelihood.name == "bernoulli":
        return config, model, objective, step, torch.bernoulli(torch.full(shape, 0.13), generator=gen)
    return config, model, objective, step, torch.randint(0, 256, shape, generator=gen) / 255.0


@benchmark
def throughput(
    config: str = SEED_CONFIG,
    overrides: tuple[str, ...] = (),
    image_shape: tuple[int, ...] = (1, 28, 28),
    variants: tuple[str, ...] = ("fp32", "bf16"),
    steps: int = 20,
    rounds: int = 5,
    iw_images: int = 100,
    iw_k: int = 1000,
    iw_repeats: int = 3,
    iw_variants: tuple[Literal["fp32", "bf16", "fp32+compile", "bf16+compile"], ...] = ("fp32", "bf16"),
    skip: tuple[Literal["train", "iw_eval", "sampling"], ...] = (),
) -> dict[str, Any]:
    """Training, evaluation and sampling speed of one config, each speed switch in the same process.

    train: images/s of the training step per --variants entry (switches joined by "+": fp32, bf16,
    channels_last, compile, nchw, noflush, onednn_wgrad), timed in turn, --rounds of --steps steps, with
    the fraction of the matmul peak measured at the start and again after every round. iw_eval: decoder
    passes/s of importance-weighted evaluation and the projected time of K = 5000 on 10,000 images.
    sampling: the latency of one image and of 1024.
    """
    _, model, *_ = setup(config, overrides, image_shape)
    precisions = sorted({"fp32"} | {"bf16" for v in [*variants, *iw_variants] if "bf16" in v})
    results: dict[str, Any] = {"matmul_peak_gflop_per_s": {p: matmul_peak(p) / 1e9 for p in precisions}}
    if "train" not in skip:
        results["train"] = train_rates(config, overrides, image_shape, variants, steps, rounds)
    if "iw_eval" not in skip:
        results["iw_eval"] = [iw_rate(model.eval(), iw_images, iw_k, iw_repeats, v) for v in iw_variants]
    for n, repeats in ((1, 200), (1024, 20)) if "sampling" not in skip else ():
        results[f"sample_{n}"] = measure(lambda n=n: sample(model.eval(), n), repeats, warmup=5).summary("ms")
    return results


def train_rates(
    config: str,
    overrides: Iterable[str],
    image_shape: Iterable[int],
    variants: Iterable[str],
    steps: int,
    rounds: int,
) -> list[dict[str, Any]]:
    """Images/s of each variant's training step, timed in turn, with a fresh matmul peak after each round."""
    built = {}
    for v in variants:
        switches = [override for switch in v.split("+") for override in SWITCHES[switch]]
        built[v] = setup(config, [*overrides, *switches], image_shape)
        for module in built[v][1].modules() if "onednn_wgrad" in v else ():
            if hasattr(module, "gemm_weight_grad_max_positions"):  # vaelab's Conv2d
                module.gemm_weight_grad_max_positions = 0
    peaks: dict[str, list[float]] = {c.train.precision: [] for c, *_ in built.values()}

    def measure_peaks() -> None:  # this machine's speed drifts: a peak beside every round
        for precision, found in peaks.items():
            found.append(matmul_peak(precision, fresh=True))

    warmup = 15 if any("compile" in v for v in variants) else 5  # compilation happens in the warm-up
    steps_of = {v: functools.partial(step, x) for v, (_, _, _, step, x) in built.items()}
    timings = round_robin(steps_of, rounds, steps, warmup, measure_peaks)
    out = []
    for v, (c, model, objective, _, x) in built.items():
        time, round_peaks = timings[v], peaks[c.train.precision]
        flops = step_flops(model, objective, c.train, CPU)
        ratios = [flops.per_image * len(x) / t / peak for t, peak in zip(time.wall, round_peaks, strict=True)]
        row = {"variant": v, "images_per_s": len(x) / time.median, "step": time.summary("ms")}
        row |= flops.rates(row["images_per_s"]) | {"peak_fraction_interleaved": statistics.median(ratios)}
        out.append(row | {"peak_gflop_per_s_rounds": [peak / 1e9 for peak in round_peaks]})
    for row in out:
        row[f"speedup_over_{out[0]['variant']}"] = row["images_per_s"] / out[0]["images_per_s"]
    return out


def iw_rate(model: VAE, images: int, k: int, repeats: int, variant: str) -> dict[str, Any]:
    """Decoder passes/s of importance-weighted evaluation in one variant (fp32 or bf16, maybe +compile;
    untrained weights: the time does not depend on them), and what K = 5000 on 10,000 images would take."""
    precision, compiled = variant.split("+")[0], variant.endswith("+compile")
    gen = torch.Generator().manual_seed(2)
    x = torch.bernoulli(torch.full((images, *model.image_shape), 0.13), generator=gen)
    with torch.no_grad():
        per_pass = count_flops(lambda: model.decoder(torch.zeros(1, model.latent_dim)))
    means: list[float] = []

    def estimate() -> None:
        log_px = iw_log_likelihood_batch(model, x, k, precision=precision, compile=compiled)[k]
        means.append(float(log_px.mean()))

    time = measure(estimate, repeats)  # the warm-up call compiles
    passes = images * k / time.median
    return {
        "variant": variant,
        "images": images,
        "k": k,
        "seconds": time.summary("s"),
        "decoder_passes_per_s": passes,
        "decoder_gflop_per_pass": per_pass / 1e9,
        "peak_fraction": passes * per_pass / matmul_peak(precision),
        "projected_seconds_k5000_x_10000": LITERATURE_PASSES / passes,
        "mean_log_px": means,
    }


@benchmark
def profile_step(
    config: str = SEED_CONFIG,
    overrides: tuple[str, ...] = (),
    image_shape: tuple[int, ...] = (1, 28, 28),
    steps: int = 50,
    repeats: int = 5,
    warmup: int = 10,
    top: int = 15,
) -> dict[str, Any]:
    """Where a training step's time goes: torch.profiler over the step users train with, for any config.

    ms per step (--repeats of --steps after --warmup steps), images/s, FLOPs against the matmul peak, and
    the --top ops by self CPU time over up to 20 more steps (their table also goes to stderr).
    """
    from torch.profiler import ProfilerActivity, profile

    c, model, objective, step, x = setup(config, overrides, image_shape)
    time = measure(lambda: step(x), repeats, steps, warmup)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(min(steps, 20)):
            step(x)
    events = prof.key_averages()
    print(events.table(sort_by="self_cpu_time_total", row_limit=top), file=sys.stderr)
    total_ms = sum(e.self_cpu_time_total for e in events) / 1e3 or 1.0
    ops = [{"op": e.key, "calls": e.count, "self_cpu_ms": e.self_cpu_time_total / 1e3} for e in events]
    ops = sorted(ops, key=lambda op: op["self_cpu_ms"], reverse=True)[:top]
    for op in ops:
        op["share"] = op["self_cpu_ms"] / total_ms
    rate = len(x) / time.median
    out = {"batch_size": len(x), "images_per_s": rate, "step": time.summary("ms")}
    return out | step_flops(model, objective, c.train, CPU).rates(rate) | {"top_ops_self_cpu": ops}


@benchmark
def conv_kernels(
    shapes: tuple[str, ...] = RESIDUAL_SHAPES,
    precisions: tuple[Literal["fp32", "bf16"], ...] = ("fp32", "bf16"),
    batch: int = 128,
    repeats: int = 10,
) -> dict[str, Any]:
    """One 3x3 convolution's three passes, timed alone: where a convolutional network's FLOP/s stop.

    For each CINxCOUT@SIDE[/STRIDE] shape and precision, channels-last: the forward and oneDNN's backward
    for the input and for the weights, as GFLOP/s and as a fraction of the matmul peak measured around
    the shape; beside oneDNN's weight gradient, two other routes to it, checked against it: im2col_gemm
    (vaelab's Conv2d for small bf16 convolutions) and as_forward_conv (stride 1).
    """
    return {"shapes": [conv_passes(shape, p, batch, repeats) for p in precisions for shape in shapes]}


def conv_passes(shape: str, precision: str, batch: int, repeats: int) -> dict[str, Any]:
    """GFLOP/s of a 3x3, padding-1 convolution's passes and weight-gradient routes at ``shape``."""
    from vaelab.models.parts.layers import gemm_weight_grad

    cin, cout, side, stride = (int(n) for n in re.split("[x@/]", shape + "/1")[:4])  # 64x128@14/2
    gen = torch.Generator().manual_seed(0)

    def rand(*size: int) -> torch.Tensor:
        return torch.randn(*size, generator=gen).to(DTYPES[precision]).contiguous(memory_format=CHANNELS_LAST)

    x, w = rand(batch, cin, side, side), rand(cout, cin, 3, 3) / (3 * cin**0.5)
    gy = rand(*F.conv2d(x, w, None, stride, 1).shape)
    flops = 2 * batch * cout * gy.shape[2] * gy.shape[3] * cin * 9

    def backward(*mask: bool) -> tuple[torch.Tensor, ...]:  # what autograd calls: oneDNN on a CPU
        return torch.ops.aten.convolution_backward(
            gy, x, w, None, [stride] * 2, [1, 1], [1, 1], False, [0, 0], 1, mask
        )

    def as_forward_conv() -> torch.Tensor:  # batch and channels swap; the output gradient is the kernel
        swapped = [a.transpose(0, 1).contiguous(memory_format=CHANNELS_LAST) for a in (x, gy)]
        return F.conv2d(*swapped, None, 1, 1).transpose(0, 1)

    passes = {
        "forward": lambda: F.conv2d(x, w, None, stride, 1),
        "backward_input": lambda: backward(True, False, False),
        "backward_weight": lambda: backward(False, True, False)[1],
        "backward_weight_im2col_gemm": lambda: gemm_weight_grad(x, gy, w.shape, (stride,) * 2, (1, 1))[0],
    }
    if stride == 1:
        passes["backward_weight_as_forward_conv"] = as_forward_conv
    reference = passes["backward_weight"]().float()
    routes = {name: fn for name, fn in passes.items() if "weight" in name}
    errors = {
        name: float((fn().float() - reference).norm() / reference.norm()) for name, fn in routes.items()
    }
    first_peak = matmul_peak(precision, fresh=True)
    gflops = {name: flops / measure(fn, repeats).median / 1e9 for name, fn in passes.items()}
    peak = statistics.median([first_peak, matmul_peak(precision, fresh=True)]) / 1e9
    fractions = {name: g / peak for name, g in gflops.items()}
    return {
        "shape": shape,
        "precision": precision,
        "gflop": flops / 1e9,
        "gflop_per_s": gflops,
        "peak_gflop_per_s": peak,
        "peak_fraction": fractions,
        "relative_error_vs_onednn": errors,
    }


@benchmark
def peer_pythae(
    config: str = str(REPO / "configs" / "residual.yaml"),
    overrides: tuple[str, ...] = (),
    batch: int = 100,
    steps: int = 20,
    rounds: int = 5,
) -> dict[str, Any]:
    """vaelab against its peer pythae on MNIST: pythae's ResNet benchmark network beside --config.

    pythae (`pip install 'vaelab[peer]'`, never a dependency of vaelab) trains its MNIST benchmark VAE
    (Encoder_ResNet_VAE_MNIST / Decoder_ResNet_AE_MNIST, BCE + KL, Adam 1e-3); vaelab trains --config at
    latent 16 with its own step; both on the same dynamically binarised batches, in turn after a
    warm-up round: images/s, FLOPs per image and the fraction of the fp32 peak.
    """
    from pythae.data.datasets import DatasetOutput
    from pythae.models import VAE as PythaeVAE
    from pythae.models import VAEConfig
    from pythae.models.nn.benchmarks.mnist import Decoder_ResNet_AE_MNIST, Encoder_ResNet_VAE_MNIST

    gen = torch.Generator().manual_seed(0)
    data = load_dataset(load_config(config).data, "train", progress=False)
    loader = itertools.islice(batches_of(data, batch, shuffle=True, generator=gen), steps * (rounds + 1))
    xs = [to_float(images, "dynamic", generator=gen) for images, _ in loader]
    peer_config = VAEConfig(input_dim=(1, 28, 28), latent_dim=16, reconstruction_loss="bce")
    peer = PythaeVAE(peer_config, Encoder_ResNet_VAE_MNIST(peer_config), Decoder_ResNet_AE_MNIST(peer_config))
    optimizer = torch.optim.Adam(peer.parameters(), lr=1e-3)

    def peer_step(x: torch.Tensor) -> None:
        loss = peer(DatasetOutput(data=x)).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    c, model, objective, step, _ = setup(
        config, ["model.latent_dim=16", f"train.batch_size={batch}", *overrides]
    )
    peer_flops = count_flops(lambda: peer(DatasetOutput(data=torch.zeros(batch, 1, 28, 28))).loss.backward())
    sides = {
        "pythae_resnet_mnist": (peer_step, peer_flops / batch, peer),
        f"vaelab_{Path(config).stem}": (step, step_flops(model, objective, c.train, CPU).per_image, model),
    }

    def stepper(step: Callable[[torch.Tensor], None]) -> Callable[[], None]:
        """The next of the same batches at each call: a round of them to warm up, then a round each."""
        feed = iter(xs)
        return lambda: step(next(feed))

    timings = round_robin(
        {name: stepper(side[0]) for name, side in sides.items()}, rounds, steps, warmup=steps
    )
    peak, results = matmul_peak("fp32"), []
    for name, (_, flops, net) in sides.items():
        rate = batch / timings[name].median
        row = {"model": name, "images_per_s": rate, "step": timings[name].summary("ms")}
        row |= {"gflop_per_image": flops / 1e9, "peak_fraction": rate * flops / peak}
        results.append(row | {"parameters": sum(p.numel() for p in net.parameters())})
    ratio = results[1]["images_per_s"] / results[0]["images_per_s"]
    return {"fp32_matmul_peak_gflop_per_s": peak / 1e9, "sides": results, "vaelab_over_pythae": ratio}


@benchmark
def scaling(
    steps: int = 400, procs: tuple[int, ...] = (1, 2), batches: tuple[int, ...] = (128, 512), repeats: int = 2
) -> dict[str, Any]:
    """The seed VAE on MNIST in 1 process and under torchrun over P processes (gloo, CPU), same global
    batch, the usable cores shared out as threads: training images/s, median over --repeats runs."""
    rows = []
    for batch, processes in itertools.product(batches, procs):
        threads, speeds = max(1, usable_cores() // processes), []
        cli = ["train", f"--config={SEED_CONFIG}", "--epochs=100", f"--batch-size={batch}", "--device=cpu"]
        cli += [f"--set=train.max_steps={steps}", f"--set=train.num_threads={threads}", "--no-progress"]
        for _ in range(repeats):
            with tempfile.TemporaryDirectory() as tmp:
                vaelab(
                    *cli,
                    "--set=train.image_every=1000",
                    "--run-dir",
                    tmp,
                    processes=processes,
                    threads=threads,
                )
                speeds.append(images_per_s(read_metrics(tmp)))
        row = {"global_batch": batch, "processes": processes, "threads_per_process": threads}
        rows.append(row | {"images_per_s_median": statistics.median(speeds), "images_per_s": speeds})
    return {"rows": rows}
