"""The one VAE of vaelab, composed of parts chosen by config.

p(x) = ∫ p(x|z) p(z) dz; the encoder gives q(z|x); ``forward`` draws z with the reparameterisation
trick and returns the per-image terms of the ELBO, E_q[log p(x|z)] - KL(q(z|x) || p(z)), in nats.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn
from torch.distributions import Distribution, kl_divergence

from vaelab import __version__
from vaelab.io.atomic import atomic_write
from vaelab.models.config import ModelConfig
from vaelab.models.registry import CONDITIONS, DECODERS, ENCODERS, LIKELIHOODS, POSTERIORS, PRIORS

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT = "vaelab-vae"
FORMAT_VERSION = 1


class ModelLoadError(Exception):
    """A saved model could not be loaded; the message names the file and the problem."""


@dataclass
class VAEOutput:
    """What one forward pass gives: the posterior, the latent draw, and the ELBO's terms per image."""

    posterior: Distribution
    z: torch.Tensor
    px_params: torch.Tensor
    log_px_z: torch.Tensor  # (B,) reconstruction term log p(x|z), nats
    kl: torch.Tensor  # (B,) KL(q(z|x) || p(z)), nats (analytic when torch.distributions has it)

    @property
    def elbo(self) -> torch.Tensor:
        """Per-image evidence lower bound, nats: log p(x|z) - KL."""
        return self.log_px_z - self.kl


