"""Colour images (photos32, 32x32 patches of photographs): vaelab against its peer pythae at the same
latent size and budget, and the lossless codecs whose bits/dim a likelihood model must beat."""

from __future__ import annotations

import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.harness import REPO, benchmark, evaluate, in_subprocess, pythae_python, train_cli
from benchmarks.quality import feature_space
from vaelab.cli.common import saved_data_config
from vaelab.data import DataConfig, to_float
from vaelab.data.ood_sets import photos_path
from vaelab.evaluation import compare_features, compare_reconstructions
from vaelab.evaluation.features import FeatureSpace
from vaelab.evaluation.likelihood import mean_and_se
from vaelab.evaluation.ood.codec import CODECS, codec_bits
from vaelab.generation import reconstruct, sample
from vaelab.io.images import interleave_rows, save_grid, to_uint8
from vaelab.models import VAE
from vaelab.runtime import derive_seed


def data_path(given: Path | None) -> Path:
    """The photos32 .npz: ``given``, else ``photos32/photos32.npz`` under ``$VAELAB_DATA`` (CI points it
    at the shared datasets folder), else under ``../shared/datasets`` beside the repository."""
    path = given or photos_path(os.environ.get("VAELAB_DATA") or str(REPO.parent / "shared" / "datasets"))
    if not path.is_file():
        raise SystemExit(f"photos32 not found at {path}: pass --data PATH or set $VAELAB_DATA")
    return path


