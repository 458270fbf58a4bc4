"""Training objectives: functions of a ``VAEOutput`` that return every term they use."""

from __future__ import annotations

from vaelab.objectives.elbo import ELBO, ELBOConfig, LossTerms

ObjectiveConfig = ELBOConfig
OBJECTIVES = {"elbo": ELBO}


def build_objective(config: ObjectiveConfig) -> ELBO:
    """The objective named by ``config.name``, built from its config."""
    return OBJECTIVES[config.name](config)


__all__ = ["ELBO", "OBJECTIVES", "ELBOConfig", "LossTerms", "ObjectiveConfig", "build_objective"]
