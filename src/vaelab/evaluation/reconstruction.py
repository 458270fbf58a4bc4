"""Reconstruction quality: pixel MSE, PSNR and SSIM between images and the model's reconstructions,
and how much of the images' fine detail the reconstructions keep (``sharpness.py``'s ratios).

The reconstruction is the decoded posterior mean (``VAE.reconstruct``), pixels in [0, 1]. SSIM is the
Gaussian-window SSIM of Wang et al. 2004 (11 x 11 window, sigma 1.5, K1 = 0.01, K2 = 0.03, data
range 1), averaged over valid window positions and channels, as in their reference code.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import Any

import torch
import torch.nn.functional as F

from vaelab.data import ImageDataset, batches, to_float
from vaelab.evaluation.likelihood import mean_and_se
from vaelab.evaluation.sharpness import (
    DETAIL_MEASURES,
    radial_power_spectrum,
    ratio_of_means,
    ratio_of_spectra,
)
from vaelab.models.vae import VAE

_MSE_FLOOR = 1e-10  # a perfect reconstruction would have infinite PSNR; cap it at 100 dB


def _gaussian_window(size: int, sigma: float, device: torch.device) -> torch.Tensor:
    coords = torch.arange(size, dtype=torch.float64, device=device) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    return (g / g.sum()).float()


def ssim(
    images: torch.Tensor, targets: torch.Tensor, *, window: int = 11, sigma: float = 1.5
) -> torch.Tensor:
    """Per-image SSIM of (B, C, H, W) tensors in [0, 1]; 1 means identical.

    Images smaller than the window use the largest odd window that fits.
    """
    _, c, h, w = images.shape
    size = min(window, h - (1 - h % 2), w - (1 - w % 2))
    g = _gaussian_window(size, sigma, images.device)
    # Separable Gaussian filter, one group per channel, "valid" positions only.
    kh = g.view(1, 1, size, 1).expand(c, 1, size, 1)
    kw = g.view(1, 1, 1, size).expand(c, 1, 1, size)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(t, kh, groups=c), kw, groups=c)

    x, y = images.float(), targets.float()
    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return s.flatten(1).mean(1)


def psnr(images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-image peak signal-to-noise ratio in dB for pixels in [0, 1]: 10 log10(1 / MSE)."""
    mse = ((images.float() - targets.float()) ** 2).flatten(1).mean(1)
    return -10.0 * torch.log10(mse.clamp(min=_MSE_FLOOR))


@torch.inference_mode()
def reconstruction_metrics(model: VAE, dataset: ImageDataset, *, batch_size: int = 1000) -> dict[str, Any]:
    """Mean per-pixel MSE, PSNR (dB) and SSIM over ``dataset``, each with its standard error, and the
    sharpness ratios of the reconstructions over their inputs (``hf_power_ratio``,
    ``laplacian_var_ratio``: 1 keeps all the fine detail, below 1 is blur), paired image by image.

    The inputs are the dataset's pixels as stored (/255) and are also the targets, so a binarised
    evaluation set is compared with the reconstructions of those same binary images.
    """
    was_training = model.training
    model.eval()

    def pairs() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for images, labels in batches(dataset, batch_size, shuffle=False):
            y = labels.to(model.device) if model.num_classes and labels is not None else None
            x = to_float(images.to(model.device), "none")
            yield model.reconstruct(x, y), x

    try:
        return {"images": len(dataset)} | compare_reconstructions(pairs())
    finally:
        model.train(was_training)


def compare_reconstructions(pairs: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, Any]:
    """:func:`reconstruction_metrics`' figures for (reconstructions, targets) batches of (B, C, H, W)
    pixels in [0, 1] from any source (a peer library's outputs, say), so that both are scored alike."""
    mse, ps, ss = [], [], []
    # per ratio: the per-image measure, its values on the reconstructions, on the inputs
    detail = {name: (measure, [], []) for name, measure in DETAIL_MEASURES.items()}
    spectra, radius = None, None  # the reconstructions' and the inputs' radial spectra, summed
    for recon, x in pairs:
        (mine, radius), (theirs, _) = radial_power_spectrum(recon), radial_power_spectrum(x)
        both = torch.stack([mine.sum(0), theirs.sum(0)]).cpu()
        spectra = both if spectra is None else spectra + both
        mse.append(((recon - x) ** 2).flatten(1).mean(1).cpu())
        ps.append(psnr(recon, x).cpu())
        ss.append(ssim(recon, x).cpu())
        for measure, of_recon, of_input in detail.values():
            of_recon.append(measure(recon))
            of_input.append(measure(x))
    out: dict[str, Any] = {}
    for name, parts in (("mse", mse), ("psnr", ps), ("ssim", ss)):
        values = torch.cat(parts) if parts else torch.empty(0)
        out[name], out[f"{name}_se"] = mean_and_se(values)
    if math.isfinite(out["mse"]) and out["mse"] > 0:
        # PSNR of the mean MSE, the other convention (dataset-level rather than per-image average).
        out["psnr_of_mean_mse"] = -10.0 * math.log10(max(out["mse"], _MSE_FLOOR))
    for name, (_, of_recon, of_input) in detail.items():
        if of_recon:
            out[name], out[f"{name}_se"] = ratio_of_means(
                torch.cat(of_recon), torch.cat(of_input), paired=True
            )
    if spectra is not None and radius is not None:
        out["spectrum"] = ratio_of_spectra(spectra[0], spectra[1], radius.cpu())
    return out
