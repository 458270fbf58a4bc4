"""The adversarial objective: the ELBO's terms plus pixel, perceptual and patch-GAN decoder losses.

The first stage of latent diffusion (Rombach et al. 2022, the KL-f4/f8 autoencoders) and VQGAN (Esser
et al. 2021) before it: a KL-regularised autoencoder whose decoder is also trained to fool a patch
discriminator and to match a frozen net's features, so that reconstructions keep edges and texture
where a pixel-wise likelihood alone averages them away. The generator minimises

    rec + beta * kl_weight * KL + lambda * disc_weight * L_G,   where
    rec = likelihood_weight * (-log p(x|z)) + pixel_weight * |x - x_hat|_p
          + perceptual_weight * P(x, x_hat) * D + spectral_weight * S(x, x_hat) * D

per image (D: the number of pixel values, so the perceptual and spectral terms are on the per-image
scale of the others; S: :func:`vaelab.objectives.spectral.spectral_distance`), where ``x_hat`` is the
likelihood's mean, unclipped (``raw_mean``: a clip to [0, 1] has no gradient, and prior draws that
the decoder had driven far below 0 stayed as black blotches the discriminator could see but not
correct), and lambda the adaptive weight of VQGAN (eq. 7): the ratio of the gradient norms
of ``rec`` and ``L_G`` at the decoder's last layer, so neither swamps the other whatever their
scales. With ``sample_weight`` > 0, ``L_G`` also holds that weight times the generator loss of
images decoded from prior draws (VAE/GAN, Larsen et al. 2016), which the discriminator then judges
beside the reconstructions. ``elbo``, ``log_px_z`` and ``kl`` in the terms
are the plain ELBO's, so runs stay comparable with ELBO runs and bits/dim keeps its meaning.

The discriminator trains with its own Adam after each generator update
(:meth:`Adversarial.discriminator_step`); its weights, optimiser, step counter and guard counters are
:meth:`Adversarial.state_dict`, which the training checkpoint keeps. Guards: a non-finite
discriminator loss skips its update (counted); while the discriminator wins outright (its smoothed
loss below ``win_threshold``) its updates pause (counted), so the generator's adversarial gradient
does not vanish or explode.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from vaelab.errors import ConfigError
from vaelab.models.outputs import VAEOutput
from vaelab.objectives.discriminator import (
    PatchDiscriminator,
    discriminator_loss,
    generator_loss,
    r1_penalty,
)
from vaelab.objectives.elbo import LossTerms
from vaelab.objectives.perceptual import PerceptualDistance
from vaelab.objectives.spectral import spectral_distance


class AdversarialConfig(BaseModel):
    """ELBO + pixel + perceptual + patch-discriminator decoder losses (VQGAN / KL-autoencoder style)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Literal["adversarial"] = "adversarial"
    # Weight of the KL (times the loop's annealing factor). 1: a VAE whose prior samples work; the
    # KL-f autoencoders of latent diffusion use ~1e-6 (a near-deterministic code for a second stage).
    beta: float = Field(default=1.0, ge=0.0)
    likelihood_weight: float = Field(default=1.0, ge=0.0)
    pixel: Literal["l1", "l2"] = "l1"
    pixel_weight: float = Field(default=0.0, ge=0.0)
    # LPIPS-style distance through a frozen net: VGG16 from ``perceptual_weights`` (a local safetensors
    # file), else a small feature net vaelab trains on the training set (cached; see docs/sharp.md).
    perceptual_weight: float = Field(default=0.0, ge=0.0)
    perceptual_weights: str | None = None
    # Spectral regularisation (Durall et al. 2020): the squared log-ratio of each reconstruction's
    # radially averaged power spectrum to its input's, averaged over radii (vaelab.objectives.spectral).
    spectral_weight: float = Field(default=0.0, ge=0.0)
    disc_weight: float = Field(default=0.5, ge=0.0)
    # VAE/GAN (Larsen et al. 2016): the discriminator also judges images decoded from prior draws, and
    # the decoder is trained to make those pass too, at this weight relative to the reconstructions'
    # adversarial term. 0: only reconstructions are judged (VQGAN, the KL-autoencoders).
    sample_weight: float = Field(default=0.0, ge=0.0)
    adaptive_weight: bool = True
    # Optimisation steps before the discriminator and the generator's adversarial term start.
    disc_start: int = Field(default=0, ge=0)
    # Steps over which the adversarial term's weight rises linearly from 0 to disc_weight after
    # disc_start (0: at once), while the new discriminator is still near chance.
    disc_ramp_steps: int = Field(default=0, ge=0)
    disc_loss: Literal["hinge", "non_saturating"] = "hinge"
    disc_channels: int = Field(default=64, ge=1)
    disc_layers: int = Field(default=2, ge=1)
    spectral_norm: bool = False
    r1_gamma: float = Field(default=0.0, ge=0.0)
    disc_lr: float = Field(default=2e-4, gt=0.0)
    disc_betas: tuple[float, float] = (0.5, 0.9)
    # Pause the discriminator's updates while its loss, smoothed over ~20 steps, is below this.
    win_threshold: float = Field(default=0.05, ge=0.0)