class VAE(nn.Module):
    """Encoder + latent distribution + prior + decoder + likelihood, each a part built from config."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if config.image_shape is None:
            raise ValueError("ModelConfig.image_shape must be set (a run fills it from the dataset).")
        self.config = config
        shape = config.image_shape
        d = config.latent_dim
        self.likelihood = LIKELIHOODS[config.likelihood.name](config.likelihood)
        self.posterior = POSTERIORS[config.posterior.name](config.posterior, d)
        self.prior = PRIORS[config.prior.name](config.prior, d)
        # A conditional VAE (config.condition) feeds the label to encoder and decoder (Sohn et al. 2015).
        self.condition = (
            CONDITIONS[config.condition.name](config.condition, shape) if config.condition else None
        )
        extra_c = self.condition.encoder_extra_channels if self.condition is not None else 0
        extra_d = self.condition.decoder_extra_dims if self.condition is not None else 0
        enc_shape = (shape[0] + extra_c, shape[1], shape[2])
        self.encoder = ENCODERS[config.encoder.name](config.encoder, enc_shape, self.posterior.param_dim)
        out_shape = (shape[0] * self.likelihood.params_per_channel, shape[1], shape[2])
        self.decoder = DECODERS[config.decoder.name](config.decoder, d + extra_d, out_shape)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of the images this model reads and writes."""
        assert self.config.image_shape is not None
        return self.config.image_shape

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def num_classes(self) -> int | None:
        """Number of classes a conditional VAE takes; None for an unconditional one."""
        return self.condition.num_classes if self.condition is not None else None

    def _conditioned(self, inputs: torch.Tensor, labels: torch.Tensor | None, where: str) -> torch.Tensor:
        """``inputs`` with the label appended for the encoder or decoder (as is when unconditional)."""
        if self.condition is None:
            if labels is not None:
                raise ValueError("this VAE is unconditional: it takes no class labels")
            return inputs
        labels = self.condition.check(labels)
        if len(labels) != len(inputs):
            raise ValueError(
                f"got {len(labels)} labels for {len(inputs)} {'images' if where == 'encoder' else 'latents'}"
            )
        if where == "encoder":
            return self.condition.encoder_input(inputs, labels)
        return self.condition.decoder_input(inputs, labels)

    def encode(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> Distribution:
        """q(z|x) (q(z|x, y) when conditional) for a batch of images in [0, 1], shape (B, C, H, W)."""
        # Distributions are built in fp32 even under bf16 autocast: exp(logvar) and log-likelihoods
        # lose too much in 8 bits of mantissa.
        return self.posterior(self.encoder(self._conditioned(x, labels, "encoder")).float())

    def px_z(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> Distribution:
        """p(x|z) (p(x|z, y) when conditional): the likelihood's distribution over images."""
        return self.likelihood(self.decoder(self._conditioned(z, labels, "decoder")).float())

    def decode(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """The expected image in [0, 1] for each latent (B, latent_dim) -> (B, C, H, W)."""
        return self.likelihood.mean(self.decoder(self._conditioned(z, labels, "decoder")).float())

    def kl(self, posterior: Distribution, z: torch.Tensor) -> torch.Tensor:
        """KL(q(z|x) || p(z)) per image: closed form where torch.distributions registers one,
        else the single-sample Monte-Carlo estimate log q(z|x) - log p(z) at the drawn z."""
        prior = self.prior()
        try:
            return kl_divergence(posterior, prior)
        except NotImplementedError:
            return posterior.log_prob(z) - prior.log_prob(z)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> VAEOutput:
        """Encode, draw z = mean + std * eps (reparameterised: gradients reach the encoder), decode.
        A conditional VAE needs ``labels`` (B,) int64, one class per image."""
        posterior = self.encode(x, labels)
        z = posterior.rsample()
        px_params = self.decoder(self._conditioned(z, labels, "decoder")).float()
        log_px_z = self.likelihood(px_params).log_prob(x)
        return VAEOutput(posterior, z, px_params, log_px_z, self.kl(posterior, z))

    @torch.no_grad()
    def sample(
        self,
        n: int,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``n`` new images in [0, 1]: z from the prior (std scaled by ``temperature``), decoded
        (of the classes ``labels`` (n,) asks for, when conditional)."""
        return self.decode(self.prior.sample(n, temperature, generator=generator), labels)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Decode the posterior mean of each image: the model's reconstruction in [0, 1]."""
        return self.decode(self.encode(x, labels).mean, labels)

    # --- saving and loading ----------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path, extra: dict[str, Any] | None = None) -> Path:
        """Write ``config.json`` (the constructor's config) and ``model.safetensors`` (weights only)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "vaelab_version": __version__,
            "model": self.config.model_dump(mode="json"),
            **(extra or {}),
        }
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        with atomic_write(directory / WEIGHTS_NAME) as tmp:
            save_file(state, str(tmp), metadata={"format": FORMAT, "sha256": tensors_digest(state)})
        with atomic_write(directory / CONFIG_NAME) as tmp:
            tmp.write_text(json.dumps(meta, indent=2) + "\n")
        return directory

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | torch.device = "cpu") -> VAE:
        """Rebuild a saved model from a model directory, or from a run directory (its ``model/``).

        Reads JSON and safetensors only: nothing in the files is ever executed.
        """
        directory = resolve_model_dir(path)
        config_path = directory / CONFIG_NAME
        try:
            meta = json.loads(config_path.read_text())
            if not isinstance(meta, dict) or meta.get("format") != FORMAT:
                raise ModelLoadError(f"{config_path} is not a vaelab model config (format != {FORMAT!r}).")
            config = ModelConfig.model_validate(meta["model"])
        except (json.JSONDecodeError, KeyError, ValueError) as exc:
            if isinstance(exc, ModelLoadError):
                raise
            raise ModelLoadError(f"{config_path} is not a valid vaelab model config: {exc}") from None
        model = cls(config)
        weights = directory / WEIGHTS_NAME
        try:
            state = load_file(str(weights))
            with safe_open(str(weights), framework="pt") as f:
                recorded = (f.metadata() or {}).get("sha256")
        except (SafetensorError, OSError, ValueError) as exc:
            raise ModelLoadError(f"{weights} could not be read as safetensors weights: {exc}") from None
        if recorded is not None and recorded != tensors_digest(state):
            raise ModelLoadError(
                f"{weights} was altered or corrupted: its tensors no longer match the sha256 recorded when "
                "it was saved"
            )
        missing, unexpected = set(model.state_dict()) - set(state), set(state) - set(model.state_dict())
        if missing or unexpected:
            raise ModelLoadError(
                f"{weights} does not match its config: missing {sorted(missing)}, "
                f"unexpected {sorted(unexpected)}"
            )
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise ModelLoadError(f"{weights} does not match its config: {exc}") from None
        return model.to(device).eval()


def tensors_digest(state: dict[str, torch.Tensor]) -> str:
    """sha256 over names, dtypes, shapes and bytes of every tensor, in name order: stored in the
    safetensors header so that a flipped bit in the weights is caught at load time."""
    digest = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def resolve_model_dir(path: str | Path) -> Path:
    """A saved-model directory (has config.json) or a run directory (has model/config.json)."""
    path = Path(path)
    for candidate in (path, path / "model"):
        if (candidate / CONFIG_NAME).is_file():
            return candidate
    if not path.exists():
        raise ModelLoadError(f"{path} does not exist: give a run directory or a saved-model directory.")
    raise ModelLoadError(
        f"{path} holds no saved model: expected {path / CONFIG_NAME} or {path / 'model' / CONFIG_NAME}."
    )