@benchmark
def photos32(
    config: str = str(REPO / "configs" / "photos32.yaml"),
    overrides: tuple[str, ...] = (),
    data: Path | None = None,
    iw_samples: int = 20,
    subset: int | None = None,
    n_samples: int | None = None,
    run_dir: Path | None = None,
    peer_minutes: float | None = None,
    feature_epochs: int | None = None,
    grids: Path | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """One config trained on photos32 (by default the one-CPU-hour config), then `vaelab evaluate` on the
    test split. --peer-minutes M: it and pythae's CIFAR ResNet VAE (in benchmarks/.venv-pythae, made on
    first use) each train M minutes, one after the other, both scored by the same code from 8-bit images
    (PSNR / SSIM; FD, precision, recall of --n-samples samples); --grids DIR: both sides' image grids."""
    path, sets = data_path(data), [*overrides]
    if peer_minutes:  # epochs unbounded: the clock is what stops it
        sets = [f"train.max_minutes={peer_minutes}", "train.epochs=100000", *overrides]
    options = {"subset": subset, "n-samples": n_samples, "seed": seed}
    cli = [f"--iw-samples={iw_samples}", *(f"--{k}={v}" for k, v in options.items() if v is not None)]
    with tempfile.TemporaryDirectory(prefix="photos32-") as tmp:
        run = run_dir or Path(tmp) / "run"
        training = train_cli(run, "--config", config, "--dataset", path, *(f"--set={s}" for s in sets))
        # with a peer, both sides' sample quality is scored apart, by the same code
        report = evaluate(run, "--dataset", path, *cli, *(["--no-sample-quality"] if peer_minutes else []))
        if peer_minutes:
            scored = peer(run, path, peer_minutes, n_samples or 1000, feature_epochs, grids, seed)
            n_train, seen = scored["vaelab"]["train_images"], training["images_seen"]
            training |= {"epochs": seen / n_train, "epochs_completed": seen // n_train}
    keep = ("data", "elbo", "log_likelihood", "posterior", "reconstruction", "sample_quality", "timings_s")
    out = {"config": config, "overrides": overrides, "training": training} | {k: report.get(k) for k in keep}
    return out | ({"peer": scored} if peer_minutes else {})


def peer(
    run: Path, path: Path, minutes: float, samples: int, epochs: int | None, grids: Path | None, seed: int
) -> dict[str, Any]:
    """pythae's side trained for ``minutes``, and both sides scored by the same code."""
    model = VAE.from_pretrained(run, device="cpu").eval()
    saved = saved_data_config(run)
    with tempfile.TemporaryDirectory() as tmp:
        options = {"data": path, "minutes": minutes, "latent": model.latent_dim, "samples": samples}
        pythae_train, pythae_images = train_pythae(Path(tmp) / "pythae.npz", seed=seed, **options)
    train, test, space = feature_space(DataConfig(name="npz", path=str(path)), epochs)
    # vaelab trains on the file's train images less its validation cut; pythae on all of them.
    n_train = len(train.split(saved["val_fraction"], saved["split_seed"])[0])
    parameters = sum(p.numel() for p in model.parameters())
    drawn = sample(model, samples, seed=derive_seed(seed, "samples"))  # vaelab evaluate's seed for samples
    recon = reconstruct(model, to_float(test.images, "none"))
    sides = {"vaelab": (to_uint8(recon), to_uint8(drawn)), "pythae": pythae_images}
    for side, (reconstructions, prior_samples) in sides.items() if grids else ():
        pairs, per_row = interleave_rows(test.images[:32], reconstructions[:32], 8)
        save_grid(pairs, grids / f"{side}-reconstructions.png", nrow=per_row)
        save_grid(prior_samples[:64], grids / f"{side}-samples.png", nrow=8)
    scores = {side: score(*images, test.images, space, seed) for side, images in sides.items()}
    return {
        "budget_minutes": minutes,
        "scoring": f"8-bit images; PSNR / SSIM of decoded posterior means vs the {len(test)} test images;"
        f" FD / precision / recall of {samples} prior samples vs the test images",
        "feature_space": space.describe(),
        "vaelab": {"train_images": n_train, "parameters": parameters, **scores["vaelab"]},
        "pythae": {"training": pythae_train, **scores["pythae"]},
    }


def train_pythae(out: Path, **options: Any) -> tuple[dict[str, Any], tuple[torch.Tensor, ...]]:
    """pythae's side in its own environment (made if missing): its training, test reconstructions and
    prior samples (uint8)."""
    python = pythae_python()
    start = time.perf_counter()
    training = in_subprocess("benchmarks.pythae_peer:photos32", python, out=out, **options)
    with np.load(out) as arrays:
        images = torch.from_numpy(arrays["reconstructions"]), torch.from_numpy(arrays["samples"])
    return training | {"wall_seconds": time.perf_counter() - start}, images


def score(
    recon: torch.Tensor, samples: torch.Tensor, test: torch.Tensor, space: FeatureSpace, seed: int
) -> dict:
    """Reconstruction and sample quality of uint8 (N, C, H, W) images against the test images."""
    pairs = zip(to_float(recon, "none").split(1000), to_float(test, "none").split(1000), strict=True)
    samples_vs_test = compare_features(space.embed(test), space.embed(samples), seed=seed)
    return {"reconstruction": compare_reconstructions(pairs), "samples": samples_vs_test}


@benchmark
def lossless_codecs(
    data: Path | None = None, limit: int | None = None, model: Path | None = None, iw_samples: int = 20
) -> dict[str, Any]:
    """The floor a likelihood model must beat on photos32: bits/dim of Pillow's PNG and lossless WebP at
    their strongest settings (`vaelab score`'s), each test patch alone and all tiled into one mosaic (the
    codec shares statistics across patches as a model shares its weights); each file must decode exactly.
    --model RUN: also that model's IW bits/dim (--iw-samples) of every patch, and its paired difference from
    each codec's on the same patches (mean, standard error, fraction of patches the model codes shorter)."""
    import PIL
    from PIL import features

    path = data_path(data)
    with np.load(path, allow_pickle=False) as arrays:
        patches = torch.from_numpy(arrays["test_images"][:limit]).permute(0, 3, 1, 2)  # (N, 3, 32, 32)
    (n, c, h, w), dims = patches.shape, patches[0].numel()
    rows = max(r for r in range(1, math.isqrt(n) + 1) if n % r == 0)  # the most nearly square grid: 30 x 50
    mosaic = patches.reshape(rows, n // rows, c, h, w).permute(2, 0, 3, 1, 4).reshape(1, c, rows * h, -1)
    codecs, model_bits = {}, None if model is None else _model_bits(model, patches, iw_samples)
    for codec in CODECS:
        bits = codec_bits(patches, codec, verify=True)
        codecs[codec] = {
            "per_patch_bits_per_dim": bits.sum() / (n * dims),
            "per_patch_median_bits_per_dim": float(np.median(bits)) / dims,
            "mosaic_bits_per_dim": codec_bits(mosaic, codec, verify=True)[0] / (n * dims),
            "mosaic_grid": f"{rows}x{n // rows}",
        }
        if model_bits is not None:  # the same patches, so the difference is paired
            diff = model_bits - torch.as_tensor(bits, dtype=torch.float64) / dims
            mean, se = mean_and_se(diff)
            codecs[codec] |= {"model_minus_codec_bits_per_dim": mean, "se": se}
            codecs[codec]["patches_model_shorter"] = float((diff < 0).double().mean())
    versions = {"pillow": PIL.__version__} | {lib: features.version(lib) for lib in ("webp", "zlib")}
    data = {"path": str(path), "split": "test", "patches": n, "shape": tuple(patches.shape[1:])}
    out = {"data": data, "libraries": versions, "codecs": codecs}
    if model_bits is not None:
        out["model"] = {"path": str(model), "iw_samples": iw_samples}
        mean, se = mean_and_se(model_bits)
        out["model"] |= {"bits_per_dim": mean, "se": se}
    return out


def _model_bits(model: Path, patches: torch.Tensor, iw_samples: int) -> torch.Tensor:
    """(N,) IW bits/dim of each patch under the saved model at ``model`` (a run or model directory), in
    `vaelab evaluate`'s units (a density over [0, 1] pays D ln 256 for its 8-bit bins)."""
    from vaelab.data import ImageDataset
    from vaelab.errors import UsageError
    from vaelab.evaluation import evaluate_log_likelihood, nats_to_bits_per_dim
    from vaelab.evaluation.measure import likelihood_unit

    vae = VAE.from_pretrained(model).eval()
    levels, note = likelihood_unit(vae, "none")
    if levels is None:
        raise UsageError(f"--model {model}: no bits/dim to set beside a codec's ({note})")
    ll = evaluate_log_likelihood(vae, ImageDataset(patches, None, "photos32", None), iw_samples=iw_samples)
    return nats_to_bits_per_dim(-ll.log_px.double(), patches[0].numel(), levels)
