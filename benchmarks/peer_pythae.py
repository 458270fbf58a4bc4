"""vaelab against its peer: pythae's MNIST ResNet VAE benchmark network, same data, same run.

pythae (``pip install 'vaelab[peer]'``, a benchmark-only extra) ships the network of its MNIST
benchmark: ``Encoder_ResNet_VAE_MNIST`` / ``Decoder_ResNet_AE_MNIST``, latent 16, trained at batch
100 (about 0.12 GFLOP per image, forward + backward). This script trains it with pythae's own VAE
loss (BCE reconstruction + KL) and Adam, and vaelab's model of ``--config`` (default: the residual
config when it exists, else configs/conv.yaml) at latent 16 and batch 100 with vaelab's training step,
on the same dynamically binarised MNIST batches, timed round-robin (``--rounds`` x ``--steps`` steps
each) after a warm-up. Prints one JSON object: images/s, FLOPs per image, fraction of the fp32 peak.

    python benchmarks/peer_pythae.py --steps 20 --rounds 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from vaelab.config import load_config
from vaelab.data import batches, load_dataset, to_float
from vaelab.models import VAE
from vaelab.objectives import build_objective
from vaelab.perf import count_flops, matmul_peak
from vaelab.runtime import environment, seed_everything
from vaelab.training.step import build_step
from vaelab.training.trainer import build_optimizer, resolve_model_config

REPO = Path(__file__).resolve().parents[1]


def default_config() -> Path:
    for name in ("residual.yaml", "resnet.yaml", "conv.yaml"):
        if (REPO / "configs" / name).exists():
            return REPO / "configs" / name
    raise FileNotFoundError("no config for vaelab's side")


def pythae_side(batch: int):
    """pythae's benchmark VAE and one training step on a batch in [0, 1]."""
    from pythae.data.datasets import DatasetOutput
    from pythae.models import VAE as PythaeVAE
    from pythae.models import VAEConfig
    from pythae.models.nn.benchmarks.mnist import Decoder_ResNet_AE_MNIST, Encoder_ResNet_VAE_MNIST

    cfg = VAEConfig(input_dim=(1, 28, 28), latent_dim=16, reconstruction_loss="bce")
    model = PythaeVAE(cfg, encoder=Encoder_ResNet_VAE_MNIST(cfg), decoder=Decoder_ResNet_AE_MNIST(cfg))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step(x: torch.Tensor) -> None:
        loss = model(DatasetOutput(data=x)).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def fwd_bwd() -> None:
        model(DatasetOutput(data=torch.zeros(batch, 1, 28, 28))).loss.backward()

    return step, count_flops(fwd_bwd) / batch, sum(p.numel() for p in model.parameters())


def vaelab_side(config_file: Path, batch: int, overrides: list[str]):
    """vaelab's model of ``config_file`` at latent 16 and ``batch``, and its training step."""
    config = load_config(
        config_file, ["train.device=cpu", "model.latent_dim=16", f"train.batch_size={batch}", *overrides]
    )
    config = resolve_model_config(config, (1, 28, 28))
    model = VAE(config.model)
    if config.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    objective = build_objective(config.objective)
    step = build_step(model, objective, build_optimizer(model, config), config.train, torch.device("cpu"))

    def fwd_bwd() -> None:
        objective(model(torch.zeros(batch, 1, 28, 28))).loss.backward()

    return step, count_flops(fwd_bwd) / batch, sum(p.numel() for p in model.parameters())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=None, help="vaelab's side (default: residual, else conv)")
    p.add_argument("--set", dest="overrides", action="append", default=[], help="KEY=VALUE for vaelab's side")
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    seed_everything(0)
    config_file = Path(args.config) if args.config else default_config()
    data_cfg = load_config(config_file).data
    train = load_dataset(data_cfg, "train", progress=False)
    gen = torch.Generator().manual_seed(0)
    need = args.steps * (args.rounds + 1)
    xs = []
    for images, _ in batches(train, args.batch, shuffle=True, generator=gen):
        xs.append(to_float(images, "dynamic", generator=gen))
        if len(xs) == need:
            break
    sides = {
        "pythae_resnet_mnist": pythae_side(args.batch),
        f"vaelab_{config_file.stem}": vaelab_side(config_file, args.batch, args.overrides),
    }
    times: dict[str, list[float]] = {k: [] for k in sides}
    for step, _, _ in sides.values():
        for x in xs[: args.steps]:  # warm-up round
            step(x)
    for r in range(1, args.rounds + 1):
        chunk = xs[r * args.steps : (r + 1) * args.steps]
        for name, (step, _, _) in sides.items():
            t0 = time.perf_counter()
            for x in chunk:
                step(x)
            times[name].append(len(chunk) * args.batch / (time.perf_counter() - t0))
    peak = matmul_peak("fp32")
    results = []
    for name, (_, flops, params) in sides.items():
        ips = statistics.median(times[name])
        results.append(
            {
                "model": name,
                "images_per_s": ips,
                "images_per_s_rounds": times[name],
                "gflop_per_image": flops / 1e9,
                "parameters": params,
                "gflop_per_s": ips * flops / 1e9,
                "peak_fraction": ips * flops / peak,
            }
        )
    report = {
        "benchmark": "peer_pythae",
        "config": str(config_file),
        "overrides": args.overrides,
        "batch": args.batch,
        "fp32_matmul_peak_gflop_per_s": peak / 1e9,
        "results": results,
        "vaelab_over_pythae": results[1]["images_per_s"] / results[0]["images_per_s"],
        "environment": environment(),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
