"""Validated configuration of a whole VAE: image shape, latent size and one config per part.

Config is the constructor: every part takes its own frozen pydantic model, defined in the part's own
file and picked by its short ``name``. The union of each kind's configs is built from the registry, so
a new part is its file and one registry line. The saved ``ModelConfig`` rebuilds the model exactly.
Unknown keys and bad values raise at load time with the field named.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from vaelab.models.part_config import PartConfig, config_union
from vaelab.models.parts.decoders import MLPDecoderConfig
from vaelab.models.parts.encoders import MLPEncoderConfig
from vaelab.models.parts.likelihoods import BernoulliLikelihoodConfig
from vaelab.models.parts.posteriors import GaussianPosteriorConfig
from vaelab.models.parts.priors import StandardNormalPriorConfig
from vaelab.models.registry import CONDITIONS, DECODERS, ENCODERS, LIKELIHOODS, POSTERIORS, PRIORS

# Each a pydantic union of the registered parts' configs, told apart by ``name``.
EncoderConfig = config_union(ENCODERS)
DecoderConfig = config_union(DECODERS)
PosteriorConfig = config_union(POSTERIORS)
PriorConfig = config_union(PRIORS)
LikelihoodConfig = config_union(LIKELIHOODS)
ConditionConfig = config_union(CONDITIONS)


class ModelConfig(PartConfig):
    """A whole VAE: image shape, latent size and one config per part."""

    # (channels, height, width); None means "take it from the dataset" when a run starts.
    image_shape: (
        tuple[Annotated[int, Field(ge=1)], Annotated[int, Field(ge=1)], Annotated[int, Field(ge=1)]] | None
    ) = None
    latent_dim: int = Field(default=32, ge=1)
    encoder: EncoderConfig = Field(default_factory=MLPEncoderConfig)
    decoder: DecoderConfig = Field(default_factory=MLPDecoderConfig)
    posterior: PosteriorConfig = Field(default_factory=GaussianPosteriorConfig)
    prior: PriorConfig = Field(default_factory=StandardNormalPriorConfig)
    likelihood: LikelihoodConfig = Field(default_factory=BernoulliLikelihoodConfig)
    # None: an unconditional VAE; a condition part makes encoder and decoder take a class label.
    condition: ConditionConfig | None = None

    @model_validator(mode="after")
    def _latent_layouts_agree(self) -> ModelConfig:
        enc = getattr(self.encoder, "latent", "vector")
        dec = getattr(self.decoder, "latent", "vector")
        if enc != dec:
            raise ValueError(
                f"encoder {self.encoder.name!r} lays out the latent as a {enc} but decoder "
                f"{self.decoder.name!r} as a {dec}: set the same 'latent' on both (a spatial latent needs "
                "the resnet encoder and decoder)"
            )
        if dec == "spatial" and self.condition is not None:
            raise ValueError("a spatial latent cannot take a class label beside z: use latent: vector")
        return self
