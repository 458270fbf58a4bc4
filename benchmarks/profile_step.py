"""Where a training step's time goes: torch.profiler over the step users train with, for any config.

Builds the model and optimiser of ``--config`` (a YAML file: configs/seed.yaml, configs/conv.yaml,
any later config), times ``--steps`` steps of :func:`vaelab.training.step.build_step` on a fixed
binarised batch after a warm-up, then profiles a few more and prints one JSON object: ms per step,
images/s, the step's model FLOPs, achieved FLOP/s against the measured matmul peak, and the ops that
take the most self CPU time. Switches as in training: ``--set train.precision=bf16`` etc.

    python benchmarks/profile_step.py --config configs/conv.yaml --set train.channels_last=true
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from vaelab.config import load_config
from vaelab.models import VAE
from vaelab.objectives import build_objective
from vaelab.perf import cpu_features
from vaelab.runtime import environment, seed_everything
from vaelab.training.step import build_step, step_flops
from vaelab.training.trainer import build_optimizer, resolve_model_config

REPO = Path(__file__).resolve().parents[1]


def setup(config_path: str | Path, overrides: list[str], image_shape: tuple[int, int, int] = (1, 28, 28)):
    """Model, objective, optimiser, step and a fixed binarised batch for ``config_path`` on the CPU."""
    config = load_config(config_path, ["train.device=cpu", *overrides])
    config = resolve_model_config(config, image_shape)
    seed_everything(config.train.seed)
    model = VAE(config.model)
    if config.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    objective = build_objective(config.objective)
    optimizer = build_optimizer(model, config)
    step = build_step(model, objective, optimizer, config.train, torch.device("cpu"))
    gen = torch.Generator().manual_seed(0)
    x = torch.bernoulli(torch.full((config.train.batch_size, *image_shape), 0.13), generator=gen)
    return config, model, objective, step, x


def time_steps(step, x: torch.Tensor, steps: int, repeats: int) -> list[float]:
    """Seconds per step, one median-able figure per repeat of ``steps`` steps."""
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(steps):
            step(x)
        out.append((time.perf_counter() - t0) / steps)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=str(REPO / "configs" / "seed.yaml"))
    p.add_argument("--set", dest="overrides", action="append", default=[], help="KEY=VALUE config override")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--top", type=int, default=15)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    config, model, objective, step, x = setup(args.config, args.overrides)
    tc = config.train
    for _ in range(args.warmup):
        step(x)
    seconds = time_steps(step, x, args.steps, args.repeats)
    per_step = statistics.median(seconds)
    flops = step_flops(model, objective, tc, torch.device("cpu"))
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(min(args.steps, 20)):
            step(x)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    ops = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[: args.top]
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.top), file=sys.stderr)
    report = {
        "benchmark": "profile_step",
        "config": args.config,
        "overrides": args.overrides,
        "batch_size": tc.batch_size,
        "ms_per_step_median": per_step * 1e3,
        "ms_per_step_repeats": [s * 1e3 for s in seconds],
        "images_per_s": tc.batch_size / per_step,
        **flops.rates(tc.batch_size / per_step),
        "cpu_features": cpu_features(),
        "top_ops_self_cpu": [
            {
                "op": e.key,
                "calls": e.count,
                "self_cpu_ms": e.self_cpu_time_total / 1e3,
                "share": e.self_cpu_time_total / total,
            }
            for e in ops
        ],
        "environment": environment(),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
