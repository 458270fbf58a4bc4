"""What every fitted latent prior shares: its config base, the codes it is fitted to, the common
interface, the standardisation of z and the small training loop of the neural priors.

A fitted prior is a density over the top latent z fitted *after* the VAE, to the codes its encoder gives
the training images (the aggregate posterior), and sampled instead of N(0, I): samples then come from
where the data was encoded, not from the holes of the prior (Ghosh et al. 2020; Dai & Wipf 2019).
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from vaelab.errors import UsageError
from vaelab.generation.conditional import balanced_labels
from vaelab.models.vae import VAE


class PriorConfig(BaseModel):
    """Options every fitted prior takes. ``source``: fit to the posterior means E[z|x] (``mean``, sharper
    samples) or to one draw z ~ q(z|x) per image and pass (``sample``, the aggregate posterior itself)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: Literal["mean", "sample"] = "mean"
    conditional: bool = False  # p(z | class): fitted with the training labels, sampled per class


class NeuralPriorConfig(PriorConfig):
    """Options of the priors that are small networks trained with Adam (cosine-decayed learning rate)."""

    hidden: int = Field(default=256, ge=1)
    layers: int = Field(default=4, ge=1)
    steps: int = Field(default=2000, ge=1)  # Adam updates, whatever the number of codes: a known cost
    batch_size: int = Field(default=512, ge=1)
    lr: float = Field(default=1e-3, gt=0)
    max_minutes: float = Field(default=0.0, ge=0)  # > 0: stop fitting after this many minutes


@dataclass(frozen=True)
class LatentCodes:
    """The training images' posteriors: means and standard deviations (N, D), labels (N,) or None."""

    mean: torch.Tensor
    std: torch.Tensor
    labels: torch.Tensor | None = None
    num_classes: int | None = None

    def classes(self, config: PriorConfig) -> int:
        """How many classes a prior fitted with ``config`` is conditioned on (0: unconditional)."""
        if not config.conditional:
            return 0
        if self.labels is None or not self.num_classes:
            raise UsageError("a class-conditional prior (conditional=true) needs the training images' labels")
        return self.num_classes

    def draw(self, source: str, generator: torch.Generator | None = None) -> torch.Tensor:
        """The means, or one z ~ q(z|x) per image."""
        if source == "mean":
            return self.mean
        return self.mean + self.std * torch.randn(self.mean.shape, generator=generator)


@torch.no_grad()
def encode_codes(
    model: VAE,
    images: torch.Tensor,
    labels: torch.Tensor | None = None,
    num_classes: int | None = None,
    batch_size: int = 1024,
) -> LatentCodes:
    """q(z|x) of ``images`` (N, C, H, W) in [0, 1] on the CPU (the top latent of a hierarchical model);
    a conditional model's encoder gets the ``labels``."""
    if model.num_classes and labels is None:
        raise UsageError("the model is conditional: fitting a prior to its codes needs the images' labels")
    was_training = model.training
    model.eval()
    means, stds = [], []
    for i in range(0, len(images), batch_size):
        lab = (
            labels[i : i + batch_size].to(model.device) if model.num_classes and labels is not None else None
        )
        q = model.encode(images[i : i + batch_size].to(model.device), lab)
        means.append(q.mean.float().cpu())
        stds.append(q.stddev.float().cpu())
    model.train(was_training)
    if labels is not None and not num_classes:
        num_classes = model.num_classes or int(labels.max()) + 1
    lab = None if labels is None else labels.long().cpu()
    return LatentCodes(torch.cat(means), torch.cat(stds), lab, num_classes)


