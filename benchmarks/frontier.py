"""Time to quality on binarised MNIST: test -log p(x) against training minutes for vaelab's configs and,
in the same run, for its peer pythae's VAE under the same budget and the same evaluation."""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.harness import REPO, benchmark, in_subprocess, pythae_python, train_cli
from benchmarks.quality import plot_nll, snapshot_row
from vaelab.data import DataConfig, load_dataset
from vaelab.evaluation import evaluation_inputs, in_memory

PEER = "pythae VAE (ResNet)"


@benchmark
def frontier(
    configs: tuple[Path, ...] = (REPO / "configs" / "mnist-hour.yaml",),
    minutes: float = 60.0,
    points: int = 6,
    peer: bool = True,
    peer_latent: int = 32,
    peer_lr: float = 1e-3,
    iw_samples: int = 100,
    subset: int = 500,
    compile: bool = False,
    overrides: tuple[str, ...] = (),
    keep: Path | None = None,
    plot: Path | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Train each of --configs for --minutes of training time (its max_minutes set to that, snapshots
    every epoch), then score up to --points snapshots spread over the minutes (the last always) on the
    same --subset seeded binarised test images at K = --iw-samples, as `vaelab evaluate` does. --peer:
    then pythae's VAE with its ResNet MNIST networks (latent --peer-latent, Adam --peer-lr, batch 128,
    dynamically binarised batches, in benchmarks/.venv-pythae) for the same minutes, scored on the same
    images at vaelab's minute marks by pythae's own estimator (as its VAE.get_nll). --keep DIR keeps the
    runs; --plot draws every curve."""
    threads = torch.get_num_threads()
    eval_cli = [f"--iw-samples={iw_samples}", f"--subset={subset}", f"--seed={seed}", "--no-sample-quality"]
    eval_cli += ["--compile"] if compile else []
    rows: list[dict[str, Any]] = []
    runs: dict[str, Any] = {}  # each config's training figures
    with tempfile.TemporaryDirectory() as tmp:
        root = keep or Path(tmp)
        for config in configs:
            run = root / Path(config).stem
            sets = [f"train.max_minutes={minutes}", "train.snapshot_every=1", f"train.num_threads={threads}"]
            sets += [f"train.seed={seed}", *overrides]
            runs[run.name] = train_cli(run, "--config", config, *(a for s in sets for a in ("--set", s)))
            for snapshot in spread(sorted((run / "snapshots").glob("epoch-*")), points):
                rows.append(snapshot_row(run, snapshot, eval_cli) | {"config": str(config)})
        peer_result = None
        if peer:  # scored where vaelab was (rounded up to the next 0.06 s), trained until its last point
            marks = sorted({math.ceil(r["train_minutes"] * 1000) / 1000 for r in rows} or {minutes})
            data = Path(tmp) / "mnist.npz"
            np.savez(data, train=mnist_train().numpy(), test=binary_test(subset, seed).numpy())
            python = pythae_python()
            start = time.perf_counter()
            peer_result = in_subprocess(
                "benchmarks.pythae_peer:mnist_curve", python, data=str(data), marks=marks,
                latent=peer_latent, batch_size=128, lr=peer_lr, iw_samples=iw_samples, threads=threads,
                seed=seed,
            )  # fmt: skip
            peer_result["wall_seconds"] = time.perf_counter() - start
            rows += [
                {"run": PEER, "iw_samples": iw_samples, "images": subset, **r} for r in peer_result["rows"]
            ]
    if plot:
        plot_nll(rows, plot)
    return {"runs": runs, "rows": rows, "peer": peer_result, "comparison": compare(rows) if peer else None}


def spread(snapshots: list[Path], points: int) -> list[Path]:
    """At most ``points`` of ``snapshots`` (in epoch order), evenly spaced, the last always among them."""
    if len(snapshots) <= points:
        return snapshots
    picks = np.linspace(len(snapshots) - 1, 0, points).round().astype(int)
    return [snapshots[i] for i in sorted(set(picks.tolist()))]


def mnist_train() -> torch.Tensor:
    """All 60,000 MNIST training images, uint8 (N, 28, 28): what a pythae user trains on."""
    train = in_memory(load_dataset(DataConfig(name="mnist"), "train", progress=False))
    return train.images[:, 0]


def binary_test(subset: int, seed: int) -> torch.Tensor:
    """The binary test images `vaelab evaluate --subset SUBSET --seed SEED` scores, 0/1 uint8 (N, 28, 28)."""
    test = load_dataset(DataConfig(name="mnist"), "test", progress=False)
    return evaluation_inputs(in_memory(test), "dynamic", subset, seed).images[:, 0] // 255


def compare(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Each vaelab run against the peer: the final NLLs' difference, and whether its curve is at or below
    the peer's at every minute the peer was scored (its last snapshot at or before that minute; before
    its first snapshot it has no point, which counts as above)."""
    peer = sorted((r for r in rows if r["run"] == PEER), key=lambda r: r["train_minutes"])
    out = {}
    for run in dict.fromkeys(r["run"] for r in rows if r["run"] != PEER):
        mine = sorted((r for r in rows if r["run"] == run), key=lambda r: r["train_minutes"])
        paired = []
        for p in peer:
            before = [r for r in mine if r["train_minutes"] <= p["train_minutes"] + 1e-6]
            ours = before[-1]["nll"] if before else None
            paired.append({"minutes": p["train_minutes"], "vaelab": ours, "peer": p["nll"]})
        at_or_below = all(q["vaelab"] is not None and q["vaelab"] <= q["peer"] for q in paired)
        margin = peer[-1]["nll"] - mine[-1]["nll"]
        out[Path(run).name] = {
            "final_nll": mine[-1]["nll"],
            "final_minutes": mine[-1]["train_minutes"],
            "peer_final_nll": peer[-1]["nll"],
            "margin_nats": margin,
            "paired": paired,
            "curve_at_or_below_peer": at_or_below,
            "peer_targets_met": margin >= 10 and at_or_below,
        }
    return out
