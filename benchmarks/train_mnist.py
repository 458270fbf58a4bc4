"""A VAE on MNIST: vaelab's training loop against a conventional per-item DataLoader pipeline.

Both pipelines train the same model (``--config``, default configs/seed.yaml) with the same objective,
optimiser settings, seed and dynamic binarisation. Their epochs are **interleaved in one process**:
``vaelab.training.train`` runs its own loop (what ``vaelab train`` runs, with one ``--variants``
switch set: bf16, compile, channels_last, ...), and after each of its epochs, from the
``on_epoch_end`` hook and outside vaelab's timed loop, the conventional pipeline trains one epoch of
its own model. On a shared machine whose speed drifts by tens of percent within minutes, epoch k of
one pipeline is compared with epoch k of the other, timed seconds apart. Each variant runs in its own
subprocess (so compilation state and peak RSS are per variant). Both models are then scored on the
MNIST test set (test -ELBO, nats, one posterior sample per image, test set binarised once with a fixed
seed). Prints one JSON object; the ratio reported is the median over epochs 2.. (epoch 1 carries
warm-up and, for compile, compilation) of DataLoader epoch seconds / vaelab epoch seconds.

    python benchmarks/train_mnist.py --epochs 5            # needs MNIST under $VAELAB_DATA/mnist
    python benchmarks/train_mnist.py --config configs/conv.yaml --epochs 3 --variants vaelab-channels_last
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _data_only_seconds(train_set, loader, batch_size: int) -> dict[str, float]:
    """One epoch of producing binarised float batches and nothing else, for each pipeline."""
    import torch

    from vaelab.data import batches, to_float

    t0 = time.perf_counter()
    gen = torch.Generator().manual_seed(0)
    for images, _ in batches(train_set, batch_size, shuffle=True, generator=gen):
        to_float(images, "dynamic", generator=gen)
    t1 = time.perf_counter()
    for x, _ in loader:
        torch.bernoulli(x)
    return {"vaelab": t1 - t0, "dataloader": time.perf_counter() - t1}


def run_variant(variant: str, epochs: int, workers: int, threads: int | None, config_file: str) -> dict:
    """vaelab's ``train`` with ``variant``'s switches, one conventional DataLoader epoch after each
    of its epochs (the ``on_epoch_end`` hook), in this process; timings and both test ELBOs."""
    import tempfile

    import numpy as np
    import torch
    from PIL import Image
    from throughput import SWITCHES  # the same switch names as the other benchmarks
    from torch.utils.data import DataLoader, Dataset

    from vaelab.config import load_config
    from vaelab.data import load_dataset
    from vaelab.evaluation import evaluate_elbo
    from vaelab.models import VAE
    from vaelab.objectives import build_objective
    from vaelab.perf import flush_denormals
    from vaelab.runtime import derive_seed, peak_rss_mb, seed_everything
    from vaelab.training.trainer import prepare_data, resolve_model_config, train

    if threads:
        torch.set_num_threads(threads)
    overrides = [f"train.epochs={epochs}", "train.device=cpu"]
    overrides += [o for key, opts in SWITCHES.items() if key in variant.split("-") for o in opts]
    config = load_config(config_file, overrides)
    test = load_dataset(config.data, "test", progress=False)
    train_set, val_set = prepare_data(config, progress=False)

    class TorchvisionStyleMNIST(Dataset):
        """The conventional pipeline, as torchvision.datasets.MNIST with transforms.ToTensor():
        one PIL image per item, converted to a float tensor, and an int target, then collated."""

        def __init__(self, images: torch.Tensor, targets: torch.Tensor) -> None:
            self.data, self.targets = images, targets

        def __len__(self) -> int:
            return len(self.data)

        def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
            img, target = self.data[i], int(self.targets[i])
            pic = Image.fromarray(img.numpy(), mode="L")
            # transforms.functional.to_tensor for an 8-bit PIL image:
            x = torch.from_numpy(np.array(pic, np.uint8, copy=True))
            x = x.view(pic.size[1], pic.size[0], 1).permute((2, 0, 1)).contiguous()
            return x.to(dtype=torch.get_default_dtype()).div(255), target

    # The conventional pipeline's model: same architecture and seed, eager fp32, torch's default
    # Adam, torch.bernoulli for dynamic binarisation -- the loop of the PyTorch examples.
    seed_everything(config.train.seed)
    resolved = resolve_model_config(config, train_set.image_shape)
    conventional = VAE(resolved.model)
    objective = build_objective(resolved.objective)
    opt = torch.optim.Adam(conventional.parameters(), lr=config.train.lr, betas=config.train.betas)
    loader = DataLoader(
        TorchvisionStyleMNIST(train_set.images[:, 0], train_set.labels),
        batch_size=config.train.batch_size,
        shuffle=True,
        num_workers=workers,
        persistent_workers=workers > 0,
        generator=torch.Generator().manual_seed(config.train.seed),
    )
    dataloader_seconds: list[float] = []

    def conventional_epoch(row: dict) -> None:
        epoch = row["epoch"]
        rng = torch.get_rng_state()  # vaelab's own stream stays as it would be without this epoch
        torch.manual_seed(derive_seed(config.train.seed, "epoch", epoch))
        conventional.train()
        # vaelab's loop flushes denormals (train.flush_denormals); a conventional loop runs in
        # torch's default mode, so its epoch runs with denormals kept.
        with flush_denormals(False):
            t0 = time.perf_counter()
            for x, _target in loader:
                x = torch.bernoulli(x)  # dynamic binarisation, as in the vaelab path
                terms = objective(conventional(x))
                opt.zero_grad(set_to_none=True)
                terms.loss.backward()
                opt.step()
            dataloader_seconds.append(time.perf_counter() - t0)
        torch.set_rng_state(rng)

    with tempfile.TemporaryDirectory() as tmp:
        data = (train_set, val_set)
        result = train(config, Path(tmp) / "run", progress=False, data=data, on_epoch_end=conventional_epoch)
    vaelab_seconds = [r["train_seconds"] for r in result.history]
    ratios = [d / v for d, v in zip(dataloader_seconds, vaelab_seconds, strict=True)]
    later = slice(1, None) if epochs > 1 else slice(None)
    seed = derive_seed(config.data.split_seed, "test-binarize")
    scores = {}
    for name, model in (("vaelab", result.model), ("dataloader", conventional.eval())):
        elbo = evaluate_elbo(model, test, batch_size=1000, binarize=config.data.binarize, seed=seed)
        scores[name] = -elbo["elbo"]
    return {
        "variant": variant,
        "train_images": len(train_set),
        "dataloader_workers": workers,
        "vaelab_epoch_seconds": vaelab_seconds,
        "dataloader_epoch_seconds": dataloader_seconds,
        "ratio_per_epoch": ratios,
        "speedup_over_dataloader": statistics.median(ratios[later]),
        "vaelab_median_epoch_seconds": statistics.median(vaelab_seconds[later]),
        "dataloader_median_epoch_seconds": statistics.median(dataloader_seconds[later]),
        "vaelab_images_per_s": len(train_set) / statistics.median(vaelab_seconds[later]),
        "epoch_peak_rss_mb": [r.get("peak_rss_mb") for r in result.history],
        "epoch_peak_fraction": [r.get("peak_fraction") for r in result.history],
        "data_only_epoch_seconds": _data_only_seconds(train_set, loader, config.train.batch_size),
        "test_neg_elbo": scores,
        "test_neg_elbo_vaelab_minus_dataloader": scores["vaelab"] - scores["dataloader"],
        "peak_rss_mb": peak_rss_mb(),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--config", default=str(REPO / "configs" / "seed.yaml"), help="any model config YAML")
    p.add_argument("--workers", type=int, default=0, help="the DataLoader's num_workers")
    p.add_argument(
        "--variants",
        nargs="*",
        default=["vaelab", "vaelab-bf16", "vaelab-compile-bf16"],
        help="vaelab (the config as is), vaelab-bf16, vaelab-compile, vaelab-channels_last, vaelab-noflush",
    )
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--_child", metavar="VARIANT", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args._child:
        print(json.dumps(run_variant(args._child, args.epochs, args.workers, args.threads, args.config)))
        return

    from vaelab.runtime import environment

    results = []
    for variant in args.variants:
        cmd = [sys.executable, __file__, "--epochs", str(args.epochs), "--config", args.config]
        cmd += ["--workers", str(args.workers), "--_child", variant]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        print(f"running {variant} interleaved with the DataLoader pipeline ...", file=sys.stderr, flush=True)
        proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
        if proc.returncode != 0:
            sys.exit(proc.stderr)
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    report = {
        "benchmark": "train_mnist",
        "config": args.config,
        "epochs": args.epochs,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "environment": environment(),
        "results": results,
        "speedup_over_dataloader": {r["variant"]: r["speedup_over_dataloader"] for r in results},
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
