"""Prior parts p(z): a distribution to sample latents from and to measure the KL against."""

from __future__ import annotations

import torch
from torch import nn
from torch.distributions import Distribution, Independent, Normal

from vaelab.models.config import StandardNormalPriorConfig


class StandardNormalPrior(nn.Module):
    """p(z) = N(0, I). Buffers (not parameters) so that ``.to(device)`` moves it and nothing trains it."""

    def __init__(self, config: StandardNormalPriorConfig, latent_dim: int) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.register_buffer("loc", torch.zeros(latent_dim), persistent=False)
        self.register_buffer("scale", torch.ones(latent_dim), persistent=False)

    def forward(self) -> Distribution:
        return Independent(Normal(self.loc, self.scale, validate_args=False), 1)

    def sample(
        self, n: int, temperature: float = 1.0, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Draw ``n`` latents; ``temperature`` scales the standard deviation (T < 1: safer, less varied)."""
        # Noise is drawn where the generator lives (a CPU generator gives the same latents on any device).
        device = generator.device if generator is not None else self.loc.device
        eps = torch.randn(n, self.latent_dim, generator=generator, device=device).to(self.loc.device)
        return self.loc + temperature * self.scale * eps