@dataclass
class AdversarialTerms(LossTerms):
    """The ELBO's terms plus the reconstructions (detached, for the discriminator's step) and the step's
    scalars for the per-step log (discriminator and generator losses, logits, adaptive weight)."""

    fake: torch.Tensor | None = None
    stats: dict[str, torch.Tensor] = field(default_factory=dict)


class Adversarial(nn.Module):
    """The generator's loss (calling it) and the discriminator's update (``discriminator_step``)."""

    config_class = AdversarialConfig

    def __init__(
        self,
        config: AdversarialConfig | None = None,
        *,
        model: nn.Module | None = None,
        perceptual: nn.Module | None = None,
        **_: Any,
    ) -> None:
        super().__init__()
        self.config = config = config or AdversarialConfig()
        if model is None:
            raise ConfigError(
                "the adversarial objective needs the model it trains (build_objective(..., model=))"
            )
        if config.perceptual_weight > 0 and perceptual is None:
            raise ConfigError("objective.perceptual_weight > 0 needs a perceptual feature net (perceptual=)")
        self.raw_mean = model.likelihood.raw_mean
        # In tuples, so that the model and its decoder's weight are not registered as this module's own.
        self._model = (model,)
        self._last_layer = (model.decoder.last_layer_weight(),)
        channels = model.image_shape[0]
        self.discriminator = PatchDiscriminator(
            channels, config.disc_channels, config.disc_layers, config.spectral_norm
        )
        self.perceptual = PerceptualDistance(perceptual) if perceptual is not None else None
        self.optimizer = torch.optim.Adam(
            self.discriminator.parameters(), config.disc_lr, betas=config.disc_betas
        )
        self.register_buffer("step", torch.zeros((), dtype=torch.int64))
        self.register_buffer("loss_ema", torch.ones(()))  # the hinge loss of a discriminator that guesses
        self.register_buffer("skipped", torch.zeros((), dtype=torch.int64))
        self.register_buffer("paused", torch.zeros((), dtype=torch.int64))

    @property
    def forward_kwargs(self) -> dict[str, Any]:
        """Extra arguments the training loop passes to the model's forward (none)."""
        return {}

    @property
    def active(self) -> bool:
        """Whether the discriminator and the generator's adversarial term are on (``disc_start`` reached)."""
        return int(self.step) >= self.config.disc_start

    def reconstruction_loss(
        self, x: torch.Tensor, fake: torch.Tensor, log_px_z: torch.Tensor
    ) -> torch.Tensor:
        """(B,) the reconstruction part of the generator's loss (see the module docstring)."""
        c = self.config
        rec = -c.likelihood_weight * log_px_z
        if c.pixel_weight:
            diff = (x - fake).abs() if c.pixel == "l1" else (x - fake).square()
            rec = rec + c.pixel_weight * diff.flatten(1).sum(1)
        if c.perceptual_weight and self.perceptual is not None:
            rec = rec + c.perceptual_weight * x[0].numel() * self.perceptual(x, fake)
        if c.spectral_weight:
            rec = rec + c.spectral_weight * x[0].numel() * spectral_distance(x, fake)
        return rec

    def adaptive_weight(self, rec: torch.Tensor, adv: torch.Tensor, pixels: int) -> torch.Tensor:
        """VQGAN's lambda = ||grad_W rec|| / (||grad_W L_G|| + 1e-4) at the decoder's last layer W, detached;
        1 where W is not in the graph (a copy of the model). VQGAN clamps it to [0, 1e4] for a per-pixel
        mean loss; ``rec`` here is a per-image sum over ``pixels`` values, so the bound is 1e4 x pixels."""
        if not self.config.adaptive_weight:
            return torch.ones((), device=rec.device)
        (g_rec,) = torch.autograd.grad(rec, self._last_layer, retain_graph=True, allow_unused=True)
        (g_adv,) = torch.autograd.grad(adv, self._last_layer, retain_graph=True, allow_unused=True)
        if g_rec is None or g_adv is None:
            return torch.ones((), device=rec.device)
        return (g_rec.norm() / (g_adv.norm() + 1e-4)).clamp(0.0, 1e4 * pixels).detach()

    @property
    def ramp(self) -> float:
        """The factor on ``disc_weight`` at this step: rising linearly from 1 / (disc_ramp_steps + 1) at
        ``disc_start`` to 1 after ``disc_ramp_steps`` more steps."""
        n = self.config.disc_ramp_steps
        return min(1.0, (int(self.step) - self.config.disc_start + 1) / (n + 1)) if n else 1.0

    def forward(self, out: VAEOutput, kl_weight: float | torch.Tensor = 1.0) -> AdversarialTerms:
        """The generator's loss for one forward pass (``out.x`` the input batch)."""
        if out.x is None:
            raise ValueError("the adversarial objective needs the input batch on the model's output (out.x)")
        x, fake = out.x, self.raw_mean(out.px_params)
        rec = self.reconstruction_loss(x, fake, out.log_px_z).mean()
        loss = rec + (self.config.beta * kl_weight * out.kl).mean()
        stats: dict[str, torch.Tensor] = {"rec_loss": rec.detach()}
        judged = fake
        if self.active and self.config.disc_weight > 0:
            adv, judged = self.generator_adversarial_loss(fake, stats)
            weight = self.adaptive_weight(rec, adv, x[0].numel()) * self.config.disc_weight * self.ramp
            loss = loss + weight * adv
            stats |= {"g_loss": adv.detach(), "adaptive_weight": weight}
        elbo = out.elbo.detach()
        return AdversarialTerms(loss, elbo, out.log_px_z.detach(), out.kl.detach(), judged.detach(), stats)

    def generator_adversarial_loss(
        self, fake: torch.Tensor, stats: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """L_G for the step's reconstructions ``fake`` (plus ``sample_weight`` times that of as many
        decoded prior draws), and the images the discriminator then judges; logits into ``stats``."""
        c = self.config
        # The generator's backward needs the discriminator's input gradients, not its weights' (its own
        # step computes those afresh): frozen here, its backward skips the weight half.
        self.discriminator.requires_grad_(False)
        try:
            logits = self.discriminator(fake)
            adv, judged = generator_loss(logits, c.disc_loss), fake
            stats["logits_fake_g"] = logits.detach().mean()
            if c.sample_weight:
                samples = self.prior_samples(fake.shape[0])
                sample_logits = self.discriminator(samples)
                adv = adv + c.sample_weight * generator_loss(sample_logits, c.disc_loss)
                stats["logits_sample_g"] = sample_logits.detach().mean()
                judged = torch.cat([fake, samples])
        finally:
            self.discriminator.requires_grad_(True)
        return adv, judged

    def prior_samples(self, n: int) -> torch.Tensor:
        """``n`` images decoded from top-latent prior draws (random classes for a conditional model; a
        hierarchical model's lower layers at their prior means, as ``VAE.decode``), with gradients
        reaching the decoder: what ``sample_weight`` lets the discriminator judge."""
        model = self._model[0]
        with torch.no_grad():
            z = model.prior.sample(n, 1.0)
        labels = torch.randint(model.num_classes, (n,), device=z.device) if model.num_classes else None
        return model.decode(z, labels, clip=False)

    def discriminator_step(self, x: torch.Tensor, fake: torch.Tensor) -> dict[str, torch.Tensor]:
        """One update of the discriminator on real ``x`` and the step's reconstructions ``fake`` (and
        decoded prior draws, with ``sample_weight``; called once per training step, after the
        generator's; counts the steps for ``disc_start``)."""
        stats: dict[str, torch.Tensor] = {}
        if self.active and self.config.disc_weight > 0:
            # Under the caller's autocast, if any (the training step's bf16; with it the whole
            # adversarial step runs 1.9x faster on a CPU with AMX, docs/sharp.md); the loss, its
            # guards and R1's double backward in fp32.
            real_logits = self.discriminator(x.float()).float()
            fake_logits = self.discriminator(fake.float()).float()
            loss = discriminator_loss(real_logits, fake_logits, self.config.disc_loss)
            if self.config.r1_gamma:
                with torch.autocast(x.device.type, enabled=False):
                    r1 = r1_penalty(self.discriminator, x.float())
                loss = loss + 0.5 * self.config.r1_gamma * r1
                stats["r1"] = r1.detach()
            stats |= {"d_loss": loss.detach(), "logits_real": real_logits.detach().mean()}
            stats["logits_fake"] = fake_logits.detach().mean()
            self.optimizer.zero_grad(set_to_none=True)
            if not torch.isfinite(loss):
                self.skipped += 1  # never applied: the weights stay finite
            elif self.loss_ema < self.config.win_threshold:
                self.paused += 1  # winning outright: let the generator catch up
            else:
                loss.backward()
                self.optimizer.step()
            if torch.isfinite(loss):
                self.loss_ema.mul_(0.95).add_(0.05 * loss.detach())
            stats |= {"d_skipped": self.skipped.clone(), "d_paused": self.paused.clone()}
        self.step += 1
        return stats

    def summary(self) -> dict[str, float | int]:
        """For the epoch's metrics row: the discriminator's smoothed loss and its guard counters so far
        (updates paused while it won outright, skipped for a non-finite loss)."""
        return {
            "disc_loss": float(self.loss_ema),
            "disc_paused": int(self.paused),
            "disc_skipped": int(self.skipped),
        }

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:  # type: ignore[override]
        """The discriminator, its counters and its Adam state (the frozen perceptual net is rebuilt)."""
        own = {
            k: v for k, v in super().state_dict(*args, **kwargs).items() if not k.startswith("perceptual.")
        }
        return {"module": own, "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any], strict: bool = True, assign: bool = False) -> Any:  # type: ignore[override]
        """Restore what :meth:`state_dict` saved."""
        self.optimizer.load_state_dict(state["optimizer"])
        result = super().load_state_dict(state["module"], strict=False, assign=assign)
        missing = [k for k in result.missing_keys if not k.startswith("perceptual.")]
        if strict and (missing or result.unexpected_keys):
            raise RuntimeError(
                f"adversarial objective state: missing {missing}, unexpected {result.unexpected_keys}"
            )
        return result
