"""How fast vaelab trains, evaluates and samples on a CPU: the training step under each speed switch and
where its time goes, single convolutions, pythae's MNIST network beside it, and torchrun over processes."""

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
from torch import profiler

from benchmarks.harness import REPO, benchmark, measure, round_robin, train_cli, usable_cores
from vaelab.config import RunConfig, load_config
from vaelab.data import batches, load_dataset, to_float
from vaelab.evaluation import iw_log_likelihood_batch
from vaelab.evaluation.features import FeatureNet, FeatureNetConfig
from vaelab.generation import sample
from vaelab.models import VAE
from vaelab.models.parts.layers import gemm_weight_grad
from vaelab.objectives import build_objective
from vaelab.objectives.perceptual import vgg16_features
from vaelab.perf import DTYPES, count_flops, matmul_peak
from vaelab.runtime import seed_everything
from vaelab.training.objective import tapped_feature_net
from vaelab.training.step import StepFlops, build_step, step_flops
from vaelab.training.trainer import build_optimizer, resolve_model_config

SEED_CONFIG = str(REPO / "configs" / "seed.yaml")
CPU, CHANNELS_LAST = torch.device("cpu"), torch.channels_last
# Each speed switch as config overrides; a variant joins switches with "+" (bf16+compile) or "-".
SWITCHES = {
    "fp32": ["train.precision=fp32"],  # also where the config says auto (bf16 on AMX CPUs and GPUs)
    "vaelab": [],  # the config as it is
    "bf16": ["train.precision=bf16"],
    "channels_last": ["train.channels_last=true"],
    "compile": ["train.compile=true"],
    "cudagraphs": ["train.compile=true", "train.compile_mode=reduce-overhead"],  # compile + CUDA graphs
    "nchw": ["train.channels_last=false"],  # for configs that switch channels_last on
    "noflush": ["train.flush_denormals=false"],
    "onednn_wgrad": [],  # oneDNN's weight gradient for every convolution, not vaelab's GEMM route
}
# configs/residual.yaml (patch 2): the stem, 64 channels at 14x14, the stride-2 step, 128 at 7x7, the
# decoder's widths back, and the 4-channel output convolution.
RESIDUAL_SHAPES = ("4x64@14", "64x64@14", "64x128@14/2", "128x128@7", "128x64@14", "64x4@14")
LITERATURE_PASSES = 5000 * 10_000  # the literature's evaluation: K = 5000 on the 10,000 test images
Side = tuple[Callable[[], object], int, StepFlops]  # a training step's call, its images and its FLOPs


def switches(variant: str) -> list[str]:
    """The config overrides of a variant such as bf16+compile or vaelab-compile-bf16."""
    return [override for switch in re.split("[+-]", variant) for override in SWITCHES[switch]]


def build_model(config: RunConfig, image_shape: Iterable[int] | None = None) -> tuple[RunConfig, VAE]:
    """``config`` resolved for ``image_shape`` (default: the config's ``model.image_shape``, else MNIST's
    1x28x28) and its model, seeded as ``vaelab train`` seeds it."""
    shape = image_shape or config.model.image_shape or (1, 28, 28)
    config = resolve_model_config(config, tuple(shape))
    seed_everything(config.train.seed)
    return config, VAE(config.model)


def setup(
    config_file: str, overrides: Iterable[str] = (), device: torch.device = CPU
) -> tuple[VAE, Callable, torch.Tensor, StepFlops]:
    """The model of ``config_file`` on ``device``, the training step ``vaelab train`` runs, a fixed batch
    (binary pixels for a Bernoulli likelihood, 8-bit levels otherwise) and the step's FLOPs."""
    config, model = build_model(load_config(config_file, [f"train.device={device.type}", *overrides]))
    model = model.to(device)
    if config.train.channels_last:
        model = model.to(memory_format=CHANNELS_LAST)
    objective = benchmark_objective(config, model, device)
    step = build_step(model, objective, build_optimizer(model, config), config.train, device)
    gen, shape = torch.Generator().manual_seed(0), (config.train.batch_size, *config.model.image_shape)
    if config.model.likelihood.name == "bernoulli":
        x = torch.bernoulli(torch.full(shape, 0.13), generator=gen)
    else:
        x = torch.randint(0, 256, shape, generator=gen) / 255.0
    return model, step, x.to(device), step_flops(model, objective, config.train, device)


def benchmark_objective(config: RunConfig, model: VAE, device: torch.device) -> Callable:
    """``config.objective`` built for ``model`` as a run builds it, on ``device``. An adversarial
    objective whose perceptual term would use a feature net trained on the data gets an untrained one
    of the same shape: the same cost, no data needed."""
    perceptual = None
    options = config.objective
    if getattr(options, "perceptual_weight", 0.0) > 0:
        if options.perceptual_weights:
            perceptual = vgg16_features(options.perceptual_weights)
        else:
            shape = model.image_shape
            net = FeatureNet(FeatureNetConfig(image_shape=shape, num_classes=10))
            perceptual = tapped_feature_net(net, shape[0])
    objective = build_objective(options, dataset_size=60_000, model=model, perceptual=perceptual)
    return objective.to(device) if isinstance(objective, torch.nn.Module) else objective


