"""Crash safety: kill training with SIGKILL at random moments and resume each time (the crash tests of
tests/training/test_resilience.py drive the same functions)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.harness import benchmark

# The ordinary `vaelab train`, wrapped only to log each finished optimiser step to a file, so that the
# harness knows how many steps a kill threw away.
CHILD = """
import os, sys, torch
from vaelab.cli import main
log = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_APPEND)
original = torch.optim.Adam.step
def step(self, *a, **k):
    out = original(self, *a, **k)
    os.write(log, b"s\\n")
    return out
torch.optim.Adam.step = step
sys.exit(main(sys.argv[2:]))
"""


@benchmark
def fault_injection(
    kills: int = 20, epochs: int = 3, checkpoint_every: int = 5, seed: int = 0
) -> dict[str, Any]:
    """SIGKILL training at random moments, resume each time, and check that no checkpoint is ever corrupt,
    that at most --checkpoint-every steps are lost per kill, and that the final weights equal those of an
    uninterrupted run with the same seed (a small MLP on synthetic 12x12 images, CPU)."""
    return experiment(kills, epochs, checkpoint_every, seed)


def count_lines(path: Path) -> int:
    """Lines in ``path`` (0 when it does not exist yet): the steps a child has logged."""
    if not path.exists():
        return 0
    with open(path) as f:
        return sum(1 for _ in f)


def make_data(path: Path, n: int = 2400, side: int = 12, seed: int = 0) -> Path:
    """Small synthetic image set (bright squares on noise) so the experiment needs no downloads."""
    from vaelab.data.synthetic import quadrant_squares

    images, labels = quadrant_squares(n, side, seed)
    np.savez(path, images=images, labels=labels)
    return path


def train_args(data: Path, run_dir: Path, epochs: int, every: int, resume: bool) -> list[str]:
    """``vaelab`` arguments of a fresh run (a small MLP, a checkpoint every ``every`` steps) or its resume."""
    common = ["--no-progress", "--epochs", str(epochs), "--device", "cpu"]
    if resume:
        return ["train", "--resume", str(run_dir), *common]
    sets = [
        "data.binarize=dynamic",
        "model.latent_dim=4",
        "model.encoder.hidden_dims=[64]",
        "train.batch_size=16",
    ]
    sets += ["model.decoder.hidden_dims=[64]", f"train.checkpoint_every={every}", "train.image_every=1000"]
    sets += ["train.num_threads=1"]
    return [
        "train",
        "--dataset",
        str(data),
        "--run-dir",
        str(run_dir),
        *common,
        *(f"--set={s}" for s in sets),
    ]


def run_child(args: list[str], step_log: Path) -> subprocess.Popen:
    """Start ``vaelab ARGS`` in a child that logs its optimiser steps to ``step_log``."""
    cli = [sys.executable, "-c", CHILD, str(step_log), *args]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(cli, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def checkpoint_step(run_dir: Path) -> int | None:
    """The step in the run's checkpoint, loaded the safe way; raises if the file is corrupt."""
    from vaelab.training import load_checkpoint

    path = run_dir / "checkpoint.pt"
    return int(load_checkpoint(path)["step"]) if path.exists() else None


def finish(proc: subprocess.Popen) -> None:
    """Wait for a child that must succeed; raise with its error output if it did not."""
    if proc.wait() != 0:
        raise RuntimeError(proc.stderr.read().decode())


def experiment(
    kills: int, epochs: int = 3, every: int = 5, seed: int = 0, workdir: Path | None = None
) -> dict:
    """Run the reference and the killed-and-resumed runs; return what was checked and measured."""
    import torch
    from safetensors.torch import load_file

    from vaelab.models import VAE

    rnd = random.Random(seed)
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        tmp = Path(tmp)
        data = make_data(tmp / "data.npz")
        ref_dir, run_dir = tmp / "reference", tmp / "killed"
        start = time.perf_counter()
        finish(run_child(train_args(data, ref_dir, epochs, every, False), tmp / "ref-steps"))
        ref_seconds, total_steps = time.perf_counter() - start, count_lines(tmp / "ref-steps")
        lost, kill_log, started = [], [], False
        for i in range(kills):
            step_log, before = tmp / f"steps-{i}", checkpoint_step(run_dir) or 0
            if before >= total_steps - 1:
                break
            # A random step in the next stretch of the run, then a random few milliseconds more: kills
            # land anywhere in a step, in a checkpoint write or in the end-of-epoch work.
            stretch = max(2, 2 * (total_steps - before) // (kills - i + 1))
            target = min(total_steps - 1, before + rnd.randint(1, stretch))
            proc = run_child(train_args(data, run_dir, epochs, every, started), step_log)
            while before + count_lines(step_log) < target and proc.poll() is None:
                time.sleep(0.002)
            time.sleep(rnd.uniform(0.0, 0.03))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            started = started or (run_dir / "checkpoint.pt").exists()
            done, after = before + count_lines(step_log), checkpoint_step(run_dir)  # raises if corrupt
            if after is not None:
                loads = VAE.from_pretrained(run_dir) is not None if (run_dir / "model").exists() else None
                lost.append(done - after)
                kill_log.append(
                    {"kill": i, "steps_done": done, "checkpoint_step": after, "model_loads": loads}
                )
        finish(run_child(train_args(data, run_dir, epochs, every, started), tmp / "final-steps"))
        a, b = (load_file(str(d / "model" / "model.safetensors")) for d in (ref_dir, run_dir))
        rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        return {
            "kills": len(kill_log),
            "checkpoint_every": every,
            "total_steps": total_steps,
            "max_steps_lost": max(lost, default=0),
            "steps_lost": lost,
            "final_weights_identical": a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a),
            "metrics_epochs": [r["epoch"] for r in rows],
            "reference_seconds": ref_seconds,
            "log": kill_log,
        }
