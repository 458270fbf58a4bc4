"""An exponential moving average (EMA) of the weights, for validation, sampling and the saved model.

Why: with a constant learning rate the raw weights jitter around a good region; their running
average sits closer to its centre and gives a better ELBO and cleaner samples for no extra training
(Polyak & Juditsky 1992; VDVAE, Child 2021, evaluates and samples with ``ema_rate`` 0.9999; so do
NVAE and diffusion models). ``torch.optim.swa_utils.AveragedModel`` with ``warmup_ema_multi_avg_fn``
(below) does the update (one fused ``lerp`` over all tensors) with the warm-up of the decay that timm's
``ModelEmaV3`` and TensorFlow's ``ExponentialMovingAverage(num_updates=...)`` use, min(decay,
(1 + n) / (10 + n)) at the n-th update: without it a slow average (0.999: a memory of ~1,000 steps)
still holds a visible share of the random initial weights after a few epochs, and a short run is
validated and saved with them. Its first update copies the weights, and its
``state_dict`` (the averaged VAE under ``module.`` plus ``n_averaged``) goes into the checkpoint so
a resumed run continues the same average. Buffers are averaged too (``use_buffers``), so a prior's
buffers in the EMA model match the weights around them.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.optim.swa_utils import AveragedModel

from vaelab.models.vae import VAE


def ema_decay_at(decay: float, num_updates: int) -> float:
    """The decay of the update after ``num_updates`` earlier ones: ``decay``, warmed up."""
    return min(decay, (1.0 + num_updates) / (10.0 + num_updates))


def warmup_ema_multi_avg_fn(decay: float) -> Callable[[list, list, torch.Tensor | int], None]:
    """``AveragedModel``'s ``multi_avg_fn``: w_ema <- d * w_ema + (1 - d) * w, d = ema_decay_at(n)."""

    @torch.no_grad()
    def update(ema_params: list, params: list, num_averaged: torch.Tensor | int) -> None:
        weight = 1.0 - ema_decay_at(decay, int(num_averaged))
        floats = [(e, p) for e, p in zip(ema_params, params, strict=True) if e.is_floating_point()]
        if floats:
            torch._foreach_lerp_([e for e, _ in floats], [p for _, p in floats], weight)
        for e, p in zip(ema_params, params, strict=True):  # integer buffers: take the current value
            if not e.is_floating_point():
                e.copy_(p)

    return update


def build_ema(model: VAE, decay: float) -> AveragedModel | None:
    """An EMA copy of ``model`` updated with ``w_ema <- d * w_ema + (1 - d) * w``, d the warmed-up
    ``decay``; None if 0."""
    if decay <= 0.0:
        return None
    ema = AveragedModel(model, multi_avg_fn=warmup_ema_multi_avg_fn(decay), use_buffers=True)
    ema.module.eval()
    return ema


def eval_model(model: VAE, ema: AveragedModel | None) -> VAE:
    """The model to validate, sample from and save: the EMA's copy when there is one."""
    return model if ema is None else ema.module  # type: ignore[return-value]
