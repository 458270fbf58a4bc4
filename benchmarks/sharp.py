"""Does the adversarial decoder buy sharpness? A config and its non-adversarial twin at equal wall clock,
side by side, scored by ``vaelab evaluate``."""

from __future__ import annotations

import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

from benchmarks.harness import REPO, benchmark, evaluate, train_cli
from benchmarks.photos32 import data_path

KEEP = ("elbo", "log_likelihood", "reconstruction", "sample_quality", "sample_sharpness")
SUMMARY = {
    "hf_power_ratio": "reconstruction",
    "psnr": "reconstruction",
    "fd": "sample_quality",
    "recall": "sample_quality",
    "near_binary_fraction": "sample_sharpness",
}


def _side(
    run: Path, config: str, dataset: str, sets: list[str], scoring: list[str], threads: int | None
) -> dict[str, Any]:
    """Train one side into ``run`` and score it: its training summary and the kept report sections."""
    training = train_cli(run, "--config", config, "--dataset", dataset, *sets, threads=threads)
    report = evaluate(run, "--dataset", dataset, *scoring)
    return {"training": training} | {k: report.get(k) for k in KEEP}


@benchmark
def sharp(
    config: str = str(REPO / "configs" / "photos32-sharp.yaml"),
    dataset: str | None = None,
    minutes: float = 60.0,
    overrides: tuple[str, ...] = (),
    iw_samples: int = 5,
    n_samples: int = 1000,
    runs: Path | None = None,
    side_by_side: bool = True,
) -> dict[str, Any]:
    """--config and its non-adversarial twin (the same file with objective.name=elbo), each trained
    --minutes on --dataset and then scored by `vaelab evaluate` on the test split: PSNR / SSIM, the
    high-frequency power and Laplacian variance ratios of reconstructions and samples, the near-binary pixel
    fraction, sample FD / precision / recall. Side by side (the default) the two train and score at the same
    time, one thread each (on a 2-core machine, a core each); --no-side-by-side runs them one after the
    other with the threads torch picks. --runs DIR keeps both run directories (their grids), as DIR/sharp and
    DIR/twin. --dataset: a dataset name or path (default: photos32, found as the photos32 benchmark does)."""
    dataset = dataset or str(data_path(None))
    sides = {"sharp": [], "twin": ["objective.name=elbo"]}
    budget = [f"train.max_minutes={minutes}", "train.epochs=100000", "train.image_every=100000"]
    budget += ["train.num_threads=1"] if side_by_side else []
    scoring = [f"--iw-samples={iw_samples}", f"--n-samples={n_samples}"]
    out: dict[str, Any] = {"config": config, "dataset": dataset, "minutes": minutes}
    out["side_by_side"] = side_by_side
    with tempfile.TemporaryDirectory(prefix="sharp-") as tmp:
        jobs = {
            side: ((runs or Path(tmp)) / side, [f"--set={s}" for s in [*budget, *overrides, *extra]])
            for side, extra in sides.items()
        }
        threads = 1 if side_by_side else None
        with ThreadPoolExecutor(max_workers=len(sides) if side_by_side else 1) as pool:
            futures = {
                side: pool.submit(_side, run, config, dataset, sets, scoring, threads)
                for side, (run, sets) in jobs.items()
            }
            for side, extra in sides.items():
                out[side] = {"overrides": [*overrides, *extra]} | futures[side].result()
    out["summary"] = {
        key: {side: (out[side].get(part) or {}).get(key) for side in sides} for key, part in SUMMARY.items()
    }
    return out


def _with_band(images: torch.Tensor, band: torch.Tensor, gain: torch.Tensor) -> torch.Tensor:
    """``images`` (B, C, H, W) with the frequencies in ``band`` (H, W: 1 inside) scaled by ``gain`` (B,),
    each channel's mean kept, clamped to [0, 1]."""
    spectrum = torch.fft.fft2(images)
    scale = 1 + (gain[:, None, None, None] - 1) * band
    return torch.fft.ifft2(spectrum * scale).real.clamp(0, 1)


