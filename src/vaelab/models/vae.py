"""The one VAE of vaelab, composed of parts chosen by config.

p(x) = ∫ p(x|z) p(z) dz over stochastic layers z = (z_1, ..., z_L), top first. The encoder's bottom-up
pass gives q(z_1|x) and its features; the decoder's top-down pass gives, for each lower layer,
q(z_l|z_<l, x) and p(z_l|z_<l), then the likelihood's parameters. A flat VAE is the case L = 1: a
decoder without lower layers. ``forward`` draws every layer with the reparameterisation trick and
returns the ELBO's terms per image, E_q[log p(x|z)] - sum_l KL_l, in nats; each layer's KL comes from
``layer_kl`` (``parts/kl.py``). Reconstruction, sampling, importance weights and export all go
through the methods below, so the trainer, the evaluation, the CLI and the server cannot disagree.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.distributions import Distribution

from vaelab.errors import ConfigError, ModelLoadError, UsageError
from vaelab.models import saving
from vaelab.models.config import ModelConfig
from vaelab.models.outputs import Encoding, VAEOutput
from vaelab.models.parts.base import DecoderOutput, Draw
from vaelab.models.parts.conditioning import Unconditional
from vaelab.models.parts.kl import factorwise_kl, layer_kl
from vaelab.models.registry import CONDITIONS, DECODERS, ENCODERS, LIKELIHOODS, POSTERIORS, PRIORS
from vaelab.models.saving import CONFIG_NAME, FORMAT, FORMAT_VERSION, WEIGHTS_NAME, resolve_model_dir

# Saving and loading live in ``vaelab.models.saving``; these names stay importable from here.
tensors_digest = saving.tensors_digest
__all__ = ["CONFIG_NAME", "FORMAT", "FORMAT_VERSION", "VAE", "WEIGHTS_NAME", "Encoding", "ModelLoadError"]
__all__ += ["VAEOutput", "resolve_model_dir", "tensors_digest"]

Labels = torch.Tensor | None  # (B,) int64 classes of a conditional VAE; None for an unconditional one
Temperature = float | Sequence[float]  # one for every stochastic layer, or one each, top first
Generator = torch.Generator | None


def _tile(t: torch.Tensor | None, k: int) -> torch.Tensor | None:
    """``k`` copies of a batch tensor along the batch dimension (sample-major: copy j holds rows
    j B .. j B + B - 1)."""
    if t is None or k == 1:
        return t
    return t.repeat(k, *[1] * (t.dim() - 1))


class VAE(nn.Module):
    """Encoder + posterior + prior + decoder + likelihood (+ conditioning), each a part built from config."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if config.image_shape is None:
            raise ConfigError("ModelConfig.image_shape must be set (a run fills it from the dataset).")
        self.config = config
        shape, d = config.image_shape, config.latent_dim
        self.likelihood = LIKELIHOODS[config.likelihood.name](config.likelihood, shape[0])
        self.posterior = POSTERIORS[config.posterior.name](config.posterior, d)
        self.prior = PRIORS[config.prior.name](config.prior, d, shape)
        # A conditional VAE (config.condition) feeds the label to encoder and decoder (Sohn et al. 2015).
        cond = config.condition
        self.condition = CONDITIONS[cond.name](cond, shape) if cond is not None else Unconditional()
        enc_shape = (shape[0] + self.condition.encoder_extra_channels, *shape[1:])
        self.encoder = ENCODERS[config.encoder.name](config.encoder, enc_shape, self.posterior.param_dim)
        out_shape = (self.likelihood.param_channels, *shape[1:])
        dec_cls, features = DECODERS[config.decoder.name], self.encoder.feature_channels
        dec_cls.check_encoder(config.decoder, config.encoder, features)
        self.decoder = dec_cls(config.decoder, d + self.condition.decoder_extra_dims, out_shape, features)
        self.prior.bind(self.encode, self.num_classes is not None)  # a prior built from q(z|x): VampPrior

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
        return self.condition.num_classes

    @property
    def num_stochastic_layers(self) -> int:
        """The top latent and the decoder's lower layers: 1 for a flat VAE."""
        return 1 + self.decoder.num_latent_layers

    def elements_per_sample(self) -> int:
        """Largest activation (numbers per image) one latent sample costs the decoder: the budget
        unit of chunked importance sampling."""
        _, h, w = self.image_shape
        return max(self.likelihood.param_channels * h * w, self.decoder.activation_elements)

    # --- the two passes ----------------------------------------------------------------------------
    def encode_layers(self, x: torch.Tensor, labels: Labels = None) -> Encoding:
        """The bottom-up pass over images in [0, 1] (B, C, H, W), with their labels when conditional."""
        # x.shape[0], not len(x): len() makes an int of a symbolic batch size, fixing it in an export.
        labels = self.condition.check(labels, x.shape[0])
        labels = self.condition.drop_labels(labels) if self.training else labels  # guidance.py's dropout
        params, features = self.encoder.forward_features(self.condition.encoder_input(x, labels))
        features = features if self.decoder.num_latent_layers else None
        # Distributions are built in fp32 even under bf16 autocast: exp(logvar) and log-likelihoods
        # lose too much in 8 bits of mantissa.
        return Encoding(self.posterior(params.float()), features, labels)

    def _decode(self, z: torch.Tensor, labels: Labels, features: Any, draw: Draw) -> DecoderOutput:
        """The top-down pass from top latents ``z`` (labels already checked); parameters in fp32."""
        out = self.decoder.top_down(self.condition.decoder_input(z, labels), features, draw)
        out.params = out.params.float()
        return out

    def _mean_path(self, z: torch.Tensor, labels: Labels) -> torch.Tensor:
        """Likelihood parameters for top latents ``z``, every lower layer at its prior mean."""
        labels = self.condition.check(labels, z.shape[0], "latents")
        return self._decode(z, labels, None, Draw([0.0] * self.decoder.num_latent_layers)).params

    def forward(self, x: torch.Tensor, labels: Labels = None, iw_samples: int | None = None) -> VAEOutput:
        """Encode, draw every layer reparameterised (gradients reach the encoder), decode. A
        conditional VAE needs ``labels`` (B,) int64, one class per image.

        ``iw_samples`` = k draws k samples per image and fills ``log_weights`` (k, B) for the IWAE
        objective (through ``forward`` so that DDP and torch.compile see the whole pass); the KL terms
        are then single-sample Monte Carlo estimates, as the importance weights need.
        """
        if iw_samples is not None and iw_samples < 1:
            raise UsageError(f"iw_samples must be >= 1; got {iw_samples}")
        enc = self.encode_layers(x, labels)
        q, k, sampled = enc.posterior, iw_samples or 1, iw_samples is not None
        z = q.rsample((k,)) if sampled else q.rsample()  # (B, D) or (k, B, D)
        top = layer_kl(q, self.prior(), z, sampled=sampled)
        dec = self._decode(
            z.reshape(-1, z.shape[-1]), _tile(enc.labels, k), enc.features, Draw(sampled_kl=sampled)
        )
        lead = z.shape[:-1]
        log_px_z = self.likelihood(dec.params).log_prob(_tile(x, k)).view(lead)
        kl_layers = torch.stack([top.kl, *(layer.kl.view(lead) for layer in dec.layers)], dim=-1)
        if not sampled:
            groups = kl_layers if kl_layers.shape[-1] > 1 else top.per_dim
            return VAEOutput(q, z, dec.params, log_px_z, kl_layers.sum(-1), groups, kl_layers, x=x)
        kl_mean = kl_layers.mean(0)
        log_weights = log_px_z - kl_layers.sum(-1)
        return VAEOutput(
            q, z[0], dec.params, log_px_z.mean(0), kl_mean.sum(-1), None, kl_mean, log_weights, x
        )

    # --- what every feature uses --------------------------------------------------------------------
    def encode(self, x: torch.Tensor, labels: Labels = None) -> Distribution:
        """q(z_1|x) (q(z_1|x, y) when conditional) for a batch of images in [0, 1], shape (B, C, H, W)."""
        return self.encode_layers(x, labels).posterior

    def px_z(self, z: torch.Tensor, labels: Labels = None) -> Distribution:
        """p(x|z) (p(x|z, y) when conditional) for top latents ``z``, lower layers at their prior means."""
        return self.likelihood(self._mean_path(z, labels))

    def decode(self, z: torch.Tensor, labels: Labels = None, clip: bool = True) -> torch.Tensor:
        """The expected image in [0, 1] for top latents (B, latent_dim) -> (B, C, H, W), lower layers at
        their prior means (as the ONNX decoder); ``clip=False``: ``LikelihoodPart.raw_mean``, unclipped."""
        return (self.likelihood.mean if clip else self.likelihood.raw_mean)(self._mean_path(z, labels))

    def kl(self, posterior: Distribution, z: torch.Tensor) -> torch.Tensor:
        """KL(q(z_1|x) || p(z_1)) per image at the draw ``z`` (see ``layer_kl``)."""
        return layer_kl(posterior, self.prior(), z).kl

    def kl_per_dim(self, posterior: Distribution) -> torch.Tensor | None:
        """(B, D) closed-form KL of each top-latent dimension; None where q and p do not factorise."""
        return factorwise_kl(posterior, self.prior())

    def log_importance_weights(self, x: torch.Tensor, k: int, labels: Labels = None) -> torch.Tensor:
        """log p(x, z_k) - log q(z_k|x) for k samples z_k ~ q(z|x) per image: shape (k, B), nats.

        For a hierarchical model z_k is the whole stack (z_1, ..., z_L) and both densities factorise
        over the layers. log (1/k) sum exp(.) over dim 0 is the IWAE bound (Burda et al. 2015).
        """
        log_weights = self(x, labels, iw_samples=k).log_weights
        assert log_weights is not None
        return log_weights

    def layer_temperatures(self, temperature: Temperature) -> list[float]:
        """One temperature per stochastic layer (top first) from a number or a per-layer list."""
        n = self.num_stochastic_layers
        one = isinstance(temperature, int | float)
        temps = [float(temperature)] * n if one else [float(t) for t in temperature]
        if len(temps) != n:
            raise UsageError(
                f"this model has {n} stochastic layers: give 1 temperature or {n}, got {len(temps)}"
            )
        bad = [t for t in temps if not (math.isfinite(t) and t >= 0)]
        if bad:
            raise UsageError(f"temperatures must be finite and >= 0; got {bad}")
        return temps

    @torch.no_grad()
    def sample(
        self, n: int, temperature: Temperature = 1.0, generator: Generator = None, labels: Labels = None
    ) -> torch.Tensor:
        """``n`` new images in [0, 1]: z from the prior, decoded (of the classes ``labels`` (n,) asks
        for, when conditional). ``temperature`` scales the prior's standard deviation (0: its mean),
        one number for every layer or a list with one per stochastic layer, top first (hierarchical
        models: Vahdat & Kautz 2020 sample NVAE at T = 0.6-0.9)."""
        temps = self.layer_temperatures(temperature)
        z = self.prior.sample(n, temps[0], generator=generator)
        return self.decode_sample(z, labels, temperature=temps, generator=generator)

    @torch.no_grad()
    def decode_sample(
        self,
        z: torch.Tensor,
        labels: Labels = None,
        *,
        temperature: Temperature = 1.0,
        generator: Generator = None,
    ) -> torch.Tensor:
        """Images in [0, 1] for given top latents ``z``, each lower layer drawn from its prior at the
        temperatures after the first (the first is the top latent's, already drawn)."""
        temps = self.layer_temperatures(temperature)
        labels = self.condition.check(labels, z.shape[0], "latents")
        out = self._decode(z, labels, None, Draw(temps[1:], generator))
        return self.likelihood.mean(out.params)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, labels: Labels = None) -> torch.Tensor:
        """Decode the posterior mean of each image (every layer's, for a hierarchical model)."""
        enc = self.encode_layers(x, labels)
        out = self._decode(enc.posterior.mean, enc.labels, enc.features, Draw(use_mean=True))
        return self.likelihood.mean(out.params)

    # --- saving and loading (vaelab.models.saving) -------------------------------------------------
    def save_pretrained(self, directory: str | Path, extra: dict[str, Any] | None = None) -> Path:
        """Write ``config.json`` (the constructor's config) and ``model.safetensors`` (weights only)."""
        return saving.save_pretrained(self, self.config, directory, extra)

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | torch.device = "cpu") -> VAE:
        """Rebuild a saved model from a model directory, or from a run directory (its ``model/``).

        Reads JSON and safetensors only: nothing in the files is ever executed.
        """
        return saving.load_pretrained(cls, path, device)
