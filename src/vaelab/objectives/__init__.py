"""Training objectives: functions of a ``VAEOutput`` that return every term they use."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from vaelab.objectives.elbo import ELBO, ELBOConfig, LossTerms
from vaelab.objectives.tcvae import BetaTCVAE, TCVAEConfig, TCVAETerms

ObjectiveConfig = Annotated[ELBOConfig | TCVAEConfig, Field(discriminator="name")]
OBJECTIVES = {"elbo": ELBO, "tcvae": BetaTCVAE}


def build_objective(config: ELBOConfig | TCVAEConfig, *, dataset_size: int | None = None) -> ELBO | BetaTCVAE:
    """The objective named by ``config.name``, built from its config. ``dataset_size`` (the number of
    training images) is what objectives that estimate the aggregate posterior q(z) need (beta-TCVAE)."""
    if isinstance(config, TCVAEConfig):
        return BetaTCVAE(config, dataset_size=dataset_size)
    return OBJECTIVES[config.name](config)


__all__ = [
    "ELBO",
    "OBJECTIVES",
    "BetaTCVAE",
    "ELBOConfig",
    "LossTerms",
    "ObjectiveConfig",
    "TCVAEConfig",
    "TCVAETerms",
    "build_objective",
]
