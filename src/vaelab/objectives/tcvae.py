"""beta-TCVAE (Chen et al. 2018, "Isolating Sources of Disentanglement in VAEs"): the KL split in three.

E_p(x)[KL(q(z|x) || p(z))] = I_q(x; z)                        (index-code mutual information)
                           + KL(q(z) || prod_j q(z_j))         (total correlation, TC)
                           + sum_j KL(q(z_j) || p(z_j))        (dimension-wise KL)

and the objective weights them alpha, beta, gamma (the paper's choice: 1, beta, 1; beta = 6 on dSprites).
Penalising only the TC pushes the aggregate posterior q(z) towards independent dimensions without
squeezing the information z holds about x.

q(z) = (1/N) sum_n q(z|x_n) is a sum over the whole dataset; it is estimated from the minibatch:

* ``mws`` (minibatch-weighted sampling, the paper's eq. S5 and the official code):
  log q(z_i) ~ logsumexp_j log q(z_i|x_j) - log(N M). The constant log(N M) does not change any
  gradient, but it shifts the estimates: the TC read off this estimator is the consistent one plus
  (D - 1) log N, the mutual information minus log N and the dimension-wise KL plus (D - 1) log N.
* ``mss`` (minibatch stratified sampling, the paper's appendix): weight 1/N on the image's own term and
  (N - 1) / (N (M - 1)) on the others: an unbiased estimate of q(z_i) (its log is biased low at small M).

Both need the dataset size N, given to the constructor (the trainer passes ``len(train_set)``). The terms
assume a diagonal Gaussian posterior and the factorised N(0, I) prior, as in the paper.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch.distributions import Independent, Normal

from vaelab.models.vae import VAEOutput
from vaelab.objectives.elbo import LossTerms


class TCVAEConfig(BaseModel):
    """Maximise E_q[log p(x|z)] - alpha MI - beta TC - gamma dimension-wise KL (Chen et al. 2018)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Literal["tcvae"] = "tcvae"
    alpha: float = Field(default=1.0, ge=0.0)
    beta: float = Field(default=6.0, ge=0.0)
    gamma: float = Field(default=1.0, ge=0.0)
    estimator: Literal["mws", "mss"] = "mws"


@dataclass
class TCVAETerms(LossTerms):
    """``LossTerms`` plus the three parts of the KL, per image in nats (minibatch estimates)."""

    mutual_info: torch.Tensor  # (B,) log q(z|x) - log q(z)
    total_correlation: torch.Tensor  # (B,) log q(z) - sum_j log q(z_j)
    dimwise_kl: torch.Tensor  # (B,) sum_j log q(z_j) - log p(z)


def log_qz_terms(
    z: torch.Tensor,
    loc: torch.Tensor,
    scale: torch.Tensor,
    dataset_size: int,
    estimator: Literal["mws", "mss"] = "mws",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Minibatch estimates of log q(z_i) and sum_j log q(z_ij) for each of the M draws z (M, D), given the
    posteriors N(loc_j, scale_j) (M, D) of the same batch: two (M,) tensors."""
    m = z.shape[0]
    if dataset_size < m:
        raise ValueError(f"dataset_size ({dataset_size}) is smaller than the batch ({m})")
    # log q(z_i,d | x_j, d) for every pair (i, j): (M, M, D).
    log_q = Normal(loc.unsqueeze(0), scale.unsqueeze(0)).log_prob(z.unsqueeze(1))
    if estimator == "mws":
        weights = torch.full((m, m), -math.log(dataset_size * m), device=z.device, dtype=z.dtype)
    elif estimator == "mss":
        n = dataset_size
        weights = torch.full((m, m), math.log(max(n - 1, 1) / (n * max(m - 1, 1))), device=z.device)
        weights.fill_diagonal_(-math.log(n))
        weights = weights.to(z.dtype)
    else:
        raise ValueError(f"estimator must be 'mws' or 'mss'; got {estimator!r}")
    log_qz = torch.logsumexp(log_q.sum(2) + weights, dim=1)
    log_qz_product = torch.logsumexp(log_q + weights.unsqueeze(2), dim=1).sum(1)
    return log_qz, log_qz_product


class BetaTCVAE:
    """Negative beta-TCVAE bound averaged over the batch; returns MI, TC and dimension-wise KL per image."""

    config_class = TCVAEConfig

    def __init__(
        self, config: TCVAEConfig | None = None, *, dataset_size: int | None = None, **_: Any
    ) -> None:
        if dataset_size is None or dataset_size < 1:
            raise ValueError(
                "the beta-TCVAE objective needs the training set's size (dataset_size) for its "
                f"minibatch estimate of q(z); got {dataset_size}"
            )
        self.config = config or TCVAEConfig()
        self.dataset_size = dataset_size

    @property
    def forward_kwargs(self) -> dict[str, Any]:
        """Extra arguments the training loop passes to the model's forward (none here)."""
        return {}

    def __call__(self, out: VAEOutput, kl_weight: float | torch.Tensor = 1.0) -> TCVAETerms:
        """``kl_weight`` (the training loop's KL annealing factor) scales the whole KL decomposition.
        The decomposition is of the top latent's KL against N(0, I) (RunConfig refuses other priors);
        the KL of a hierarchical model's lower layers is kept as it is in the ELBO."""
        posterior = out.posterior
        base = posterior.base_dist if isinstance(posterior, Independent) else posterior
        if not isinstance(base, Normal):
            raise ValueError(f"beta-TCVAE needs a diagonal Gaussian posterior; got {type(base).__name__}")
        z = out.z.float()
        log_qz_x = base.log_prob(z).sum(1)
        log_pz = Normal(torch.zeros_like(z), torch.ones_like(z)).log_prob(z).sum(1)
        log_qz, log_qz_product = log_qz_terms(
            z, base.loc, base.scale, self.dataset_size, self.config.estimator
        )
        mutual_info = log_qz_x - log_qz
        total_correlation = log_qz - log_qz_product
        dimwise_kl = log_qz_product - log_pz
        c = self.config
        regulariser = c.alpha * mutual_info + c.beta * total_correlation + c.gamma * dimwise_kl
        if out.kl_layers is not None and out.kl_layers.shape[1] > 1:
            regulariser = regulariser + out.kl_layers[:, 1:].sum(1)
        bound = out.log_px_z - kl_weight * regulariser
        return TCVAETerms(
            loss=-bound.mean(),
            elbo=out.elbo,
            log_px_z=out.log_px_z,
            kl=out.kl,
            mutual_info=mutual_info,
            total_correlation=total_correlation,
            dimwise_kl=dimwise_kl,
        )
