"""The hierarchical (top-down, ladder) decoder part: LVAE / NVAE / VDVAE.

Sønderby et al. 2016 (LVAE), Vahdat & Kautz 2020 (NVAE), Child 2021 (VDVAE). The VAE's latent z_1 (a
vector, with the model's prior part) starts a top-down pass through the ResNet decoder's stages. In a
stage, each stochastic layer l reads the top-down state h and gives

    p(z_l | z_>l)    = N(mu_p(h), sigma_p(h))                         (the generative path)
    q(z_l | z_>l, x) = N(mu_q(h, f), sigma_q(h, f)),  f = encoder features at this resolution

then h <- h + proj(z_l): the posterior shares the decoder's top-down computation (LVAE's "ladder"),
which is what lets deep hierarchies train without their lower layers collapsing. KL terms are
analytic per layer (two Gaussians, through the same ``layer_kl`` as the top latent's), so the ELBO's
rate is split into one number per layer.

Init tricks (VDVAE): the prior head's last convolution starts at zero (every p(z_l | z_>l) starts as
N(0, I) and adds nothing to h), and the z projection and residual branches are scaled by
sqrt(1 / number of blocks), so a deep stack starts close to the identity.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

import torch
from pydantic import Field, model_validator
from torch import nn
from torch.distributions import Independent
from torch.nn import functional as F

from vaelab.errors import ConfigError, UsageError
from vaelab.models.parts.base import POSTERIOR_SAMPLE, DecoderOutput, DecoderPart, Draw, Widths
from vaelab.models.parts.kl import LayerKL, diagonal_gaussian, layer_kl
from vaelab.models.parts.layers import Conv2d, Shape, Upsample, activation, from_patches
from vaelab.models.parts.resnet import ResBlock, ResidualStackConfig, res_stage, up_sides


class LadderDecoderConfig(ResidualStackConfig):
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


class LatentLayer(nn.Module):
    """One stochastic layer of the top-down pass (VDVAE's DecBlock, minus its extra residual stack)."""

    def __init__(self, width: int, feature_width: int, config: LadderDecoderConfig, scale: float) -> None:
        super().__init__()
        zc, act = config.latent_channels, config.activation
        self.latent_channels = zc
        self.logvar_range = (config.logvar_min, config.logvar_max)
        self.prior_net = nn.Sequential(
            activation(act),
            Conv2d(width, width, 3, padding=1),
            activation(act),
            Conv2d(width, 2 * zc + width, 1),
        )
        self.posterior_net = nn.Sequential(
            activation(act),
            Conv2d(width + feature_width, width, 3, padding=1),
            activation(act),
            Conv2d(width, 2 * zc, 1),
        )
        self.z_proj = Conv2d(zc, width, 1)
        with torch.no_grad():
            prior_last = self.prior_net[-1]
            assert isinstance(prior_last, nn.Conv2d)
            prior_last.weight.zero_()  # p(z_l | z_>l) = N(0, I) and no change to h at the start
            prior_last.bias.zero_()
            self.z_proj.weight.mul_(scale)
        self.block = ResBlock(width, act, scale)

    def _gaussian(self, params: torch.Tensor) -> Independent:
        # fp32 even under bf16 autocast: exp(logvar) and the KL need the mantissa.
        mean, logvar = params.float().chunk(2, dim=1)
        return diagonal_gaussian(mean, logvar, self.logvar_range, 3)

    def _posterior_params(self, h: torch.Tensor, feature: torch.Tensor) -> torch.Tensor:
        """q's parameters from h (k x B rows, sample-major) and the B images' ``feature``.

        With one sample per image, one convolution over [h, feature]. With k > 1 (importance
        weights) the same first convolution split by its input channels: the feature's half runs once
        per image and is broadcast over the k samples, which saves ~12% of a sample's FLOPs in
        configs/mnist-hour.yaml and the k copies of the features."""
        if feature.shape[0] == h.shape[0]:
            return self.posterior_net(torch.cat([h, feature], dim=1))
        act, first, *rest = self.posterior_net
        assert isinstance(first, nn.Conv2d) and first.groups == 1  # input channels split only so
        w, width, b = first.weight, h.shape[1], feature.shape[0]
        geometry = (first.stride, first.padding, first.dilation)
        from_h = F.conv2d(act(h), w[:, :width], first.bias, *geometry)
        from_feature = F.conv2d(act(feature), w[:, width:], None, *geometry)
        out = (from_h.view(-1, b, *from_h.shape[1:]) + from_feature).reshape_as(from_h)
        for layer in rest:
            out = layer(out)
        return out

    def forward(
        self,
        h: torch.Tensor,
        feature: torch.Tensor | None,
        temperature: float,
        draw: Draw,
    ) -> tuple[torch.Tensor, LayerKL]:
        """(new h, this layer's KL). Without ``feature``: z from the prior with its standard deviation
        scaled by ``temperature`` (0: the prior mean), and a KL of zero."""
        zc = self.latent_channels
        out = self.prior_net(h)
        prior = self._gaussian(out[:, : 2 * zc])
        h = h + out[:, 2 * zc :]
        if feature is None:
            z = prior.mean
            if temperature != 0:
                device = draw.generator.device if draw.generator is not None else z.device
                eps = torch.randn(z.shape, generator=draw.generator, device=device).to(z.device)
                z = z + temperature * prior.stddev * eps
            kl = LayerKL(torch.zeros(z.shape[0], device=z.device))
        else:
            q = self._gaussian(self._posterior_params(h, feature.to(h.dtype)))
            z = q.mean if draw.use_mean else q.rsample()
            kl = layer_kl(q, prior, z, sampled=draw.sampled_kl)
        h = self.block(h + self.z_proj(z.to(h.dtype)))
        return h, kl


class LadderDecoder(DecoderPart):
    """Top-down hierarchical decoder: the top latent (B, latent_dim) and, for the posterior path, the
    encoder's features by side -> likelihood parameters and the KL of each lower layer.

    The stages are the ResNet decoder's (same geometry, blocks and output head), with the stochastic
    layers between a stage's residual blocks and its upsampling.
    """

    config_class = LadderDecoderConfig

    def __init__(
        self, config: LadderDecoderConfig, latent_dim: int, out_shape: Shape, feature_channels: Widths = None
    ) -> None:
        super().__init__()
        if feature_channels is None:
            raise ConfigError("ladder decoder: its posteriors need the encoder's feature widths by side")
        c, sides = up_sides(config, out_shape, "ladder decoder")
        self.from_patches = from_patches(config.patch)
        n = len(config.channels)
        self.num_latent_layers = sum(config.latent_layers)
        scale = math.sqrt(1.0 / (n * config.blocks_per_stage + self.num_latent_layers))
        self.start_shape = (config.channels[0], *sides[0])
        self.head = nn.Linear(latent_dim, math.prod(self.start_shape))
        self.sides = [h for h, _ in sides]  # lowest resolution first
        self.blocks = nn.ModuleList()
        self.latents = nn.ModuleList()
        self.ups = nn.ModuleList()
        for i, (ch, count) in enumerate(zip(config.channels, config.latent_layers, strict=True)):
            side = self.sides[i]
            if count and side not in feature_channels:
                raise ConfigError(
                    f"ladder decoder: stage {i} (side {side}) has stochastic layers but the encoder has "
                    f"features only at sides {sorted(feature_channels)}; give the encoder and decoder "
                    "the same number of stages and the same patch"
                )
            self.blocks.append(res_stage(ch, config.blocks_per_stage, config.activation, scale))
            self.latents.append(
                nn.ModuleList(
                    [LatentLayer(ch, feature_channels.get(side, 0), config, scale) for _ in range(count)]
                )
            )
            if i + 1 < n:
                self.ups.append(Upsample(ch, config.channels[i + 1]))
        self.out = nn.Sequential(activation(config.activation), Conv2d(config.channels[-1], c, 3, padding=1))
        self.activation_elements = max(ch * h * w for ch, (h, w) in zip(config.channels, sides, strict=True))

    @classmethod
    def check_encoder(cls, config: Any, encoder_config: Any, feature_channels: Widths) -> None:
        """The posteriors read the encoder's features side by side: an encoder that has them, at the
        same patch (else the stages would meet at other sides)."""
        if feature_channels is None:
            raise ConfigError(
                f"decoder {config.name!r} is hierarchical: its posteriors read the encoder's multi-scale "
                f"features, which encoder {encoder_config.name!r} does not expose; use encoder name 'resnet'"
            )
        enc_patch = getattr(encoder_config, "patch", 1)
        if enc_patch != config.patch:
            raise ConfigError(
                f"decoder {config.name!r} has patch {config.patch} but encoder {encoder_config.name!r} has "
                f"patch {enc_patch}: a hierarchical decoder reads the encoder's features side by side, so "
                "give both the same patch"
            )

    def top_down(
        self, z: torch.Tensor, features: dict[int, torch.Tensor] | None = None, draw: Draw = POSTERIOR_SAMPLE
    ) -> DecoderOutput:
        """The full pass (see ``DecoderPart.top_down``)."""
        n = self.num_latent_layers
        temps = list(draw.temperatures) if draw.temperatures is not None else [1.0] * n
        if len(temps) != self.num_latent_layers:
            raise UsageError(
                f"expected {self.num_latent_layers} temperatures (one per lower layer), got {len(temps)}"
            )
        h = self.head(z).view(-1, *self.start_shape)
        layers: list[LayerKL] = []
        for i, side in enumerate(self.sides):
            h = self.blocks[i](h)
            feature = features[side] if features is not None else None
            for latent in self.latents[i]:
                h, kl = latent(h, feature, temps[len(layers)], draw)
                layers.append(kl)
            if i < len(self.ups):
                h = self.ups[i](h)
        return DecoderOutput(self.from_patches(self.out(h)), layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Likelihood parameters along the mean path (every lower layer at its prior mean)."""
        return self.top_down(z, draw=Draw([0.0] * self.num_latent_layers)).params
