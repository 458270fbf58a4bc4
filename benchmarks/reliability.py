"""Whether vaelab holds up: training at too high a learning rate, bad inputs at the command line, and the
web app's latency under a moving slider."""

from __future__ import annotations

import base64
import contextlib
import errno
import io
import itertools
import math
import pickle
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

from benchmarks.harness import REPO, benchmark, measure
from benchmarks.speed import SEED_CONFIG
from vaelab.config import load_config
from vaelab.data import load_dataset

GUARDS = ["train.skip_nonfinite=true", "train.grad_clip=200", "train.skip_threshold=5000"]
GUARDS += ["train.lr_warmup_steps=500", "train.kl_anneal=linear", "train.kl_anneal_steps=2000"]
EPOCH_KEYS = ("epoch", "train_elbo", "val_elbo", "skipped_updates", "skipped_nonfinite", "skipped_large_grad")
EPOCH_KEYS += ("clipped_updates", "grad_norm_mean", "grad_norm_max", "val_active_units", "train_minutes")


@benchmark
def stability(
    epochs: int = 3,
    lr: float = 1e-2,
    logvar_bound: float | None = None,
    explode: float = 1e4,
    cases: tuple[str, ...] = ("reference", "unguarded", "guarded"),
    overrides: tuple[str, ...] = (),
) -> dict[str, Any]:
    """A config that diverges without the guards completes with them: the seed MLP on MNIST.

    reference: configs/seed.yaml as published (lr 1e-3), no guards; unguarded: --lr, every guard off;
    guarded: --lr with the stabilisers of docs/training.md (NaN guard, clipping, update skipping,
    learning-rate and KL warm-up). --logvar-bound B widens the posterior's log-variance clamp to +-B.
    A run diverges when a weight goes non-finite (the trainer refuses to save it) or its training -ELBO
    passes --explode nats; completed runs are scored on the test set (-ELBO, binarised once, seed 0).
    """
    base = [f"train.epochs={epochs}", "train.device=cpu", "train.grid_samples=16", "train.image_every=1000"]
    base += ["train.grid_reconstructions=8", *overrides]
    wide = []
    if logvar_bound:  # the posterior's log-variance clamp widened to +-B
        wide = [f"model.posterior.logvar_min={-logvar_bound}", f"model.posterior.logvar_max={logvar_bound}"]
    settings = {
        "reference": [*base, "train.skip_nonfinite=false"],
        "unguarded": [*base, f"train.lr={lr}", *wide, "train.skip_nonfinite=false"],
        "guarded": [*base, f"train.lr={lr}", *wide, *GUARDS],
    }
    from vaelab.training import prepare_data

    config = load_config(SEED_CONFIG, base)
    data, test = prepare_data(config, progress=False), load_dataset(config.data, "test", progress=False)
    out: dict[str, Any] = {"logvar_clamp": [-logvar_bound, logvar_bound] if logvar_bound else "the default"}
    with tempfile.TemporaryDirectory(prefix="vaelab-stability-") as tmp:
        for name in cases:
            out[name] = guarded_run(settings[name], data, test, Path(tmp) / name, explode)
    return out


