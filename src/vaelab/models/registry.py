"""Short name -> part class, one dict per kind of part.

A new variant is a new part registered here, never a copy of the model: one line, and
``vaelab.models.config`` accepts its config (each part names it as ``config_class``) under that name.
"""

from __future__ import annotations

from torch import nn

from vaelab.models.parts.autoregressive import PixelCNNLikelihood
from vaelab.models.parts.base import DecoderPart, EncoderPart, LikelihoodPart, PriorPart
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

# Each kind's base class (parts/base.py) says what the VAE asks of its parts; a decoder with
# stochastic layers of its own (ladder) reads the encoder's features.
ENCODERS: dict[str, type[EncoderPart]] = {"mlp": MLPEncoder, "conv": ConvEncoder, "resnet": ResNetEncoder}
DECODERS: dict[str, type[DecoderPart]] = {
    "mlp": MLPDecoder,
    "conv": ConvDecoder,
    "resnet": ResNetDecoder,
    "ladder": LadderDecoder,
}
POSTERIORS: dict[str, type[nn.Module]] = {"gaussian": GaussianPosterior}
PRIORS: dict[str, type[PriorPart]] = {"standard_normal": StandardNormalPrior, "vamp": VampPrior}
LIKELIHOODS: dict[str, type[LikelihoodPart]] = {
    "bernoulli": BernoulliLikelihood,
    "gaussian": GaussianLikelihood,
    "logistic_mixture": LogisticMixtureLikelihood,
    "discretized_gaussian": DiscretizedGaussianLikelihood,
    "pixelcnn": PixelCNNLikelihood,
}
CONDITIONS: dict[str, type[nn.Module]] = {"label": LabelConditioning}