class FittedPrior(ABC):
    """A density over the top latent, fitted after training; ``info`` holds the fit's facts."""

    kind: ClassVar[str]
    config_class: ClassVar[type[PriorConfig]]

    def __init__(self, config: PriorConfig, latent_dim: int, num_classes: int | None, info: dict[str, Any]):
        self.config = config
        self.latent_dim = latent_dim
        self.num_classes = num_classes  # a class-conditional prior p(z | y): sampled per class
        self.info = info

    @classmethod
    @abstractmethod
    def fit(cls, codes: LatentCodes, config: Any, seed: int = 0, progress: bool = False) -> FittedPrior:
        """Fit to ``codes`` (their labels too when ``config.conditional``)."""

    @abstractmethod
    def _sample(self, n: int, temperature: float, labels: torch.Tensor | None, gen: torch.Generator) -> Any:
        """(n, D) latents; ``labels`` (n,) for a conditional prior, else None."""

    @abstractmethod
    def tensors(self) -> dict[str, torch.Tensor]:
        """Everything the prior needs to be rebuilt, for its safetensors file."""

    @classmethod
    @abstractmethod
    def from_tensors(cls, config: Any, tensors: dict[str, torch.Tensor], num_classes: int | None) -> Any:
        """The prior again from ``tensors()``'s output (``info`` is set by the caller)."""

    @torch.no_grad()
    def sample(
        self, n: int, *, temperature: float = 1.0, labels: torch.Tensor | None = None, seed: int | None = None
    ) -> torch.Tensor:
        """``n`` latents (n, D) float32 on the CPU; ``temperature`` scales the prior's noise (0 allowed
        where the noise has a mean, > 0 for a mixture); a conditional prior draws the classes ``labels``
        (n,) asks for (default: all, balanced). The same ``seed`` gives the same latents."""
        if n < 1:
            raise UsageError(f"number of samples must be at least 1, got {n}")
        if not (math.isfinite(temperature) and temperature >= 0):
            raise UsageError(f"temperature must be finite and >= 0, got {temperature}")
        if labels is not None and not self.num_classes:
            raise UsageError(f"this {self.kind} prior is not class-conditional: fit it with conditional=true")
        if self.num_classes:
            labels = (
                balanced_labels(n, list(range(self.num_classes)))
                if labels is None
                else torch.as_tensor(labels).long().cpu()
            )
            if len(labels) != n or labels.min() < 0 or labels.max() >= self.num_classes:
                raise UsageError(f"need {n} labels in [0, {self.num_classes}) for {n} samples")
        gen = torch.Generator().manual_seed(seed if seed is not None else int(torch.randint(2**62, ())))
        return self._sample(n, float(temperature), labels, gen).float()

    def log_prob(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """log p(z) (N,) in nats, where the prior has an exact density."""
        raise UsageError(f"the {self.kind} prior has no exact log-density")


class Standardise(nn.Module):
    """z -> (z - shift) / scale per dimension, the shift and scale of the codes it is fitted to (the
    networks then see unit-variance inputs; a dimension the encoder does not use gets a floor)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("shift", torch.zeros(dim))
        self.register_buffer("scale", torch.ones(dim))

    def fit(self, z: torch.Tensor) -> Standardise:
        self.shift.copy_(z.mean(0))
        self.scale.copy_(z.std(0).clamp_min(1e-4))
        return self

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return (z - self.shift) / self.scale

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return y * self.scale + self.shift

    def log_det(self) -> torch.Tensor:
        """log |d y / d z| of ``forward``."""
        return -self.scale.log().sum()


def one_hot(labels: torch.Tensor | None, num_classes: int | None, n: int) -> torch.Tensor:
    """(n, num_classes) one-hot rows (n, 0) for an unconditional prior: the networks' class input."""
    if not num_classes or labels is None:
        return torch.zeros(n, 0)
    return nn.functional.one_hot(labels.long(), num_classes).float()


def mlp(inputs: int, hidden: int, outputs: int, depth: int = 2) -> nn.Sequential:
    """``depth`` hidden layers of SiLU; the last layer starts at zero (an identity map / zero output)."""
    layers: list[nn.Module] = []
    width = max(inputs, 1)
    for _ in range(depth):
        layers += [nn.Linear(width, hidden), nn.SiLU()]
        width = hidden
    last = nn.Linear(width, outputs)
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    return nn.Sequential(*layers, last)


def train_net(
    net: nn.Module,
    loss_of: Callable[[torch.Tensor, torch.Generator], torch.Tensor],
    n: int,
    config: NeuralPriorConfig,
    gen: torch.Generator,
    progress: bool,
    desc: str,
) -> dict[str, Any]:
    """``config.steps`` Adam updates over shuffled passes of ``n`` items (``loss_of(indices, gen)`` is a
    batch's mean loss), learning rate cosine-decayed to 0; a tqdm bar when ``progress``."""
    from tqdm.auto import tqdm

    per_epoch = math.ceil(n / config.batch_size)
    total = config.steps
    opt = torch.optim.Adam(net.parameters(), lr=config.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / total)))
    start, step, epoch_losses, stopped = time.perf_counter(), 0, [0.0], False
    net.train()
    with tqdm(total=total, desc=desc, disable=not progress, leave=False) as bar:
        while step < total:
            order, epoch_losses = torch.randperm(n, generator=gen), []
            for i in range(0, min(n, (total - step) * config.batch_size), config.batch_size):
                loss = loss_of(order[i : i + config.batch_size], gen)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(net.parameters(), 100.0)
                opt.step()
                sched.step()
                step += 1
                epoch_losses.append(float(loss.detach()))
                bar.update()
                bar.set_postfix(loss=f"{epoch_losses[-1]:.4f}", refresh=False)
                if config.max_minutes and time.perf_counter() - start > 60 * config.max_minutes:
                    stopped = True
                    break
            if stopped:
                break
    net.eval()
    last = sum(epoch_losses) / max(len(epoch_losses), 1)
    return {"steps": step, "epochs_done": step / per_epoch, "final_loss": last, "stopped_by_time": stopped}
