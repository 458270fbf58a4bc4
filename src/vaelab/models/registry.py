"""Short name -> part class, one dict per kind of part.

A new variant is a new part registered here (and its config added to the union in
``vaelab.models.config``), never a copy of the model.
"""

from __future__ import annotations

from torch import nn

from vaelab.models.parts.conditioning import LabelConditioning
from vaelab.models.parts.decoders import ConvDecoder, MLPDecoder
from vaelab.models.parts.encoders import ConvEncoder, MLPEncoder
from vaelab.models.parts.likelihoods import BernoulliLikelihood, GaussianLikelihood
from vaelab.models.parts.posteriors import GaussianPosterior
from vaelab.models.parts.priors import StandardNormalPrior

ENCODERS: dict[str, type[nn.Module]] = {"mlp": MLPEncoder, "conv": ConvEncoder}
DECODERS: dict[str, type[nn.Module]] = {"mlp": MLPDecoder, "conv": ConvDecoder}
POSTERIORS: dict[str, type[nn.Module]] = {"gaussian": GaussianPosterior}
PRIORS: dict[str, type[nn.Module]] = {"standard_normal": StandardNormalPrior}
LIKELIHOODS: dict[str, type[nn.Module]] = {"bernoulli": BernoulliLikelihood, "gaussian": GaussianLikelihood}
CONDITIONS: dict[str, type[nn.Module]] = {"label": LabelConditioning}
