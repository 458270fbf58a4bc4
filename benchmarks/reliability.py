"""Whether vaelab holds up: training at too high a learning rate, bad inputs at the command line, SIGKILL
at random moments (tests/training/test_resilience.py drives the same functions), and the web app's
latency under a moving slider."""

from __future__ import annotations

import base64
import contextlib
import errno
import io
import itertools
import math
import os
import pickle
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file

from benchmarks.harness import REPO, benchmark, measure, train_in_process
from benchmarks.speed import SEED_CONFIG, build_model
from vaelab.cli import main
from vaelab.config import load_config
from vaelab.data import load_dataset
from vaelab.data.synthetic import quadrant_squares
from vaelab.evaluation import evaluate_elbo
from vaelab.io.metrics import STEPS_NAME, read_metrics
from vaelab.models import VAE
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
    out["epochs"] = [{k: rounded(h.get(k)) for k in EPOCH_KEYS} for h in history]
    if error is not None:
        out |= {"status": "diverged: non-finite weights, refused to save them", "error": error}
    elif not math.isfinite(worst) or worst > EXPLODE:
        out["status"] = f"diverged: training -ELBO reached {worst:.4g} nats (> {EXPLODE:g})"
    else:
        torch.manual_seed(0)
        elbo = evaluate_elbo(result.model, test, batch_size=1000, binarize="dynamic", seed=0)
        out |= {"status": "completed", "test_neg_elbo": rounded(-elbo["elbo"])}
    print(f"{run_dir.name}: {out['status']}", file=sys.stderr)
    for key in ("skipped_updates", "clipped_updates"):
        out[f"{key}_total"] = sum(h.get(key, 0) for h in history)
    return out


def rounded(value: Any) -> Any:
    return round(value, 3) if isinstance(value, float) and math.isfinite(value) else value


@benchmark
def bad_inputs() -> dict[str, Any]:
    """Every kind of bad input through the command line: each must end in exit status 2 with one error
    line naming the problem (no traceback) and leave earlier work intact (docs/reliability.md's table)."""
    with tempfile.TemporaryDirectory() as tmp:
        rows = bad_input_cases(Path(tmp))
    return {"cases": rows, "passed": all(r["exit_status"] == 2 and r.get("nothing_lost", True) for r in rows)}


