"""The objective a run trains with: built with the context it needs (dataset size, the model, a
perceptual net), moved to the device and restored from the checkpoint with the rest of the run.

The frozen feature net behind the adversarial objective's perceptual term is found offline:
``objective.perceptual_weights`` names a local safetensors file of VGG16 weights (LPIPS's backbone);
without it, vaelab trains a small classifier on the training set itself -- the same recipe as the
feature net of ``vaelab evaluate``, with another seed, so the perceptual loss and the sample-quality
metrics do not share one net -- caches it, says so, and taps it after each convolution.
"""

from __future__ import annotations

import sys
from typing import Any

from torch import nn

from vaelab.data import ImageDataset
from vaelab.errors import ConfigError, DataError
from vaelab.evaluation.features import FeatureNet, load_feature_space
from vaelab.objectives import Objective, build_objective
from vaelab.objectives.perceptual import TappedFeatures, vgg16_features
from vaelab.training.distributed import DistContext

PERCEPTUAL_SEED = 1  # the evaluation feature net uses seed 0


def perceptual_net(objective: Any, train_set: ImageDataset, *, verbose: bool = True) -> nn.Module | None:
    """The feature net the objective's perceptual term needs (None when it has none)."""
    if getattr(objective, "perceptual_weight", 0.0) <= 0:
        return None
    if objective.perceptual_weights:
        return vgg16_features(objective.perceptual_weights)
    try:
        net = load_feature_space(train_set, seed=PERCEPTUAL_SEED).net
    except DataError:
        raise ConfigError(
            f"objective.perceptual_weight needs a feature net, and {train_set.name!r} has no class labels to "
            "train one on: give objective.perceptual_weights (a local VGG16 safetensors file) or set "
            "objective.perceptual_weight=0"
        ) from None
    if verbose:
        print(
            "perceptual loss: no objective.perceptual_weights file given, so vaelab uses a small feature "
            f"net trained on {train_set.name!r} (once; cached)",
            file=sys.stderr,
        )
    return tapped_feature_net(net, train_set.image_shape[0])


def tapped_feature_net(net: FeatureNet, channels: int) -> TappedFeatures:
    """A feature classifier as the perceptual term reads it: frozen, tapped after each convolution."""
    body = net.body
    taps = [
        i for i, layer in enumerate(body) if isinstance(layer, nn.ReLU) and i < len(net.config.channels) * 2
    ]
    return TappedFeatures(body, taps, channels)


def training_objective(
    config: Any, train_set: ImageDataset, model: nn.Module, saved: Any, ctx: DistContext, log: bool
) -> Objective:
    """``config.objective`` built for ``model`` and ``train_set``; an objective with state of its own
    (the adversarial one) on the run's device with its checkpointed state. The adversarial objective
    trains in one process for now: its discriminator would need a DDP wrapper of its own."""
    perceptual = perceptual_net(config.objective, train_set, verbose=log and ctx.is_main)
    objective = build_objective(
        config.objective, dataset_size=len(train_set), model=model, perceptual=perceptual
    )
    if isinstance(objective, nn.Module):
        if ctx.distributed:
            raise ConfigError(
                f"objective {config.objective.name!r} trains in one process for now; run it without torchrun"
            )
        if config.train.compile:
            raise ConfigError(
                f"objective {config.objective.name!r} cannot be compiled yet: set train.compile=false"
            )
        objective.to(ctx.device)
        if saved is not None and saved.objective:
            objective.load_state_dict(saved.objective)
    return objective
