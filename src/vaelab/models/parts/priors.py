"""Prior parts p(z) over the top latent: a distribution to sample latents from and to measure the KL
against (the lower layers of a hierarchical decoder carry their own conditional priors)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from pydantic import Field
from torch import nn
from torch.distributions import Categorical, Distribution, Independent, MixtureSameFamily, Normal

from vaelab.errors import ConfigError
from vaelab.models.part_config import (
    PartConfig,
)
from vaelab.models.parts.base import PriorPart


class StandardNormalPriorConfig(PartConfig):
    """The classic N(0, I) prior."""

    name: Literal["standard_normal"] = "standard_normal"


class VampPriorConfig(PartConfig):
    """VampPrior (Tomczak & Welling 2018): p(z) = (1/K) sum_k q(z | u_k) over K learned pseudo-images."""

    name: Literal["vamp"] = "vamp"
    components: int = Field(default=100, ge=1)


class StandardNormalPrior(PriorPart):
    """p(z) = N(0, I). Buffers (not parameters) so that ``.to(device)`` moves it and nothing trains it."""

    config_class = StandardNormalPriorConfig

    def __init__(
        self,
        config: StandardNormalPriorConfig,
        latent_dim: int,
        image_shape: tuple[int, int, int] | None = None,
    ) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.register_buffer("loc", torch.zeros(latent_dim), persistent=False)
        self.register_buffer("scale", torch.ones(latent_dim), persistent=False)

    def forward(self) -> Distribution:
        return Independent(Normal(self.loc, self.scale, validate_args=False), 1)

    def sample(
        self, n: int, temperature: float = 1.0, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        # Noise is drawn where the generator lives (a CPU generator gives the same latents on any device).
        device = generator.device if generator is not None else self.loc.device
        eps = torch.randn(n, self.latent_dim, generator=generator, device=device).to(self.loc.device)
        return self.loc + temperature * self.scale * eps


class VampPrior(PriorPart):
    """VampPrior (Tomczak & Welling 2018): p(z) = (1/K) sum_k q(z | u_k), K learned pseudo-inputs u_k.

    Chosen over a flow prior because it needs no new invertible architecture: the mixture is built
    from the model's own encoder, so it is multimodal exactly where the aggregate posterior is, it
    costs one encoder pass over K images per batch, and its density and samples are exact (a mixture
    of the encoder's diagonal Gaussians). KL(q || p) has no closed form: the VAE falls back to the
    single-sample Monte Carlo estimate log q(z|x) - log p(z) at the drawn z.

    The prior needs the encoder: the VAE binds its ``encode`` method after building all parts (a
    plain attribute, not a submodule, so the encoder's weights are stored once; ``copy.deepcopy``
    rebinds it to the copy). Pseudo-inputs are sigmoid(logits) so they stay valid images in [0, 1].
    """

    config_class = VampPriorConfig

    def __init__(self, config: VampPriorConfig, latent_dim: int, image_shape: tuple[int, int, int]) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.pseudo_logits = nn.Parameter(0.1 * torch.randn(config.components, *image_shape))
        self._encode: Callable[[torch.Tensor], Distribution] | None = None

    def bind(self, encode: Callable[[torch.Tensor], Distribution], conditional: bool) -> None:
        """Keep the model's q(z|x); a conditional encoder cannot encode unlabelled pseudo-inputs."""
        if conditional:
            raise ConfigError(
                "prior 'vamp' is built from q(z|x) of unlabelled pseudo-inputs, which a conditional "
                "encoder cannot give: use prior name 'standard_normal' with a condition"
            )
        self._encode = encode

    def pseudo_inputs(self) -> torch.Tensor:
        """The K pseudo-images in [0, 1], (K, C, H, W)."""
        return torch.sigmoid(self.pseudo_logits)

    def components(self) -> Normal:
        """q(z | u_k) for every pseudo-input: a Normal with batch shape (K, latent_dim)."""
        if self._encode is None:
            raise RuntimeError("VampPrior is not bound to an encoder: build it through VAE(config)")
        q = self._encode(self.pseudo_inputs())
        base = q.base_dist if isinstance(q, Independent) else q
        assert isinstance(base, Normal)
        return base

    def forward(self) -> Distribution:
        comp = self.components()
        mix = Categorical(logits=torch.zeros(comp.loc.shape[0], device=comp.loc.device))
        return MixtureSameFamily(mix, Independent(comp, 1), validate_args=False)

    def sample(
        self, n: int, temperature: float = 1.0, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Draw ``n`` latents: a uniform pseudo-input, then its Gaussian with std scaled by
        ``temperature`` (0: that component's mean)."""
        comp = self.components()
        device = generator.device if generator is not None else comp.loc.device
        k = comp.loc.shape[0]
        idx = torch.randint(k, (n,), generator=generator, device=device).to(comp.loc.device)
        eps = torch.randn(n, self.latent_dim, generator=generator, device=device).to(comp.loc.device)
        return comp.loc[idx] + temperature * comp.scale[idx] * eps