@benchmark
def throughput(
    config: str = SEED_CONFIG,
    overrides: tuple[str, ...] = (),
    variants: tuple[str, ...] = ("fp32", "bf16"),
    steps: int = 20,
    rounds: int = 5,
    profile: int = 0,
    iw_images: int = 100,
    iw_k: int = 1000,
    iw_variants: tuple[Literal["fp32", "bf16", "fp32+compile", "bf16+compile"], ...] = ("fp32", "bf16"),
    skip: tuple[Literal["train", "iw_eval", "sampling"], ...] = (),
) -> dict[str, Any]:
    """Training, evaluation and sampling speed of one config, each speed switch in the same process.

    train: images/s of the step `vaelab train` runs per --variants entry (switches joined by "+"), in
    turn, against the matmul peak measured beside every round; --profile N: the first variant's N
    costliest ops. iw_eval: decoder passes/s of IW evaluation. sampling: latency of 1 and 1024 images.
    """
    model = setup(config, overrides)[0].eval()
    precisions = sorted({"fp32"} | {"bf16" for v in [*variants, *iw_variants] if "bf16" in v})
    results: dict[str, Any] = {"matmul_peak_gflop_per_s": {p: matmul_peak(p) / 1e9 for p in precisions}}
    if "train" not in skip:
        built = {v: setup(config, [*overrides, *switches(v)]) for v in variants}
        for module in (m for v, b in built.items() if "onednn_wgrad" in v for m in b[0].modules()):
            if hasattr(module, "gemm_weight_grad_max_positions"):  # vaelab's Conv2d
                module.gemm_weight_grad_max_positions = 0
        sides = {v: (functools.partial(step, x), len(x), flops) for v, (_, step, x, flops) in built.items()}
        warmup = 15 if any("compile" in v for v in variants) else 5  # compilation happens in the warm-up
        results["train"] = time_steps(sides, rounds, steps, warmup)
        if profile:
            results["train"][0]["top_ops_self_cpu"] = top_ops(sides[variants[0]][0], min(steps, 20), profile)
    if "iw_eval" not in skip:
        results["iw_eval"] = [iw_rate(model, iw_images, iw_k, v) for v in iw_variants]
    for n, repeats in ((1, 200), (1024, 20)) if "sampling" not in skip else ():
        results[f"sample_{n}"] = measure(lambda n=n: sample(model, n), repeats, warmup=5).summary("ms")
    return results


def time_steps(sides: dict[str, Side], rounds: int, steps: int, warmup: int) -> list[dict[str, Any]]:
    """Images/s and FLOP rates of training steps timed in turn, --rounds of --steps calls, with the matmul
    peak measured again beside every round (the machine's speed drifts)."""
    peaks: dict[str, list[float]] = {flops.precision: [] for *_, flops in sides.values()}

    def measure_peaks() -> None:
        for precision, found in peaks.items():
            found.append(matmul_peak(precision, fresh=True))

    calls = {name: call for name, (call, _, _) in sides.items()}
    timings = round_robin(calls, rounds, steps, warmup, measure_peaks)
    rows = []
    for name, (_, images, flops) in sides.items():
        time, round_peaks = timings[name], peaks[flops.precision]
        ratios = [flops.per_image * images / t / peak for t, peak in zip(time.wall, round_peaks, strict=True)]
        rate = images / time.median
        row = {"variant": name, "images_per_s": rate, "step": time.summary("ms")} | flops.rates(rate)
        row["peak_fraction_interleaved"] = statistics.median(ratios)
        rows.append(row | {"peak_gflop_per_s_rounds": [peak / 1e9 for peak in round_peaks]})
    for row in rows:
        row[f"speedup_over_{rows[0]['variant']}"] = row["images_per_s"] / rows[0]["images_per_s"]
    return rows


