"""Training objectives: functions of a ``VAEOutput`` that return every term they use.

Each objective is called as ``objective(out, kl_weight)`` (``kl_weight``: the training loop's KL
annealing factor) and names, in ``forward_kwargs``, what the model's forward must be given for it.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from vaelab.objectives.elbo import ELBO, ELBOConfig, LossTerms
from vaelab.objectives.iwae import IWAE, IWAEConfig
from vaelab.objectives.tcvae import BetaTCVAE, TCVAEConfig, TCVAETerms

ObjectiveConfig = Annotated[ELBOConfig | IWAEConfig | TCVAEConfig, Field(discriminator="name")]
OBJECTIVES = {"elbo": ELBO, "iwae": IWAE, "tcvae": BetaTCVAE}


def build_objective(
    config: ELBOConfig | IWAEConfig | TCVAEConfig, *, dataset_size: int | None = None
) -> ELBO | IWAE | BetaTCVAE:
    """The objective named by ``config.name``, built from its config. ``dataset_size`` (the number of
    training images) is what objectives that estimate the aggregate posterior q(z) need (beta-TCVAE)."""
    if isinstance(config, TCVAEConfig):
        return BetaTCVAE(config, dataset_size=dataset_size)
    return OBJECTIVES[config.name](config)


__all__ = [
    "ELBO",
    "IWAE",
    "OBJECTIVES",
    "BetaTCVAE",
    "ELBOConfig",
    "IWAEConfig",
    "LossTerms",
    "ObjectiveConfig",
    "TCVAEConfig",
    "TCVAETerms",
    "build_objective",
]
