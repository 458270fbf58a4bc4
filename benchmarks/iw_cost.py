"""What the importance-weighted estimate's speed switches cost in accuracy and buy in speed, on a model.

iw_precision: fp32 against bf16 on the same evaluation images with the same draws (the bound the
evaluation docs state for bf16). iw_shared_features: a ladder model's posteriors reading each image's
encoder features once per chunk (as the model does) against a copy per importance sample (as it did),
compiled, round-robin in one process.
"""

from __future__ import annotations

import copy
import statistics
import time
import types
from pathlib import Path
from typing import Any, Literal

import torch

from benchmarks.harness import benchmark, round_robin
from benchmarks.speed import build_model
from vaelab.config import load_config
from vaelab.data import load_dataset
from vaelab.evaluation import evaluate_log_likelihood, evaluation_inputs, in_memory
from vaelab.models import VAE
from vaelab.models.parts.ladder import LatentLayer
from vaelab.models.saving import resolve_model_dir, run_dir_of
from vaelab.runtime import derive_seed


def evaluation_images(model: str, images: int, seed: int) -> tuple[VAE, Any]:
    """The saved model of the run ``model`` and the test images `vaelab evaluate --subset IMAGES --seed
    SEED` scores for it (binarised as the run trained)."""
    directory = resolve_model_dir(model)
    run = run_dir_of(directory)
    if run is None:
        raise SystemExit(f"{model}: a run directory (with its config.yaml) is needed, to know its data")
    data = load_config(run / "config.yaml").data
    test = in_memory(load_dataset(data, "test", progress=False))
    return VAE.from_pretrained(directory), evaluation_inputs(test, data.binarize, images, seed)


@benchmark
def iw_precision(model: str, images: int = 100, iw_samples: int = 1000, seed: int = 0) -> dict[str, Any]:
    """fp32 and bf16 estimates (both compiled) of the same images with the same draws: their means, the
    paired difference with its standard error, and the per-image differences' mean and largest size."""
    vae, inputs = evaluation_images(model, images, seed)
    out: dict[str, Any] = {"model": str(model), "images": len(inputs), "iw_samples": iw_samples}
    values = {}
    for precision in ("fp32", "bf16"):
        start = time.perf_counter()
        iw_seed = derive_seed(seed, "iw")  # as `vaelab evaluate --seed SEED` draws
        ll = evaluate_log_likelihood(
            vae, inputs, iw_samples=iw_samples, seed=iw_seed, precision=precision, compile=True
        )
        values[precision] = ll.log_px
        out[precision] = {"nll": -ll.mean_and_se()[0], "seconds_with_compiling": time.perf_counter() - start}
    diff = values["fp32"] - values["bf16"]  # bf16's NLL minus fp32's
    out["nll_bf16_minus_fp32"] = float(diff.mean())
    out["nll_bf16_minus_fp32_se"] = float(diff.std() / len(diff) ** 0.5) if len(diff) > 1 else None
    out["per_image_abs_mean"] = float(diff.abs().mean())
    out["per_image_abs_max"] = float(diff.abs().max())
    return out


def _tiled(layer: LatentLayer, h: torch.Tensor, feature: torch.Tensor) -> torch.Tensor:
    """A posterior's parameters as before the features were shared: one copy of them per sample."""
    k = h.shape[0] // feature.shape[0]
    return layer.posterior_net(torch.cat([h, feature.repeat(k, 1, 1, 1)], dim=1))


@benchmark
def iw_shared_features(
    model: str | None = None,
    config: str = "configs/mnist-hour.yaml",
    overrides: tuple[str, ...] = (),
    images: int = 100,
    k: int = 50,
    precision: Literal["fp32", "bf16"] = "bf16",
    rounds: int = 4,
    number: int = 3,
    compile: bool = True,
    seed: int = 0,
) -> dict[str, Any]:
    """Decoder passes/s of one chunk (``k`` samples of ``images`` images) with the features shared and
    tiled, compiled (or not), round-robin; and their mean log weights (the same up to rounding).
    ``model``: a trained run and its evaluation images; without it, ``config``'s untrained model (with
    ``--set`` overrides) on binary noise."""
    if model is not None:
        shared, inputs = evaluation_images(model, images, seed)
        x = inputs.images.float() / 255
    else:
        shared = build_model(load_config(config, list(overrides)))[1].eval()
        gen = torch.Generator().manual_seed(seed)
        x = torch.bernoulli(torch.full((images, *shared.image_shape), 0.13), generator=gen)
    layers = [m for m in shared.modules() if isinstance(m, LatentLayer)]
    if not layers:
        raise SystemExit(f"{model or config}: no ladder layers, so no features to share")
    tiled = copy.deepcopy(shared)
    for layer in (m for m in tiled.modules() if isinstance(m, LatentLayer)):
        layer._posterior_params = types.MethodType(_tiled, layer)  # type: ignore[method-assign]
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")
    means: dict[str, float] = {}

    def chunk(name: str, vae: VAE) -> Any:
        fn = type(vae).log_importance_weights
        if compile:
            fn = torch.compile(fn, dynamic=False, options={"fallback_random": True})

        def call() -> None:
            torch.manual_seed(seed)
            with torch.inference_mode(), autocast:
                means[name] = float(fn(vae, x, k).double().mean())

        return call

    timings = round_robin({"shared": chunk("shared", shared), "tiled": chunk("tiled", tiled)}, rounds, number)
    rates = {name: images * k / statistics.median(t.wall) for name, t in timings.items()}
    return {
        "model": str(model or Path(config)),
        "precision": precision,
        "compiled": compile,
        "chunk": {"images": images, "k": k},
        "passes_per_s": rates,
        "speedup_shared_over_tiled": rates["shared"] / rates["tiled"],
        "mean_log_weight": means,
    }
