"""Spectral regularisation: match each reconstruction's radially averaged power spectrum to its input's.

A decoder trained against a discriminator can fool it with power at frequencies the data hardly have
(the pixel checkerboard of sub-pixel and transposed convolutions, Odena et al. 2016) while the band
below Nyquist stays as blurred as a plain VAE's. Durall et al. (2020, "Watch your up-convolution")
showed that GANs' up-sampling distorts the 1-D (azimuthally averaged) power spectrum and fixed it with a
loss on that spectrum; this is that loss for an autoencoder, per image: the mean over radial bins of the
squared difference of log power, reconstruction against input. Log power weighs a bin holding a
thousandth of the variance like one holding half of it, so missing fine detail and a spike both cost.
It says nothing of phase: the decoder may restore the power of texture it cannot place exactly, which
the likelihood then prices as pixel error.
"""

from __future__ import annotations

import torch

LOG_EPS = 1e-10  # power floor inside the log: far below one 8-bit grey level's power in any bin


def radial_bins(h: int, w: int, device: torch.device | str | None = None) -> torch.Tensor:
    """(H, W) int64: the radial bin of each frequency of an H x W 2-D FFT (in ``torch.fft.fft2``'s
    order), bin k holding the radii within half a bin of k / min(H, W) cycles per pixel."""
    fy = torch.fft.fftfreq(h, dtype=torch.float64, device=device)
    fx = torch.fft.fftfreq(w, dtype=torch.float64, device=device)
    return torch.round(torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2) * min(h, w)).long()


def radial_power_spectrum(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The radially averaged power spectrum of each image of ``x`` (B, C, H, W), in ``x``'s dtype and
    differentiable: ((B, R) power, (R,) radius in cycles/pixel).

    Each channel's mean is subtracted first (so the DC term is 0), the power |F|^2 / (H W)^2 of the
    2-D FFT sums to the image's pixel variance, channels are averaged, and each radial bin (width
    1 / min(H, W) cycles per pixel, centred on its radius) holds the mean power of its frequencies.
    """
    _, _, h, w = x.shape
    x = x - x.mean(dim=(-2, -1), keepdim=True)
    power = torch.fft.fft2(x).abs().square().mean(1) / float(h * w) ** 2  # (B, H, W)
    power = power.flatten(1)
    power = torch.cat([torch.zeros_like(power[:, :1]), power[:, 1:]], 1)  # DC: rounding error only
    side = min(h, w)
    bins = radial_bins(h, w, x.device).flatten()
    counts = torch.bincount(bins)
    sums = torch.zeros(len(x), len(counts), dtype=power.dtype, device=x.device).index_add(1, bins, power)
    kept = counts > 0
    radii = torch.arange(len(counts), dtype=torch.float64, device=x.device)[kept] / side
    return sums[:, kept] / counts[kept].to(power.dtype), radii


def spectral_distance(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """(B,) the mean over radial bins (radius > 0) of (log P_x_hat - log P_x)^2 for each image pair."""
    # One FFT and one binning for both sets: the pairs are split again after.
    power, radius = radial_power_spectrum(torch.cat([x, x_hat]).float())
    real, fake = torch.log(power[:, radius > 0] + LOG_EPS).split(len(x))
    return (fake - real).square().mean(1)
