"""Short name -> part class, one dict per kind of part.

A new variant is a new part registered here (and its config added to the union in
``vaelab.models.config``), never a copy of the model.
"""

from __future__ import annotations

from torch import nn

from vaelab.models.parts.conditioning import LabelConditioning
from vaelab.models.parts.decoders import ConvDecoder, MLPDecoder
from vaelab.models.parts.discretized import DiscretizedGaussianLikelihood
from vaelab.models.parts.encoders import ConvEncoder, MLPEncoder
from vaelab.models.parts.ladder import LadderDecoder
from vaelab.models.parts.likelihoods import BernoulliLikelihood, GaussianLikelihood
from vaelab.models.parts.logistic import LogisticMixtureLikelihood
from vaelab.models.parts.posteriors import GaussianPosterior
from vaelab.models.parts.priors import StandardNormalPrior, VampPrior
from vaelab.models.parts.resnet import ResNetDecoder, ResNetEncoder

ENCODERS: dict[str, type[nn.Module]] = {"mlp": MLPEncoder, "conv": ConvEncoder, "resnet": ResNetEncoder}
# A decoder class with ``hierarchical = True`` holds stochastic layers of its own: it is built with the
# encoder's ``feature_channels`` and driven through ``top_down`` (see VAE).
DECODERS: dict[str, type[nn.Module]] = {
    "mlp": MLPDecoder,
    "conv": ConvDecoder,
    "resnet": ResNetDecoder,
    "ladder": LadderDecoder,
}
POSTERIORS: dict[str, type[nn.Module]] = {"gaussian": GaussianPosterior}
PRIORS: dict[str, type[nn.Module]] = {"standard_normal": StandardNormalPrior, "vamp": VampPrior}
LIKELIHOODS: dict[str, type[nn.Module]] = {
    "bernoulli": BernoulliLikelihood,
    "gaussian": GaussianLikelihood,
    "logistic_mixture": LogisticMixtureLikelihood,
    "discretized_gaussian": DiscretizedGaussianLikelihood,
}
CONDITIONS: dict[str, type[nn.Module]] = {"label": LabelConditioning}