def top_ops(step: Callable[[], object], steps: int, top: int) -> list[dict[str, Any]]:
    """The ``top`` ops by self CPU time over ``steps`` more steps (their table also goes to stderr)."""
    with profiler.profile(activities=[profiler.ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    events = prof.key_averages()
    print(events.table(sort_by="self_cpu_time_total", row_limit=top), file=sys.stderr)
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    ops = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:top]
    return [
        {"op": e.key, "calls": e.count, "self_cpu_ms": e.self_cpu_time_total / 1e3}
        | {"share": e.self_cpu_time_total / total}
        for e in ops
    ]


def iw_rate(model: VAE, images: int, k: int, variant: str) -> dict[str, Any]:
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

    time = measure(estimate, 3)  # the warm-up call compiles
    passes = images * k / time.median
    return {
        "variant": variant,
        "seconds": time.summary("s"),
        "decoder_passes_per_s": passes,
        "decoder_gflop_per_pass": per_pass / 1e9,
        "peak_fraction": passes * per_pass / matmul_peak(precision),
        "projected_seconds_k5000_x_10000": LITERATURE_PASSES / passes,
        "mean_log_px": means,
    }


@benchmark
def conv_kernels(
    shapes: tuple[str, ...] = RESIDUAL_SHAPES,
    precisions: tuple[Literal["fp32", "bf16"], ...] = ("fp32", "bf16"),
    batch: int = 128,
) -> dict[str, Any]:
    """Where a convolutional network's FLOP/s stop: a channels-last 3x3 convolution's forward and backward
    passes per CINxCOUT@SIDE[/STRIDE] shape, against the matmul peak, and two other routes to the weight
    gradient (vaelab's im2col GEMM; as a forward convolution) checked against oneDNN's."""
    return {"shapes": [conv_passes(shape, p, batch) for p in precisions for shape in shapes]}


def conv_passes(shape: str, precision: str, batch: int) -> dict[str, Any]:
    """GFLOP/s of a 3x3, padding-1 convolution's passes and weight-gradient routes at ``shape``."""
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
    routes = {name: fn().float() for name, fn in passes.items() if "weight" in name}
    errors = {name: float((grad - reference).norm() / reference.norm()) for name, grad in routes.items()}
    first_peak = matmul_peak(precision, fresh=True)
    gflops = {name: flops / measure(fn, 10).median / 1e9 for name, fn in passes.items()}
    peak = statistics.median([first_peak, matmul_peak(precision, fresh=True)]) / 1e9
    out = {"shape": shape, "precision": precision, "gflop": flops / 1e9, "gflop_per_s": gflops}
    out |= {"peak_gflop_per_s": peak, "peak_fraction": {name: g / peak for name, g in gflops.items()}}
    return out | {"relative_error_vs_onednn": errors}


@benchmark
def peer_pythae(
    config: str = str(REPO / "configs" / "residual.yaml"),
    overrides: tuple[str, ...] = (),
    steps: int = 20,
    rounds: int = 5,
) -> dict[str, Any]:
    """vaelab against its peer pythae on MNIST, batch 100, latent 16, the same dynamically binarised
    batches in turn: pythae's ResNet benchmark VAE (`pip install 'vaelab[peer]'`) beside --config."""
    from benchmarks.pythae_peer import DatasetOutput, pythae_vae, trainer

    gen, batch = torch.Generator().manual_seed(0), 100
    data = load_dataset(load_config(config).data, "train", progress=False)
    loader = itertools.islice(batches(data, batch, shuffle=True, generator=gen), steps * (rounds + 1))
    xs = [to_float(images, "dynamic", generator=gen) for images, _ in loader]
    peer = pythae_vae((1, 28, 28), 16, "bce")
    zeros = DatasetOutput(data=torch.zeros(batch, 1, 28, 28))
    peer_flops = StepFlops(count_flops(lambda: peer(zeros).loss.backward()) / batch, matmul_peak(), "fp32")
    model, step, _, flops = setup(config, ["model.latent_dim=16", f"train.batch_size={batch}", *overrides])

    def fed(step: Callable[[torch.Tensor], object]) -> Callable[[], object]:
        """The next of the same batches at each call: a round of them to warm up, then a round each."""
        feed = iter(xs)
        return lambda: step(next(feed))

    sides = {"pythae_resnet_mnist": (fed(trainer(peer)), batch, peer_flops)}
    sides[f"vaelab_{Path(config).stem}"] = (fed(step), batch, flops)
    rows = time_steps(sides, rounds, steps, warmup=steps)
    for row, net in zip(rows, (peer, model), strict=True):
        row["parameters"] = sum(p.numel() for p in net.parameters())
    return {"fp32_matmul_peak_gflop_per_s": matmul_peak() / 1e9, "sides": rows}


@benchmark
def scaling(
    steps: int = 400, procs: tuple[int, ...] = (1, 2), batches: tuple[int, ...] = (128, 512), repeats: int = 2
) -> dict[str, Any]:
    """The seed VAE on MNIST in 1 process and under torchrun over P processes (gloo, CPU), same global
    batch, the usable cores shared out as threads: training images/s, median over --repeats runs."""
    rows = []
    for batch, processes in itertools.product(batches, procs):
        threads, speeds = max(1, usable_cores() // processes), []
        cli = ["--config", SEED_CONFIG, "--epochs=100", f"--batch-size={batch}", "--device=cpu"]
        cli += [f"--set=train.max_steps={steps}", f"--set=train.num_threads={threads}"]
        cli += ["--set=train.image_every=1000"]
        for _ in range(repeats):
            with tempfile.TemporaryDirectory() as tmp:
                speeds.append(train_cli(tmp, *cli, processes=processes, threads=threads)["images_per_s"])
        row = {"global_batch": batch, "processes": processes, "threads_per_process": threads}
        rows.append(row | {"images_per_s_median": statistics.median(speeds), "images_per_s": speeds})
    return {"rows": rows}
