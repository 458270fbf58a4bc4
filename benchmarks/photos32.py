"""Colour images (photos32, 32x32 patches of photographs): vaelab against its peer pythae at the same
latent size and budget, and the lossless codecs whose bits/dim a likelihood model must beat."""

from __future__ import annotations

import io
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.harness import REPO, STDERR, benchmark, images_per_s, vaelab
from benchmarks.quality import feature_space
from vaelab.data import DataConfig, to_float
from vaelab.evaluation import compare_features, psnr, ssim
from vaelab.evaluation.features import FeatureSpace
from vaelab.evaluation.likelihood import mean_and_se
from vaelab.generation import reconstruct, sample
from vaelab.io.metrics import read_metrics
from vaelab.models import VAE
from vaelab.runtime import derive_seed

VENV = REPO / "benchmarks" / ".venv-pythae"
PYTHAE = "pythae==0.1.2"
TORCH = f"torch=={torch.__version__.split('+')[0]}"  # the peer gets the torch release vaelab runs on
# Each lossless codec's most compressing settings, as Pillow names them.
CODECS = {
    "png": {"format": "PNG", "optimize": True, "compress_level": 9},
    "webp_lossless": {"format": "WEBP", "lossless": True, "quality": 100, "method": 6},
}


def data_path(given: Path | None) -> Path:
    """The photos32 .npz: ``given``, else under ``$VAELAB_DATA`` (CI points it at the shared datasets
    folder), else ``../shared/datasets/photos32/photos32.npz`` beside the repository."""
    root = Path(os.environ.get("VAELAB_DATA") or REPO.parent / "shared" / "datasets")
    path = given or (root if root.suffix == ".npz" else root / "photos32" / "photos32.npz")
    if not path.is_file():
        raise SystemExit(f"photos32 not found at {path}: pass --data PATH or set $VAELAB_DATA")
    return path


