"""vaelab against its peer pythae on photos32: same split, latent size and wall-clock budget, one scorer.

Trains, one after the other (never side by side: they would share the cores), vaelab's model of
``--config`` through ``vaelab train`` and pythae's VAE with the ResNet networks of pythae's CIFAR
benchmark (MSE loss, batch 64, Adam 1e-3; ``_pythae_photos32.py``), each for ``--minutes`` of
training-loop time. pythae runs in its own virtual environment, ``benchmarks/.venv-pythae``, made on
first use with the same torch release as this one; it is never a dependency of vaelab.

Both sides are then scored by the same vaelab code on the file's test split, from images rounded to
8 bits as a saved image would hold them: per-image PSNR (mean, and PSNR of the mean MSE) and SSIM of
the decoded posterior means, and Frechet distance, precision and recall of ``--samples`` prior
samples against the test images in the feature space of one ``vaelab evaluate`` feature net. vaelab
also gets its test bits/dim from ``vaelab evaluate`` (pythae's MSE decoder defines no likelihood
over pixels, so it has none). Prints one JSON object.

photos32's labels are its source photos and its split is by photo, so the feature classifier's test
accuracy is 0 by construction; what matters here is that both sides are embedded by the same net.

    python benchmarks/photos32_peer.py --minutes 10 --out peer.json
    python benchmarks/photos32_peer.py --minutes 0.2 --iw-samples 2 --iw-subset 100 --feature-epochs 1
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _photos32 import REPO, data_path, emit, header

from vaelab.cli.evaluate import FEATURE_TRAIN_LIMIT
from vaelab.data import load_dataset, to_float
from vaelab.data.config import DataConfig
from vaelab.evaluation import compare_features, psnr, ssim
from vaelab.evaluation.features import FeatureNetConfig, FeatureSpace, load_feature_space
from vaelab.evaluation.likelihood import mean_and_se
from vaelab.evaluation.report import in_memory
from vaelab.generation import reconstruct, sample
from vaelab.io.images import interleave_rows, save_grid
from vaelab.models import VAE
from vaelab.runtime import derive_seed

VENV = REPO / "benchmarks" / ".venv-pythae"
PYTHAE = "pythae==0.1.2"
TORCH = f"torch=={torch.__version__.split('+')[0]}"  # the peer gets the torch release vaelab runs on


def peer_python() -> Path:
    """pythae's interpreter, its virtual environment made first if missing. torch is installed before
    pythae and named again beside it, so pip can never swap in another torch build."""
    python = VENV / "bin" / "python"
    probe = [str(python), "-c", "import pythae, torch; print(torch.__version__)"]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    print(f"making pythae's environment in {VENV} ({TORCH}, {PYTHAE})", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, TORCH], check=True, stdout=sys.stderr)
    subprocess.run([*pip, TORCH, PYTHAE], check=True, stdout=sys.stderr)
    subprocess.run(probe, check=True, stdout=sys.stderr)
    return python


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Floats in [0, 1] rounded to 8-bit levels, as both sides' images are scored."""
    return images.clamp(0, 1).mul(255).round().to(torch.uint8)


def train_vaelab(args: argparse.Namespace, data: Path, work: Path) -> tuple[Path, dict[str, Any]]:
    """``vaelab train`` for the budget (epochs unbounded, so the clock is what stops it); the run dir and
    its training facts from metrics.jsonl."""
    run = work / "vaelab-run"
    sets = [f"model.latent_dim={args.latent}", "train.epochs=100000", f"train.max_minutes={args.minutes}"]
    cli = [sys.executable, "-m", "vaelab", "train", "--config", args.config, "--dataset", str(data)]
    cli += [f"--set={s}" for s in [*sets, *args.overrides]] + ["--run-dir", str(run), "--no-progress"]
    t0 = time.perf_counter()
    subprocess.run(cli, check=True, stdout=sys.stderr)
    wall = time.perf_counter() - t0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    rows = [r for r in rows if "train_seconds" in r]
    seconds = sum(r["train_seconds"] for r in rows)
    return run, {
        "train_seconds": seconds,
        "wall_seconds": wall,
        "steps": rows[-1]["step"],
        "images_seen": round(sum(r["images_per_s"] * r["train_seconds"] for r in rows)),
        "final_train_loss": rows[-1]["train_loss"],
    }


def bits_per_dim(args: argparse.Namespace, run: Path, data: Path, work: Path) -> dict[str, Any]:
    """The test log-likelihood section of ``vaelab evaluate`` (its sample quality is scored below)."""
    cli = [sys.executable, "-m", "vaelab", "evaluate", str(run), "--dataset", str(data), "--split", "test"]
    cli += ["--iw-samples", str(args.iw_samples), "--seed", str(args.seed), "--no-sample-quality"]
    cli += ["--no-progress", "--out", str(work / "vaelab-report")]
    cli += ["--subset", str(args.iw_subset)] if args.iw_subset else []
    subprocess.run(cli, check=True, stdout=sys.stderr)
    report = json.loads((work / "vaelab-report" / "report.json").read_text())
    ll = report["log_likelihood"]
    keep = ("bits_per_dim", "bits_per_dim_se", "nll", "nll_se", "iw_samples", "images", "unit_note")
    return {k: ll.get(k) for k in keep} | {"neg_elbo_nats": -report["elbo"]["elbo"]}