def guarded_run(overrides: list[str], data: Any, test: Any, run_dir: Path, explode: float) -> dict[str, Any]:
    """Train one case and say how it ended: completed (with its test -ELBO) or diverged, and why."""
    import torch

    from vaelab.evaluation import evaluate_elbo
    from vaelab.io.metrics import read_metrics
    from vaelab.models import VAE
    from vaelab.training import PoisonedWeightsError, train

    start, error = time.perf_counter(), None
    try:
        config = load_config(SEED_CONFIG, overrides)
        history = train(config, run_dir, progress=False, log=False, data=data).history
    except PoisonedWeightsError as exc:
        history, error = read_metrics(run_dir), str(exc)
    worst = max((-h["train_elbo"] for h in history), default=float("nan"))
    out: dict[str, Any] = {"overrides": overrides, "seconds": round(time.perf_counter() - start, 1)}
    out["epochs"] = [{k: rounded(h.get(k)) for k in EPOCH_KEYS} for h in history]
    if error is not None:
        out |= {"status": "diverged: non-finite weights, refused to save them", "error": error}
    elif not math.isfinite(worst) or worst > explode:
        out["status"] = f"diverged: training -ELBO reached {worst:.4g} nats (> {explode:g})"
    else:
        torch.manual_seed(0)
        elbo = evaluate_elbo(VAE.from_pretrained(run_dir), test, batch_size=1000, binarize="dynamic", seed=0)
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
    from PIL import Image

    from vaelab.cli import main

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

    def broken(path: Path, content: bytes, name: str, args: list[Any], check: Any = None) -> None:
        saved = path.read_bytes()
        path.write_bytes(content)
        record(name, args, check)
        path.write_bytes(saved)

    def npz(name: str, images: np.ndarray) -> Path:
        np.savez(tmp / f"{name}.npz", images=images, labels=np.arange(60) % 3)
        return tmp / f"{name}.npz"

    class Payload:  # unpickling it would create the marker file
        def __reduce__(self) -> tuple[Any, ...]:
            return (open, (str(tmp / "pwned"), "w"))

    run_dir = tmp / "run"
    good = npz("good", (np.random.default_rng(0).random((60, 8, 8)) * 255).astype(np.uint8))
    assert main(["train", "--dataset", str(good), "--run-dir", str(run_dir), *tiny]) == 0
    ckpt, weights, cfg = (
        run_dir / f for f in ("checkpoint.pt", "model/model.safetensors", "model/config.json")
    )
    resume, sample = ["train", "--resume", run_dir], ["sample", run_dir / "model", "--out", tmp / "s.npz"]
    payload = pickle.dumps({"version": 1, "model": Payload()})
    name = "checkpoint carrying a pickle payload (would create a file)"
    broken(ckpt, payload, name, resume, lambda: not (tmp / "pwned").exists())
    broken(ckpt, ckpt.read_bytes()[: ckpt.stat().st_size // 2], "truncated checkpoint", resume)
    half = weights.read_bytes()[: weights.stat().st_size // 2]
    broken(weights, half, "truncated safetensors weights", sample)
    flipped = bytearray(weights.read_bytes())
    flipped[-3] ^= 0x10
    broken(weights, bytes(flipped), "altered safetensors weights (one bit flipped)", sample)
    wrong_type = cfg.read_text().replace('"latent_dim": 32', '"latent_dim": "big"').encode()
    broken(cfg, wrong_type, "model config.json with a wrong type", sample)
    for name, value, run in (
        ("of the wrong type", "train.epochs=many", "x1"),
        ("out of range", "train.lr=-0.1", "x2"),
    ):
        record(f"config value {name}", ["train", "--dataset", good, f"--set={value}", "--run-dir", tmp / run])
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

    def full_disk(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    with mock.patch("torch.save", full_disk):
        still_samples = lambda: main(["sample", str(run_dir), "--out", str(tmp / "after.npz")]) == 0  # noqa: E731
        record("full disk while saving a checkpoint", [*resume, "--epochs=2", "--no-progress"], still_samples)
    return rows


@benchmark
def serve_latency(models: tuple[str, ...] = (), requests: int = 1000, warmup: int = 100) -> dict[str, Any]:
    """Latency of the web app's requests, measured from a second process against `vaelab serve` (uvicorn
    on 127.0.0.1) over one keep-alive connection, as the page sends them while a latent slider moves:
    decode one new z ~ N(0, I) into one PNG in JSON; then sample 16 images and reconstruct one. Latency
    does not depend on what the weights learned: by default the seed MLP and the conv VAE at 1x28x28
    with fresh weights; --models times trained ones. The target: a decode's p95 under 30 ms."""
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
                deadline = time.monotonic() + 120
                while not is_up(client, server):
                    if time.monotonic() > deadline:
                        raise RuntimeError("the server did not answer within 120 s")
                    time.sleep(0.2)
                served = client.get("/api/models").json()
                results = {m["id"]: request_latencies(client, m, requests, warmup) for m in served}
        finally:
            server.terminate()
            server.wait(timeout=30)
    worst = max(r["decode_1"]["p95_ms"] for r in results.values())
    return {"target_ms": 30.0, "meets_target": worst < 30.0, "models": results}


def fresh_model(name: str, directory: Path) -> Path:
    """``configs/{name}.yaml``'s model at 1x28x28 with fresh weights, saved."""
    import torch

    from vaelab.config import read_yaml
    from vaelab.models import VAE, ModelConfig

    torch.manual_seed(0)
    section = read_yaml(REPO / "configs" / f"{name}.yaml")["model"]
    model = VAE(ModelConfig.model_validate({**section, "image_shape": (1, 28, 28)}))
    return model.save_pretrained(directory / f"{name}-mnist")


def is_up(client: Any, server: subprocess.Popen) -> bool:
    """Whether the server answers its health check yet; raises if it has exited."""
    import httpx

    if server.poll() is not None:
        raise RuntimeError(
            f"the server exited with status {server.returncode}: {server.stderr.read()[-2000:]}"
        )
    with contextlib.suppress(httpx.HTTPError):
        return client.get("/api/health", timeout=1.0).status_code == 200
    return False


def request_latencies(client: Any, model: dict[str, Any], requests: int, warmup: int) -> dict[str, Any]:
    """Milliseconds per request (sent to JSON parsed, in this process) for one served model."""
    from PIL import Image

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
