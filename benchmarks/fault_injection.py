"""Fault injection: kill training with SIGKILL at random moments, resume each time, and check that
no checkpoint is ever corrupt, that at most ``checkpoint_every`` steps are lost per kill, and that
the final weights equal those of an uninterrupted run with the same seed (CPU). Prints JSON.

    python benchmarks/fault_injection.py --kills 20

The child process is the ordinary ``vaelab train`` command, wrapped only to record each finished
optimiser step in a file (so the harness knows how many steps a kill threw away).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

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


def count_lines(path: Path) -> int:
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
    common = ["--no-progress", "--epochs", str(epochs), "--device", "cpu"]
    if resume:
        return ["train", "--resume", str(run_dir), *common]
    return [
        "train", "--dataset", str(data), "--run-dir", str(run_dir), *common,
        "--set", "data.binarize=dynamic", "--set", "model.latent_dim=4",
        "--set", "model.encoder.hidden_dims=[64]", "--set", "model.decoder.hidden_dims=[64]",
        "--set", "train.batch_size=16", "--set", f"train.checkpoint_every={every}",
        "--set", "train.image_every=1000", "--set", "train.num_threads=1",
    ]  # fmt: skip


def run_child(args: list[str], step_log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-c", CHILD, str(step_log), *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip


def checkpoint_step(run_dir: Path) -> int | None:
    """The step in the run's checkpoint, loaded the safe way; raises if the file is corrupt."""
    from vaelab.training.checkpoint import load_checkpoint

    path = run_dir / "checkpoint.pt"
    if not path.exists():
        return None
    return int(load_checkpoint(path)["step"])


def experiment(
    kills: int, epochs: int = 3, every: int = 5, seed: int = 0, workdir: Path | None = None
) -> dict:
    """Run the reference and the killed-and-resumed runs; return what was checked and measured."""
    import torch
    from safetensors.torch import load_file

    rnd = random.Random(seed)
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        tmp = Path(tmp)
        data = make_data(tmp / "data.npz")
        ref_dir, run_dir = tmp / "reference", tmp / "killed"
        t0 = time.perf_counter()
        ref = run_child(train_args(data, ref_dir, epochs, every, False), tmp / "ref-steps")
        if ref.wait() != 0:
            raise RuntimeError(ref.stderr.read().decode())
        ref_seconds = time.perf_counter() - t0
        total_steps = count_lines(tmp / "ref-steps")
        lost, kill_log = [], []
        started = False
        for i in range(kills):
            step_log = tmp / f"steps-{i}"
            before = checkpoint_step(run_dir) or 0
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
            done = before + count_lines(step_log)
            after = checkpoint_step(run_dir)  # raises if the kill corrupted it
            if after is not None:
                lost.append(done - after)
                kill_log.append({"kill": i, "steps_done": done, "checkpoint_step": after,
                                 "model_loads": _model_loads(run_dir)})  # fmt: skip
        final = run_child(train_args(data, run_dir, epochs, every, started), tmp / "final-steps")
        if final.wait() != 0:
            raise RuntimeError(final.stderr.read().decode())
        a = load_file(str(ref_dir / "model" / "model.safetensors"))
        b = load_file(str(run_dir / "model" / "model.safetensors"))
        identical = a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
        rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        return {
            "kills": len(kill_log), "checkpoint_every": every, "total_steps": total_steps,
            "max_steps_lost": max(lost) if lost else 0, "steps_lost": lost,
            "final_weights_identical": identical, "metrics_epochs": [r["epoch"] for r in rows],
            "reference_seconds": ref_seconds, "log": kill_log,
        }  # fmt: skip


def _model_loads(run_dir: Path) -> bool | None:
    from vaelab.models import VAE

    if not (run_dir / "model").exists():
        return None
    VAE.from_pretrained(run_dir)  # raises if torn or corrupt
    return True


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kills", type=int, default=20)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--checkpoint-every", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    from vaelab.runtime import environment

    result = experiment(args.kills, args.epochs, args.checkpoint_every, args.seed)
    result["command"] = " ".join(["python", *sys.argv])
    result["environment"] = environment()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
