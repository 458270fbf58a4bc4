"""Sharpness: how much fine detail images keep, as ratios a reader can take at face value.

Blur is the VAE's best-known weakness, and PSNR / SSIM hide it (a blurry mean image scores well).
These numbers measure the detail itself, per image, and compare a set with the data:

* High-frequency (HF) power: the radially averaged power spectrum of each image (2-D FFT of each
  channel after subtracting that channel's mean, |F|^2 / (H W)^2 so the spectrum sums to the pixel
  variance, averaged over channels, then averaged over the frequencies in each radial bin of width
  1 / min(H, W) cycles per pixel), summed over the bins above half the Nyquist frequency
  (radius > 0.25 cycles per pixel, the diagonal corners included).
* Laplacian variance: the variance over pixel positions of a 3 x 3 Laplacian filter's response
  (valid positions; images under 3 pixels a side are padded by replication), averaged over channels.
* Spectrum ratio: the two sets' mean radial spectra divided bin by bin, so that a spike (a periodic
  artefact where the data have almost no power) is not read as detail in the one HF number.
* Near-binary fraction: the fraction of pixels within 0.1 of 0 or 1 (inclusive); MNIST-like data
  sit near 0.9, a blurry model's grey strokes well below.

A ratio is (mean over the evaluated images) / (mean over the reference images): 1.0 is as much
detail as the data, blur pushes it below 1, noise or over-sharpening above. Reconstructions are
paired with their inputs; samples are compared with the test images as two sets.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from vaelab.evaluation.likelihood import mean_and_se
from vaelab.io.atomic import atomic_open
from vaelab.objectives import spectral

HALF_NYQUIST = 0.25  # cycles per pixel: half the Nyquist frequency of 0.5
NEAR_BINARY_TOLERANCE = 0.1
_CHUNK = 1000  # images per FFT / filter pass, so a 10,000-image set never sits in memory as complex128
_LAPLACIAN = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]], dtype=torch.float64)


def _unit_float(images: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) pixels in [0, 1] as float64: uint8 images are divided by 255."""
    if images.dtype == torch.uint8:
        return images.double() / 255.0
    return images.double()


def _per_image(fn: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor) -> torch.Tensor:
    """``fn`` over ``images`` in chunks of ``_CHUNK``, its (B,) outputs joined, on the CPU."""
    parts = [fn(_unit_float(images[i : i + _CHUNK])).cpu() for i in range(0, len(images), _CHUNK)]
    return torch.cat(parts) if parts else torch.empty(0, dtype=torch.float64)


