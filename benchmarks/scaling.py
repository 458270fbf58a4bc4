"""Throughput of the seed VAE on MNIST with 1 process and with torchrun over P processes (gloo, CPU),
at the same global batch. Prints JSON (images per second of training, medians over repeats).

    python benchmarks/scaling.py --steps 400 --procs 1 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run(procs: int, threads: int, batch: int, steps: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        launch = [sys.executable, "-m", "vaelab"]
        if procs > 1:
            launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
                      str(procs), "-m", "vaelab"]  # fmt: skip
        cmd = [*launch, "train", "--config", str(REPO / "configs" / "seed.yaml"), "--run-dir", f"{tmp}/run",
               "--no-progress", "--device", "cpu", "--epochs", "100", "--batch-size", str(batch),
               "--set", f"train.max_steps={steps}", "--set", f"train.num_threads={threads}",
               "--set", "train.image_every=1000"]  # fmt: skip
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode:
            sys.exit(proc.stderr[-3000:])
        rows = [json.loads(x) for x in (Path(tmp) / "run" / "metrics.jsonl").read_text().splitlines()]
        images = sum(r["images_per_s"] * r["train_seconds"] for r in rows)
        return images / sum(r["train_seconds"] for r in rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    p.add_argument("--batches", type=int, nargs="+", default=[128, 512])
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args()
    from vaelab.runtime import environment

    cores = os.cpu_count() or 1
    results = []
    for batch in args.batches:
        for procs in args.procs:
            threads = max(1, cores // procs)
            speeds = [run(procs, threads, batch, args.steps) for _ in range(args.repeats)]
            row = {"global_batch": batch, "processes": procs, "threads_per_process": threads}
            results.append({**row, "images_per_s_median": statistics.median(speeds), "images_per_s": speeds})
    print(json.dumps({"benchmark": "scaling", "command": " ".join(["python", *sys.argv]),
                      "environment": environment(), "results": results}, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
