"""Validated configuration of a VAE and each of its parts.

Config is the constructor: every part takes its own frozen pydantic model, picked by its short
``name``. The saved ``ModelConfig`` rebuilds the model exactly. Unknown keys and bad values raise at
load time with the field named.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

Activation = Literal["relu", "gelu", "silu", "elu", "tanh"]


class PartConfig(BaseModel):
    """Base of every part config: frozen, and unknown keys are errors (typos never pass silently)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# --- encoders --------------------------------------------------------------------------------------
class MLPEncoderConfig(PartConfig):
    """Fully connected encoder: flattened image -> hidden layers -> posterior parameters."""

    name: Literal["mlp"] = "mlp"
    hidden_dims: tuple[Annotated[int, Field(ge=1)], ...] = (512, 256)
    activation: Activation = "relu"


class ConvEncoderConfig(PartConfig):
    """Strided 3x3 convolutions (each halves the image side) -> linear layer -> posterior parameters."""

    name: Literal["conv"] = "conv"
    channels: tuple[Annotated[int, Field(ge=1)], ...] = (32, 64, 128)
    hidden_dim: int = Field(default=256, ge=1)
    activation: Activation = "relu"


# --- decoders --------------------------------------------------------------------------------------
class MLPDecoderConfig(PartConfig):
    """Fully connected decoder: latent -> hidden layers -> likelihood parameters per pixel."""

    name: Literal["mlp"] = "mlp"
    hidden_dims: tuple[Annotated[int, Field(ge=1)], ...] = (256, 512)
    activation: Activation = "relu"


class ConvDecoderConfig(PartConfig):
    """Linear layer -> transposed 3x3 convolutions (each doubles the side) -> likelihood parameters."""

    name: Literal["conv"] = "conv"
    channels: tuple[Annotated[int, Field(ge=1)], ...] = (128, 64, 32)
    hidden_dim: int = Field(default=256, ge=1)
    activation: Activation = "relu"


# --- latent distribution q(z|x) ----------------------------------------------------------------------
class GaussianPosteriorConfig(PartConfig):
    """Diagonal Gaussian q(z|x) from a mean and a log-variance per latent dimension."""

    name: Literal["gaussian"] = "gaussian"
    # The log-variance is clamped to this range when the distribution is built, so one bad batch
    # cannot produce exp(1000) = inf (the same guard as diffusers' DiagonalGaussianDistribution).
    logvar_min: float = -30.0
    logvar_max: float = 20.0


# --- prior p(z) ------------------------------------------------------------------------------------
class StandardNormalPriorConfig(PartConfig):
    """The classic N(0, I) prior."""

    name: Literal["standard_normal"] = "standard_normal"


# --- likelihood p(x|z) -----------------------------------------------------------------------------
class BernoulliLikelihoodConfig(PartConfig):
    """Bernoulli per pixel, parameterised by logits (binary or [0,1] pixels)."""

    name: Literal["bernoulli"] = "bernoulli"


class GaussianLikelihoodConfig(PartConfig):
    """Gaussian per pixel with a fixed standard deviation or a learned one (per pixel, from the decoder)."""

    name: Literal["gaussian"] = "gaussian"
    variance: Literal["fixed", "learned"] = "fixed"
    sigma: float = Field(default=0.1, gt=0.0)
    # Floor on the learned log-scale: stops the likelihood from collapsing onto a pixel (VDVAE's trick).
    min_log_scale: float = -7.0


# --- conditioning ------------------------------------------------------------------------------------
class LabelConditionConfig(PartConfig):
    """Class-conditional VAE (Sohn et al. 2015): the label enters the encoder as an extra image
    channel (a learned map per class) and the decoder as a one-hot vector beside z."""

    name: Literal["label"] = "label"
    # None means "take it from the dataset" when a run starts (like image_shape).
    num_classes: int | None = Field(default=None, ge=2)


EncoderConfig = Annotated[MLPEncoderConfig | ConvEncoderConfig, Field(discriminator="name")]
DecoderConfig = Annotated[MLPDecoderConfig | ConvDecoderConfig, Field(discriminator="name")]
PosteriorConfig = Annotated[GaussianPosteriorConfig, Field(discriminator="name")]
PriorConfig = Annotated[StandardNormalPriorConfig, Field(discriminator="name")]
LikelihoodConfig = Annotated[
    BernoulliLikelihoodConfig | GaussianLikelihoodConfig, Field(discriminator="name")
]
ConditionConfig = Annotated[LabelConditionConfig, Field(discriminator="name")]


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