def radial_power_spectrum(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The radially averaged power spectrum of each image, in float64 (pixels in [0, 1]; uint8 images
    are divided by 255): ((B, R) power, (R,) radius in cycles/pixel), as
    :func:`vaelab.objectives.spectral.radial_power_spectrum` defines it (the training loss that matches
    these spectra and this measure are one computation)."""
    return spectral.radial_power_spectrum(_unit_float(images))


def high_frequency_power(images: torch.Tensor, cutoff: float = HALF_NYQUIST) -> torch.Tensor:
    """(B,) float64: each image's radially averaged power summed over radii above ``cutoff``
    (cycles per pixel; default half Nyquist), the fine detail that blur removes first."""

    def hf(x: torch.Tensor) -> torch.Tensor:
        spectrum, radius = radial_power_spectrum(x)
        return spectrum[:, radius > cutoff].sum(1)

    return _per_image(hf, images)


def mean_radial_spectrum(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean over ``images`` of :func:`radial_power_spectrum`, in chunks: ((R,) power, (R,) radius);
    NaN power for an empty set."""
    blank, radius = radial_power_spectrum(torch.zeros((1, *images.shape[1:]), dtype=torch.float64))
    total = blank[0]  # zeros in the right bins, so an empty set still gets its radii
    for i in range(0, len(images), _CHUNK):
        spectrum, radius = radial_power_spectrum(images[i : i + _CHUNK])
        total = total + spectrum.sum(0).cpu()  # the images may sit on a GPU; the sums on the CPU
    return (total / len(images) if len(images) else torch.full_like(total, math.nan)), radius.cpu()


def spectrum_ratio(images: torch.Tensor, references: torch.Tensor) -> dict[str, list[float]]:
    """Where the detail is, radius by radius: the mean radial power spectrum of ``images`` over that of
    ``references`` (cycles per pixel; 1 = as much power at that frequency as the references).

    The HF power ratio is one number for everything above half Nyquist; this shows whether it comes
    from the whole band (real detail) or from a spike (a periodic artefact: stripes at radius 0.5, a
    pixel checkerboard in the corner bin at 0.71), which can carry a large part of that one number while
    adding under one grey level to any pixel, because the data have almost no power there.
    """
    if (a := tuple(images.shape[-2:])) != (b := tuple(references.shape[-2:])):
        raise ValueError(f"spectra compare images of one size; got {a} and {b}")
    mine, radius = mean_radial_spectrum(images)
    return ratio_of_spectra(mine, mean_radial_spectrum(references)[0], radius)


def ratio_of_spectra(
    mine: torch.Tensor, theirs: torch.Tensor, radius: torch.Tensor
) -> dict[str, list[float]]:
    """{"radius", "ratio", "reference_power"}: ``mine`` / ``theirs`` bin by bin, NaN where ``theirs`` has
    no power (the bin at radius 0 of square images, which holds only the removed means), and ``theirs``,
    the weights that turn the ratios of a band back into that band's power ratio."""
    ratio = torch.where(theirs > 0, mine / theirs.clamp(min=1e-300), torch.full_like(mine, math.nan))
    return {"radius": radius.tolist(), "ratio": ratio.tolist(), "reference_power": theirs.tolist()}


def plot_spectrum_ratios(path: str | Path, curves: dict[str, dict[str, list[float]]]) -> Path:
    """Write a PNG of :func:`spectrum_ratio` curves (label -> {"radius", "ratio"}), log scale, with the
    data's level (1) and the half-Nyquist and Nyquist radii marked: what the one HF number sums."""
    from matplotlib.figure import Figure  # no pyplot: the caller's backend and figures stay untouched

    fig = Figure(figsize=(6.4, 3.6), dpi=110)
    ax = fig.subplots()
    for label, curve in curves.items():
        ax.plot(curve["radius"], curve["ratio"], marker=".", label=label)
    ax.axhline(1.0, color="black", linewidth=0.8)
    for r, name in ((HALF_NYQUIST, "half Nyquist"), (0.5, "Nyquist")):
        ax.axvline(r, color="grey", linestyle=":", linewidth=0.8)
        ax.text(r, 1.0, f" {name}", color="grey", fontsize=8, rotation=90, va="bottom")
    ax.set_yscale("log")
    ax.set_xlabel("radius (cycles per pixel)")
    ax.set_ylabel("power / the data's power")
    ax.set_title("Where the fine detail is: power spectrum ratio by frequency", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_open(path) as handle:
        fig.savefig(handle, format="png")
    return Path(path)


def laplacian_variance(images: torch.Tensor) -> torch.Tensor:
    """(B,) float64: the variance of each image's 3 x 3 Laplacian response over pixel positions,
    averaged over channels. Edges and texture give large responses; blur flattens them."""

    def lap(x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        if min(x.shape[-2:]) < 3:
            x = F.pad(x, (1, 1, 1, 1), mode="replicate")
        kernel = _LAPLACIAN.to(x.device).view(1, 1, 3, 3).expand(c, 1, 3, 3)
        response = F.conv2d(x, kernel, groups=c)
        return response.flatten(2).var(dim=2, unbiased=False).mean(1)

    return _per_image(lap, images)


def near_binary_fraction(images: torch.Tensor, tolerance: float = NEAR_BINARY_TOLERANCE) -> torch.Tensor:
    """(B,) float64: the fraction of each image's pixels within ``tolerance`` of 0 or 1 (inclusive).

    Compared in float32 (uint8 images / 255), so a pixel stored as 0.9 counts at tolerance 0.1.
    """
    x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
    close = (x <= tolerance) | (x >= 1.0 - tolerance)
    return close.flatten(1).double().mean(1).cpu()


# The per-image measures behind each sharpness ratio, by the ratio's report key.
DETAIL_MEASURES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "hf_power_ratio": high_frequency_power,
    "laplacian_var_ratio": laplacian_variance,
}


def ratio_of_means(values: torch.Tensor, references: torch.Tensor, *, paired: bool) -> tuple[float, float]:
    """mean(values) / mean(references) and its delta-method standard error.

    ``paired``: values[i] belongs to references[i] (a reconstruction and its input), so the error is
    that of the mean of values - R references; otherwise the two sets' relative errors add. The ratio
    is NaN when the references' mean is 0 (nothing to compare with).
    """
    a, b = values.double().flatten(), references.double().flatten()
    if paired and a.shape != b.shape:
        raise ValueError(f"paired ratio needs as many values as references; got {a.numel()} and {b.numel()}")
    if a.numel() == 0 or b.numel() == 0 or float(b.mean()) == 0.0:
        return float("nan"), float("nan")
    mean_a, mean_b = float(a.mean()), float(b.mean())
    ratio = mean_a / mean_b
    if paired:
        se = (
            float((a - ratio * b).std(unbiased=True)) / (math.sqrt(a.numel()) * mean_b)
            if a.numel() > 1
            else math.nan
        )
    elif a.numel() > 1 and b.numel() > 1 and mean_a != 0.0:
        rel_a = float(a.var(unbiased=True)) / (a.numel() * mean_a**2)
        rel_b = float(b.var(unbiased=True)) / (b.numel() * mean_b**2)
        se = abs(ratio) * math.sqrt(rel_a + rel_b)
    else:
        se = math.nan
    return ratio, se


def sharpness_ratios(images: torch.Tensor, references: torch.Tensor, *, paired: bool) -> dict[str, float]:
    """HF power ratio and Laplacian variance ratio of ``images`` over ``references``, with standard
    errors: 1 = as much fine detail as the references, below 1 = blurrier, above 1 = noisier."""
    out: dict[str, float] = {}
    for name, measure in DETAIL_MEASURES.items():
        out[name], out[f"{name}_se"] = ratio_of_means(measure(images), measure(references), paired=paired)
    return out


def sample_sharpness(samples: torch.Tensor, references: torch.Tensor) -> dict[str, Any]:
    """Prior samples against the data as two sets: the sharpness ratios and the near-binary fraction
    of each (means over images, with standard errors)."""
    out: dict[str, Any] = {"samples": len(samples), "reference_images": len(references)}
    out.update(sharpness_ratios(samples, references, paired=False))
    for key, images in (("near_binary_fraction", samples), ("data_near_binary_fraction", references)):
        out[key], out[f"{key}_se"] = mean_and_se(near_binary_fraction(images))
    out["near_binary_tolerance"] = NEAR_BINARY_TOLERANCE
    out["spectrum"] = spectrum_ratio(samples, references)
    return out
