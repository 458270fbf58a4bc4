"""Control targets: conditional MNIST, the GMM prior's FID, beta-TCVAE vs VAE MIG on dSprites-like data.

Each part prints one JSON object (run them one at a time under the lock; each stays under ~10 minutes
on 2 CPU cores):

    python benchmarks/control.py conditional [--epochs 20]       # per-class accuracy of conditional samples
    python benchmarks/control.py gmm --model runs/seed-mnist      # FID with N(0, I) vs the GMM prior
    python benchmarks/control.py mig [--objective vae|beta_tcvae]  # MIG of a VAE and a beta-TCVAE

``conditional`` trains a conditional MLP VAE on MNIST and classifies 1,000 samples per class (temperature
1) with the evaluation classifier (the cached feature net of ``vaelab evaluate``). ``gmm`` copies the
model to a scratch directory, fits a 10-component mixture to the training set's posterior means and
compares 10,000 samples from each prior against the test set in the feature space. ``mig`` trains the
same architecture with the ELBO and with beta-TCVAE on the ``dsprites`` dataset and measures MIG on its
test split.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from vaelab.config import load_config
from vaelab.data import DataConfig, load_dataset, to_float
from vaelab.evaluation.features import load_feature_space
from vaelab.evaluation.report import in_memory
from vaelab.generation import sample
from vaelab.generation.conditional import balanced_labels
from vaelab.runtime import environment
from vaelab.training import train


def conditional(args: argparse.Namespace) -> dict[str, Any]:
    config = load_config(
        "configs/cvae.yaml",
        [f"train.epochs={args.epochs}", f"model.latent_dim={args.latent_dim}", f"train.seed={args.seed}"],
    )
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        result = train(config, Path(tmp) / "run", progress=False, log=True)
        model = result.model
        if args.save:
            shutil.copytree(Path(tmp) / "run", args.save, dirs_exist_ok=True)
    train_seconds = time.perf_counter() - t0
    data_cfg = DataConfig(name="mnist")
    train_set = in_memory(load_dataset(data_cfg, "train", progress=False), 60_000)
    test_set = in_memory(load_dataset(data_cfg, "test", progress=False))
    space = load_feature_space(train_set, test_set)
    k = model.num_classes
    labels = balanced_labels(args.per_class * k, list(range(k)))
    images = sample(model, len(labels), temperature=1.0, seed=args.seed, labels=labels)
    with torch.inference_mode():
        pred = torch.cat([space.net(images[i : i + 1000]).argmax(1) for i in range(0, len(images), 1000)])
    per_class = {str(c): float((pred[labels == c] == c).float().mean()) for c in range(k)}
    return {
        "part": "conditional",
        "config": f"configs/cvae.yaml (MLP 512-256, label-conditioned), latent_dim={args.latent_dim}, "
        f"{args.epochs} epochs, seed {args.seed}",
        "train_seconds": train_seconds,
        "val_elbo": result.history[-1]["val_elbo"],
        "samples_per_class": args.per_class,
        "temperature": 1.0,
        "classifier": space.describe(),
        "accuracy_per_class": per_class,
        "min_class_accuracy": min(per_class.values()),
        "mean_accuracy": float((pred == labels).float().mean()),
        "target_met": min(per_class.values()) >= 0.97,
    }


def gmm(args: argparse.Namespace) -> dict[str, Any]:
    """N(0, I) against the GMM prior at T = 1: ``sample_sweep.run_sweep`` with the GMM's disk round trip."""
    from sample_sweep import run_sweep

    sweep = run_sweep(
        args.model,
        ["standard_normal", "gmm"],
        ["1"],
        components=args.components,
        n=args.n,
        seed=args.seed,
        via_disk=True,
    )
    rows = {row["prior"]: row for row in sweep["rows"]}
    keep = ("model", "samples", "reference", "fit_images", "feature_space", "gmm_info")
    return {
        "part": "gmm",
        **{k: sweep[k] for k in keep},
        "components": args.components,
        "covariance": sweep["gmm_covariance"],
        "fit_seconds": sweep["gmm_fit_seconds"],
        "results": rows,
        "fd_ratio_gmm_over_normal": rows["gmm"]["fd"] / rows["standard_normal"]["fd"],
        "target_met": rows["gmm"]["fd"] < rows["standard_normal"]["fd"],
    }


def mig(args: argparse.Namespace) -> dict[str, Any]:
    from vaelab.evaluation.disentanglement import mutual_information_gap

    base = [
        "data.name=dsprites",
        "model.latent_dim=10",
        "model.encoder.hidden_dims=[512,256]",
        "model.decoder.hidden_dims=[256,512]",
        f"train.max_steps={args.steps}",
        "train.epochs=1000",
        f"train.batch_size={args.batch_size}",
        "train.lr=1e-3",
        "train.image_every=1000",
        f"train.seed={args.seed}",
    ]
    objectives = {
        "vae": ["objective.name=elbo"],
        "beta_tcvae": [
            "objective.name=tcvae",
            f"objective.beta={args.beta}",
            f"objective.estimator={args.estimator}",
        ],
    }
    out: dict[str, Any] = {
        "part": "mig",
        "steps": args.steps,
        "batch_size": args.batch_size,
        "seed": args.seed,
    }
    test = load_dataset(DataConfig(name="dsprites"), "test", progress=False)
    if args.objective != "both":
        objectives = {args.objective: objectives[args.objective]}
    for name, extra in objectives.items():
        config = load_config(None, base + extra)
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            result = train(config, Path(tmp) / "run", progress=False, log=False)
            if args.save:
                shutil.copytree(Path(tmp) / "run", Path(args.save) / name, dirs_exist_ok=True)
        from vaelab.generation import encode_mean

        z = encode_mean(result.model, to_float(test.images))
        score = mutual_information_gap(z, test.factors, test.factor_names)
        out[name] = {
            "objective": extra,
            "train_seconds": time.perf_counter() - t0,
            "val_elbo": result.history[-1]["val_elbo"],
            "mig": score["mig"],
            "mig_per_factor": score["per_factor"],
        }
    out["test_images"] = len(test)
    out["factor_grid"] = dict(zip(test.factor_names, test.factor_sizes, strict=True))
    if len(objectives) == 2:
        out["target_met"] = out["beta_tcvae"]["mig"] > out["vae"]["mig"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="part", required=True)
    c = sub.add_parser("conditional")
    c.add_argument("--epochs", type=int, default=20)
    c.add_argument("--latent-dim", type=int, default=4)
    c.add_argument("--per-class", type=int, default=1000)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--save", metavar="DIR", help="keep the trained run here")
    g = sub.add_parser("gmm")
    g.add_argument("--model", required=True)
    g.add_argument("--components", type=int, default=10)
    g.add_argument("-n", type=int, default=10_000)
    g.add_argument("--seed", type=int, default=0)
    m = sub.add_parser("mig")
    m.add_argument("--steps", type=int, default=4000)
    m.add_argument("--batch-size", type=int, default=256)
    m.add_argument("--beta", type=float, default=6.0)
    m.add_argument("--estimator", choices=["mws", "mss"], default="mss")
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--objective", choices=["both", "vae", "beta_tcvae"], default="both")
    m.add_argument("--save", metavar="DIR", help="keep the trained runs under DIR/vae, DIR/beta_tcvae")
    args = parser.parse_args()
    torch.manual_seed(0)
    result = {"conditional": conditional, "gmm": gmm, "mig": mig}[args.part](args)
    result["command"] = " ".join(["python", *sys.argv])
    result["date"] = time.strftime("%Y-%m-%d")
    result["environment"] = environment()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
