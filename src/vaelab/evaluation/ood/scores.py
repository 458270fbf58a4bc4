"""OOD scores of a VAE: one number per image, higher meaning "less like the training data".

Each score is a registered name with its cost (``SCORES``); :class:`Scorer` computes any set of them
over images, sharing the one importance-weighted log-likelihood they have in common:

- ``nll``: -log p(x), the importance-weighted estimate with K samples (Burda et al. 2015), nats.
- ``bits_per_dim``: the same over the image's dimensions (the 8-bit convention of ``likelihood.py``);
  it ranks images exactly as ``nll`` does, in a unit comparable across image sizes.
- ``complexity``: bits/dim minus the image's length under a lossless codec (``codec.py``), bits/dim
  (Serra et al. 2020): a simple image (flat, smooth) no longer wins just by being simple.
- ``likelihood_ratio``: -(log p_model(x) - log p_background(x)) (Ren et al. 2019) with the background
  model of ``background.py``; any part of the two log-likelihoods that both models share cancels. Where
  the VAE's likelihood is over 8-bit levels (not Bernoulli), the background is the even mixture of the
  local model and the lossless codec, p_bg = (p_local + 2^-L(x)) / 2: the better of the two per image
  (within a bit), so a flat or smooth image the local model never saw still gets its short code.
  ``complexity`` is the ratio against the codec alone.
- ``density_of_states``: minus the log-density of the image's three log-likelihoods (the VAE's, the
  background's and the codec's) under a Gaussian mixture fitted to held-out in-distribution images
  (Morningstar et al. 2021; ``states.py``): atypical in any combination of them, not only improbable.
- ``likelihood_regret``: how much the ELBO rises when this image's posterior is optimised instead of
  read off the encoder (Xiao et al. 2020; ``regret.py``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from vaelab.data import DataConfig, ImageDataset, to_float
from vaelab.errors import UsageError
from vaelab.evaluation.likelihood import LN2, iw_log_likelihood_batch
from vaelab.evaluation.measure import likelihood_unit
from vaelab.evaluation.ood.background import Background, BackgroundSpec, fit_background
from vaelab.evaluation.ood.codec import CODECS, codec_bits
from vaelab.evaluation.ood.registry import DEFAULT_K, DEFAULT_SCORE, SCORES, ScoreInfo, check_scores
from vaelab.evaluation.ood.regret import likelihood_regret
from vaelab.evaluation.ood.states import STATE_NAMES, StatesDensity, fit_density, held_out, used_states
from vaelab.io.images import to_uint8
from vaelab.models.vae import VAE
from vaelab.runtime import forked_rng

__all__ = ["DEFAULT_K", "DEFAULT_SCORE", "SCORES", "ScoreInfo", "Scorer", "check_scores", "likelihood_ratio"]


def presentation(data: DataConfig) -> str:
    """How scores present a model's images: thresholded for a statically binarised model, else grey levels."""
    return "static" if data.binarize == "static" else "none"


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
        if "density_of_states" in names and (self.background is None or self.background.states is None):
            raise UsageError(
                "density_of_states needs the density of states fitted with the background: fit both with "
                "'vaelab score MODEL --fit-background'"
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

    def log_px(self, x: torch.Tensor, k: int | None = None) -> torch.Tensor:
        """log p(x) per image, float64 nats: IW with K samples (``k``, default this scorer's); for a
        conditional model the mixture over its classes with equal weights, log (1/C) sum_y p(x|y)."""
        k = k or self.iw_samples
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

    def background_log_prob(self, x: torch.Tensor, k: int | None = None) -> np.ndarray:
        """log p_background(x) of the local model (or VAE, with ``k`` samples: default this scorer's K)
        alone, nats over 8-bit images."""
        assert self.background is not None
        log_bg = self.background.log_prob(x, k or self.iw_samples).cpu().numpy()
        if self.background.spec.kind == "vae-perturbed":  # a density over [0, 1]: its bin width added
            log_bg = log_bg - self.levels_offset()
        return log_bg

    def statistics(
        self,
        x: torch.Tensor,
        shared: dict[str, np.ndarray] | None = None,
        names: Sequence[str] = STATE_NAMES,
        fitted: bool = True,
    ) -> np.ndarray:
        """(B, len(names)) float64: the density of states' statistics ``names`` (of ``STATE_NAMES``) of
        images ``x`` in [0, 1], nats over 8-bit images, with the fitted density's K and codec (``fitted``
        False, or none fitted yet: this scorer's). ``shared``: what the caller has computed already ("nll"
        at this scorer's K, "log_bg", "bits:CODEC") and what this adds."""
        if self.background is None:
            raise UsageError("the density of states needs the background model: fit that first")
        shared = {} if shared is None else shared
        info = self.background.states.info if fitted and self.background.states else {}
        k, codec = info.get("iw_samples", self.iw_samples), info.get("codec", self.codec)
        columns: dict[str, np.ndarray] = {}
        if "log_p_model" in names:
            if k == self.iw_samples and "nll" in shared:
                nll = shared["nll"]
            else:
                with torch.inference_mode():
                    nll = -self.log_px(x, k).cpu().numpy()
            columns["log_p_model"] = -nll - self.levels_offset()
        if "log_p_background" in names:
            if "log_bg" in shared and (k == self.iw_samples or self.background.spec.kind == "pixelcnn"):
                columns["log_p_background"] = shared["log_bg"]  # (a local background's is exact: no K)
            else:
                columns["log_p_background"] = shared["log_bg"] = self.background_log_prob(x, k)
        if "log_p_codec" in names:
            if f"bits:{codec}" not in shared:
                shared[f"bits:{codec}"] = codec_bits(to_uint8(x), codec)
            columns["log_p_codec"] = -shared[f"bits:{codec}"] * LN2
        return np.stack([columns[name] for name in names], 1)

    def _batch(self, images: torch.Tensor, names: list[str]) -> dict[str, np.ndarray]:
        device = self.model.device
        x = to_float(images.to(device), self.binarize)
        out: dict[str, np.ndarray] = {}
        shared: dict[str, np.ndarray] = {}
        if set(names) - {"likelihood_regret"}:
            with torch.inference_mode():
                nll = -self.log_px(x).cpu().numpy()
            out["nll"] = shared["nll"] = nll
            out["bits_per_dim"] = self.bits_per_dim(nll)
        if "complexity" in names or (self.mixes_codec and "likelihood_ratio" in names):
            shared[f"bits:{self.codec}"] = codec_bits(to_uint8(x), self.codec)
        if "complexity" in names:
            out["complexity"] = out["bits_per_dim"] - shared[f"bits:{self.codec}"] / self.dims
        if "likelihood_ratio" in names:
            # Both in nats over 8-bit images where the VAE's likelihood is a density (its bin width, a
            # constant, is added to each: no ranking changes, but the values read as code lengths).
            log_bg = shared["log_bg"] = self.background_log_prob(x)
            if self.mixes_codec:  # the mixture of the local model and the codec, half each
                log_bg = np.logaddexp(log_bg, -shared[f"bits:{self.codec}"] * LN2) - math.log(2)
            out["likelihood_ratio"] = likelihood_ratio(-out["nll"] - self.levels_offset(), log_bg)
        if "density_of_states" in names:
            assert self.background is not None and self.background.states is not None
            density = self.background.states
            stats = torch.from_numpy(self.statistics(x, shared, density.names))
            out["density_of_states"] = -density.log_prob(stats).numpy()
        if "likelihood_regret" in names:
            regret = likelihood_regret(self.model, x, self.regret_steps, self.regret_lr)
            out["likelihood_regret"] = regret.cpu().numpy()
        return {name: out[name] for name in names}

    def score(
        self,
        images: torch.Tensor | ImageDataset,
        names: Iterable[str],
        progress: Callable[[int], object] | None = None,
    ) -> dict[str, np.ndarray]:
        """Every score in ``names`` for uint8 images (N, C, H, W): {name: (N,) float64}."""
        names = self.check(names)
        got = self._map(images, lambda batch: self._batch(batch, names), progress)
        return {name: got.get(name, np.empty(0)) for name in names}

    def fit_states(self, images: ImageDataset, log: Callable[[str], object] | None = None) -> StatesDensity:
        """Fit the density of states on ``images`` (uint8, held out from training; see ``held_out``) with
        this scorer's K and codec, and keep it in the background (``save_background`` writes it)."""
        if self.background is None:
            raise UsageError("the density of states needs the background model: fit that first")
        start = time.perf_counter()
        names = used_states(self.background.uses_codec)

        def stats(batch: torch.Tensor) -> dict[str, np.ndarray]:
            x = to_float(batch.to(self.model.device), self.binarize)
            return {"stats": self.statistics(x, names=names, fitted=False)}  # this scorer's K and codec

        density = fit_density(self._map(images, stats)["stats"], names, seed=self.seed)
        seconds = round(time.perf_counter() - start, 1)
        settings = {"dataset": images.name, "iw_samples": self.iw_samples, "codec": self.codec}
        density.info |= settings | {"binarize": self.binarize, "seconds": seconds}
        self.background.states, self.background.info["states"] = density, density.info
        if log is not None:
            log(
                f"density of states: {density.info['components']} Gaussians over the log-likelihoods of "
                f"{len(images)} held-out {images.name} images ({seconds:.1f} s)"
            )
        return density

    def _map(
        self,
        images: torch.Tensor | ImageDataset,
        fn: Callable[[torch.Tensor], dict[str, np.ndarray]],
        progress: Callable[[int], object] | None = None,
    ) -> dict[str, np.ndarray]:
        """``fn`` over batches of uint8 ``images``, the model in eval mode, torch's generator seeded with
        ``seed`` in a forked RNG; each of its outputs concatenated over the batches."""
        data = images.images if isinstance(images, ImageDataset) else images
        if tuple(data.shape[1:]) != tuple(self.model.image_shape):
            raise UsageError(
                f"images of shape {tuple(data.shape[1:])}; the model takes {tuple(self.model.image_shape)}"
            )
        parts: dict[str, list[np.ndarray]] = {}
        was_training = self.model.training
        self.model.eval()
        with forked_rng(self.model.device):
            torch.manual_seed(self.seed)
            for start in range(0, len(data), self.batch_size):
                for name, values in fn(data[start : start + self.batch_size]).items():
                    parts.setdefault(name, []).append(values)
                if progress is not None:
                    progress(min(self.batch_size, len(data) - start))
        self.model.train(was_training)
        return {n: np.concatenate(v) for n, v in parts.items()}


def fit_background_and_states(
    model: VAE,
    train: ImageDataset,
    data: DataConfig,
    spec: BackgroundSpec,
    background: Background | None = None,
    log: Callable[[str], object] | None = None,
) -> Background:
    """What the background-based scores need, fitted as ``vaelab score`` fits it: the background of
    ``spec`` on the training images ``train`` (unless ``background`` is given), then its density of
    states on the images training held out (``held_out`` of the model's data config ``data``)."""
    binarize = presentation(data)
    if background is None:
        background = fit_background(model, train, binarize, spec, log=log)
    states_on = held_out(train, data.val_fraction, data.split_seed, spec.seed)
    Scorer(model, binarize, background=background, seed=spec.seed).fit_states(states_on, log)
    return background
