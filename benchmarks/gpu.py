"""The GPU path: the training step's speed switches on CUDA, and the NLL of GPU and CPU runs at equal steps.

``gpu_speed`` times the step ``vaelab train`` runs (forward, objective, backward, fused Adam) for each
precision / compile / channels-last variant and batch size, with its peak GPU memory. ``gpu_steps``
trains one config for the same number of steps on the GPU in each precision, evaluates those runs and
any CPU runs given (the same protocol, on the GPU) and compares throughput and NLL. Both stop with one
clear error where torch sees no CUDA GPU.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import torch

from benchmarks.harness import REPO, benchmark, evaluate, round_robin, train_cli, training_figures
from benchmarks.speed import setup, switches

HOUR_CONFIG = str(REPO / "configs" / "mnist-hour.yaml")


def cuda() -> torch.device:
    """The first CUDA device, or one error that says why the benchmark cannot run here."""
    if not torch.cuda.is_available():
        raise SystemExit("this benchmark needs a CUDA GPU, and torch sees none (torch.cuda.is_available())")
    return torch.device("cuda")


def cuda_step(config_file: str, overrides: list[str], batch: int) -> tuple[Any, float]:
    """A synchronised call of the training step of ``config_file`` on the GPU over one fixed batch of
    ``batch`` images (the throughput benchmark's ``setup``), and the step's FLOPs per image."""
    _, step, x, flops = setup(config_file, [f"train.batch_size={batch}", *overrides], cuda())

    def call() -> None:
        step(x)
        torch.cuda.synchronize()

    return call, flops.per_image


@benchmark
def gpu_speed(
    config: str = HOUR_CONFIG,
    batch_sizes: tuple[int, ...] = (128, 1024),
    variants: tuple[str, ...] = ("fp32", "bf16", "fp32+channels_last", "bf16+channels_last"),
    steps: int = 20,
    rounds: int = 5,
    overrides: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Training images/s and peak GPU memory of each speed-switch variant (switches joined by "+", as in
    the throughput benchmark; the first variant is the baseline) at each batch size, the variants of
    one batch size timed in turn. A compiled variant compiles in its untimed warm-up."""
    device = cuda()
    rows = []
    for batch in batch_sizes:
        calls, flops, memory = {}, {}, {}
        call = None
        for variant in variants:
            held = torch.cuda.memory_allocated(device)  # the variants built before this one
            try:  # a variant that fails (a compiler error, say) is reported, and the others still run
                call, flops[variant] = cuda_step(config, [*overrides, *switches(variant)], batch)
                torch.cuda.reset_peak_memory_stats(device)
                for _ in range(5):
                    call()
            except Exception as error:
                rows.append({"batch": batch, "variant": variant, "error": f"{type(error).__name__}: {error}"})
                continue
            memory[variant] = (torch.cuda.max_memory_allocated(device) - held) / 2**20
            calls[variant] = call
        timings = round_robin(calls, rounds, steps, warmup=1)
        for variant, timing in timings.items():
            rate = batch / timing.median
            row = {"batch": batch, "variant": variant, "images_per_s": rate, "step": timing.summary("ms")}
            row["peak_memory_mib"] = memory[variant]
            row["tflop_per_s"] = flops[variant] * rate / 1e12
            rows.append(row)
        timed = [row for row in rows[-len(variants) :] if "images_per_s" in row]
        for row in timed:
            row[f"speedup_over_{timed[0]['variant']}"] = row["images_per_s"] / timed[0]["images_per_s"]
        del calls, call
        torch.cuda.empty_cache()
    return {
        "gpu": torch.cuda.get_device_name(device),
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
        "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        "train": rows,
    }


def _nll(report: dict[str, Any]) -> dict[str, float]:
    ll = report["log_likelihood"]
    keys = ("nll", "nll_se", "iw_samples", "images", "seconds")
    return {key: ll[key] for key in keys} | {"neg_elbo": -report["elbo"]["elbo"]}


@benchmark
def gpu_steps(
    config: str = HOUR_CONFIG,
    steps: int = 1500,
    precisions: tuple[str, ...] = ("fp32", "bf16"),
    cpu_runs: tuple[str, ...] = (),
    iw_samples: int = 100,
    subset: int = 1000,
    keep: str = "",
    device: str = "cuda",
    overrides: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Train --config for --steps steps on the GPU in each of --precisions (the same seed and schedule,
    its learning rate decayed over the steps), then evaluate those runs and the --cpu-runs (trained on
    a CPU for the same steps) with one protocol on the GPU: images/s of the whole training loop, and
    test NLL with its standard error. --keep DIR keeps the GPU runs there; --device cpu runs it all
    on the CPU (a dry run of the benchmark)."""
    if device == "cuda":
        cuda()
    runs: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(keep) if keep else Path(tmp)
        for precision in precisions:
            run_dir = root / f"gpu-{precision}"
            # equal steps, equal schedule: the cosine over the steps, not over a machine's minutes
            sets = [f"train.max_steps={steps}", "train.eval_every=0", f"train.device={device}"]
            sets += ["train.lr_decay_over=steps", f"train.precision={precision}", *overrides]
            trained = train_cli(run_dir, "--config", config, *(a for s in sets for a in ("--set", s)))
            runs[f"gpu-{precision}"] = {"dir": run_dir, "train": trained}
        for path in cpu_runs:
            meta = json.loads((Path(path) / "meta.json").read_text())
            train = training_figures(path) | {"cpu": meta["environment"]["cpu"]}
            runs[f"cpu:{Path(path).name}"] = {"dir": Path(path), "train": train}
        protocol = ["--iw-samples", iw_samples, "--subset", subset, "--no-sample-quality", "--device", device]
        for run in runs.values():
            run["test"] = _nll(evaluate(run.pop("dir"), *protocol))
    cpu = [r for name, r in runs.items() if name.startswith("cpu:")]
    for run in runs.values():
        if cpu:
            run["images_per_s_over_cpu"] = run["train"]["images_per_s"] / cpu[0]["train"]["images_per_s"]
            gap = run["test"]["nll"] - cpu[0]["test"]["nll"]
            run["nll_minus_cpu"], run["within_cpu_se"] = gap, abs(gap) <= cpu[0]["test"]["nll_se"]
    gpu = torch.cuda.get_device_name(0) if device == "cuda" else None
    return {"gpu": gpu, "steps": steps, "runs": runs}
