"""Classifier-free guidance (Ho & Salimans 2022), adapted to a conditional VAE's decoder.

Training: with ``model.condition.label_dropout`` p > 0, each training image's label is replaced, with
probability p, by the *null class* (``LabelConditioning.drop_labels``, called by ``VAE.encode_layers`` in
training mode: the encoder and the decoder both see it), so one network learns p(x|z, y) and p(x|z).
Sampling: ``guided_decode`` decodes each top latent twice, with its label and with the null class (the
same z, and for a hierarchical decoder the same lower-layer noise), and the likelihood mixes the two
outputs as uncond + w (cond - uncond) (``LikelihoodPart.guide``: logits, or means). w = 1 is plain
conditional sampling, 0 unconditional, above 1 more typical of the class.

A model trained without label dropout never saw the null class: it refuses any w but 1
(``check_guidance``), as do an unconditional model and a likelihood that defines no guidance.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from vaelab.models.parts.base import Draw
from vaelab.models.vae import VAE


def takes_guidance(model: VAE) -> bool:
    """Whether sampling ``model`` takes a guidance other than 1: a conditional model trained with label
    dropout, whose likelihood defines guidance."""
    return bool(model.condition.label_dropout) and model.likelihood.guided_channels() is not None


def check_guidance(model: VAE, guidance: float) -> None:
    """Nothing when ``guidance`` can be used with ``model``; else a UsageError saying why."""
    model.condition.check_guidance(guidance)
    if guidance != 1.0:
        model.likelihood.check_guidance()


@torch.no_grad()
def guided_decode(
    model: VAE,
    z: torch.Tensor,
    labels: torch.Tensor | None = None,
    *,
    temperature: float | Sequence[float] = 1.0,
    generator: torch.Generator | None = None,
    guidance: float = 1.0,
) -> torch.Tensor:
    """``model.decode_sample`` with classifier-free guidance ``guidance``: images in [0, 1] for top
    latents ``z`` of the classes ``labels``, lower layers drawn from their priors at the temperatures
    after the first. Guidance 1 is ``decode_sample`` itself."""
    check_guidance(model, guidance)
    if guidance == 1.0:
        return model.decode_sample(z, labels, temperature=temperature, generator=generator)
    temps = model.layer_temperatures(temperature)
    labels = model.condition.check(labels, z.shape[0], "latents")
    replay = None
    if model.decoder.num_latent_layers:  # both passes draw the same lower-layer noise
        if generator is None:
            generator = torch.Generator().manual_seed(int(torch.randint(2**62, (1,))))
        replay = generator.get_state()
    cond = model._decode(z, labels, None, Draw(temps[1:], generator)).params
    if generator is not None and replay is not None:
        generator.set_state(replay)
    null = model.condition.null_labels(z.shape[0])
    uncond = model._decode(z, null, None, Draw(temps[1:], generator)).params
    return model.likelihood.mean(model.likelihood.guide(cond, uncond, guidance))
