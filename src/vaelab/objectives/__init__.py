"""Training objectives: functions of a ``VAEOutput`` that return every term they use."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from vaelab.objectives.elbo import ELBO, ELBOConfig, LossTerms
from vaelab.objectives.iwae import IWAE, IWAEConfig

ObjectiveConfig = Annotated[ELBOConfig | IWAEConfig, Field(discriminator="name")]
OBJECTIVES: dict[str, Any] = {"elbo": ELBO, "iwae": IWAE}


def build_objective(config: ELBOConfig | IWAEConfig) -> ELBO | IWAE:
    """The objective named by ``config.name``, built from its config."""
    return OBJECTIVES[config.name](config)


__all__ = [
    "ELBO",
    "IWAE",
    "OBJECTIVES",
    "ELBOConfig",
    "IWAEConfig",
    "LossTerms",
    "ObjectiveConfig",
    "build_objective",
]
