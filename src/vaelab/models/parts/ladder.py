"""The hierarchical (top-down, ladder) decoder part: LVAE / NVAE / VDVAE.

Sønderby et al. 2016 (LVAE), Vahdat & Kautz 2020 (NVAE), Child 2021 (VDVAE). The VAE's latent z_1 (a
vector, with the model's prior part) starts a top-down pass through the ResNet decoder's stages. In a
stage, each stochastic layer l reads the top-down state h and gives

    p(z_l | z_>l)    = N(mu_p(h), sigma_p(h))                         (the generative path)
    q(z_l | z_>l, x) = N(mu_q(h, f), sigma_q(h, f)),  f = encoder features at this resolution

then h <- h + proj(z_l): the posterior shares the decoder's top-down computation (LVAE's "ladder"),
which is what lets deep hierarchies train without their lower layers collapsing. KL terms are
analytic per layer (two Gaussians), so the ELBO's rate is split into one number per layer.

Init tricks (VDVAE): the prior head's last convolution starts at zero (every p(z_l | z_>l) starts as
N(0, I) and adds nothing to h), and the z projection and residual branches are scaled by
sqrt(1 / number of blocks), so a deep stack starts close to the identity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.distributions import Normal, kl_divergence

from vaelab.models.config import LadderDecoderConfig
from vaelab.models.parts.layers import Conv2d, Upsample, activation, from_patches, patched_shape
from vaelab.models.parts.resnet import ResBlock, res_stage, stage_sides


@dataclass
class TopDownOutput:
    """One top-down pass: likelihood parameters, and per stochastic layer below the top (B, L)."""

    params: torch.Tensor
    kl: torch.Tensor  # analytic KL(q(z_l|.) || p(z_l|.)), nats; zeros when drawing from the prior
    log_ratio: torch.Tensor  # log q(z_l|.) - log p(z_l|.) at the drawn z_l, nats (importance weights)


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

    def _normal(self, params: torch.Tensor) -> Normal:
        # fp32 even under bf16 autocast: exp(logvar) and the KL need the mantissa.
        mean, logvar = params.float().chunk(2, dim=1)
        return Normal(mean, torch.exp(0.5 * logvar.clamp(*self.logvar_range)), validate_args=False)

    def forward(
        self,
        h: torch.Tensor,
        feature: torch.Tensor | None,
        temperature: float,
        generator: torch.Generator | None,
        use_mean: bool,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(new h, KL per image, log q - log p per image). Without ``feature``: z from the prior with
        its standard deviation scaled by ``temperature`` (0: the prior mean)."""
        zc = self.latent_channels
        out = self.prior_net(h)
        prior = self._normal(out[:, : 2 * zc])
        h = h + out[:, 2 * zc :]
        if feature is None:
            z = prior.loc
            if temperature != 0:
                device = generator.device if generator is not None else z.device
                eps = torch.randn(z.shape, generator=generator, device=device).to(z.device)
                z = z + temperature * prior.scale * eps
            kl = log_ratio = torch.zeros(z.shape[0], device=z.device)
        else:
            q = self._normal(self.posterior_net(torch.cat([h, feature.to(h.dtype)], dim=1)))
            z = q.loc if use_mean else q.rsample()
            kl = kl_divergence(q, prior).sum((1, 2, 3))
            log_ratio = (q.log_prob(z) - prior.log_prob(z)).sum((1, 2, 3))
        h = self.block(h + self.z_proj(z.to(h.dtype)))
        return h, kl, log_ratio


class LadderDecoder(nn.Module):
    """Top-down hierarchical decoder: the top latent (B, latent_dim) and, for the posterior path, the
    encoder's features by side -> likelihood parameters and per-layer KL terms.

    ``forward(z)`` alone is the deterministic mean path (every lower layer at its prior mean), so the
    part can stand wherever a plain decoder does (``VAE.decode``, ONNX export); ``top_down`` is the
    full pass the VAE uses for training, importance weights, reconstruction and tempered sampling.
    """

    hierarchical = True

    def __init__(
        self,
        config: LadderDecoderConfig,
        latent_dim: int,
        out_shape: tuple[int, int, int],
        feature_channels: dict[int, int],
    ) -> None:
        super().__init__()
        c, h, w = patched_shape(out_shape, config.patch, "ladder decoder")
        self.from_patches = from_patches(config.patch)
        n = len(config.channels)
        hs, ws = stage_sides(h, n, "ladder decoder"), stage_sides(w, n, "ladder decoder")
        self.num_latent_layers = sum(config.latent_layers)
        scale = math.sqrt(1.0 / (n * config.blocks_per_stage + self.num_latent_layers))
        self.start_shape = (config.channels[0], hs[-1], ws[-1])
        self.head = nn.Linear(latent_dim, config.channels[0] * hs[-1] * ws[-1])
        self.sides = [hs[n - 1 - i] for i in range(n)]  # lowest resolution first
        self.blocks = nn.ModuleList()
        self.latents = nn.ModuleList()
        self.ups = nn.ModuleList()
        for i, (ch, count) in enumerate(zip(config.channels, config.latent_layers, strict=True)):
            side = self.sides[i]
            if count and side not in feature_channels:
                raise ValueError(
                    f"ladder decoder: stage {i} (side {side}) has stochastic layers but the encoder has "
                    f"features only at sides {sorted(feature_channels)}; give the encoder and decoder "
                    "the same number of stages"
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
        self.activation_elements = max(
            ch * hs[n - 1 - i] * ws[n - 1 - i] for i, ch in enumerate(config.channels)
        )

    def top_down(
        self,
        z: torch.Tensor,
        features: dict[int, torch.Tensor] | None = None,
        *,
        temperatures: list[float] | None = None,
        generator: torch.Generator | None = None,
        use_mean: bool = False,
    ) -> TopDownOutput:
        """The full pass. With ``features`` (from the encoder) each z_l comes from the posterior (its
        mean if ``use_mean``); without, from the prior at ``temperatures`` (one per layer, default 1)."""
        temps = temperatures if temperatures is not None else [1.0] * self.num_latent_layers
        if len(temps) != self.num_latent_layers:
            raise ValueError(
                f"expected {self.num_latent_layers} temperatures (one per lower layer), got {len(temps)}"
            )
        h = self.head(z).view(-1, *self.start_shape)
        kls: list[torch.Tensor] = []
        ratios: list[torch.Tensor] = []
        layer = 0
        for i, side in enumerate(self.sides):
            h = self.blocks[i](h)
            feature = features[side] if features is not None else None
            for latent in self.latents[i]:
                h, kl, ratio = latent(h, feature, temps[layer], generator, use_mean)
                kls.append(kl)
                ratios.append(ratio)
                layer += 1
            if i < len(self.ups):
                h = self.ups[i](h)
        params = self.from_patches(self.out(h))
        return TopDownOutput(params, torch.stack(kls, dim=1), torch.stack(ratios, dim=1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Likelihood parameters along the mean path (every lower layer at its prior mean)."""
        return self.top_down(z, temperatures=[0.0] * self.num_latent_layers).params
