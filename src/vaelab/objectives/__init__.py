"""Training objectives: functions of a ``VAEOutput`` that return every term they use.

Each objective is called as ``objective(out, kl_weight)`` (``kl_weight``: the training loop's KL
annealing factor) and names, in ``forward_kwargs``, what the model's forward must be given for it. It is
built as ``Objective(config, **context)`` and takes from the context what it needs: ``dataset_size``
(beta-TCVAE), ``model`` and ``perceptual`` (the adversarial objective). An objective with state of its
own (the adversarial one's discriminator and its optimiser) has ``state_dict``/``load_state_dict`` and a
``discriminator_step``; the training loop checkpoints the one and calls the other after each update.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch
from pydantic import BaseModel

from vaelab.models.outputs import VAEOutput
from vaelab.models.part_config import config_union
from vaelab.objectives.adversarial import Adversarial, AdversarialConfig, AdversarialTerms
from vaelab.objectives.elbo import ELBO, ELBOConfig, LossTerms
from vaelab.objectives.iwae import IWAE, IWAEConfig
from vaelab.objectives.tcvae import BetaTCVAE, TCVAEConfig, TCVAETerms

# Short name -> objective class: a new objective is its own file (the class, naming its config as
# ``config_class``) and one line here; ObjectiveConfig accepts its config under that name.
OBJECTIVES = {"elbo": ELBO, "iwae": IWAE, "tcvae": BetaTCVAE, "adversarial": Adversarial}
ObjectiveConfig = config_union(OBJECTIVES)


class Objective(Protocol):
    """What the training loop asks of an objective (each is built as ``Objective(config, **context)``)."""

    forward_kwargs: dict[str, Any]

    def __call__(self, out: VAEOutput, kl_weight: float | torch.Tensor = 1.0) -> LossTerms: ...


def build_objective(config: BaseModel, **context: Any) -> Objective:
    """The objective named by ``config.name``, built from its config and the ``context`` it needs:
    ``dataset_size`` (the number of training images: objectives that estimate the aggregate posterior
    q(z), beta-TCVAE), ``model`` (the VAE it trains: the adversarial objective), ``perceptual`` (a frozen
    feature net for its perceptual term)."""
    return OBJECTIVES[config.name](config, **context)


__all__ = [
    "ELBO",
    "IWAE",
    "OBJECTIVES",
    "Adversarial",
    "AdversarialConfig",
    "AdversarialTerms",
    "BetaTCVAE",
    "ELBOConfig",
    "IWAEConfig",
    "LossTerms",
    "Objective",
    "ObjectiveConfig",
    "TCVAEConfig",
    "TCVAETerms",
    "build_objective",
]
