"""The one VAE of vaelab, composed of parts chosen by config.

p(x) = ∫ p(x|z) p(z) dz; the encoder gives q(z|x); ``forward`` draws z with the reparameterisation
trick and returns the per-image terms of the ELBO, E_q[log p(x|z)] - KL(q(z|x) || p(z)), in nats.

A hierarchical decoder part (``hierarchical = True``, e.g. ``ladder``) adds stochastic layers below the
top latent z_1: the VAE then hands it the encoder's multi-scale features, and the KL splits into one
term per layer (``VAEOutput.kl_layers``). ``log_importance_weights`` is the one hook every
importance-weighted quantity uses (the IW log-likelihood in evaluation, the IWAE objective).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn
from torch.distributions import Distribution, Independent, kl_divergence

from vaelab import __version__
from vaelab.errors import ModelLoadError
from vaelab.io.atomic import atomic_write
from vaelab.models.config import ModelConfig
from vaelab.models.registry import CONDITIONS, DECODERS, ENCODERS, LIKELIHOODS, POSTERIORS, PRIORS

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT = "vaelab-vae"
FORMAT_VERSION = 1


@dataclass
class VAEOutput:
    """What one forward pass gives: the posterior, the latent draw, and the ELBO's terms per image."""

    posterior: Distribution
    z: torch.Tensor
    px_params: torch.Tensor
    log_px_z: torch.Tensor  # (B,) reconstruction term log p(x|z), nats
    kl: torch.Tensor  # (B,) KL(q(z|x) || p(z)), nats (analytic when torch.distributions has it)
    # (B, G) the KL split into G parts that sum to ``kl``, for per-group objectives such as free bits:
    # one per latent dimension for a single-latent model with factorised q and p, one per stochastic
    # layer for a hierarchical model; None where the KL does not split (e.g. a VampPrior).
    kl_groups: torch.Tensor | None = None
    # (B, L) KL of each stochastic layer, top first; sums to ``kl``. L = 1 for a single-latent model.
    kl_layers: torch.Tensor | None = None
    # (k, B) log p(x, z_k) - log q(z_k|x) when the forward pass drew k importance samples (IWAE);
    # log_px_z and kl are then the averages over the k samples (a k-sample ELBO estimate).
    log_weights: torch.Tensor | None = None

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
        self.likelihood = LIKELIHOODS[config.likelihood.name](config.likelihood, shape[0])
        self.posterior = POSTERIORS[config.posterior.name](config.posterior, d)
        self.prior = PRIORS[config.prior.name](config.prior, d, shape)
        # A conditional VAE (config.condition) feeds the label to encoder and decoder (Sohn et al. 2015).
        self.condition = (
            CONDITIONS[config.condition.name](config.condition, shape) if config.condition else None
        )
        extra_c = self.condition.encoder_extra_channels if self.condition is not None else 0
        extra_d = self.condition.decoder_extra_dims if self.condition is not None else 0
        enc_shape = (shape[0] + extra_c, shape[1], shape[2])
        self.encoder = ENCODERS[config.encoder.name](config.encoder, enc_shape, self.posterior.param_dim)
        out_shape = (self.likelihood.param_channels, shape[1], shape[2])
        decoder_cls = DECODERS[config.decoder.name]
        self.hierarchical = bool(getattr(decoder_cls, "hierarchical", False))
        if self.hierarchical:
            features = getattr(self.encoder, "feature_channels", None)
            if features is None:
                raise ValueError(
                    f"decoder {config.decoder.name!r} is hierarchical: its posteriors read the encoder's "
                    f"multi-scale features, which encoder {config.encoder.name!r} does not expose; "
                    "use encoder name 'resnet'"
                )
            enc_patch, dec_patch = getattr(config.encoder, "patch", 1), getattr(config.decoder, "patch", 1)
            if enc_patch != dec_patch:  # else their stages would meet at different sides
                raise ValueError(
                    f"decoder {config.decoder.name!r} has patch {dec_patch} but encoder "
                    f"{config.encoder.name!r} has patch {enc_patch}: a hierarchical decoder reads the "
                    "encoder's features side by side, so give both the same patch"
                )
            # The label (when conditional) enters beside the top latent, as in the flat decoder.
            self.decoder = decoder_cls(config.decoder, d + extra_d, out_shape, features)
        else:
            self.decoder = decoder_cls(config.decoder, d + extra_d, out_shape)
        if hasattr(self.prior, "bind"):  # a learned prior built from q(z|x) (VampPrior)
            if self.condition is not None:
                raise ValueError(
                    f"prior {config.prior.name!r} is built from q(z|x) of unlabelled pseudo-inputs, which a "
                    "conditional encoder cannot give: use prior name 'standard_normal' with a condition"
                )
            self.prior.bind(self.encode)

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

    @property
    def num_stochastic_layers(self) -> int:
        """1 for a single-latent VAE; 1 + the decoder's stochastic layers for a hierarchical one."""
        return 1 + (self.decoder.num_latent_layers if self.hierarchical else 0)

    def elements_per_sample(self) -> int:
        """Largest activation (numbers per image) one latent sample costs the decoder: the budget
        unit of chunked importance sampling."""
        _, h, w = self.image_shape
        return max(self.likelihood.param_channels * h * w, getattr(self.decoder, "activation_elements", 0))

    def kl(self, posterior: Distribution, z: torch.Tensor) -> torch.Tensor:
        """KL(q(z|x) || p(z)) per image: closed form where torch.distributions registers one,
        else the single-sample Monte-Carlo estimate log q(z|x) - log p(z) at the drawn z."""
        prior = self.prior()
        try:
            return kl_divergence(posterior, prior)
        except NotImplementedError:
            return posterior.log_prob(z) - prior.log_prob(z)

    def kl_per_dim(self, posterior: Distribution) -> torch.Tensor | None:
        """(B, D) closed-form KL of each latent dimension when q(z|x) and p(z) both factorise over
        the dimensions (``Independent`` over a pair torch.distributions knows); else None."""
        prior = self.prior()
        if not (isinstance(posterior, Independent) and isinstance(prior, Independent)):
            return None
        if posterior.reinterpreted_batch_ndims != 1 or prior.reinterpreted_batch_ndims != 1:
            return None
        try:
            return kl_divergence(posterior.base_dist, prior.base_dist)
        except NotImplementedError:
            return None

    def _encode_features(
        self, x: torch.Tensor, labels: torch.Tensor | None = None
    ) -> tuple[Distribution, dict[int, torch.Tensor] | None]:
        """q(z_1|x) and, for a hierarchical decoder, the encoder's features by side."""
        if not self.hierarchical:
            return self.encode(x, labels), None
        params, features = self.encoder.forward_features(self._conditioned(x, labels, "encoder"))
        return self.posterior(params.float()), features

    def _decode_params(
        self,
        z: torch.Tensor,
        labels: torch.Tensor | None,
        features: dict[int, torch.Tensor] | None = None,
        **top_down: Any,
    ) -> tuple[torch.Tensor, Any]:
        """The likelihood's parameters (fp32) for top latents ``z``, and for a hierarchical decoder its
        top-down result (per-layer KLs and log-ratios; None for a flat one)."""
        z_in = self._conditioned(z, labels, "decoder")
        if not self.hierarchical:
            return self.decoder(z_in).float(), None
        td = self.decoder.top_down(z_in, features, **top_down)
        return td.params.float(), td

    def forward(
        self, x: torch.Tensor, labels: torch.Tensor | None = None, iw_samples: int | None = None
    ) -> VAEOutput:
        """Encode, draw z = mean + std * eps (reparameterised: gradients reach the encoder), decode.
        A conditional VAE needs ``labels`` (B,) int64, one class per image.

        ``iw_samples`` = k draws k samples per image and fills ``log_weights`` (k, B) for the IWAE
        objective (through ``forward`` so that DDP and torch.compile see the whole pass); the KL terms
        are then single-sample Monte Carlo estimates, as the importance weights need.
        """
        if iw_samples is not None:
            if iw_samples < 1:
                raise ValueError(f"iw_samples must be >= 1; got {iw_samples}")
            log_px_z, kl_layers, z, posterior = self._iw_terms(x, iw_samples, labels)
            kl_mean = kl_layers.mean(0)
            return VAEOutput(
                posterior,
                z[0],
                torch.empty(0),
                log_px_z.mean(0),
                kl_mean.sum(-1),
                kl_layers=kl_mean,
                log_weights=log_px_z - kl_layers.sum(-1),
            )
        posterior, features = self._encode_features(x, labels)
        z = posterior.rsample()
        kl_dims = None if self.hierarchical else self.kl_per_dim(posterior)
        # Summing the per-dimension KL is exactly what kl_divergence of the Independent pair does.
        kl_top = kl_dims.sum(-1) if kl_dims is not None else self.kl(posterior, z)
        px_params, td = self._decode_params(z, labels, features)
        kl_layers = torch.cat([kl_top[:, None], td.kl], dim=1) if td is not None else kl_top[:, None]
        log_px_z = self.likelihood(px_params).log_prob(x)
        groups = kl_layers if self.hierarchical else kl_dims
        return VAEOutput(
            posterior, z, px_params, log_px_z, kl_layers.sum(1), kl_groups=groups, kl_layers=kl_layers
        )

    def _iw_terms(
        self, x: torch.Tensor, k: int, labels: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, Distribution]:
        """k reparameterised samples per image: log p(x|z) (k, B), the per-layer single-sample
        log q - log p (k, B, L), the top latents (k, B, D) and q(z_1|x)."""
        b = x.shape[0]
        posterior, features = self._encode_features(x, labels)
        z = posterior.rsample((k,))  # (k, B, D)
        ratios = [(posterior.log_prob(z) - self.prior().log_prob(z))[..., None]]
        flat = z.reshape(k * b, -1)
        rep = {side: f.repeat(k, 1, 1, 1) for side, f in features.items()} if features else None
        params, td = self._decode_params(flat, labels.repeat(k) if labels is not None else None, rep)
        if td is not None:
            ratios.append(td.log_ratio.view(k, b, -1))
        log_px_z = self.likelihood(params).log_prob(x.repeat(k, 1, 1, 1)).view(k, b)
        return log_px_z, torch.cat(ratios, dim=-1), z, posterior

    def log_importance_weights(
        self, x: torch.Tensor, k: int, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        """log p(x, z_k) - log q(z_k|x) for k samples z_k ~ q(z|x) per image: shape (k, B), nats.

        For a hierarchical model z_k is the whole stack (z_1, ..., z_L) and both densities factorise
        over the layers. log (1/k) sum exp(.) over dim 0 is the IWAE bound (Burda et al. 2015).
        """
        if k < 1:
            raise ValueError(f"the number of importance samples must be >= 1; got {k}")
        log_px_z, ratios, _, _ = self._iw_terms(x, k, labels)
        return log_px_z - ratios.sum(-1)

    def layer_temperatures(self, temperature: float | Sequence[float]) -> list[float]:
        """One temperature per stochastic layer (top first) from a number or a per-layer list."""
        n = self.num_stochastic_layers
        temps = (
            [float(temperature)] * n
            if isinstance(temperature, int | float)
            else [float(t) for t in temperature]
        )
        if len(temps) != n:
            raise ValueError(
                f"this model has {n} stochastic layers: give 1 temperature or {n}, got {len(temps)}"
            )
        bad = [t for t in temps if not (math.isfinite(t) and t >= 0)]
        if bad:
            raise ValueError(f"temperatures must be finite and >= 0; got {bad}")
        return temps

    @torch.no_grad()
    def sample(
        self,
        n: int,
        temperature: float | Sequence[float] = 1.0,
        generator: torch.Generator | None = None,
        labels: torch.Tensor | None = None,
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
        labels: torch.Tensor | None = None,
        *,
        temperature: float | Sequence[float] = 1.0,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Images in [0, 1] for given top latents ``z``: ``decode`` for a single-latent model; a
        hierarchical one also draws its lower layers from their priors at the temperatures after the
        first (the first is the top latent's, already drawn)."""
        if not self.hierarchical:
            return self.decode(z, labels)
        temps = self.layer_temperatures(temperature)
        return self.likelihood.mean(
            self._decode_params(z, labels, temperatures=temps[1:], generator=generator)[0]
        )

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Decode the posterior mean of each image (every layer's, for a hierarchical model)."""
        posterior, features = self._encode_features(x, labels)
        extra = {"use_mean": True} if self.hierarchical else {}
        return self.likelihood.mean(self._decode_params(posterior.mean, labels, features, **extra)[0])

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
