"""A normalising flow over z (RealNVP, Dinh et al. 2017): affine coupling layers, each behind a fixed
random permutation of the dimensions, over an N(0, I) base (``torch.distributions``). The density is
exact: log p(z) = log N(f(z); 0, I) + log |det df/dz|; sampling inverts f. A class-conditional flow
feeds a one-hot label to every coupling network."""

from __future__ import annotations

import time
from typing import Any, Literal

import torch
from pydantic import Field
from torch import nn

from vaelab.generation.priors.base import (
    FittedPrior,
    LatentCodes,
    NeuralPriorConfig,
    Standardise,
    mlp,
    one_hot,
    train_net,
)


class FlowPriorConfig(NeuralPriorConfig):
    """``layers`` coupling layers, each an MLP of two ``hidden``-wide layers; ``clamp`` bounds the
    log-scale of every coupling (soft, tanh), which keeps early training stable."""

    name: Literal["flow"] = "flow"
    layers: int = Field(default=6, ge=1)
    steps: int = Field(default=1500, ge=1)
    clamp: float = Field(default=3.0, gt=0)


class Coupling(nn.Module):
    """Permute, then y_b = x_b * exp(s(x_a, c)) + t(x_a, c) for the second part x_b (x_a kept)."""

    def __init__(self, dim: int, classes: int, hidden: int, clamp: float, perm: torch.Tensor) -> None:
        super().__init__()
        self.split, self.clamp = dim // 2, clamp
        self.register_buffer("perm", perm)
        self.register_buffer("inv", torch.argsort(perm))
        self.net = mlp(self.split + classes, hidden, 2 * (dim - self.split))

    def _scale_shift(self, x_a: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.cat([x_a, c], 1)
        raw = self.net(h if h.shape[1] else torch.zeros(len(x_a), 1))
        s, t = raw.chunk(2, dim=1)
        return self.clamp * torch.tanh(s / self.clamp), t

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x[:, self.perm]
        x_a, x_b = x[:, : self.split], x[:, self.split :]
        s, t = self._scale_shift(x_a, c)
        return torch.cat([x_a, x_b * s.exp() + t], 1), s.sum(1)

    def inverse(self, y: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        y_a, y_b = y[:, : self.split], y[:, self.split :]
        s, t = self._scale_shift(y_a, c)
        return torch.cat([y_a, (y_b - t) * (-s).exp()], 1)[:, self.inv]


class Flow(nn.Module):
    """Standardise, then the couplings: z -> u with log |det du/dz|."""

    def __init__(self, dim: int, classes: int, config: FlowPriorConfig, gen: torch.Generator) -> None:
        super().__init__()
        self.standardise = Standardise(dim)
        perms = [torch.randperm(dim, generator=gen) for _ in range(config.layers)]
        self.couplings = nn.ModuleList(Coupling(dim, classes, config.hidden, config.clamp, p) for p in perms)

    def forward(self, z: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        u, log_det = self.standardise(z), self.standardise.log_det().expand(len(z))
        for layer in self.couplings:
            u, ld = layer(u, c)
            log_det = log_det + ld
        return u, log_det

    def inverse(self, u: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        for layer in reversed(self.couplings):
            u = layer.inverse(u, c)
        return self.standardise.inverse(u)


def base_log_prob(u: torch.Tensor) -> torch.Tensor:
    """log N(u; 0, I) summed over the dimensions."""
    normal = torch.distributions.Normal(torch.zeros(()), torch.ones(()))
    return normal.log_prob(u).sum(1)


class FlowPrior(FittedPrior):
    kind = "flow"
    config_class = FlowPriorConfig

    def __init__(self, flow: Flow, config: FlowPriorConfig, num_classes: int | None, info: dict[str, Any]):
        super().__init__(config, flow.standardise.shift.numel(), num_classes, info)
        self.flow = flow.eval()

    @classmethod
    def fit(cls, codes: LatentCodes, config: Any, seed: int = 0, progress: bool = False) -> FlowPrior:
        classes = codes.classes(config)
        gen = torch.Generator().manual_seed(seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            flow = Flow(codes.mean.shape[1], classes, config, gen)
        flow.standardise.fit(codes.mean)
        labels = codes.labels

        def loss_of(idx: torch.Tensor, g: torch.Generator) -> torch.Tensor:
            z = LatentCodes(codes.mean[idx], codes.std[idx]).draw(config.source, g)
            u, log_det = flow(z, one_hot(None if labels is None else labels[idx], classes, len(idx)))
            return -(base_log_prob(u) + log_det).mean() / z.shape[1]  # nats per dimension

        start = time.perf_counter()
        info = train_net(flow, loss_of, len(codes.mean), config, gen, progress, "fitting the flow prior")
        info["train_seconds"] = time.perf_counter() - start
        return cls(flow, config, classes or None, info)

    def _sample(self, n: int, temperature: float, labels: torch.Tensor | None, gen: torch.Generator) -> Any:
        u = temperature * torch.randn(n, self.latent_dim, generator=gen)
        return self.flow.inverse(u, one_hot(labels, self.num_classes, n))

    @torch.no_grad()
    def log_prob(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.num_classes and labels is None:
            raise ValueError("a class-conditional flow's log-density needs the labels")
        u, log_det = self.flow(z.float(), one_hot(labels, self.num_classes, len(z)))
        return base_log_prob(u) + log_det

    def tensors(self) -> dict[str, torch.Tensor]:
        return dict(self.flow.state_dict())

    @classmethod
    def from_tensors(cls, config: Any, tensors: dict[str, torch.Tensor], num_classes: int | None) -> Any:
        dim = tensors["standardise.shift"].numel()
        flow = Flow(dim, num_classes or 0, config, torch.Generator().manual_seed(0))
        flow.load_state_dict(tensors)
        return cls(flow, config, num_classes, {})
