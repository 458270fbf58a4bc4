"""The importance-weighted autoencoder bound (IWAE, Burda et al. 2015) as a training objective.

L_k(x) = E[log (1/k) sum_i p(x, z_i) / q(z_i|x)], z_i ~ q(z|x): a lower bound on log p(x) that
tightens as k grows (L_1 is the ELBO) and whose gradient weights each sample by its normalised
importance weight. The k log weights come from the model's one hook, ``VAE.log_importance_weights``,
reached through ``forward(x, iw_samples=k)`` so that DDP and torch.compile see the whole pass.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from vaelab.models.vae import VAEOutput
from vaelab.objectives.elbo import LossTerms


class IWAEConfig(BaseModel):
    """Maximise the k-sample importance-weighted bound; k = 1 is the (single-sample MC) ELBO."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Literal["iwae"] = "iwae"
    iw_samples: int = Field(default=5, ge=1)


class IWAE:
    """Negative IWAE bound averaged over the batch; ``elbo``/``log_px_z``/``kl`` are the k-sample
    averages of the plain ELBO terms, logged beside it so runs stay comparable with ELBO runs."""

    config_class = IWAEConfig

    def __init__(self, config: IWAEConfig | None = None, **_: Any) -> None:
        """``config``; the rest of the build context (dataset size, model) is not needed here."""
        self.config = config or IWAEConfig()

    @property
    def forward_kwargs(self) -> dict[str, Any]:
        """Extra arguments the training loop passes to the model's forward."""
        return {"iw_samples": self.config.iw_samples}

    def bound(self, log_weights: torch.Tensor) -> torch.Tensor:
        """(k, B) log weights -> (B,) log (1/k) sum_i exp(log w_i), with log-sum-exp."""
        return torch.logsumexp(log_weights, dim=0) - math.log(log_weights.shape[0])

    def __call__(self, out: VAEOutput, kl_weight: float | torch.Tensor = 1.0) -> LossTerms:
        """``kl_weight`` is accepted for the training loop's uniform call and must stay 1: the IWAE
        bound has no separate KL term to anneal (RunConfig refuses train.kl_anneal with it)."""
        if out.log_weights is None:
            raise ValueError("the IWAE objective needs model(x, iw_samples=k): the output has no log_weights")
        bound = self.bound(out.log_weights)
        return LossTerms(loss=-bound.mean(), elbo=out.elbo, log_px_z=out.log_px_z, kl=out.kl)
