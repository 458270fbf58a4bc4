"""pythae's side of the peer benchmarks, written as a pythae user writes it: it imports pythae and torch,
never vaelab. peer_pythae imports it; photos32_peer runs its ``photos32`` in pythae's own environment."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from importlib.metadata import version

import numpy as np
import torch
import torch.nn.functional as F
from pythae.data.datasets import DatasetOutput
from pythae.models import VAE, VAEConfig
from pythae.models.nn.benchmarks import cifar, mnist
from pythae.samplers import NormalSampler


def pythae_vae(shape: tuple[int, int, int], latent: int, loss: str) -> VAE:
    """pythae's VAE with the ResNet networks of its MNIST (one channel) or CIFAR benchmark."""
    config = VAEConfig(input_dim=shape, latent_dim=latent, reconstruction_loss=loss)
    if shape[0] == 1:
        return VAE(config, mnist.Encoder_ResNet_VAE_MNIST(config), mnist.Decoder_ResNet_AE_MNIST(config))
    return VAE(config, cifar.Encoder_ResNet_VAE_CIFAR(config), cifar.Decoder_ResNet_AE_CIFAR(config))


def about(model: VAE, networks: str, train_images: int) -> dict:
    """What a report says of pythae's side: versions, networks, parameters, training images."""
    parameters = sum(p.numel() for p in model.parameters())
    return {"pythae": version("pythae"), "torch": torch.__version__, "networks": networks,
            "parameters": parameters, "train_images": train_images}  # fmt: skip


def trainer(model: VAE, lr: float = 1e-3) -> Callable[[torch.Tensor], torch.Tensor]:
    """One training step on a batch ``x``: pythae's loss of ``model(DatasetOutput(data=x))``, then Adam."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)

    def step(x: torch.Tensor) -> torch.Tensor:
        loss = model(DatasetOutput(data=x)).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss

    return step


def to_unit(images: np.ndarray) -> torch.Tensor:
    """(N, H, W, C) uint8 -> (N, C, H, W) float in [0, 1], pythae's CIFAR preprocessing."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(255)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) floats in [0, 1] rounded to the 8-bit levels an image file would hold."""
    return images.clamp(0, 1).mul(255).round().to(torch.uint8).numpy()


def photos32(data: str, out: str, minutes: float, latent: int, samples: int, seed: int) -> dict:
    """Train on photos32's training images for ``minutes`` of training-loop time (MSE, batch 64), write
    the test images' reconstructions and prior samples as uint8 (N, 3, 32, 32) arrays to ``out``."""
    with np.load(data, allow_pickle=False) as arrays:
        train, test = arrays["train_images"], arrays["test_images"]
    torch.manual_seed(seed)
    model = pythae_vae((3, 32, 32), latent, "mse")
    step, rng, order, seconds, seen, losses = trainer(model), np.random.default_rng(seed), [], 0.0, 0, []
    while seconds < minutes * 60:
        if len(order) == 0:  # a new epoch: a new order of the training images, then batches of 64
            order = rng.permutation(len(train))
        start = time.perf_counter()
        x = to_unit(train[order[:64]])
        loss = step(x)
        seconds += time.perf_counter() - start
        order, seen = order[64:], seen + len(x)
        losses.append(loss.item())
    model.eval()
    with torch.no_grad():
        # the decoded posterior mean; pythae's own reconstruct() decodes a sampled z
        parts = to_unit(test).split(500)
        recon = [model.decoder(model.encoder(x).embedding)["reconstruction"] for x in parts]
        torch.manual_seed(seed)
        drawn = NormalSampler(model=model).sample(num_samples=samples, batch_size=500)
    np.savez(out, reconstructions=to_uint8(torch.cat(recon)), samples=to_uint8(drawn))
    return {
        **about(model, "Encoder_ResNet_VAE_CIFAR / Decoder_ResNet_AE_CIFAR", len(train)),
        "train_seconds": seconds,
        "steps": len(losses),
        "images_seen": seen,
        "epochs_completed": seen // len(train),
        "epochs": seen / len(train),
        "final_train_loss": sum(losses[-50:]) / max(1, len(losses[-50:])),
        "loss_note": "pythae's VAE loss per image: 0.5 x summed squared error over [0, 1] pixels + KL",
    }


