"""pythae's side of the photos32_peer benchmark, run with the interpreter of pythae's own virtual environment.

It imports pythae and torch only (never vaelab), so pythae stays out of vaelab's dependencies. It
trains pythae's VAE with the ResNet networks of pythae's CIFAR benchmark the way a pythae user would
(MSE reconstruction, Adam, ``model(DatasetOutput(data=x)).loss``) for a wall-clock budget, then
writes the posterior-mean reconstructions of the test images and samples of z ~ N(0, I), as uint8
(N, 3, 32, 32) arrays, to ``--out``, and prints one JSON line about the training on stdout.
"""

from __future__ import annotations

import argparse
import json
import time
from importlib.metadata import version

import numpy as np
import torch
from pythae.data.datasets import DatasetOutput
from pythae.models import VAE, VAEConfig
from pythae.models.nn.benchmarks.cifar import Decoder_ResNet_AE_CIFAR, Encoder_ResNet_VAE_CIFAR
from pythae.samplers import NormalSampler


def to_unit(images: np.ndarray) -> torch.Tensor:
    """(N, H, W, C) uint8 -> (N, C, H, W) float in [0, 1], pythae's CIFAR preprocessing."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(255)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) floats in [0, 1] rounded to the 8-bit levels an image file would hold."""
    return images.clamp(0, 1).mul(255).round().to(torch.uint8).numpy()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True, help="where to write the .npz of reconstructions and samples")
    p.add_argument("--minutes", type=float, default=10.0, help="wall-clock budget of the training loop")
    p.add_argument("--latent", type=int, default=32)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--samples", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    with np.load(args.data, allow_pickle=False) as data:
        train, test = data["train_images"], data["test_images"]

    torch.manual_seed(args.seed)
    config = VAEConfig(input_dim=(3, 32, 32), latent_dim=args.latent, reconstruction_loss="mse")
    model = VAE(config, encoder=Encoder_ResNet_VAE_CIFAR(config), decoder=Decoder_ResNet_AE_CIFAR(config))
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    rng = np.random.default_rng(args.seed)
    budget, seconds, steps, seen, epochs, losses = args.minutes * 60, 0.0, 0, 0, 0, []
    model.train()
    while seconds < budget:
        order = rng.permutation(len(train))
        for i in range(0, len(order), args.batch):
            t0 = time.perf_counter()
            x = to_unit(train[order[i : i + args.batch]])
            loss = model(DatasetOutput(data=x)).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            seconds += time.perf_counter() - t0
            steps, seen = steps + 1, seen + len(x)
            losses.append(loss.item())
            if seconds >= budget:
                break
        else:
            epochs += 1

    model.eval()
    with torch.no_grad():
        x = to_unit(test)
        recon = torch.cat(
            [model.decoder(model.encoder(b).embedding)["reconstruction"] for b in x.split(500)]
        )  # the decoded posterior mean; pythae's own reconstruct() decodes a sampled z
        torch.manual_seed(args.seed)
        samples = NormalSampler(model=model).sample(num_samples=args.samples, batch_size=500)
    np.savez(args.out, reconstructions=to_uint8(recon), samples=to_uint8(samples))
    tail = losses[-min(len(losses), 50) :]
    summary = {
        "pythae": version("pythae"),
        "torch": torch.__version__,
        "networks": "Encoder_ResNet_VAE_CIFAR / Decoder_ResNet_AE_CIFAR",
        "parameters": sum(p.numel() for p in model.parameters()),
        "train_images": len(train),
        "train_seconds": seconds,
        "steps": steps,
        "images_seen": seen,
        "epochs_completed": epochs,
        "epochs": seen / len(train),
        "final_train_loss": sum(tail) / max(1, len(tail)),
        "loss_note": "pythae's VAE loss per image: 0.5 x summed squared error over [0, 1] pixels + KL",
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
