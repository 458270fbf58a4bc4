"""The background model of the likelihood ratio (Ren et al. 2019): a density over the same images, in the
same units as the VAE's, that explains what is generic in an image (its smoothness, its flat regions, its
noise), so that log p_model(x) - log p_background(x) keeps what is specific to the training data.

Two kinds, chosen by ``BackgroundSpec.kind``:

- ``pixelcnn`` (the default): a small local autoregressive model. A masked ``kernel`` x ``kernel``
  convolution (PixelCNN's mask A: each pixel sees only the rows above and the pixels to its left within
  the window) and ``depth`` per-pixel layers give every pixel the parameters of its likelihood: Bernoulli
  for a Bernoulli VAE (the same cross-entropy on grey levels), else a discretised logistic mixture with a
  scale per pixel, a distribution over the 256 levels (``background_likelihood``). It sees four
  neighbours at kernel 3, so it learns local statistics only (stroke edges, texture, noise), not what
  the image shows. Exact log-likelihood in one pass, no K; it trains in well under a minute on one core.
  Trained with a fraction ``noise`` of pixels replaced by random levels (Ren et al.'s perturbation), it
  also stays tolerant of noise, so that noise scores as out of distribution whatever the VAE makes of it.
- ``vae-perturbed``: Ren et al.'s recipe: the VAE's own config trained from scratch on training images
  in which a fraction ``noise`` of the pixels is replaced by uniform random levels, so that it learns the
  population's background statistics but is blurred on semantics. As expensive as the model itself,
  to train and to score (K importance samples).

Both train on the model's training images as ``score`` presents them (grey levels, or thresholded for a
statically binarised model), with Adam, for ``epochs`` or ``max_minutes``. They are saved beside the model
in ``ood-background/`` (``config.json`` and ``model.safetensors``: JSON and tensors, nothing executed),
and the density of states fitted with it (``states.py``) in ``states.safetensors``.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from vaelab.data import ImageDataset, batches, to_float
from vaelab.errors import ModelLoadError
from vaelab.evaluation.likelihood import iw_log_likelihood_batch
from vaelab.evaluation.ood.states import StatesDensity
from vaelab.io.atomic import atomic_write
from vaelab.models.config import ModelConfig
from vaelab.models.registry import LIKELIHOODS
from vaelab.models.vae import VAE, resolve_model_dir

BACKGROUND_DIR = "ood-background"
STATES_FILE = "states.safetensors"
CHUNK = 64  # images per pass of the local model when scoring
Kind = Literal["pixelcnn", "vae-perturbed"]


@dataclass(frozen=True)
class BackgroundSpec:
    """What to train: the kind, the local model's size, the perturbation rate and the budget."""

    kind: Kind = "pixelcnn"
    kernel: int = 3
    hidden: int = 16
    depth: int = 1
    noise: float = 0.1  # fraction of pixels replaced by uniform random levels in training
    epochs: int = 2
    max_minutes: float = 0.0  # 0: no time limit
    batch_size: int = 128
    lr: float = 2e-3
    seed: int = 0


def background_likelihood(model_config: ModelConfig) -> dict[str, Any]:
    """The likelihood the background uses: Bernoulli for a Bernoulli VAE (the same cross-entropy on grey
    levels), else a discretised logistic mixture with a scale per pixel (PixelCNN++'s), a normalised
    distribution over the 256 levels whatever the VAE's density is. A shared or fixed scale (a Gaussian
    VAE's) would not do: it cannot be sure of the flat regions that make simple images likely, so the
    ratio would reward them again."""
    spec = model_config.likelihood
    if spec.name == "bernoulli" or getattr(spec, "pixel", None) == "bernoulli":  # pixelcnn's Bernoulli too
        return {"name": "bernoulli"}
    channels = (model_config.image_shape or (1,))[0]
    return {"name": "logistic_mixture", "components": 3, "coupled": channels == 3}