def iw_log_likelihood(
    model: VAE, x: torch.Tensor, k: int, generator: torch.Generator
) -> tuple[torch.Tensor, ...]:
    """Per image (log p(x) by importance weighting with ``k`` posterior draws, the ELBO of those draws):
    the estimate of pythae's own ``VAE.get_nll`` (Bernoulli decoder, N(0, I) prior, q = N(mu, sigma)),
    batched over images."""
    enc = model.encoder(x)
    mu, std = enc.embedding, torch.exp(0.5 * enc.log_covariance)
    z = mu + std * torch.randn((k, *mu.shape), generator=generator)  # (k, n, d)
    probs = model.decoder(z.reshape(-1, mu.shape[-1]))["reconstruction"].reshape(k, len(x), -1)
    target = x.reshape(1, len(x), -1).expand_as(probs)
    log_px = -F.binary_cross_entropy(probs, target, reduction="none").sum(-1)
    normal = torch.distributions.Normal
    log_w = log_px + normal(0.0, 1.0).log_prob(z).sum(-1) - normal(mu, std).log_prob(z).sum(-1)
    return torch.logsumexp(log_w, 0) - math.log(k), log_w.mean(0)


def test_nll(model: VAE, test: torch.Tensor, k: int, seed: int) -> dict:
    """-log p(x) (mean and standard error over the images) and -ELBO of the binary ``test`` images."""
    model.eval()
    generator, parts = torch.Generator().manual_seed(seed), []
    with torch.no_grad():
        for x in test.split(max(1, 4096 // k)):
            parts.append(torch.stack(iw_log_likelihood(model, x, k, generator)))
    ll, elbo = torch.cat(parts, 1).double()
    model.train()
    return {
        "nll": -ll.mean().item(),
        "nll_se": ll.std().item() / math.sqrt(len(ll)),
        "neg_elbo": -elbo.mean().item(),
    }


def mnist_curve(
    data: str,
    marks: list[float],
    latent: int,
    batch_size: int,
    lr: float,
    iw_samples: int,
    threads: int,
    seed: int,
) -> dict:
    """Train pythae's VAE with its ResNet MNIST networks (Bernoulli decoder) on dynamically binarised
    batches of the ``train`` images in ``data`` (.npz, uint8 0-255); at each of ``marks`` (training
    minutes; the clock stops meanwhile) score the binary ``test`` images; stop at the last mark."""
    torch.set_num_threads(threads)
    with np.load(data, allow_pickle=False) as arrays:
        train = torch.from_numpy(arrays["train"]).float().div(255).unsqueeze(1)
        test = torch.from_numpy(arrays["test"]).float().unsqueeze(1)
    torch.manual_seed(seed)
    model = pythae_vae((1, 28, 28), latent, "bce")
    step, gen = trainer(model, lr), torch.Generator().manual_seed(seed)
    pending, order, seconds, seen, rows = sorted(marks), torch.empty(0, dtype=torch.long), 0.0, 0, []
    while pending:
        if seconds >= pending[0] * 60:
            row = {"train_minutes": seconds / 60, "epochs": seen / len(train), "steps": seen // batch_size}
            rows.append(row | test_nll(model, test, iw_samples, seed))
            pending.pop(0)
            continue
        if len(order) == 0:  # a new epoch: a new order of the training images
            order = torch.randperm(len(train), generator=gen)
        start = time.perf_counter()
        x = torch.bernoulli(train[order[:batch_size]], generator=gen)
        step(x)
        seconds += time.perf_counter() - start
        order, seen = order[batch_size:], seen + len(x)
    return {
        **about(model, "Encoder_ResNet_VAE_MNIST / Decoder_ResNet_AE_MNIST, Bernoulli (bce)", len(train)),
        "images_per_s": seen / max(seconds, 1e-9),
        "rows": rows,
    }
