"""A small diffusion model over z (DDPM, Ho et al. 2020; the cosine schedule of Nichol & Dhariwal 2021):
an MLP with residual blocks predicts the noise added to the standardised latents at a random step of
``timesteps``; sampling runs DDIM (Song et al. 2021, deterministic, eta = 0) over ``sample_steps``
evenly spaced steps from noise of standard deviation ``temperature``. It has no exact log-density.
A class-conditional model feeds a one-hot label to the network beside the step."""

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
    one_hot,
    train_net,
)


class DiffusionPriorConfig(NeuralPriorConfig):
    """``layers`` residual blocks of width ``hidden``; ``timesteps`` training steps of the cosine
    schedule; ``sample_steps`` DDIM steps by default (``vaelab sample --steps`` changes it)."""

    name: Literal["diffusion"] = "diffusion"
    layers: int = Field(default=3, ge=1)
    steps: int = Field(default=3000, ge=1)
    timesteps: int = Field(default=1000, ge=2)
    sample_steps: int = Field(default=50, ge=1)


def cosine_alpha_bar(timesteps: int) -> torch.Tensor:
    """Signal fraction alpha_bar(t) for t = 0 .. timesteps-1 (Nichol & Dhariwal 2021, s = 0.008)."""
    s = 0.008
    t = torch.arange(timesteps + 1, dtype=torch.float64) / timesteps
    f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    betas = (1 - f[1:] / f[:-1]).clamp(max=0.999)
    return torch.cumprod(1 - betas, 0).float()


class Block(nn.Module):
    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.norm, self.fc1, self.fc2 = (
            nn.LayerNorm(hidden),
            nn.Linear(hidden, hidden),
            nn.Linear(hidden, hidden),
        )

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        return h + self.fc2(nn.functional.silu(self.fc1(nn.functional.silu(self.norm(h) + emb))))


class NoiseNet(nn.Module):
    """eps(y_t, t, c): the noisy latent in, the step as sinusoidal features and the label added in."""

    def __init__(self, dim: int, classes: int, config: DiffusionPriorConfig) -> None:
        super().__init__()
        h = config.hidden
        self.standardise = Standardise(dim)
        self.register_buffer("alpha_bar", cosine_alpha_bar(config.timesteps))
        # The predicted clean latent is clipped to the box the standardised codes filled (x1.2): at the
        # noisiest steps alpha_bar is ~0 and the prediction divides by its square root.
        self.register_buffer("bound", torch.full((dim,), 10.0))
        self.inp = nn.Linear(dim, h)
        self.emb = nn.Sequential(nn.Linear(64 + classes, h), nn.SiLU(), nn.Linear(h, h))
        self.blocks = nn.ModuleList(Block(h) for _ in range(config.layers))
        self.out = nn.Sequential(nn.LayerNorm(h), nn.SiLU(), nn.Linear(h, dim))
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)

    def forward(self, y: torch.Tensor, t: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        freqs = torch.exp(-math.log(10_000) * torch.arange(32) / 32)
        angles = t.float()[:, None] * freqs[None]
        emb = self.emb(torch.cat([angles.sin(), angles.cos(), c], 1))
        h = self.inp(y)
        for block in self.blocks:
            h = block(h, emb)
        return self.out(h)


class DiffusionPrior(FittedPrior):
    kind = "diffusion"
    config_class = DiffusionPriorConfig

    def __init__(self, net: NoiseNet, config: Any, num_classes: int | None, info: dict[str, Any]) -> None:
        super().__init__(config, net.standardise.shift.numel(), num_classes, info)
        self.net = net.eval()
        self.steps = config.sample_steps  # DDIM steps when sampling: change freely, no refit

    @classmethod
    def fit(cls, codes: LatentCodes, config: Any, seed: int = 0, progress: bool = False) -> DiffusionPrior:
        classes = codes.classes(config)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = NoiseNet(codes.mean.shape[1], classes, config)
        net.standardise.fit(codes.mean)
        net.bound.copy_(1.2 * net.standardise(codes.draw(config.source)).abs().amax(0).clamp_min(1.0))
        gen, labels = torch.Generator().manual_seed(seed), codes.labels

        def loss_of(idx: torch.Tensor, g: torch.Generator) -> torch.Tensor:
            with torch.no_grad():
                y0 = net.standardise(LatentCodes(codes.mean[idx], codes.std[idx]).draw(config.source, g))
                t = torch.randint(0, config.timesteps, (len(idx),), generator=g)
                eps = torch.randn(y0.shape, generator=g)
                ab = net.alpha_bar[t][:, None]
                yt = ab.sqrt() * y0 + (1 - ab).sqrt() * eps
            c = one_hot(None if labels is None else labels[idx], classes, len(idx))
            return ((net(yt, t, c) - eps) ** 2).mean()

        start = time.perf_counter()
        info = train_net(net, loss_of, len(codes.mean), config, gen, progress, "fitting the diffusion prior")
        info["train_seconds"] = time.perf_counter() - start
        return cls(net, config, classes or None, info)

    def _sample(self, n: int, temperature: float, labels: torch.Tensor | None, gen: torch.Generator) -> Any:
        steps = int(self.steps)
        if steps < 1:
            raise UsageError(f"the diffusion prior needs at least 1 sampling step, got {steps}")
        timesteps = len(self.net.alpha_bar)
        ts = torch.linspace(timesteps - 1, 0, min(steps, timesteps)).round().long().tolist()
        c = one_hot(labels, self.num_classes, n)
        y = temperature * torch.randn(n, self.latent_dim, generator=gen)
        bound = self.net.bound
        for i, t in enumerate(ts):
            ab = self.net.alpha_bar[t]
            ab_prev = self.net.alpha_bar[ts[i + 1]] if i + 1 < len(ts) else torch.tensor(1.0)
            eps = self.net(y, torch.full((n,), t), c)
            y0 = torch.maximum(torch.minimum((y - (1 - ab).sqrt() * eps) / ab.sqrt(), bound), -bound)
            eps = (y - ab.sqrt() * y0) / (1 - ab).sqrt()  # the noise that the clipped y0 implies
            y = ab_prev.sqrt() * y0 + (1 - ab_prev).sqrt() * eps
        return self.net.standardise.inverse(y)

    def tensors(self) -> dict[str, torch.Tensor]:
        return dict(self.net.state_dict())

    @classmethod
    def from_tensors(cls, config: Any, tensors: dict[str, torch.Tensor], num_classes: int | None) -> Any:
        net = NoiseNet(tensors["standardise.shift"].numel(), num_classes or 0, config)
        net.load_state_dict(tensors)
        return cls(net, config, num_classes, {})