def causal_taps(x: torch.Tensor, kernel: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, H, W, C x T): at each pixel, the values of the T pixels before it in raster
    order within a ``kernel`` x ``kernel`` window (PixelCNN's mask A: the kernel // 2 rows above, and the
    kernel // 2 pixels to its left), zero beyond the image. A masked convolution is a matmul over these,
    done here without the convolution's multiplications by the mask's zeros (4 taps of 9 at kernel 3)."""
    r = kernel // 2
    h, w = x.shape[-2:]
    padded = F.pad(x, (r, r, r, 0))
    taps = [
        padded[:, :, r + dy : r + dy + h, r + dx : r + dx + w]
        for dy in range(-r, 1)
        for dx in range(-r, r + 1)
        if dy < 0 or dx < 0
    ]
    return torch.stack(taps, -1).permute(0, 2, 3, 1, 4).flatten(3)


class LocalPixelCNN(nn.Module):
    """p(x) = prod over pixels of L(x_ij | f(x in the causal window of x_ij)), L the VAE's likelihood and
    f a small per-pixel network (matmuls over channels-last rows) of the window's values."""

    def __init__(self, image_shape: tuple[int, int, int], likelihood: dict[str, Any], spec: BackgroundSpec):
        super().__init__()
        channels = image_shape[0]
        config = ModelConfig.model_validate({"image_shape": image_shape, "likelihood": likelihood})
        self.likelihood = LIKELIHOODS[config.likelihood.name](config.likelihood, channels)
        self.kernel = spec.kernel
        taps = (spec.kernel // 2) * (spec.kernel + 1)
        self.net = nn.Sequential(
            nn.Linear(channels * taps, spec.hidden),
            nn.ReLU(),
            *[layer for _ in range(spec.depth) for layer in (nn.Linear(spec.hidden, spec.hidden), nn.ReLU())],
            nn.Linear(spec.hidden, self.likelihood.param_channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) per image (B,), nats, for images in [0, 1] (B, C, H, W)."""
        params = self.net(causal_taps(2 * x - 1, self.kernel)).permute(0, 3, 1, 2)
        return self.likelihood(params.float()).log_prob(x)


@dataclass
class Background:
    """A trained background model and what it was trained with (``info``, saved as JSON)."""

    net: nn.Module  # LocalPixelCNN or VAE
    spec: BackgroundSpec
    info: dict[str, Any]
    states: StatesDensity | None = None  # the density of states (None: saved by an older vaelab)

    @property
    def uses_codec(self) -> bool:
        """Whether the likelihood ratio mixes this local model with the lossless codec: a ``pixelcnn``
        background over 8-bit levels (a Bernoulli one's cross-entropy is over another space)."""
        return self.spec.kind == "pixelcnn" and self.info["likelihood"]["name"] != "bernoulli"

    @property
    def cost(self) -> str:
        if self.spec.kind == "pixelcnn":
            return "one pass of a small local PixelCNN per image (exact likelihood)"
        return "K importance samples of a second VAE as large as the model"

    @torch.inference_mode()
    def log_prob(self, x: torch.Tensor, iw_samples: int) -> torch.Tensor:
        """log p_background(x) per image (B,), float64 nats (a VAE background: IW with ``iw_samples``;
        draw from torch's global generator, which the caller seeds)."""
        if isinstance(self.net, VAE):
            return iw_log_likelihood_batch(self.net, x, iw_samples)[iw_samples].double()
        # In chunks: its activations are 16 numbers per pixel, and a chunk's stay in the CPU's cache
        # (4x faster than one 500-image pass at 28x28).
        return torch.cat([self.net(x[i : i + CHUNK]) for i in range(0, len(x), CHUNK)]).double()


def perturb(x: torch.Tensor, rate: float, generator: torch.Generator) -> torch.Tensor:
    """``x`` with a fraction ``rate`` of its pixels (all channels of one) replaced by uniform levels."""
    if rate <= 0:
        return x
    b, c, h, w = x.shape
    hit = torch.rand((b, 1, h, w), generator=generator) < rate
    levels = torch.randint(0, 256, (b, c, h, w), generator=generator).float() / 255
    return torch.where(hit, levels, x)


def fit_background(
    model: VAE, train: ImageDataset, binarize: str, spec: BackgroundSpec, log: Any = None
) -> Background:
    """Train a background of ``spec`` on ``train`` (uint8) presented with ``binarize``; ``log(line)``
    gets one line per epoch. Its density of states is fitted next, by ``Scorer.fit_states``."""
    torch.manual_seed(spec.seed)
    if spec.kind == "pixelcnn":
        net: nn.Module = LocalPixelCNN(model.image_shape, background_likelihood(model.config), spec)
    else:
        net = VAE(model.config)

    def loss_of(x: torch.Tensor) -> torch.Tensor:
        if isinstance(net, VAE):
            out = net(x)
            return -(out.log_px_z - out.kl).mean()
        return -net(x).mean()

    net.train()
    optimizer = torch.optim.Adam(net.parameters(), lr=spec.lr)
    generator = torch.Generator().manual_seed(spec.seed)
    start, epochs_done, last = time.perf_counter(), 0, math.nan
    deadline = start + 60 * spec.max_minutes if spec.max_minutes > 0 else math.inf
    for epoch in range(spec.epochs):
        total, n = 0.0, 0
        for images, _ in batches(train, spec.batch_size, shuffle=True, generator=generator, drop_last=True):
            x = perturb(to_float(images, binarize), spec.noise, generator)
            loss = loss_of(x)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(net.parameters(), 1000.0)
            optimizer.step()
            total, n = total + float(loss.detach()) * len(x), n + len(x)
            if time.perf_counter() > deadline:
                break
        epochs_done, last = epoch + 1, total / max(n, 1)
        if log is not None:
            log(f"background {spec.kind} epoch {epoch + 1}/{spec.epochs}: train NLL {last:.2f} nats")
        if time.perf_counter() > deadline:
            break
    net.eval()
    info = {
        "kind": spec.kind,
        "image_shape": list(model.image_shape),
        "likelihood": background_likelihood(model.config),
        "trained_on": train.name,
        "train_images": len(train),
        "binarize": binarize,
        "epochs": epochs_done,
        "seconds": round(time.perf_counter() - start, 1),
        "final_train_nll": last,
        "spec": asdict(spec),
    }
    return Background(net, spec, info)


def background_dir(model_path: str | Path) -> Path:
    return resolve_model_dir(model_path) / BACKGROUND_DIR


def save_background(background: Background, model_path: str | Path) -> Path:
    """Write ``ood-background/`` beside the model; returns the folder."""
    folder = background_dir(model_path)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in background.net.state_dict().items()}
    if isinstance(background.net, VAE):
        background.info["model"] = background.net.config.model_dump(mode="json")
    with atomic_write(folder / "model.safetensors") as tmp:
        save_file(state, str(tmp))
    if background.states is not None:
        with atomic_write(folder / STATES_FILE) as tmp:
            save_file(background.states.tensors(), str(tmp))
    with atomic_write(folder / "config.json") as tmp:
        tmp.write_text(json.dumps(background.info, indent=2) + "\n")
    return folder


def load_background(model_path: str | Path, device: torch.device | str = "cpu") -> Background | None:
    """The background saved beside the model, or None if there is none; ModelLoadError if unreadable."""
    folder = background_dir(model_path)
    if not (folder / "config.json").is_file():
        return None
    try:
        info = json.loads((folder / "config.json").read_text())
        spec = BackgroundSpec(**info["spec"])
        shape = tuple(info["image_shape"])
        if spec.kind == "pixelcnn":
            net: nn.Module = LocalPixelCNN(shape, info["likelihood"], spec)  # type: ignore[arg-type]
        else:
            net = VAE(ModelConfig.model_validate(info["model"]))
        net.load_state_dict(load_file(str(folder / "model.safetensors")))
        states = None
        if "states" in info:
            states = StatesDensity.from_tensors(load_file(str(folder / STATES_FILE)), info["states"])
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, SafetensorError) as exc:
        raise ModelLoadError(
            f"the background model in {folder} could not be loaded ({type(exc).__name__}: {exc}); delete the "
            "folder and fit it again (vaelab score MODEL --fit-background)"
        ) from None
    return Background(net.to(device).eval(), spec, info, states)
