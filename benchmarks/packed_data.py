"""Data larger than memory: pack a synthetic set of >= 4 GB of pixels, train the seed VAE on it
through memory maps, and compare peak RSS and throughput with the in-memory path. Prints JSON.

    python benchmarks/packed_data.py --gigabytes 4 --steps 2000

The synthetic images are MNIST training digits (from $VAELAB_DATA, else the embedded digits) tiled
with random shifts, so the model sees digit-like data. Each training run is its own subprocess, so
each peak RSS is that run's own.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def build(out: Path, gigabytes: float, chunk: int = 100_000) -> dict:
    """Write the packed synthetic set chunk by chunk (never all in memory)."""
    import numpy as np

    from vaelab.data import DataConfig, DataError, load_dataset
    from vaelab.data.packed import PackWriter

    try:
        base = load_dataset(DataConfig(name="mnist", download=False), "train", progress=False)
    except DataError:
        base = load_dataset(DataConfig(name="digits"), "train", progress=False)
    src = base.images.numpy()
    per_image = int(np.prod(src.shape[1:]))
    total = int(gigabytes * 1e9 / per_image) + 1
    rng = np.random.default_rng(0)
    writer = PackWriter(out, tuple(src.shape[1:]), name=f"synthetic-{base.name}", shard_bytes=512 << 20)
    t0 = time.perf_counter()
    written = 0
    while written < total:
        n = min(chunk, total - written)
        idx = rng.integers(0, len(src), n)
        shift = int(rng.integers(-2, 3))
        writer.append(np.roll(src[idx], shift, axis=-1))
        written += n
    writer.close()
    return {"images": total, "bytes": total * per_image, "pack_seconds": time.perf_counter() - t0}


def child(kind: str, packed: Path, steps: int) -> dict:
    """Train for ``steps`` steps on the packed set or on in-memory MNIST; report speed and peak RSS."""
    from vaelab.config import load_config
    from vaelab.runtime import peak_rss_mb
    from vaelab.training import train

    overrides = [f"train.max_steps={steps}", "train.epochs=1000", "train.device=cpu",
                 "data.val_fraction=0.002", "train.image_every=1000"]  # fmt: skip
    if kind == "packed":
        overrides += ["data.name=packed", f"data.path={packed}"]
    config = load_config(REPO / "configs" / "seed.yaml", overrides)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        result = train(config, Path(tmp) / "run", progress=False, log=False)
        wall = time.perf_counter() - t0
    rows = result.history
    images = sum(r["images_per_s"] * r["train_seconds"] for r in rows)
    seconds = sum(r["train_seconds"] for r in rows)
    return {
        "path": kind, "steps": rows[-1]["step"], "images_per_s": images / seconds, "train_seconds": seconds,
        "wall_seconds": wall, "peak_rss_mb": peak_rss_mb(),
    }  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gigabytes", type=float, default=4.0)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--workdir", default=None, help="where to write the packed set (default: a temp dir)")
    p.add_argument("--_child", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args._child:
        print(json.dumps(child(args._child[0], Path(args._child[1]), args.steps)))
        return
    from vaelab.runtime import environment

    tmp = Path(tempfile.mkdtemp(dir=args.workdir, prefix="vaelab-packed-"))
    try:
        built = build(tmp / "packed", args.gigabytes)
        runs = []
        for kind in ("memory", "packed", "memory", "packed"):  # interleaved, twice: medians of noisy timings
            out = subprocess.run([sys.executable, __file__, "--steps", str(args.steps), "--_child", kind,
                                  str(tmp / "packed")], capture_output=True, text=True)  # fmt: skip
            if out.returncode:
                sys.exit(out.stderr)
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    def best(kind: str, key: str, fn=max) -> float:
        return fn(r[key] for r in runs if r["path"] == kind)

    report = {
        "benchmark": "packed_data", "command": " ".join(["python", *sys.argv]), "environment": environment(),
        "packed_set": built, "runs": runs,
        "packed_peak_rss_mb": best("packed", "peak_rss_mb"),
        "memory_images_per_s": best("memory", "images_per_s"),
        "packed_images_per_s": best("packed", "images_per_s"),
    }  # fmt: skip
    report["packed_over_memory_throughput"] = report["packed_images_per_s"] / report["memory_images_per_s"]
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
