"""Stability target: a config that diverges without the guards completes with them.

Trains the seed MLP VAE (configs/seed.yaml) on MNIST with a learning rate too high (``--lr``; the
seed's is 1e-3) three ways, one after another in this process:

- ``reference``: the seed config as published (lr 1e-3), no guards;
- ``unguarded``: the high lr, every guard off (``train.skip_nonfinite=false``);
- ``guarded``: the high lr with the stabilisers of docs/training.md: the NaN guard, gradient
  clipping, update skipping, learning-rate and KL warm-up.

``--logvar-bound B`` also widens the posterior's log-variance clamp to +-B (many VAE codes have none).

A run "diverges" when a loss or a weight goes non-finite (the trainer then refuses to write the
poisoned weights: ``PoisonedWeightsError``) or its training -ELBO explodes past ``--explode``
nats. Completed runs are scored on the MNIST test set (-ELBO, test set binarised once, seed 0).
Prints one JSON object.

    python benchmarks/stability.py --epochs 3 --lr 0.01     # needs MNIST under $VAELAB_DATA/mnist
    python benchmarks/stability.py --epochs 3 --lr 0.03 --cases unguarded,guarded
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
GUARDS = [
    "train.skip_nonfinite=true",
    "train.grad_clip=200",
    "train.skip_threshold=5000",
    "train.lr_warmup_steps=500",
    "train.kl_anneal=linear",
    "train.kl_anneal_steps=2000",
]
EPOCH_KEYS = [
    "epoch",
    "train_elbo",
    "val_elbo",
    "skipped_updates",
    "skipped_nonfinite",
    "skipped_large_grad",
    "clipped_updates",
    "grad_norm_mean",
    "grad_norm_max",
    "val_active_units",
    "train_minutes",
]


def run_case(name: str, overrides: list[str], data: Any, test: Any, workdir: Path, explode: float) -> dict:
    """Train one case and describe how it ended."""
    import torch

    from vaelab.config import load_config
    from vaelab.evaluation import evaluate_elbo
    from vaelab.training import train
    from vaelab.training.stability import PoisonedWeightsError

    config = load_config(REPO / "configs" / "seed.yaml", overrides)
    run_dir = workdir / name
    shutil.rmtree(run_dir, ignore_errors=True)
    t0 = time.perf_counter()
    out: dict[str, Any] = {"overrides": overrides}
    try:
        result = train(config, run_dir, progress=False, log=False, data=data)
        history, error = result.history, None
    except PoisonedWeightsError as exc:
        from vaelab.io.rundir import read_metrics

        history, error = read_metrics(run_dir), str(exc)
    out["seconds"] = round(time.perf_counter() - t0, 1)
    out["epochs"] = [{k: _round(h.get(k)) for k in EPOCH_KEYS} for h in history]
    worst = max((-h["train_elbo"] for h in history), default=float("nan"))
    if error is not None:
        out["status"] = "diverged: non-finite weights, refused to save them"
        out["error"] = error
    elif not math.isfinite(worst) or worst > explode:
        out["status"] = f"diverged: training -ELBO reached {worst:.4g} nats (> {explode:g})"
    else:
        out["status"] = "completed"
    if error is None:
        from vaelab.models import VAE

        model = VAE.from_pretrained(run_dir)
        torch.manual_seed(0)
        test_elbo = evaluate_elbo(model, test, batch_size=1000, binarize="dynamic", seed=0)["elbo"]
        out["test_neg_elbo"] = _round(-test_elbo)
    out["skipped_updates_total"] = sum(h.get("skipped_updates", 0) for h in history)
    out["clipped_updates_total"] = sum(h.get("clipped_updates", 0) for h in history)
    return out


def _round(v: Any) -> Any:
    return round(v, 3) if isinstance(v, float) and math.isfinite(v) else v


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--lr", type=float, default=1e-2, help="the too-high learning rate (seed: 1e-3)")
    parser.add_argument("--logvar-bound", type=float, default=None, help="posterior log-variance clamp ±B")
    parser.add_argument("--explode", type=float, default=1e4, help="-ELBO (nats) counted as divergence")
    parser.add_argument("--cases", default="reference,unguarded,guarded")
    args = parser.parse_args(argv)

    import torch

    from vaelab.config import load_config
    from vaelab.data import load_dataset
    from vaelab.runtime import environment
    from vaelab.training import prepare_data

    base = [f"train.epochs={args.epochs}", "train.device=cpu", "train.grid_samples=16"]
    base += ["train.grid_reconstructions=8", "train.image_every=1000"]
    bound = args.logvar_bound
    wide = [f"model.posterior.logvar_min={-bound}", f"model.posterior.logvar_max={bound}"] if bound else []
    cases = {
        "reference": [*base, "train.skip_nonfinite=false"],
        "unguarded": [*base, f"train.lr={args.lr}", *wide, "train.skip_nonfinite=false"],
        "guarded": [*base, f"train.lr={args.lr}", *wide, *GUARDS],
    }
    config = load_config(REPO / "configs" / "seed.yaml", base)
    data = prepare_data(config, progress=False)
    test = load_dataset(config.data, "test", progress=False)
    report: dict[str, Any] = {
        "benchmark": "stability",
        "model": "configs/seed.yaml (MLP 784-512-256-32, Bernoulli, dynamic binarisation, batch 128)",
        "epochs": args.epochs,
        "too_high_lr": args.lr,
        "logvar_clamp": [-bound, bound] if bound else "the library default",
        "torch_threads": torch.get_num_threads(),
        "environment": environment(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }
    with tempfile.TemporaryDirectory(prefix="vaelab-stability-") as tmp:
        for name in args.cases.split(","):
            report[name] = run_case(name, cases[name], data, test, Path(tmp), args.explode)
            print(f"{name}: {report[name]['status']}", file=sys.stderr)
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
