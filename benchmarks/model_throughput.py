"""Training throughput of a model config: images/s of Adam steps (forward + backward + update) on
random binary 28x28 images at fp32 and bf16 autocast, plus FLOPs per image. Prints one JSON object.

    python benchmarks/model_throughput.py configs/mnist-hour.yaml --steps 20
    python benchmarks/model_throughput.py configs/mnist-hour.yaml --set model.decoder.channels=[48,32,16]

Timing only (no data loading, no evaluation): the upper bound of what a run of that config trains
per second on this machine. Each precision gets warm-up steps first; the median of the timed steps is
reported.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from vaelab.config import load_config
from vaelab.models import VAE
from vaelab.objectives import build_objective


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_config(args.config, args.overrides)
    shape = (cfg.data.channels if cfg.data.name == "folder" else 1, 28, 28)
    model_cfg = cfg.model.model_copy(update={"image_shape": shape})
    bsz = cfg.train.batch_size
    result: dict = {
        "config": args.config,
        "overrides": args.overrides,
        "batch_size": bsz,
        "threads": torch.get_num_threads(),
    }
    torch.manual_seed(0)
    model = VAE(model_cfg)
    objective = build_objective(cfg.objective)
    x = (torch.rand(bsz, *shape) > 0.7).float()
    if cfg.model.likelihood.name == "logistic_mixture":
        x = torch.round(torch.rand(bsz, *shape) * 255) / 255
    with FlopCounterMode(display=False) as counter:
        objective(model(x[:8], **objective.forward_kwargs)).loss.backward()
    result["gflop_per_image_fwd_bwd"] = counter.get_total_flops() / 8 / 1e9
    result["parameters"] = sum(p.numel() for p in model.parameters())
    for precision in ("fp32", "bf16"):
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)
        times = []
        for step in range(args.warmup + args.steps):
            t0 = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                loss = objective(model(x, **objective.forward_kwargs)).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if step >= args.warmup:
                times.append(time.perf_counter() - t0)
        med = statistics.median(times)
        result[precision] = {"median_step_s": med, "images_per_s": bsz / med, "loss": float(loss.detach())}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
