"""Evaluation of a trained MNIST VAE the way the literature reports it, plus reference points.

1. Throughput of the importance-weighted estimator: K samples on a few test images, repeated, median.
2. The full evaluation (``evaluate_model``, the same code as ``vaelab evaluate``): test NLL at K on
   the test set binarised once with the recorded seed, ELBO, active units, reconstruction, and
   FD / precision / recall of N samples in the feature-net space; report.json / report.md are
   written into the run directory.
3. Reference points in the same feature space against the test set: 10,000 training images (the
   floor: real data vs real data) and the test images blurred with a Gaussian (sigma 1 pixel).

Prints one JSON object (also written to --json when given). Heavy: run it alone, e.g.

    flock /tmp/vaelab-heavy.lock python benchmarks/evaluate_mnist.py --run runs/seed-mnist
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

# Published test NLLs on MNIST with dynamic binarisation, K = 5000 (Burda et al. 2015, table 1).
REFERENCES = {
    "VAE, 1 stochastic layer (Burda et al. 2015)": 86.76,
    "VAE, 2 stochastic layers (Burda et al. 2015)": 85.33,
    "IWAE, 2 stochastic layers, k=50 (Burda et al. 2015)": 82.90,
}


def gaussian_blur(images_uint8: torch.Tensor, sigma: float = 1.0) -> torch.Tensor:
    """Blur (N, C, H, W) uint8 images with a separable Gaussian (radius 3 sigma, zero padding)."""
    radius = max(1, round(3 * sigma))
    coords = torch.arange(-radius, radius + 1, dtype=torch.float32)
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    c = images_uint8.shape[1]
    x = images_uint8.float()
    x = F.conv2d(x, g.view(1, 1, -1, 1).expand(c, 1, -1, 1), padding=(radius, 0), groups=c)
    x = F.conv2d(x, g.view(1, 1, 1, -1).expand(c, 1, 1, -1), padding=(0, radius), groups=c)
    return x.round().clamp(0, 255).to(torch.uint8)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", default="runs/seed-mnist", help="run directory of a trained MNIST model")
    parser.add_argument("--iw-samples", type=int, default=5000)
    parser.add_argument("--subset", type=int, default=None, help="test images for the headline (default all)")
    parser.add_argument("--n-samples", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timing-images", type=int, default=100)
    parser.add_argument("--timing-repeats", type=int, default=3)
    parser.add_argument("--skip-full", action="store_true", help="only the throughput and reference points")
    parser.add_argument("--json", help="also write the JSON here")
    args = parser.parse_args()

    from vaelab.cli.common import saved_data_config
    from vaelab.data import DataConfig, load_dataset
    from vaelab.evaluation.features import load_feature_space
    from vaelab.evaluation.likelihood import evaluate_log_likelihood
    from vaelab.evaluation.report import (
        EvaluationOptions,
        evaluate_model,
        fixed_inputs,
        in_memory,
        seeded_subset,
        write_report,
    )
    from vaelab.evaluation.sample_quality import compare_features
    from vaelab.models import VAE
    from vaelab.runtime import derive_seed, environment

    model = VAE.from_pretrained(args.run)
    data_cfg = DataConfig.model_validate(saved_data_config(args.run))
    test = in_memory(load_dataset(data_cfg, "test", progress=False))
    train = in_memory(load_dataset(data_cfg, "train", progress=False))
    out: dict = {
        "environment": environment(),
        "command": [sys.executable, *sys.argv],
        "run": args.run,
        "dataset": test.name,
        "binarize": data_cfg.binarize,
        "references_nll_nats": REFERENCES,
    }

    # 1. Throughput of the IW estimator at K on a few binarised test images.
    inputs = fixed_inputs(test, data_cfg.binarize, derive_seed(args.seed, "binarize"))
    few = seeded_subset(inputs, args.timing_images, 0)
    seconds = []
    for r in range(args.timing_repeats):
        ll = evaluate_log_likelihood(model, few, iw_samples=args.iw_samples, seed=r)
        seconds.append(ll.seconds)
    med = statistics.median(seconds)
    passes_per_s = args.iw_samples * len(few) / med
    out["iw_throughput"] = {
        "iw_samples": args.iw_samples,
        "images": len(few),
        "repeats_seconds": seconds,
        "median_seconds": med,
        "decoder_passes_per_second": passes_per_s,
        "projected_full_test_seconds": args.iw_samples * len(test) / passes_per_s,
    }
    print(json.dumps(out["iw_throughput"]), file=sys.stderr)

    # 2. The full evaluation, exactly as `vaelab evaluate RUN --iw-samples K --n-samples N` runs it.
    if not args.skip_full:
        options = EvaluationOptions(
            iw_samples=args.iw_samples,
            n_samples=args.n_samples,
            subset=args.subset,
            seed=args.seed,
            progress=True,
        )
        t0 = time.perf_counter()
        report = evaluate_model(
            model,
            test,
            binarize=data_cfg.binarize,
            train_set=train,
            feature_test_set=test,
            options=options,
        )
        report["model"] = args.run
        write_report(report, args.run)
        out["evaluation_wall_seconds"] = time.perf_counter() - t0
        keep = ("data", "elbo", "log_likelihood", "posterior", "reconstruction", "sample_quality")
        out["report"] = {k: report[k] for k in keep}
        out["report"]["posterior"] = {
            k: v for k, v in report["posterior"].items() if k not in ("kl_per_dim", "mean_variance_per_dim")
        }
        out["report"]["timings_s"] = report["timings_s"]

    # 3. Reference points in the same feature space, against the whole test set.
    space = load_feature_space(train, test)
    real = space.embed(test.images)
    pick = torch.randperm(len(train), generator=torch.Generator().manual_seed(args.seed))[: args.n_samples]
    out["feature_space"] = space.describe()
    out["reference_points"] = {
        "training images (floor)": compare_features(real, space.embed(train.images[pick]), seed=args.seed),
        "blurred test images (sigma 1 px)": compare_features(
            real, space.embed(gaussian_blur(test.images, 1.0)), seed=args.seed
        ),
    }
    text = json.dumps(out, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
