"""Training, evaluation and sampling throughput of one config, each speed switch in the same process.

For ``--config`` (any model YAML; MNIST-shaped 1x28x28 batches) this prints one JSON object with:

- ``train``: images/s of the training step (``vaelab.training.step.build_step``, what ``vaelab train``
  runs) for each ``--variants`` entry (fp32, bf16, channels_last, compile, ... combinations joined by
  ``+``), timed round-robin (``--rounds`` rounds of ``--steps`` steps each, medians), with model
  FLOPs per image and the fraction of the measured matmul peak in the variant's precision: against
  the process's first peak (``peak_fraction``, what the training log shows) and against a peak
  measured again after every round (``peak_fraction_interleaved``, the median of the rounds' ratios);
- ``iw_eval``: importance-weighted evaluation (``iw_log_likelihood_batch``) of ``--iw-images`` test-like
  images at ``--iw-k`` samples for each ``--iw-variants`` entry (fp32 or bf16, each optionally
  ``+compile``): decoder passes/s, the decoder's FLOPs per pass, the fraction of the peak, and the
  projected time for K=5000 on 10,000 images (linear in passes);
- ``sampling``: latency of one image (batch 1, median of 200) and of a batch of 1024 (median of 20).

    python benchmarks/throughput.py --config configs/seed.yaml
    python benchmarks/throughput.py --config configs/conv.yaml --variants fp32 bf16 channels_last
    python benchmarks/throughput.py --config configs/conv.yaml --set train.batch_size=256 --variants fp32
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from profile_step import setup

from vaelab.evaluation import iw_log_likelihood_batch
from vaelab.generation import sample
from vaelab.models.parts.layers import Conv2d
from vaelab.perf import count_flops, cpu_features, matmul_peak
from vaelab.runtime import environment

REPO = Path(__file__).resolve().parents[1]
SWITCHES = {
    "fp32": [],
    "bf16": ["train.precision=bf16"],
    "channels_last": ["train.channels_last=true"],
    "compile": ["train.compile=true"],
    "nchw": ["train.channels_last=false"],  # for configs that switch channels_last on
    "noflush": ["train.flush_denormals=false"],
    "onednn_wgrad": [],  # not a config change: throughput.py turns vaelab's GEMM weight gradient off
}


def onednn_weight_grads(model: torch.nn.Module) -> None:
    """Switch vaelab's GEMM weight gradient of small bf16 convolutions off (``Conv2d``), for comparison."""
    for module in model.modules():
        if isinstance(module, Conv2d):
            module.gemm_weight_grad_max_positions = 0


def overrides_of(variant: str) -> list[str]:
    """``bf16+compile`` -> the config overrides of both switches."""
    return [o for part in variant.split("+") for o in SWITCHES[part]]


def train_throughput(
    config_file: str, variants: list[str], steps: int, rounds: int, overrides: list[str] = ()
) -> list[dict]:
    """Images/s per variant, the variants' timings interleaved so machine noise hits them alike."""
    from vaelab.training.step import step_flops

    built = {v: setup(config_file, [*overrides, *overrides_of(v)]) for v in variants}
    for v, (_, model, *_) in built.items():
        if "onednn_wgrad" in v.split("+"):
            onednn_weight_grads(model)
    times: dict[str, list[float]] = {v: [] for v in variants}
    for v, (_, _, _, step, x) in built.items():
        for _ in range(5 if "compile" not in v else 15):  # warm-up (compilation for compile)
            step(x)
    precisions = {config.train.precision for config, *_ in built.values()}
    peaks: dict[str, list[float]] = {p: [] for p in precisions}
    for _ in range(rounds):
        for v, (_, _, _, step, x) in built.items():
            t0 = time.perf_counter()
            for _ in range(steps):
                step(x)
            times[v].append((time.perf_counter() - t0) / steps)
        for p in precisions:  # the peak beside each round: this machine's speed drifts
            peaks[p].append(matmul_peak(p, fresh=True))
    out = []
    for v, (config, model, objective, _, x) in built.items():
        ips = len(x) / statistics.median(times[v])
        flops = step_flops(model, objective, config.train, torch.device("cpu"))
        rounds_peaks = peaks[config.train.precision]
        per_round = [flops.per_image * len(x) / t / pk for t, pk in zip(times[v], rounds_peaks, strict=True)]
        out.append(
            {
                "variant": v,
                "images_per_s": ips,
                "ms_per_step": [t * 1e3 for t in times[v]],
                **flops.rates(ips),
                # achieved / the peak measured right after the same round, median over rounds
                "peak_fraction_interleaved": statistics.median(per_round),
                "peak_gflop_per_s_rounds": [peak / 1e9 for peak in rounds_peaks],
            }
        )
    base = out[0]["images_per_s"]
    for r in out:
        r["speedup_over_" + variants[0]] = r["images_per_s"] / base
    return out


