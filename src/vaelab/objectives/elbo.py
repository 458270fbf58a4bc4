"""The ELBO objective (and its beta-weighted form), over the terms the model's forward returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from vaelab.models.vae import VAEOutput


class ELBOConfig(BaseModel):
    """Maximise E_q[log p(x|z)] - beta * KL(q(z|x) || p(z)); beta = 1 is the true ELBO
    (Kingma & Welling 2014, eq. 10); beta > 1 is the beta-VAE of Higgins et al. 2017."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Literal["elbo"] = "elbo"
    beta: float = Field(default=1.0, ge=0.0)


@dataclass
class LossTerms:
    """Every term an objective uses, per image in nats, plus the scalar that is minimised."""

    loss: torch.Tensor  # scalar: the mean over the batch of the negative weighted bound
    elbo: torch.Tensor  # (B,) the unweighted ELBO, whatever beta is, so runs stay comparable
    log_px_z: torch.Tensor  # (B,)
    kl: torch.Tensor  # (B,)


class ELBO:
    """Negative (beta-weighted) ELBO averaged over the batch."""

    def __init__(self, config: ELBOConfig | None = None) -> None:
        self.config = config or ELBOConfig()

    @property
    def forward_kwargs(self) -> dict[str, Any]:
        """Extra arguments the training loop passes to the model's forward (none for the ELBO)."""
        return {}

    def __call__(self, out: VAEOutput) -> LossTerms:
        bound = out.log_px_z - self.config.beta * out.kl
        return LossTerms(loss=-bound.mean(), elbo=out.elbo, log_px_z=out.log_px_z, kl=out.kl)
