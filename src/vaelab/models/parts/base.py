"""What the VAE asks of each kind of part: one base class per kind, and what passes between them.

A part subclasses its kind's base, names its own config class as ``config_class`` (defined beside it),
and is registered by name in ``vaelab.models.registry``; ``vaelab.models.config`` reads each kind's
config union off the registry. Posteriors need no base: a posterior turns parameters into a
``torch.distributions`` object and says how many it needs (``param_dim``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn
from torch.distributions import Distribution

from vaelab.errors import UsageError
from vaelab.models.part_config import PartConfig
from vaelab.models.parts.kl import LayerKL


class EncoderPart(nn.Module):
    """What the VAE asks of an encoder, built as ``Encoder(config, image_shape, out_features)``:
    ``forward(x)`` gives the top posterior's parameters; ``forward_features(x)`` gives them with the
    encoder's multi-scale features, {side: (B, width, side, side')}, which the posteriors of a
    hierarchical decoder read (None for an encoder without such stages; ``feature_channels`` says
    their widths by side, or is None)."""

    config_class: ClassVar[type[PartConfig]]

    feature_channels: dict[int, int] | None = None

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[int, torch.Tensor] | None]:
        return self(x), None


Widths = dict[int, int] | None  # an encoder's feature widths by side (see EncoderPart), if it has any


@dataclass(frozen=True)
class Draw:
    """How a top-down pass draws the stochastic layers below the top latent."""

    # Without encoder features each layer comes from its prior, its standard deviation scaled by its
    # temperature (one per lower layer, top first; 0: the prior mean; None: all 1), noise from ``generator``.
    temperatures: Sequence[float] | None = None
    generator: torch.Generator | None = None
    use_mean: bool = False  # with features: each layer's posterior mean instead of a sample
    sampled_kl: bool = False  # each layer's KL as log q - log p at the draw, as importance weights need


POSTERIOR_SAMPLE = Draw()


@dataclass
class DecoderOutput:
    """One decoder pass: the likelihood's parameters, and the KL of each stochastic layer below the top
    latent, top first (none for a flat decoder; zeros where the layers were drawn from their priors)."""

    params: torch.Tensor
    layers: list[LayerKL] = field(default_factory=list)


class DecoderPart(nn.Module):
    """What the VAE asks of a decoder, built as ``Decoder(config, latent_dim, out_shape,
    feature_channels)`` (``feature_channels``: the encoder's widths by side, which only a decoder with
    stochastic layers reads). ``forward(z)`` gives the likelihood's parameters along the mean path (every
    lower layer at its prior mean), so any decoder stands where a plain one does (ONNX export);
    ``top_down`` is the full pass."""

    config_class: ClassVar[type[PartConfig]]

    num_latent_layers: int = 0  # stochastic layers below the top latent
    activation_elements: int = 0  # largest activation per image, when above the output's size

    @classmethod
    def check_encoder(cls, config: Any, encoder_config: Any, feature_channels: Widths) -> None:
        """Raise a ConfigError, before anything is built, when this decoder cannot work with the
        encoder (``config`` and ``encoder_config``: the two parts' configs); any encoder suits most."""

    def top_down(
        self, z: torch.Tensor, features: dict[int, torch.Tensor] | None = None, draw: Draw = POSTERIOR_SAMPLE
    ) -> DecoderOutput:
        """Parameters for top latents ``z`` (N, latent_dim). A decoder with lower layers draws each as
        ``draw`` says, from its posterior given the encoder's ``features`` or, without them, from its
        prior, and gives each layer's KL (closed form, or the log-ratio at the draw). The features
        are of B images, B = N or, for k importance samples of each, N = k x B with z's rows
        sample-major (row j B + i is sample j of image i): the features are then shared, not copied."""
        return DecoderOutput(self(z))

    def last_layer_weight(self) -> nn.Parameter:
        """The weight of the layer that outputs the likelihood's parameters (where VQGAN's adaptive
        weight compares gradients): by default the last weight matrix or kernel registered, which is
        the output layer of every decoder here (the contract test checks it)."""
        return [p for p in self.parameters() if p.dim() >= 2][-1]


class PriorPart(nn.Module):
    """What the VAE asks of a prior: ``forward()`` gives p(z) (event shape (latent_dim,)) and ``sample``
    draws latents at a temperature. Built as ``Prior(config, latent_dim, image_shape)``."""

    config_class: ClassVar[type[PartConfig]]

    latent_dim: int

    def bind(self, encode: Callable[[torch.Tensor], Distribution], conditional: bool) -> None:
        """Called once by the VAE's constructor with its q(z|x): a prior built from the encoder keeps
        it; the others need nothing."""

    def forward(self) -> Distribution:
        raise NotImplementedError

    def sample(
        self, n: int, temperature: float = 1.0, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Draw ``n`` latents (n, latent_dim); ``temperature`` scales the standard deviation
        (T < 1: safer, less varied; T = 0: the mean)."""
        raise NotImplementedError


class LikelihoodPart(nn.Module):
    """What the VAE asks of a likelihood part.

    ``param_channels``: decoder output channels for a whole image (the decoder's output is
    (B, param_channels, H, W)). Parts that model each channel alike also say ``params_per_channel``
    (param_channels = channels * params_per_channel); a part that couples the channels (the RGB logistic
    mixture) has no such count. ``discrete``: ``log_prob`` is a normalised distribution over the 256 levels
    of 8-bit pixels, so bits/dim is NLL / (D ln 2) with no bin-width offset; else it is a density over
    [0, 1] (or a Bernoulli cross-entropy) and evaluation converts or declines.
    """

    config_class: ClassVar[type[PartConfig]]

    discrete: ClassVar[bool] = False
    # ``mean`` and ``sample`` decode one pixel at a time (an autoregressive part): the image is not
    # one function of the decoder's output, so it cannot be exported as one graph.
    sequential: ClassVar[bool] = False
    param_channels: int

    def forward(self, params: torch.Tensor) -> Distribution:
        raise NotImplementedError

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        """The image to show for these parameters, in [0, 1]."""
        raise NotImplementedError

    def raw_mean(self, params: torch.Tensor) -> torch.Tensor:
        """The expected image before any clipping to [0, 1], for losses that judge the decoder's output
        (the adversarial objective): where ``mean`` clips, its gradient is zero, and a region the decoder
        drives far out of range would stay there unseen. This default returns ``mean``."""
        return self.mean(params)

    def guided_channels(self) -> int | None:
        """How many of the parameter channels, from the first, classifier-free guidance mixes (the
        location parameters: logits, means); the rest keep the conditional pass's values. None: guidance
        is not defined for this likelihood, and ``check_guidance`` says why."""
        return None

    def check_guidance(self) -> None:
        """Nothing when this likelihood can be guided; else a UsageError naming it."""
        if self.guided_channels() is None:
            name = self.config_class.model_fields["name"].default
            raise UsageError(
                f"classifier-free guidance is not defined for the {name!r} likelihood: its image is not "
                "one function of the decoder's output (sample with guidance 1)"
            )

    def guide(self, cond: torch.Tensor, uncond: torch.Tensor, scale: float) -> torch.Tensor:
        """Classifier-free guidance (Ho & Salimans 2022) on the decoder's output: uncond + scale
        (cond - uncond) on the ``guided_channels`` location parameters, the conditional pass's values on
        the others. For logits (Bernoulli) and for means under a scale both passes share, this is exactly
        the distribution proportional to p(x|z)^(1 - w) p(x|z, y)^w, the guided density of Ho & Salimans."""
        self.check_guidance()
        n = self.guided_channels()
        out = cond.clone()
        out[:, :n] = torch.lerp(uncond[:, :n], cond[:, :n], scale)
        return out