def iw_throughput(
    config_file: str, images: int, k: int, repeats: int, variants: list[str], overrides: list[str] = ()
) -> list[dict]:
    """Decoder passes/s of importance-weighted evaluation per variant (fp32, bf16, each optionally
    ``+compile``; untrained weights: the time does not depend on them), the decoder's FLOPs per pass
    and the projection to K=5000 x 10,000. One untimed call per variant first (compilation)."""
    _, model, _, _, _ = setup(config_file, list(overrides))
    model.eval()
    x = torch.bernoulli(torch.full((images, 1, 28, 28), 0.13), generator=torch.Generator().manual_seed(2))
    z = torch.zeros(1, model.latent_dim)
    with torch.no_grad():
        per_pass = count_flops(lambda: model.decoder(z))
    out = []
    for variant in variants:
        precision, compiled = variant.split("+")[0], variant.endswith("+compile")
        torch.manual_seed(0)
        iw_log_likelihood_batch(model, x, k, precision=precision, compile=compiled)  # warm-up / compile
        secs, means = [], []
        for r in range(repeats):
            torch.manual_seed(r)
            t0 = time.perf_counter()
            est = iw_log_likelihood_batch(model, x, k, precision=precision, compile=compiled)[k]
            secs.append(time.perf_counter() - t0)
            means.append(float(est.mean()))
        t = statistics.median(secs)
        passes = images * k / t
        out.append(
            {
                "variant": variant,
                "precision": precision,
                "images": images,
                "k": k,
                "seconds": secs,
                "decoder_passes_per_s": passes,
                "decoder_gflop_per_pass": per_pass / 1e9,
                "decoder_gflop_per_s": passes * per_pass / 1e9,
                "peak_fraction": passes * per_pass / matmul_peak(precision),
                "seconds_at_peak_for_k5000_x_10000": 5000 * 10_000 * per_pass / matmul_peak(precision),
                "seconds_at_fp32_peak_for_k5000_x_10000": 5000 * 10_000 * per_pass / matmul_peak("fp32"),
                "projected_seconds_k5000_x_10000": 5000 * 10_000 / passes,
                "mean_log_px": means,
            }
        )
    return out


def sampling_latency(config_file: str, overrides: list[str] = ()) -> dict:
    """Wall time of ``vaelab.generation.sample`` for one image and for a batch of 1024."""
    _, model, _, _, _ = setup(config_file, list(overrides))
    model.eval()

    def timed(n: int, reps: int) -> float:
        for _ in range(5):
            sample(model, n, seed=0)
        ts = []
        for i in range(reps):
            t0 = time.perf_counter()
            sample(model, n, seed=i)
            ts.append(time.perf_counter() - t0)
        return statistics.median(ts) * 1e3

    return {"batch1_ms": timed(1, 200), "batch1024_ms": timed(1024, 20)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=str(REPO / "configs" / "seed.yaml"))
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        help="KEY=VALUE config override, for every variant",
    )
    p.add_argument("--variants", nargs="+", default=["fp32", "bf16"])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--iw-images", type=int, default=100)
    p.add_argument("--iw-k", type=int, default=1000)
    p.add_argument("--iw-repeats", type=int, default=3)
    p.add_argument(
        "--iw-variants",
        nargs="+",
        default=["fp32", "bf16"],
        choices=["fp32", "bf16", "fp32+compile", "bf16+compile"],
    )
    p.add_argument("--skip", nargs="*", default=[], choices=["train", "iw_eval", "sampling"])
    args = p.parse_args()
    report: dict = {
        "benchmark": "throughput",
        "config": args.config,
        "overrides": args.overrides,
        "cpu_features": cpu_features(),
    }
    report["matmul_peak_gflop_per_s"] = {pr: matmul_peak(pr) / 1e9 for pr in ("fp32", "bf16")}
    if "train" not in args.skip:
        report["train"] = train_throughput(
            args.config, args.variants, args.steps, args.rounds, args.overrides
        )
    if "iw_eval" not in args.skip:
        report["iw_eval"] = iw_throughput(
            args.config, args.iw_images, args.iw_k, args.iw_repeats, args.iw_variants, args.overrides
        )
    if "sampling" not in args.skip:
        report["sampling"] = sampling_latency(args.config, args.overrides)
    report["environment"] = environment()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
