"""Whether vaelab holds up: training at too high a learning rate, SIGKILL at random moments
(tests/training/test_resilience.py drives the same functions), and the web app's latency under a moving
slider. Damaged and hostile input files are the test suite's (tests/cli/test_damaged_files.py)."""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file

from benchmarks.harness import REPO, benchmark, measure, train_in_process
from benchmarks.speed import SEED_CONFIG, build_model
from vaelab.config import load_config
from vaelab.data import load_dataset
from vaelab.data.synthetic import quadrant_squares
from vaelab.evaluation import evaluate_elbo
from vaelab.io.metrics import STEPS_NAME, read_metrics
from vaelab.models import VAE
from vaelab.models.saving import MODEL_DIR, WEIGHTS_NAME
from vaelab.serve.images import data_url
from vaelab.training import PoisonedWeightsError, load_checkpoint, prepare_data

GUARDS = ["train.skip_nonfinite=true", "train.grad_clip=200", "train.skip_threshold=5000"]
GUARDS += ["train.lr_warmup_steps=500", "train.kl_anneal=linear", "train.kl_anneal_steps=2000"]
EPOCH_KEYS = ("epoch", "train_elbo", "val_elbo", "skipped_updates", "skipped_nonfinite", "skipped_large_grad")
EPOCH_KEYS += ("clipped_updates", "grad_norm_mean", "grad_norm_max", "val_active_units", "train_minutes")
EXPLODE = 1e4  # a training -ELBO past this many nats counts as diverged
# The ordinary `vaelab train`, wrapped only to log each finished training step (the loop adds each applied
# step's terms to its running means) to a file, so that the harness knows how many steps a kill threw away.
CHILD = """
import os, sys
from vaelab.cli import main
from vaelab.training.running_means import RunningMeans
log = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_APPEND)
original = RunningMeans.add
def add(self, *a, **k):
    original(self, *a, **k)
    os.write(log, b"s\\n")
RunningMeans.add = add
sys.exit(main(sys.argv[2:]))
"""
# A small MLP on the synthetic set, one thread.
TINY = ["data.binarize=dynamic", "model.latent_dim=4", "train.batch_size=16", "train.num_threads=1"]
TINY += ["model.encoder.hidden_dims=[64]", "model.decoder.hidden_dims=[64]", "train.image_every=1000"]


