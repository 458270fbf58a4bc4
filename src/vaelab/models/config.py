"""Validated configuration of a VAE and each of its parts.

Config is the constructor: every part takes its own frozen pydantic model, picked by its short
``name``. The saved ``ModelConfig`` rebuilds the model exactly. Unknown keys and bad values raise at
load time with the field named.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import Field, model_validator

# The bases live apart so that a new part's file can define its config (see part_config.py).
from vaelab.models.part_config import Activation, ConvPartConfig, LatentLayout, PartConfig


class _MLPConfig(PartConfig):
    """What the fully connected encoder and decoder share: widths of the hidden layers, activation."""

    hidden_dims: tuple[Annotated[int, Field(ge=1)], ...] = (512, 256)
    activation: Activation = "relu"


class _ConvStackConfig(ConvPartConfig):
    """What the plain convolutional encoder and decoder share."""

    hidden_dim: int = Field(default=256, ge=1)
    activation: Activation = "relu"
    # Stride-1 3x3 convolutions at each stage's width and resolution (VGG style): wide layers at full
    # (patched) resolution are where a CPU reaches its matmul peak. 0 = the classic stack of strided
    # (encoder) or upsampling (decoder) convolutions only.
    convs_per_stage: int = Field(default=0, ge=0)


class _ResidualStackConfig(ConvPartConfig):
    """What the residual encoder and decoders share: stages of residual blocks, one per resolution."""

    channels: tuple[Annotated[int, Field(ge=1)], ...] = Field(default=(64, 64, 32), min_length=1)
    blocks_per_stage: int = Field(default=1, ge=1)
    activation: Activation = "silu"


# --- encoders --------------------------------------------------------------------------------------
class MLPEncoderConfig(_MLPConfig):
    """Fully connected encoder: flattened image -> hidden layers -> posterior parameters."""

    name: Literal["mlp"] = "mlp"


class ConvEncoderConfig(_ConvStackConfig):
    """Strided 3x3 convolutions (each halves the image side) -> linear layer -> posterior parameters."""

    name: Literal["conv"] = "conv"
    channels: tuple[Annotated[int, Field(ge=1)], ...] = (32, 64, 128)


class ResNetEncoderConfig(_ResidualStackConfig):
    """Residual convolutional encoder (VDVAE-style blocks): one stage per resolution, full resolution
    first; each later stage halves the side with a stride-2 convolution. Image sides must be divisible
    by 2 ** (len(channels) - 1). Exposes its per-resolution features to a hierarchical decoder."""

    name: Literal["resnet"] = "resnet"
    channels: tuple[Annotated[int, Field(ge=1)], ...] = Field(default=(32, 64, 64), min_length=1)
    # "vector": a linear layer maps the last stage to a latent vector (a compact code). "spatial": a
    # 1x1 convolution maps it to a latent map of latent_dim / side² channels at the last stage's side
    # (e.g. 8x8x4 for a 256-d latent), so each code position describes its own region of the image: a
    # faithful code for reconstruction (the KL-f4/f8 autoencoders of latent diffusion). The decoder
    # must say the same.
    latent: LatentLayout = "vector"


# --- decoders --------------------------------------------------------------------------------------
class MLPDecoderConfig(_MLPConfig):
    """Fully connected decoder: latent -> hidden layers -> likelihood parameters per pixel."""

    name: Literal["mlp"] = "mlp"
    hidden_dims: tuple[Annotated[int, Field(ge=1)], ...] = (256, 512)


class ConvDecoderConfig(_ConvStackConfig):
    """Linear layer -> upsampling 3x3 convolutions (each doubles the side) -> likelihood parameters;
    ``convs_per_stage`` convolutions follow each upsampling (the encoder's mirror)."""

    name: Literal["conv"] = "conv"
    channels: tuple[Annotated[int, Field(ge=1)], ...] = (128, 64, 32)
    # How each stage doubles the side: a stride-2 transposed convolution, or nearest-neighbour
    # upsampling and a 3x3 convolution (no checkerboard artefacts; not faster on the CPUs measured:
    # docs/benchmarks.md).
    upsample: Literal["transposed", "nearest"] = "transposed"


class ResNetDecoderConfig(_ResidualStackConfig):
    """Residual convolutional decoder: linear layer -> stages of residual blocks, lowest resolution
    first, each later stage doubling the side (nearest upsampling + 3x3 convolution)."""

    name: Literal["resnet"] = "resnet"
    # "spatial": z is read as a latent map at the first stage's side (see ResNetEncoderConfig.latent).
    latent: LatentLayout = "vector"


class LadderDecoderConfig(_ResidualStackConfig):
    """Hierarchical top-down decoder (LVAE / NVAE / VDVAE): the ResNet decoder's stages with
    ``latent_layers[i]`` extra stochastic layers in stage i (lowest resolution first), each a
    ``latent_channels`` x side x side Gaussian map with a learned conditional prior p(z_l | z_>l) and a
    posterior q(z_l | z_>l, x) that also reads the encoder's features at that resolution. The model has
    1 + sum(latent_layers) stochastic layers: the top one is the VAE's ``latent_dim`` vector."""

    name: Literal["ladder"] = "ladder"
    latent_layers: tuple[Annotated[int, Field(ge=0)], ...] = (2, 1, 0)
    latent_channels: int = Field(default=4, ge=1)
    # Log-variances of the layer Gaussians are clamped to this range (exp(logvar) stays finite).
    logvar_min: float = -16.0
    logvar_max: float = 8.0

    @model_validator(mode="after")
    def _layers_match_stages(self) -> LadderDecoderConfig:
        if len(self.latent_layers) != len(self.channels):
            raise ValueError(
                f"latent_layers has {len(self.latent_layers)} entries but channels has "
                f"{len(self.channels)} stages: give one count of stochastic layers per stage"
            )
        if sum(self.latent_layers) < 1:
            raise ValueError("latent_layers must add at least one stochastic layer below the top one")
        return self


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


class VampPriorConfig(PartConfig):
    """VampPrior (Tomczak & Welling 2018): p(z) = (1/K) sum_k q(z | u_k) over K learned pseudo-images."""

    name: Literal["vamp"] = "vamp"
    components: int = Field(default=100, ge=1)


# --- likelihood p(x|z) -----------------------------------------------------------------------------
class BernoulliLikelihoodConfig(PartConfig):
    """Bernoulli per pixel, parameterised by logits (binary or [0,1] pixels)."""

    name: Literal["bernoulli"] = "bernoulli"


class GaussianLikelihoodConfig(PartConfig):
    """Gaussian density per pixel (pixels in [0, 1]). ``variance``: ``fixed`` (``sigma``), ``learned``
    (a log-scale per pixel from the decoder; can collapse on colour images, see docs/models.md) or
    ``shared`` (one learned log-scale per image channel, starting at ``sigma``: the calibrated decoder of
    Rybkin et al. 2021, sigma-VAE)."""

    name: Literal["gaussian"] = "gaussian"
    variance: Literal["fixed", "learned", "shared"] = "fixed"
    sigma: float = Field(default=0.1, gt=0.0)
    # Floor on the learned log-scale. learned: -7 (VDVAE's), a saved config without the key keeps it.
    # shared: log(1/510) = -6.23, half an 8-bit level: below 1/(256 sqrt(2 pi)) = 1.56e-3 the density
    # times the bin width 1/256 would exceed 1 at the mode, i.e. the density would be fitting the
    # quantisation grid rather than the image. Filled in per mode when the key is absent.
    min_log_scale: float = -7.0

    @model_validator(mode="before")
    @classmethod
    def _floor_per_mode(cls, data: object) -> object:
        if isinstance(data, dict) and data.get("variance") == "shared" and "min_log_scale" not in data:
            return {**data, "min_log_scale": -6.23}
        return data

    @model_validator(mode="after")
    def _sigma_above_floor(self) -> GaussianLikelihoodConfig:
        if self.variance == "shared" and math.log(self.sigma) <= self.min_log_scale:
            raise ValueError(
                f"sigma {self.sigma} (the shared scale's start) must lie above the floor "
                f"exp(min_log_scale) = {math.exp(self.min_log_scale):.3g}"
            )
        return self


class LogisticMixtureLikelihoodConfig(PartConfig):
    """Discretised logistic mixture over 8-bit pixels (PixelCNN++, Salimans et al. 2017), one mixture of
    ``components`` logistics per pixel and channel; a normalised distribution over the 256 levels."""

    name: Literal["logistic_mixture"] = "logistic_mixture"
    components: int = Field(default=5, ge=1)
    # Floor on each logistic's log-scale (PixelCNN++ uses -7): a component cannot shrink onto one level.
    min_log_scale: float = -7.0
    # RGB only: PixelCNN++'s channel coupling (sec. 2.2): one mixture indicator per pixel, and within a
    # component G's mean moves with the pixel's R and B's with R and G (10 x components decoder channels
    # per pixel). False (the default, so that a saved config without the key keeps its meaning): one
    # independent mixture per pixel and channel. Colour configs should set it true.
    coupled: bool = False


class DiscretizedGaussianLikelihoodConfig(PartConfig):
    """Gaussian per pixel and channel integrated over each of the 256 bins of an 8-bit level (the edge
    bins reaching to -inf and +inf): a normalised distribution over the levels, like the logistic
    mixture, with one mean and one log-scale from the decoder per pixel and channel."""

    name: Literal["discretized_gaussian"] = "discretized_gaussian"
    # Floor on the log-scale, in [0, 1] pixel units: log(1/1020), a quarter of a level. The distribution
    # is discrete, so a tiny scale cannot blow the likelihood up (log P <= 0); the floor bounds the
    # gradient (~ 1/scale^2) of a confident, wrong pixel. At it the centre bin already gets 95.4% of the
    # mass: finer scales buy almost nothing (PixelCNN++'s -7 in [-1, 1] units is 0.12 of a level).
    min_log_scale: float = -6.93


class PixelCNNLikelihoodConfig(LogisticMixtureLikelihoodConfig):
    """The logistic mixture (``logistic_mixture``'s fields) whose parameters also follow each pixel's
    causal neighbourhood: a PixelCNN head (PixelVAE), normalised; decoding is pixel by pixel."""

    name: Literal["pixelcnn"] = "pixelcnn"  # type: ignore[assignment]
    coupled: bool = True
    # The masked convolution's side (odd): a pixel sees the kernel // 2 rows above and pixels left of it.
    kernel: int = Field(default=5, ge=3)
    # Width of the head, its gated residual layers (Gated PixelCNN's vertical and horizontal stacks, each
    # widening the causal window by a pixel; 0: none) and its extra per-pixel (1 x 1) layers after them.
    hidden: int = Field(default=32, ge=1)
    gated_layers: int = Field(default=0, ge=0)
    depth: int = Field(default=1, ge=0)

    @model_validator(mode="after")
    def _odd_kernel(self) -> PixelCNNLikelihoodConfig:
        if self.kernel % 2 == 0:
            raise ValueError(f"pixelcnn kernel must be odd (it is centred on the pixel); got {self.kernel}")
        return self


# --- conditioning ------------------------------------------------------------------------------------
class LabelConditionConfig(PartConfig):
    """Class-conditional VAE (Sohn et al. 2015): the label enters the encoder as an extra image
    channel (a learned map per class) and the decoder as a one-hot vector beside z."""

    name: Literal["label"] = "label"
    # None means "take it from the dataset" when a run starts (like image_shape).
    num_classes: int | None = Field(default=None, ge=2)


EncoderConfig = Annotated[
    MLPEncoderConfig | ConvEncoderConfig | ResNetEncoderConfig, Field(discriminator="name")
]
DecoderConfig = Annotated[
    MLPDecoderConfig | ConvDecoderConfig | ResNetDecoderConfig | LadderDecoderConfig,
    Field(discriminator="name"),
]
PosteriorConfig = Annotated[GaussianPosteriorConfig, Field(discriminator="name")]
PriorConfig = Annotated[StandardNormalPriorConfig | VampPriorConfig, Field(discriminator="name")]
LikelihoodConfig = Annotated[
    BernoulliLikelihoodConfig
    | GaussianLikelihoodConfig
    | LogisticMixtureLikelihoodConfig
    | DiscretizedGaussianLikelihoodConfig
    | PixelCNNLikelihoodConfig,
    Field(discriminator="name"),
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