@benchmark
def photos32_peer(
    data: Path | None = None,
    minutes: float = 10.0,
    latent: int = 32,
    config: str = str(REPO / "configs" / "folder-rgb.yaml"),
    overrides: tuple[str, ...] = (),
    samples: int = 1000,
    iw_samples: int = 100,
    iw_subset: int | None = None,
    feature_epochs: int | None = None,
    grids: Path | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """vaelab against pythae on photos32: same split, latent size and training-loop minutes, one scorer.

    One after the other (never side by side: they would share the cores), `vaelab train --config` and
    pythae's VAE with the ResNet networks of its CIFAR benchmark (MSE, batch 64, Adam 1e-3), each for
    --minutes. pythae runs in its own environment, benchmarks/.venv-pythae (made on first use with this
    torch release; never a dependency of vaelab). Both are scored by the same code on the test split,
    from 8-bit images: PSNR and SSIM of the decoded posterior means; FD, precision and recall of
    --samples prior samples in one feature space of `vaelab evaluate` (photos32's labels are its source
    photos, split by photo, so that classifier's test accuracy is 0 by construction: only the shared
    net matters). vaelab also gets its test bits/dim (pythae's MSE decoder has no likelihood over
    pixels). --grids writes each side's reconstruction and sample grids (PNG) there.
    """
    from vaelab.io.images import interleave_rows, save_grid

    path = data_path(data)
    with tempfile.TemporaryDirectory(prefix="photos32-peer-") as tmp:
        run = Path(tmp) / "run"
        # epochs unbounded: the clock is what stops it
        sets = [
            f"model.latent_dim={latent}",
            "train.epochs=100000",
            f"train.max_minutes={minutes}",
            *overrides,
        ]
        vaelab_train = train_vaelab(path, run, config, sets)
        vaelab_ll = test_bits_per_dim(path, run, Path(tmp) / "report", iw_samples, iw_subset, seed)
        pythae_train, pythae_images = train_pythae(
            path, Path(tmp) / "pythae.npz", minutes, latent, samples, seed
        )
        model = VAE.from_pretrained(run, device="cpu").eval()
        saved = json.loads((run / "model" / "config.json").read_text())["data"]
    train, test, space = feature_space(DataConfig(name="npz", path=str(path)), feature_epochs)
    # vaelab trains on the file's train images less its validation cut; pythae on all of them.
    n_train, seen = (
        len(train.split(saved["val_fraction"], saved["split_seed"])[0]),
        vaelab_train["images_seen"],
    )
    vaelab_train |= {"train_images": n_train, "epochs": seen / n_train, "epochs_completed": seen // n_train}
    vaelab_train["parameters"] = sum(p.numel() for p in model.parameters())
    drawn = sample(model, samples, seed=derive_seed(seed, "samples"))  # vaelab evaluate's seed for samples
    recon = reconstruct(model, to_float(test.images, "none"))
    sides = {"vaelab": (to_uint8(recon), to_uint8(drawn)), "pythae": pythae_images}
    for side, (reconstructions, prior_samples) in sides.items() if grids else ():
        pairs, per_row = interleave_rows(test.images[:32], reconstructions[:32], 8)
        save_grid(pairs, grids / f"{side}-reconstructions.png", nrow=per_row)
        save_grid(prior_samples[:64], grids / f"{side}-samples.png", nrow=8)
    scores = {side: score(*images, test.images, space, seed) for side, images in sides.items()}
    vaelab_side = {"config": config, "overrides": overrides, "training": vaelab_train, **scores["vaelab"]}
    return {
        "data": {"path": str(path), "test_images": len(test), "train_images": len(train)},
        "budget_minutes": minutes,
        "latent_dim": latent,
        "scoring": f"8-bit images; PSNR / SSIM of decoded posterior means vs the test images; FD / precision"
        f" / recall of {samples} prior samples vs the {len(test)} test images",
        "feature_space": space.describe(),
        "vaelab": vaelab_side | {"log_likelihood": vaelab_ll},
        "pythae": {"training": pythae_train, **scores["pythae"], "log_likelihood": None},
    }


def train_vaelab(path: Path, run: Path, config: str, overrides: list[str]) -> dict[str, Any]:
    """``vaelab train --config`` on photos32 into ``run``: its training facts from metrics.jsonl."""
    start, sets = time.perf_counter(), [f"--set={s}" for s in overrides]
    vaelab("train", "--config", config, "--dataset", path, "--run-dir", run, "--no-progress", *sets)
    rows = [r for r in read_metrics(run) if "train_seconds" in r]
    seconds = sum(r["train_seconds"] for r in rows)
    return {
        "train_seconds": seconds,
        "wall_seconds": time.perf_counter() - start,
        "steps": rows[-1]["step"],
        "images_seen": round(images_per_s(rows) * seconds),
        "final_train_loss": rows[-1]["train_loss"],
    }


def test_bits_per_dim(
    path: Path, run: Path, out: Path, iw_samples: int, subset: int | None, seed: int
) -> dict:
    """The test log-likelihood section of ``vaelab evaluate`` (its sample quality is scored apart)."""
    cli = [f"--iw-samples={iw_samples}", f"--seed={seed}", *([f"--subset={subset}"] if subset else [])]
    cli += ["--split=test", "--no-sample-quality", "--no-progress", "--out", out]
    vaelab("evaluate", run, "--dataset", path, *cli)
    report = json.loads((out / "report.json").read_text())
    keep = ("bits_per_dim", "bits_per_dim_se", "nll", "nll_se", "iw_samples", "images", "unit_note")
    return {k: report["log_likelihood"].get(k) for k in keep} | {"neg_elbo_nats": -report["elbo"]["elbo"]}


@benchmark
def photos32_eval(
    config: str = str(REPO / "configs" / "photos32.yaml"),
    overrides: tuple[str, ...] = (),
    data: Path | None = None,
    iw_samples: int = 20,
    subset: int | None = None,
    n_samples: int | None = None,
    run_dir: Path | None = None,
) -> dict[str, Any]:
    """One config trained on photos32, then `vaelab evaluate` on the test split: bits/dim, ELBO,
    reconstruction PSNR / SSIM and sample FD / precision / recall. The default is the one-CPU-hour
    config (its own budget; --set train.max_minutes=M for another); --run-dir keeps the run."""
    path = data_path(data)
    with tempfile.TemporaryDirectory(prefix="photos32-") as tmp:
        run, out = run_dir or Path(tmp) / "run", Path(tmp) / "report"
        training = train_vaelab(path, run, config, list(overrides))
        cli = [
            f"--iw-samples={iw_samples}",
            *(f"--{k}={v}" for k, v in (("subset", subset), ("n-samples", n_samples)) if v),
        ]
        vaelab("evaluate", run, "--dataset", path, "--split=test", "--no-progress", "--out", out, *cli)
        report = json.loads((out / "report.json").read_text())
    keep = ("data", "elbo", "log_likelihood", "posterior", "reconstruction", "sample_quality", "timings_s")
    return {"config": config, "overrides": overrides, "training": training} | {k: report[k] for k in keep}


def train_pythae(data: Path, out: Path, minutes: float, latent: int, samples: int, seed: int) -> tuple:
    """pythae's side in its own environment (made first if missing): its training facts, and its test
    reconstructions and prior samples as uint8 tensors."""
    python = VENV / "bin" / "python"
    probe = [str(python), "-c", "import pythae, torch; print(torch.__version__)"]
    if not python.exists() or subprocess.run(probe, capture_output=True).returncode != 0:
        # torch first, and named again beside pythae, so that pip can never swap in another torch build
        print(f"making pythae's environment in {VENV} ({TORCH}, {PYTHAE})", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        pip = [str(python), "-m", "pip", "install", "--quiet"]
        subprocess.run([*pip, TORCH], check=True, stdout=STDERR)
        subprocess.run([*pip, TORCH, PYTHAE], check=True, stdout=STDERR)
        subprocess.run(probe, check=True, stdout=STDERR)
    options = {
        "data": data,
        "out": out,
        "minutes": minutes,
        "latent": latent,
        "samples": samples,
        "seed": seed,
    }
    cli = [python, REPO / "benchmarks" / "pythae_photos32.py", *(f"--{k}={v}" for k, v in options.items())]
    start = time.perf_counter()
    done = subprocess.run([str(a) for a in cli], check=True, stdout=subprocess.PIPE, text=True)
    training = json.loads(done.stdout.strip().splitlines()[-1]) | {
        "wall_seconds": time.perf_counter() - start
    }
    with np.load(out) as arrays:
        return training, (torch.from_numpy(arrays["reconstructions"]), torch.from_numpy(arrays["samples"]))


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Floats in [0, 1] rounded to 8-bit levels, as both sides' images are scored."""
    return images.clamp(0, 1).mul(255).round().to(torch.uint8)


def score(
    recon: torch.Tensor, samples: torch.Tensor, test: torch.Tensor, space: FeatureSpace, seed: int
) -> dict:
    """Reconstruction and sample quality of uint8 (N, C, H, W) images against the test images."""
    x, r = to_float(test, "none"), to_float(recon, "none")
    out: dict[str, Any] = {}
    for name, values in (
        ("mse", ((r - x) ** 2).flatten(1).mean(1)),
        ("psnr", psnr(r, x)),
        ("ssim", ssim(r, x)),
    ):
        out[name], out[f"{name}_se"] = mean_and_se(values)
    out["psnr_of_mean_mse"] = -10 * math.log10(out["mse"])
    return {
        "reconstruction": out,
        "samples": compare_features(space.embed(test), space.embed(samples), seed=seed),
    }


@benchmark
def lossless_codecs(
    data: Path | None = None, split: str = "test", limit: int | None = None
) -> dict[str, Any]:
    """The floor a likelihood model must beat on photos32: bits/dim of off-the-shelf lossless codecs.

    Pillow compresses each 32x32 patch alone as PNG (zlib level 9, optimised) and as lossless WebP
    (method 6), and all patches tiled into one mosaic image, where the codec shares statistics across
    patches as a model shares its weights. bits/dim = 8 x bytes / (N x 32 x 32 x 3); every file is
    decoded again and checked to give the same pixels. About 1.5 minutes on one core for the 1,500 test
    patches (--limit N: the first N).
    """
    import PIL
    from PIL import Image, features

    path = data_path(data)
    with np.load(path, allow_pickle=False) as arrays:
        patches = np.ascontiguousarray(arrays[f"{split}_images"][:limit])

    def size(image: np.ndarray, options: dict[str, Any]) -> int:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, **options)
        if not np.array_equal(np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")), image):
            raise RuntimeError(f"{options['format']} did not round-trip exactly: not lossless")
        return buffer.getbuffer().nbytes

    (n, h, w, c), dims = patches.shape, patches[0].size
    rows = max(r for r in range(1, math.isqrt(n) + 1) if n % r == 0)  # the most nearly square grid: 30 x 50
    mosaic = patches.reshape(rows, n // rows, h, w, c).transpose(0, 2, 1, 3, 4).reshape(rows * h, -1, c)
    codecs = {}
    for name, options in CODECS.items():
        sizes, mosaic_bytes = [size(p, options) for p in patches], size(mosaic, options)
        codecs[name] = {
            "per_patch_bits_per_dim": 8 * sum(sizes) / (n * dims),
            "per_patch_median_bits_per_dim": 8 * statistics.median(sizes) / dims,
            "per_patch_bytes_total": sum(sizes),
            "mosaic_bits_per_dim": 8 * mosaic_bytes / (n * dims),
            "mosaic_bytes": mosaic_bytes,
            "mosaic_grid": f"{rows}x{n // rows}",
        }
    versions = {
        "pillow": PIL.__version__,
        "libwebp": features.version("webp"),
        "zlib": features.version("zlib"),
    }
    settings = {name: {k: v for k, v in options.items() if k != "format"} for name, options in CODECS.items()}
    data = {"path": str(path), "split": split, "patches": n, "shape": patches.shape[1:]}
    return {"data": data, "settings": settings, "libraries": versions, "codecs": codecs}