@benchmark
def detail_cost(
    run: Path, dataset: str | None = None, target: float = 0.8, max_images: int = 2000
) -> dict[str, Any]:
    """What raising RUN's reconstructions' high-frequency (HF) power ratio to --target costs in PSNR,
    when nothing else changes: a reference for an objective that adds detail. Scores the reconstructions
    of --dataset's test split (default: photos32) as they are and three edits of them, each raising every
    image's power above half Nyquist, where the HF ratio sums it: sharpened per image (the band scaled
    to --target times that image's input power: coherent with what the decoder got right, the cheapest
    way in squared error), sharpened with one gain for all images (a fixed filter), and with added detail
    of independent phase (Gaussian noise limited to the band, per image up to --target of its input's
    power: detail the code does not place). Pixels are clamped to [0, 1], so the ratios land a little
    under --target."""
    from vaelab.data.inputs import load_inputs
    from vaelab.evaluation.reconstruction import compare_reconstructions
    from vaelab.evaluation.sharpness import HALF_NYQUIST, high_frequency_power
    from vaelab.models import VAE
    from vaelab.objectives.spectral import radial_bins

    model = VAE.from_pretrained(run)  # a run directory or a saved model, in eval mode
    source = dataset or str(data_path(None))
    x = load_inputs(source, model.image_shape, split="test").images[:max_images].float() / 255
    with torch.inference_mode():
        rec = torch.cat([model.reconstruct(x[i : i + 500]).float() for i in range(0, len(x), 500)])
    h, w = x.shape[-2:]
    band = (radial_bins(h, w) / min(h, w) > HALF_NYQUIST).float()  # the bins the HF ratio sums
    power_in, power_rec = high_frequency_power(x).float(), high_frequency_power(rec).float()
    per_image = (target * power_in / power_rec.clamp_min(1e-12)).sqrt()
    one_gain = float((target * power_in.sum() / power_rec.sum()).sqrt())
    noise = torch.fft.ifft2(torch.fft.fft2(torch.randn_like(rec)) * band).real
    noise_scale = ((target * power_in - power_rec).clamp_min(0) / high_frequency_power(noise).float()).sqrt()
    edits = {
        "reconstructions": rec,
        "sharpened_per_image": _with_band(rec, band, per_image),
        "sharpened_one_gain": _with_band(rec, band, torch.full((len(rec),), one_gain)),
        "independent_phase_detail": (rec + noise_scale[:, None, None, None] * noise).clamp(0, 1),
    }
    keys = ("psnr", "psnr_se", "psnr_of_mean_mse", "ssim", "hf_power_ratio")
    out: dict[str, Any] = {"run": str(run), "dataset": source, "images": len(x), "target": target}
    out["one_gain"] = one_gain
    for name, images in edits.items():
        scores = compare_reconstructions([(images, x)])
        out[name] = {key: scores[key] for key in keys}
    return out


@benchmark
def clipped_samples(
    runs: tuple[Path, ...], n: int = 500, seed: int = 0, margin: float = 0.05, min_pixels: int = 12
) -> dict[str, Any]:
    """How much of each RUN's prior samples the clip to [0, 1] decides: --n draws decoded unclipped
    (``VAE.decode(clip=False)``), and per run the fraction of samples with a dark blotch (at least
    --min-pixels pixels below -margin in every channel: black after the clip), with a bright one (above
    1 + margin), the fraction of pixel values out of range by more than --margin, and the extremes. An
    adversarial decoder whose loss sees only clipped images can drive regions of its samples far out of
    range, where no gradient reaches them."""
    from vaelab.models import VAE

    out: dict[str, Any] = {"n": n, "seed": seed, "margin": margin, "min_pixels": min_pixels, "runs": {}}
    for run in runs:
        model = VAE.from_pretrained(run)
        with torch.inference_mode():
            z = model.prior.sample(n, 1.0, generator=torch.Generator().manual_seed(seed))
            raw = torch.cat([model.decode(z[i : i + 250], clip=False).float() for i in range(0, n, 250)])
        low, high = raw < -margin, raw > 1 + margin
        dark = low.all(1).flatten(1).sum(1) >= min_pixels
        bright = high.all(1).flatten(1).sum(1) >= min_pixels
        out["runs"][str(run)] = {
            "dark_blotch_fraction": dark.float().mean().item(),
            "bright_blotch_fraction": bright.float().mean().item(),
            "out_of_range_fraction": (low | high).float().mean().item(),
            "min": raw.min().item(),
            "max": raw.max().item(),
        }
    return out