def bad_input_cases(tmp: Path) -> list[dict[str, Any]]:
    """Break one thing at a time, hand it to ``vaelab``, record what it said, and put the thing back."""
    rows: list[dict[str, Any]] = []
    tiny = ["--epochs=1", "--no-progress", "--device=cpu", "--set=model.encoder.hidden_dims=[16]"]
    tiny += ["--set=model.decoder.hidden_dims=[16]"]

    def record(name: str, args: list[Any], nothing_lost: Callable[[], bool] | None = None) -> None:
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            code = main([str(a) for a in args])
        lines = err.getvalue().strip().splitlines()
        first = next((i for i, x in enumerate(lines) if "error:" in x), max(0, len(lines) - 2))
        message = " ".join(x.strip() for x in lines[first : first + 2])[:400]
        rows.append({"input": name, "exit_status": code, "message": message})
        if nothing_lost is not None:
            rows[-1]["nothing_lost"] = bool(nothing_lost())

    def broken(path: Path, edit: Callable[[bytes], bytes], name: str, args: list, check: Any = None) -> None:
        saved = path.read_bytes()
        path.write_bytes(edit(saved))
        record(name, args, check)
        path.write_bytes(saved)

    def npz(name: str, images: np.ndarray) -> Path:
        np.savez(tmp / f"{name}.npz", images=images, labels=np.arange(60) % 3)
        return tmp / f"{name}.npz"

    class Payload:  # unpickling it would create the marker file
        def __reduce__(self) -> tuple[Any, ...]:
            return (open, (str(tmp / "pwned"), "w"))

    run_dir, model = tmp / "run", tmp / "run" / "model"
    good = npz("good", (np.random.default_rng(0).random((60, 8, 8)) * 255).astype(np.uint8))
    assert main(["train", "--dataset", str(good), "--run-dir", str(run_dir), *tiny]) == 0
    ckpt, weights, cfg = run_dir / "checkpoint.pt", model / "model.safetensors", model / "config.json"
    resume, sample = ["train", "--resume", run_dir], ["sample", model, "--out", tmp / "s.npz"]
    payload, half = pickle.dumps({"version": 1, "model": Payload()}), lambda b: b[: len(b) // 2]
    name = "checkpoint carrying a pickle payload (would create a file)"
    broken(ckpt, lambda _: payload, name, resume, lambda: not (tmp / "pwned").exists())
    broken(ckpt, half, "truncated checkpoint", resume)
    broken(weights, half, "truncated safetensors weights", sample)
    flip = lambda b: b[:-3] + bytes([b[-3] ^ 0x10]) + b[-2:]  # noqa: E731
    broken(weights, flip, "altered safetensors weights (one bit flipped)", sample)
    wrong_type = lambda b: b.replace(b'"latent_dim": 32', b'"latent_dim": "big"')  # noqa: E731
    broken(cfg, wrong_type, "model config.json with a wrong type", sample)
    train = ["train", "--dataset", good, "--run-dir"]
    record("config value of the wrong type", [*train, tmp / "x1", "--set=train.epochs=many"])
    record("config value out of range", [*train, tmp / "x2", "--set=train.lr=-0.1"])
    (tmp / "typo.yaml").write_text("train:\n  epoch: 3\n")
    record("config with an unknown key", ["train", "--config", tmp / "typo.yaml", "--run-dir", tmp / "x3"])
    (tmp / "evil.yaml").write_text("!!python/object/apply:os.system ['touch pwned']\n")
    record("YAML with a Python tag", ["train", "--config", tmp / "evil.yaml", "--run-dir", tmp / "x4"])
    (tmp / "images" / "a").mkdir(parents=True)
    for i in range(4):
        Image.fromarray(np.full((10, 10), 40 * i, np.uint8)).save(tmp / "images" / "a" / f"{i}.png")
    (tmp / "images" / "a" / "broken.png").write_bytes(b"\x89PNG not really")
    folder = ["train", "--dataset", tmp / "images", "--run-dir", tmp / "x5", *tiny]
    record("image folder with a corrupt file (on_error=raise)", folder)
    for name, array in {
        "npz with NaN": np.full((10, 8, 8), np.nan, np.float32),
        "npz of the wrong dtype": np.zeros((10, 8, 8), np.complex64),
        "npz of the wrong shape": np.zeros((10, 8), np.uint8),
    }.items():
        slug = name.replace(" ", "_")
        record(name, ["train", "--dataset", npz(slug, array), "--run-dir", tmp / slug, *tiny])
    with mock.patch("torch.save", side_effect=OSError(errno.ENOSPC, "No space left on device")):
        still_samples = lambda: main(["sample", str(run_dir), "--out", str(tmp / "after.npz")]) == 0  # noqa: E731
        record("full disk while saving a checkpoint", [*resume, "--epochs=2", "--no-progress"], still_samples)
    return rows


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
        paths = list(models) or [fresh_model(name, Path(tmp)) for name in ("seed", "conv")]
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


def fresh_model(name: str, directory: Path) -> Path:
    """``configs/{name}.yaml``'s model at 1x28x28 with fresh weights, saved."""
    _, model = build_model(load_config(REPO / "configs" / f"{name}.yaml"))
    return model.save_pretrained(directory / f"{name}-mnist")


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
    png = io.BytesIO()
    Image.fromarray((rng.random((28, 28)) < 0.2).astype(np.uint8) * 255, mode="L").save(png, format="PNG")
    image = base64.b64encode(png.getvalue()).decode()
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


def run_child(args: list[str], step_log: Path) -> subprocess.Popen:
    """Start ``vaelab ARGS`` in a child that logs its optimiser steps to ``step_log``."""
    cli = [sys.executable, "-c", CHILD, str(step_log), *args]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(cli, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def checkpoint_step(run_dir: Path) -> int | None:
    """The step in the run's checkpoint, loaded the safe way; raises if the file is corrupt."""
    path = run_dir / "checkpoint.pt"
    return int(load_checkpoint(path)["step"]) if path.exists() else None


def finish(proc: subprocess.Popen) -> None:
    """Wait for a child that must succeed; raise with its error output if it did not."""
    if proc.wait() != 0:
        raise RuntimeError(proc.stderr.read().decode())


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
        start = time.perf_counter()
        finish(run_child(train_args(data, ref_dir, epochs, every, False, overrides), tmp / "ref-steps"))
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
            proc = run_child(train_args(data, run_dir, epochs, every, started, overrides), step_log)
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
                row = {"kill": i, "steps_done": done, "checkpoint_step": after, "model_loads": loads}
                kill_log.append(row)
        finish(run_child(train_args(data, run_dir, epochs, every, started, overrides), tmp / "final-steps"))
        a, b = (load_file(str(d / "model" / "model.safetensors")) for d in (ref_dir, run_dir))
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