@benchmark
def stability(
    epochs: int = 3,
    lr: float = 1e-2,
    cases: tuple[str, ...] = ("reference", "unguarded", "guarded"),
    overrides: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Do the guards (docs/training.md) save a run at --lr? The seed MLP as published (reference), and at
    --lr without (unguarded) and with them (guarded): how each ended (a non-finite weight or a training
    -ELBO past 10^4 nats is a divergence) and the test -ELBO of those that completed."""
    base = [f"train.epochs={epochs}", "train.device=cpu", "train.grid_samples=16", "train.image_every=1000"]
    base += ["train.grid_reconstructions=8", *overrides]
    settings = {
        "reference": [*base, "train.skip_nonfinite=false"],
        "unguarded": [*base, f"train.lr={lr}", "train.skip_nonfinite=false"],
        "guarded": [*base, f"train.lr={lr}", *GUARDS],
    }
    config = load_config(SEED_CONFIG, base)
    data, test = prepare_data(config, progress=False), load_dataset(config.data, "test", progress=False)
    with tempfile.TemporaryDirectory(prefix="vaelab-stability-") as tmp:
        return {name: guarded_run(settings[name], data, test, Path(tmp) / name) for name in cases}


def guarded_run(overrides: list[str], data: Any, test: Any, run_dir: Path) -> dict[str, Any]:
    """Train one case and say how it ended: completed (with its test -ELBO) or diverged, and why."""
    error, start = None, time.perf_counter()
    try:
        result, _ = train_in_process(load_config(SEED_CONFIG, overrides), run_dir, data=data)
        history = result.history
    except PoisonedWeightsError as exc:
        history, error = read_metrics(run_dir), str(exc)
    worst = max((-h["train_elbo"] for h in history), default=float("nan"))
    out: dict[str, Any] = {"overrides": overrides, "seconds": round(time.perf_counter() - start, 1)}
    out["epochs"] = [{k: h.get(k) for k in EPOCH_KEYS} for h in history]
    if error is not None:
        out |= {"status": "diverged: non-finite weights, refused to save them", "error": error}
    elif not math.isfinite(worst) or worst > EXPLODE:
        out["status"] = f"diverged: training -ELBO reached {worst:.4g} nats (> {EXPLODE:g})"
    else:
        torch.manual_seed(0)
        elbo = evaluate_elbo(result.model, test, batch_size=1000, binarize="dynamic", seed=0)
        out |= {"status": "completed", "test_neg_elbo": -elbo["elbo"]}
    print(f"{run_dir.name}: {out['status']}", file=sys.stderr)
    for key in ("skipped_updates", "clipped_updates"):
        out[f"{key}_total"] = sum(h.get(key, 0) for h in history)
    return out


@benchmark
def serve_latency(models: tuple[str, ...] = (), requests: int = 1000, warmup: int = 100) -> dict[str, Any]:
    """Does the web app keep up with a latent slider (a decode's p95 under 30 ms)? The latency of `vaelab
    serve`'s decode, sample-16 and reconstruct requests over one keep-alive connection, for fresh seed
    and conv models at 1x28x28 (latency does not depend on the weights) or the trained --models."""
    import httpx

    with tempfile.TemporaryDirectory() as tmp, socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        configs = REPO / "configs"
        paths = list(models) or [
            build_model(load_config(configs / f"{n}.yaml"))[1].save_pretrained(Path(tmp) / f"{n}-mnist")
            for n in ("seed", "conv")
        ]
        cli = [sys.executable, "-m", "vaelab", "serve", *map(str, paths), "--port", str(port)]
        server = subprocess.Popen(cli, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30.0) as client:
                wait_until_up(client, server)
                served = client.get("/api/models").json()
                results = {m["id"]: request_latencies(client, m, requests, warmup) for m in served}
        finally:
            server.terminate()
            server.wait(timeout=30)
    worst = max(r["decode_1"]["p95_ms"] for r in results.values())
    return {"target_ms": 30.0, "meets_target": worst < 30.0, "models": results}


def wait_until_up(client: Any, server: subprocess.Popen, seconds: float = 120) -> None:
    """Poll the server's health check until it answers; raise if it exits or is silent for ``seconds``."""
    import httpx

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited ({server.returncode}): {server.stderr.read()[-2000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if client.get("/api/health", timeout=1.0).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"the server did not answer within {seconds:g} s")


def request_latencies(client: Any, model: dict[str, Any], requests: int, warmup: int) -> dict[str, Any]:
    """Milliseconds per request (sent to JSON parsed, in this process) for one served model."""

    def post(path: str, body: dict[str, Any]) -> None:
        response = client.post(f"/api/models/{model['id']}/{path}", json=body)
        response.raise_for_status()
        response.json()

    rng, few, seeds = np.random.default_rng(0), max(50, requests // 5), itertools.count()
    zs = iter(rng.standard_normal((requests + warmup, model["latent_dim"])).round(4).tolist())
    image = data_url(torch.from_numpy(rng.random((1, 28, 28)) < 0.2).float())  # a PNG, as the page sends it
    timings = {
        "decode_1": measure(lambda: post("decode", {"z": [next(zs)]}), requests, warmup=warmup),
        "sample_16": measure(lambda: post("sample", {"n": 16, "seed": next(seeds)}), few, warmup=20),
        "reconstruct_1": measure(lambda: post("reconstruct", {"image": image}), few, warmup=20),
    }
    out: dict[str, Any] = {"model": model["path"]}
    for name, t in timings.items():
        out[name] = t.summary("ms") | {"p95_ms": t.quantile(0.95) * 1e3, "p99_ms": t.quantile(0.99) * 1e3}
    return out


def count_lines(path: Path) -> int:
    """Lines in ``path`` (0 when it does not exist yet): the steps a child has logged."""
    return len(path.read_text().splitlines()) if path.exists() else 0


def make_data(path: Path) -> Path:
    """2,400 synthetic 12x12 images (bright squares on noise), so the experiment needs no downloads."""
    images, labels = quadrant_squares(2400, 12, 0)
    np.savez(path, images=images, labels=labels)
    return path


def train_args(
    data: Path, run_dir: Path, epochs: int, every: int, resume: bool, overrides: tuple[str, ...] = ()
) -> list[str]:
    """``vaelab`` arguments of a fresh run (a checkpoint every ``every`` steps) or of its resume."""
    common = ["--no-progress", "--epochs", str(epochs), "--device", "cpu"]
    if resume:
        return ["train", "--resume", str(run_dir), *common]
    sets = [f"--set={s}" for s in [*TINY, f"train.checkpoint_every={every}", *overrides]]
    return ["train", "--dataset", str(data), "--run-dir", str(run_dir), *common, *sets]


def run_child(args: list[str], step_log: Path, wait: bool = False) -> subprocess.Popen:
    """Start ``vaelab ARGS`` in a child that logs its optimiser steps to ``step_log``; ``wait``: see it
    through, and raise with its error output if it failed."""
    cli = [sys.executable, "-c", CHILD, str(step_log), *args]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cli, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if wait and proc.wait() != 0:
        raise RuntimeError(proc.stderr.read().decode())
    return proc


def checkpoint_step(run_dir: Path) -> int | None:
    """The step in the run's checkpoint, loaded the safe way; raises if the file is corrupt."""
    path = run_dir / "checkpoint.pt"
    return int(load_checkpoint(path)["step"]) if path.exists() else None


@benchmark
def fault_injection(
    kills: int = 20,
    epochs: int = 3,
    checkpoint_every: int = 5,
    seed: int = 0,
    workdir: Path | None = None,
    overrides: tuple[str, ...] = (),
) -> dict[str, Any]:
    """SIGKILL training at random moments, resume each time, and check that no checkpoint is ever corrupt,
    that at most --checkpoint-every steps are lost per kill, and that the final weights (and the per-step
    log of objectives that keep one, e.g. --set objective.name=adversarial) equal those of an
    uninterrupted run with the same seed (a small MLP on synthetic 12x12 images, CPU)."""
    rnd, every = random.Random(seed), checkpoint_every
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        tmp = Path(tmp)
        data, ref_dir, run_dir = make_data(tmp / "data.npz"), tmp / "reference", tmp / "killed"

        def child(run: Path, step_log: Path, resume: bool, wait: bool = False) -> subprocess.Popen:
            return run_child(train_args(data, run, epochs, every, resume, overrides), step_log, wait)

        start = time.perf_counter()
        child(ref_dir, tmp / "ref-steps", False, wait=True)
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
            proc = child(run_dir, step_log, started)
            while before + count_lines(step_log) < target and proc.poll() is None:
                time.sleep(0.002)
            time.sleep(rnd.uniform(0.0, 0.03))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            started = started or (run_dir / "checkpoint.pt").exists()
            done, after = before + count_lines(step_log), checkpoint_step(run_dir)  # raises if corrupt
            if after is not None:
                loads = VAE.from_pretrained(run_dir) is not None if (run_dir / MODEL_DIR).exists() else None
                lost.append(done - after)
                row = {"kill": i, "steps_done": done, "checkpoint_step": after, "model_loads": loads}
                kill_log.append(row)
        child(run_dir, tmp / "final-steps", started, wait=True)
        a, b = (load_file(str(d / MODEL_DIR / WEIGHTS_NAME)) for d in (ref_dir, run_dir))
        return {
            "kills": len(kill_log),
            "total_steps": total_steps,
            "max_steps_lost": max(lost, default=0),
            "steps_lost": lost,
            "final_weights_identical": a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a),
            "metrics_epochs": [r["epoch"] for r in read_metrics(run_dir)],
            "step_log_identical": read_metrics(ref_dir, STEPS_NAME) == read_metrics(run_dir, STEPS_NAME),
            "reference_seconds": ref_seconds,
            "log": kill_log,
        }