def score(
    recon: torch.Tensor, samples: torch.Tensor, test: torch.Tensor, space: FeatureSpace, seed: int
) -> dict[str, Any]:
    """Reconstruction and sample quality of uint8 (N, C, H, W) images against the test images."""
    x, r = to_float(test, "none"), to_float(recon, "none")
    mse = ((r - x) ** 2).flatten(1).mean(1)
    out: dict[str, Any] = {}
    for name, values in (("mse", mse), ("psnr", psnr(r, x)), ("ssim", ssim(r, x))):
        out[name], out[f"{name}_se"] = mean_and_se(values)
    out["psnr_of_mean_mse"] = -10 * math.log10(out["mse"])
    return {
        "reconstruction": out,
        "samples": compare_features(space.embed(test), space.embed(samples), seed=seed),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="photos32.npz (default: $VAELAB_DATA/photos32/, else ../shared/datasets/)")
    p.add_argument("--minutes", type=float, default=10.0, help="training budget of each side (default 10)")
    p.add_argument("--latent", type=int, default=32)
    p.add_argument("--config", default=str(REPO / "configs" / "folder-rgb.yaml"), help="vaelab's side")
    p.add_argument("--set", dest="overrides", action="append", default=[], help="KEY=VALUE for vaelab train")
    p.add_argument("--samples", type=int, default=1000, help="prior samples per side for FD / P / R")
    p.add_argument("--iw-samples", type=int, default=100, help="K of vaelab's test bits/dim")
    p.add_argument("--iw-subset", type=int, help="test images for vaelab's bits/dim (default all)")
    p.add_argument("--feature-epochs", type=int, help="feature-net epochs (default vaelab evaluate's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="also write the JSON here")
    p.add_argument("--grids", help="also write each side's reconstruction and sample grids (PNG) here")
    args = p.parse_args()
    data = data_path(args.data)
    python = peer_python()
    with tempfile.TemporaryDirectory(prefix="photos32-peer-") as tmp:
        work = Path(tmp)
        run, vaelab_train = train_vaelab(args, data, work)
        peer_cli = [str(python), str(REPO / "benchmarks" / "_pythae_photos32.py"), "--data", str(data)]
        peer_cli += ["--out", str(work / "pythae.npz"), "--minutes", str(args.minutes)]
        peer_cli += ["--latent", str(args.latent), "--samples", str(args.samples), "--seed", str(args.seed)]
        t0 = time.perf_counter()
        done = subprocess.run(peer_cli, check=True, stdout=subprocess.PIPE, text=True)
        pythae_train = json.loads(done.stdout.strip().splitlines()[-1])
        pythae_train["wall_seconds"] = time.perf_counter() - t0
        with np.load(work / "pythae.npz") as arrays:
            pythae_images = torch.from_numpy(arrays["reconstructions"]), torch.from_numpy(arrays["samples"])
        vaelab_ll = bits_per_dim(args, run, data, work)
        model = VAE.from_pretrained(run, device="cpu").eval()
        saved_data = json.loads((run / "model" / "config.json").read_text())["data"]

    cfg = DataConfig(name="npz", path=str(data))
    train, test = (in_memory(load_dataset(cfg, s, progress=False)) for s in ("train", "test"))
    feature_cfg = None
    if args.feature_epochs:
        feature_cfg = FeatureNetConfig(
            image_shape=train.image_shape, num_classes=train.num_classes, epochs=args.feature_epochs
        )
    # One feature net for both sides: the one vaelab evaluate trains (and caches) for this data.
    space = load_feature_space(in_memory(train, FEATURE_TRAIN_LIMIT), test, config=feature_cfg, progress=True)
    # vaelab trains on the file's train images less its validation cut; pythae on all of them.
    n_train = len(train.split(saved_data["val_fraction"], saved_data["split_seed"])[0])
    seen = vaelab_train["images_seen"]
    vaelab_train |= {"train_images": n_train, "epochs_completed": seen // n_train, "epochs": seen / n_train}
    vaelab_train["parameters"] = sum(p.numel() for p in model.parameters())
    x = to_float(test.images, "none")
    samples = sample(model, args.samples, seed=derive_seed(args.seed, "samples"))  # vaelab evaluate's seed
    vaelab_images = to_uint8(reconstruct(model, x)), to_uint8(samples)
    if args.grids:
        for side, (recon, drawn) in (("vaelab", vaelab_images), ("pythae", pythae_images)):
            pairs, per_row = interleave_rows(test.images[:32], recon[:32], 8)
            save_grid(pairs, Path(args.grids) / f"{side}-reconstructions.png", nrow=per_row)
            save_grid(drawn[:64], Path(args.grids) / f"{side}-samples.png", nrow=8)
    report = {
        **header("photos32_peer"),
        "data": {"path": str(data), "test_images": len(test), "train_images": len(train)},
        "budget_minutes": args.minutes,
        "latent_dim": args.latent,
        "scoring": "8-bit images; PSNR / SSIM of decoded posterior means vs the test images; FD / precision"
        f" / recall of {args.samples} prior samples vs the {len(test)} test images",
        "feature_space": space.describe(),
        "vaelab": {
            "config": args.config,
            "overrides": args.overrides,
            "training": vaelab_train,
            **score(*vaelab_images, test.images, space, args.seed),
            "log_likelihood": vaelab_ll,
        },
        "pythae": {
            "training": pythae_train,
            **score(*pythae_images, test.images, space, args.seed),
            "log_likelihood": None,
        },
    }
    emit(report, args.out)


if __name__ == "__main__":
    main()
