"""OOD scores of a VAE: one number per image, higher meaning "less like the training data".

Each score is a registered name with its cost (``SCORES``); :class:`Scorer` computes any set of them
over images, sharing the one importance-weighted log-likelihood they have in common:

- ``nll``: -log p(x), the importance-weighted estimate with K samples (Burda et al. 2015), nats.
- ``bits_per_dim``: the same over the image's dimensions (the 8-bit convention of ``likelihood.py``);
  it ranks images exactly as ``nll`` does, in a unit comparable across image sizes.
- ``complexity``: bits/dim minus the length of the image under a lossless codec, bits/dim (Serra et
  al. 2020): the codec length L(x) stands in for a universal model, so a simple image (flat, smooth)
  no longer wins just by being simple.
- ``likelihood_ratio``: -(log p_model(x) - log p_background(x)) (Ren et al. 2019) with the background
  model of ``background.py``; any part of the two log-likelihoods that both models share cancels. Where
  the VAE's likelihood is over 8-bit levels (not Bernoulli), the background is the even mixture of the
  local model and the lossless codec, p_bg = (p_local + 2^-L(x)) / 2: the better of the two per image
  (within a bit), so a flat or smooth image the local model never saw still gets its short code.
  ``complexity`` is the ratio against the codec alone.
- ``likelihood_regret``: how much the ELBO rises when the posterior of this one image is optimised
  (mean and log-scale, Adam, ``regret_steps`` steps) instead of read off the encoder (Xiao et al. 2020,
  who optimise the encoder's weights per image; here its output, for a batch at once). An image like
  the training data is already encoded near its optimum; an unfamiliar one gains a lot.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, features
from torch.distributions import Independent, Normal

from vaelab.data import ImageDataset, to_float
from vaelab.errors import UsageError
from vaelab.evaluation.likelihood import LN2, iw_log_likelihood_batch
from vaelab.evaluation.measure import likelihood_unit
from vaelab.evaluation.ood.background import Background
from vaelab.io.images import to_uint8
from vaelab.models.parts.kl import layer_kl
from vaelab.models.vae import VAE

DEFAULT_SCORE = "likelihood_ratio"
DEFAULT_K = 1
CODECS = ("png", "webp")
_CODEC_OPTIONS = {
    "png": {"format": "PNG", "optimize": True, "compress_level": 9},
    "webp": {"format": "WEBP", "lossless": True, "quality": 100, "method": 6},
}


@dataclass(frozen=True)
class ScoreInfo:
    name: str
    title: str
    cost: str
    needs_background: bool = False


SCORES: dict[str, ScoreInfo] = {
    s.name: s
    for s in (
        ScoreInfo("nll", "-log p(x), nats (IW, K samples)", "1 encoder + K decoder passes per image"),
        ScoreInfo("bits_per_dim", "-log p(x) in bits per dimension", "as nll"),
        ScoreInfo(
            "complexity",
            "bits/dim - lossless codec bits/dim (Serra et al. 2020)",
            "as nll + one lossless encode (Pillow) per image",
        ),
        ScoreInfo(
            "likelihood_ratio",
            "-(log p_model - log p_background) (Ren et al. 2019)",
            "as nll + one pass of the background model (+ one lossless encode over 8-bit levels); "
            "its fit is one-off",
            needs_background=True,
        ),
        ScoreInfo(
            "likelihood_regret",
            "ELBO gain of a per-image optimised posterior (Xiao et al. 2020)",
            "as nll + steps x (decoder forward and backward) per image: tens of times nll",
        ),
    )
}


def check_scores(names: Iterable[str]) -> list[str]:
    """The names, each checked to be a registered score (a UsageError names the known ones)."""
    names = list(names)
    unknown = [n for n in names if n not in SCORES]
    if unknown:
        raise UsageError(f"unknown score {unknown[0]!r}; known: {', '.join(SCORES)}")
    return names


def codec_bits(images: torch.Tensor, codec: str, verify: bool = False) -> np.ndarray:
    """Bits of each uint8 image (B, C, H, W) under the lossless ``codec`` (png or webp) at its strongest
    setting, as Pillow writes it (headers included: the same for every image of one shape). ``verify``:
    decode each file again and raise unless it gives back the same pixels (the codec is lossless)."""
    if codec == "webp" and not features.check("webp"):
        raise UsageError("this Pillow has no WebP support: use --codec png")
    options = _CODEC_OPTIONS[codec]
    arrays = images.permute(0, 2, 3, 1).cpu().numpy()
    out = np.empty(len(arrays))
    for i, a in enumerate(arrays):
        image = Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a)
        buffer = io.BytesIO()
        image.save(buffer, **options)
        if verify and not decodes_to(buffer.getvalue(), image):
            raise RuntimeError(f"{codec} did not give back the same pixels: not lossless")
        out[i] = 8 * buffer.getbuffer().nbytes
    return out


def decodes_to(encoded: bytes, image: Image.Image) -> bool:
    """Whether the file ``encoded`` decodes to exactly the pixels of ``image``."""
    return Image.open(io.BytesIO(encoded)).convert(image.mode).tobytes() == image.tobytes()


def likelihood_ratio(log_p_model: np.ndarray, log_p_background: np.ndarray) -> np.ndarray:
    """The score: -(log p_model - log p_background); a term added to both cancels."""
    return -(np.asarray(log_p_model, np.float64) - np.asarray(log_p_background, np.float64))


@dataclass
class Scorer:
    """Scores images for ``model``. ``binarize``: how images are presented ("none": grey levels in [0, 1],
    for a Bernoulli model the expectation of the binarised log-likelihood; "static": thresholded).
    Latents come from torch's generator seeded with ``seed`` (in a forked RNG) at each ``score`` call."""

    model: VAE
    binarize: str = "none"
    iw_samples: int = DEFAULT_K
    background: Background | None = None
    codec: str = "png"
    regret_steps: int = 20
    regret_lr: float = 0.1
    seed: int = 0
    batch_size: int = 500
    codec_mixture: bool = True  # False: the local background alone (an ablation; see docs/ood.md)

    def __post_init__(self) -> None:
        if self.iw_samples < 1:
            raise UsageError(f"K (--iw-samples) must be at least 1; got {self.iw_samples}")
        if self.codec not in CODECS:
            raise UsageError(f"codec must be one of {', '.join(CODECS)}; got {self.codec!r}")

    def check(self, names: Iterable[str]) -> list[str]:
        names = check_scores(names)
        if "likelihood_ratio" in names and self.background is None:
            raise UsageError(
                "likelihood_ratio needs a background model beside the model: fit one with "
                "'vaelab score MODEL --fit-background' (about a minute for MNIST on one core)"
            )
        model = self.model
        if "likelihood_regret" in names and (
            model.num_stochastic_layers > 1 or model.config.posterior.name != "gaussian" or model.num_classes
        ):
            raise UsageError(
                "likelihood_regret needs an unconditional single-latent VAE with a Gaussian posterior"
            )
        return names

    def usable(self, names: Iterable[str]) -> tuple[list[str], dict[str, str]]:
        """``names`` split into the scores this model and background can give and, for the others, why
        not (likelihood regret of a hierarchical VAE): how "all" scores means every score there is."""
        ok: list[str] = []
        why: dict[str, str] = {}
        for name in names:
            try:
                ok += self.check([name])
            except UsageError as exc:
                why[name] = str(exc)
        return ok, why

    @property
    def mixes_codec(self) -> bool:
        """Whether the likelihood ratio's background is the mixture of the local model and the codec."""
        return self.codec_mixture and self.background is not None and self.background.uses_codec

    @property
    def dims(self) -> int:
        return math.prod(self.model.image_shape)

    def log_px(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) per image, float64 nats: IW with K samples; for a conditional model the mixture
        over its classes with equal weights, log (1/C) sum_y p(x|y)."""
        k = self.iw_samples
        if self.model.num_classes is None:
            return iw_log_likelihood_batch(self.model, x, k)[k].double()
        c = self.model.num_classes
        per_class = [
            iw_log_likelihood_batch(self.model, x, k, labels=torch.full((len(x),), y, device=x.device))[k]
            for y in range(c)
        ]
        return torch.logsumexp(torch.stack(per_class).double(), 0) - math.log(c)

    def levels_offset(self) -> float:
        """D ln 256 for a density over [0, 1] (its bin width over 8-bit images), else 0."""
        levels, _ = likelihood_unit(self.model, self.binarize)
        return self.dims * math.log(levels) if levels else 0.0

    def bits_per_dim(self, nll: np.ndarray) -> np.ndarray:
        return (nll + self.levels_offset()) / (self.dims * LN2)

    def regret(self, x: torch.Tensor) -> torch.Tensor:
        """ELBO(optimised posterior) - ELBO(encoder's posterior), per image, with the same 4 fixed
        draws of the noise for both (so the gain is not sampling noise)."""
        with torch.no_grad():
            q = self.model.encode(x)
            mean0, log_std0 = q.mean.detach(), q.stddev.log().detach()
        eps = torch.randn((4, *mean0.shape), device=x.device)
        prior = self.model.prior()
        tiled = x.repeat(4, 1, 1, 1)

        def elbo(mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
            z = mean + log_std.exp() * eps
            posterior = Independent(Normal(mean, log_std.exp()), 1)
            log_px_z = self.model.px_z(z.reshape(-1, z.shape[-1])).log_prob(tiled).view(4, -1)
            return (log_px_z - layer_kl(posterior, prior, z).kl).mean(0)

        with torch.no_grad():
            before = elbo(mean0, log_std0)
        mean, log_std = mean0.clone().requires_grad_(), log_std0.clone().requires_grad_()
        optimizer = torch.optim.Adam([mean, log_std], lr=self.regret_lr)
        best = before.clone()
        for _ in range(self.regret_steps):
            value = elbo(mean, log_std)
            best = torch.maximum(best, value.detach())
            # Gradients of the posterior's parameters only: the model's weights get none (and keep
            # their flags), so concurrent requests in the server never see them change.
            mean.grad, log_std.grad = torch.autograd.grad(-value.sum(), [mean, log_std])
            optimizer.step()
        with torch.no_grad():
            best = torch.maximum(best, elbo(mean, log_std))
        return (best - before).double()

    def _batch(self, images: torch.Tensor, names: list[str]) -> dict[str, np.ndarray]:
        device = self.model.device
        x = to_float(images.to(device), self.binarize)
        out: dict[str, np.ndarray] = {}
        if set(names) - {"likelihood_regret"}:
            with torch.inference_mode():
                nll = -self.log_px(x).cpu().numpy()
            out["nll"] = nll
            out["bits_per_dim"] = self.bits_per_dim(nll)
        bits = None
        mixed = self.mixes_codec and "likelihood_ratio" in names
        if "complexity" in names or mixed:
            bits = codec_bits(to_uint8(x), self.codec)
        if "complexity" in names:
            assert bits is not None
            out["complexity"] = out["bits_per_dim"] - bits / self.dims
        if "likelihood_ratio" in names:
            assert self.background is not None
            # Both in nats over 8-bit images where the VAE's likelihood is a density (its bin width, a
            # constant, is added to each: no ranking changes, but the values read as code lengths).
            offset = self.levels_offset()
            log_bg = self.background.log_prob(x, self.iw_samples).cpu().numpy()
            if self.background.spec.kind == "vae-perturbed":
                log_bg = log_bg - offset
            if self.mixes_codec:
                assert bits is not None  # the mixture of the local model and the codec, half each
                log_bg = np.logaddexp(log_bg, -bits * LN2) - math.log(2)
            out["likelihood_ratio"] = likelihood_ratio(-out["nll"] - offset, log_bg)
        if "likelihood_regret" in names:
            out["likelihood_regret"] = self.regret(x).cpu().numpy()
        return {name: out[name] for name in names}

    def score(
        self,
        images: torch.Tensor | ImageDataset,
        names: Iterable[str],
        progress: Callable[[int], object] | None = None,
    ) -> dict[str, np.ndarray]:
        """Every score in ``names`` for uint8 images (N, C, H, W): {name: (N,) float64}."""
        names = self.check(names)
        data = images.images if isinstance(images, ImageDataset) else images
        if tuple(data.shape[1:]) != tuple(self.model.image_shape):
            raise UsageError(
                f"images of shape {tuple(data.shape[1:])}; the model takes {tuple(self.model.image_shape)}"
            )
        parts: dict[str, list[np.ndarray]] = {name: [] for name in names}
        was_training = self.model.training
        self.model.eval()
        forked = [self.model.device.index or 0] if self.model.device.type == "cuda" else []
        with torch.random.fork_rng(devices=forked):
            torch.manual_seed(self.seed)
            for start in range(0, len(data), self.batch_size):
                for name, values in self._batch(data[start : start + self.batch_size], names).items():
                    parts[name].append(values)
                if progress is not None:
                    progress(min(self.batch_size, len(data) - start))
        self.model.train(was_training)
        return {n: np.concatenate(v) if v else np.empty(0) for n, v in parts.items()}
