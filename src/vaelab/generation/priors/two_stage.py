"""The two-stage VAE (Dai & Wipf 2019, "Diagnosing and Enhancing VAE Models"): a second, small VAE
over the first one's latents, of the same latent size, with a Gaussian decoder whose one variance
gamma^2 is learned (so it can shrink to the data's manifold). Sampling draws u ~ N(0, T^2 I) and
decodes it to z (the decoder's mean). Its density is only bounded (the ELBO), so log_prob is absent."""

from __future__ import annotations

import math
import time
from typing import Any, Literal

import torch
from pydantic import Field
from torch import nn

from vaelab.errors import UsageError
from vaelab.generation.priors.base import (
    FittedPrior,
    LatentCodes,
    NeuralPriorConfig,
    Standardise,
    mlp,
    train_net,
)


class TwoStagePriorConfig(NeuralPriorConfig):
    """Encoder and decoder MLPs of ``layers`` hidden layers of width ``hidden``."""

    name: Literal["two_stage"] = "two_stage"
    layers: int = Field(default=2, ge=1)


class SecondVAE(nn.Module):
    def __init__(self, dim: int, config: TwoStagePriorConfig) -> None:
        super().__init__()
        self.standardise = Standardise(dim)
        self.encoder = mlp(dim, config.hidden, 2 * dim, config.layers)
        self.decoder = mlp(dim, config.hidden, dim, config.layers)
        nn.init.normal_(self.decoder[-1].weight, std=1e-3)  # a zero decoder would pass no gradient on
        self.log_gamma = nn.Parameter(torch.zeros(()))

    def loss(self, y: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """The negative ELBO per dimension (nats), up to its constant."""
        mean, logvar = self.encoder(y).chunk(2, dim=1)
        logvar = logvar.clamp(-30, 20)
        u = mean + (0.5 * logvar).exp() * torch.randn(mean.shape, generator=gen)
        gamma2 = (2 * self.log_gamma).exp()
        rec = ((y - self.decoder(u)) ** 2).sum(1) / (2 * gamma2) + y.shape[1] * self.log_gamma
        kl = 0.5 * (mean**2 + logvar.exp() - 1 - logvar).sum(1)
        return (rec + kl).mean() / y.shape[1]


class TwoStagePrior(FittedPrior):
    kind = "two_stage"
    config_class = TwoStagePriorConfig

    def __init__(self, vae: SecondVAE, config: Any, num_classes: int | None, info: dict[str, Any]) -> None:
        super().__init__(config, vae.standardise.shift.numel(), num_classes, info)
        self.vae = vae.eval()

    @classmethod
    def fit(cls, codes: LatentCodes, config: Any, seed: int = 0, progress: bool = False) -> TwoStagePrior:
        if config.conditional:
            raise UsageError(
                "the two_stage prior is unconditional: use flow or diffusion with conditional=true"
            )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            vae = SecondVAE(codes.mean.shape[1], config)
        vae.standardise.fit(codes.mean)
        gen = torch.Generator().manual_seed(seed)

        def loss_of(idx: torch.Tensor, g: torch.Generator) -> torch.Tensor:
            z = LatentCodes(codes.mean[idx], codes.std[idx]).draw(config.source, g)
            return vae.loss(vae.standardise(z), g)

        start = time.perf_counter()
        info = train_net(vae, loss_of, len(codes.mean), config, gen, progress, "fitting the two-stage VAE")
        info["train_seconds"] = time.perf_counter() - start
        info["gamma"] = math.exp(float(vae.log_gamma.detach()))
        return cls(vae, config, None, info)

    def _sample(self, n: int, temperature: float, labels: torch.Tensor | None, gen: torch.Generator) -> Any:
        u = temperature * torch.randn(n, self.latent_dim, generator=gen)
        return self.vae.standardise.inverse(self.vae.decoder(u))

    def tensors(self) -> dict[str, torch.Tensor]:
        return dict(self.vae.state_dict())

    @classmethod
    def from_tensors(cls, config: Any, tensors: dict[str, torch.Tensor], num_classes: int | None) -> Any:
        vae = SecondVAE(tensors["standardise.shift"].numel(), config)
        vae.load_state_dict(tensors)
        return cls(vae, config, num_classes, {})
