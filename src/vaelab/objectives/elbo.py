"""The ELBO objective (and its beta-weighted form), over the terms the model's forward returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from vaelab.errors import ConfigError
from vaelab.models.vae import VAEOutput


class ELBOConfig(BaseModel):
    """Maximise E_q[log p(x|z)] - beta * KL(q(z|x) || p(z)); beta = 1 is the true ELBO
    (Kingma & Welling 2014, eq. 10); beta > 1 is the beta-VAE of Higgins et al. 2017."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Literal["elbo"] = "elbo"
    beta: float = Field(default=1.0, ge=0.0)
    # Free bits (Kingma et al. 2016, IAF, appendix C): the KL of each group counts at least this many
    # nats, averaged over the batch, so the optimiser gains nothing by pushing a group's KL below it
    # and latents are not switched off early (0: off). Needs a model that splits its KL.
    free_bits: float = Field(default=0.0, ge=0.0)
    # Groups for free bits: 0 = one per latent dimension (each part of the model's kl_groups);
    # G = the parts pooled into G equal contiguous groups (G must divide their number).
    free_bits_groups: int = Field(default=0, ge=0)


@dataclass
class LossTerms:
    """Every term an objective uses, per image in nats, plus the scalar that is minimised."""

    loss: torch.Tensor  # scalar: the mean over the batch of the negative weighted bound
    elbo: torch.Tensor  # (B,) the unweighted ELBO, whatever beta is, so runs stay comparable
    log_px_z: torch.Tensor  # (B,)
    kl: torch.Tensor  # (B,)


class ELBO:
    """Negative (beta-weighted) ELBO averaged over the batch."""

    config_class = ELBOConfig

    def __init__(self, config: ELBOConfig | None = None, **_: Any) -> None:
        """``config``; the rest of the build context (dataset size, model) is not needed here."""
        self.config = config or ELBOConfig()

    @property
    def forward_kwargs(self) -> dict[str, Any]:
        """Extra arguments the training loop passes to the model's forward (none for the ELBO)."""
        return {}

    def __call__(self, out: VAEOutput, kl_weight: float | torch.Tensor = 1.0) -> LossTerms:
        """``kl_weight`` is the training loop's annealing factor in [0, 1] (KL warm-up or cyclical
        annealing); the KL is weighted by ``beta * kl_weight``. ``elbo`` is always the unweighted one."""
        weight = self.config.beta * kl_weight
        if self.config.free_bits > 0:
            loss = -(out.log_px_z.mean() - weight * free_bits_kl(out, self.config))
        else:
            loss = -(out.log_px_z - weight * out.kl).mean()
        return LossTerms(loss=loss, elbo=out.elbo, log_px_z=out.log_px_z, kl=out.kl)


def free_bits_kl(out: VAEOutput, config: ELBOConfig) -> torch.Tensor:
    """sum_j max(lambda, mean over the batch of KL_j): the KL term with free bits, a scalar."""
    if out.kl_groups is None:
        raise ConfigError(
            "objective.free_bits needs the KL of each latent dimension, but this model's posterior and "
            "prior do not split it (kl_groups is None); set objective.free_bits=0"
        )
    per_group = out.kl_groups.mean(0)
    groups = config.free_bits_groups
    if groups:
        if per_group.numel() % groups:
            raise ConfigError(
                f"objective.free_bits_groups={groups} must divide the {per_group.numel()} KL parts "
                "(latent dimensions)"
            )
        per_group = per_group.reshape(groups, -1).sum(-1)
    return per_group.clamp(min=config.free_bits).sum()
