"""The shipped colour config must reconstruct colour images, not collapse onto the mean image.

A regression test for the failure that the old default (a per-pixel learned-variance Gaussian) showed
on colour photos: every reconstruction the same brownish blur. Coloured shapes on coloured
backgrounds, made here, differ from their mean image only in colour and layout, so the mean image
scores about 11 dB and a model that encodes colour and position scores far higher.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from vaelab.config import load_config
from vaelab.data.synthetic import colour_shapes
from vaelab.models import VAE
from vaelab.training import train

REPO = Path(__file__).resolve().parents[2]
# After STEPS optimisation steps of the shipped config (about 40 s on 2 CPU cores), held-out shapes must
# come back at this PSNR or better. Measured: the old default (conv parts, per-pixel learned variance)
# 11.3 dB, no better than the mean image; the shipped config 19.0 dB.
STEPS = 300
MIN_PSNR_DB = 17.0


def psnr_db(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR of the mean squared error over a whole batch, images in [0, 1]."""
    return 10 * math.log10(1.0 / float(((a - b) ** 2).mean()))


def test_folder_rgb_reconstructs_coloured_shapes(tmp_path):
    images = colour_shapes(704, side=16, seed=0)
    data = tmp_path / "shapes.npz"
    np.savez(data, train_images=images[:640], test_images=images[640:])
    config = load_config(
        REPO / "configs" / "folder-rgb.yaml",
        [
            "data.name=npz",
            f"data.path={data}",
            f"train.max_steps={STEPS}",
            "train.epochs=1000",
            "train.log_flops=false",
            "train.grid_samples=4",
            "train.grid_reconstructions=4",
            "train.image_every=1000",
        ],
    )
    result = train(config, tmp_path / "run", progress=False, log=False)
    model = VAE.from_pretrained(result.run_dir)
    test = torch.from_numpy(images[640:]).permute(0, 3, 1, 2).float() / 255
    mean_image = test.mean(0, keepdim=True).expand_as(test)
    assert psnr_db(mean_image, test) < 13.0  # the task is not trivial: the mean image fails it
    assert psnr_db(model.reconstruct(test), test) >= MIN_PSNR_DB


@pytest.mark.parametrize(
    "name",
    [
        "folder-rgb.yaml",
        "folder-rgb-spatial.yaml",
        "photos32.yaml",
        "photos32-pixelcnn.yaml",
        "photos32-pixelcnn-gated.yaml",
    ],
)
@pytest.mark.parametrize("side", [32, 64])
def test_colour_configs_build_at_32_and_64_pixels(name, side):
    """Each shipped colour config runs on 3-channel images of 32x32 and 64x64 unchanged."""
    config = load_config(REPO / "configs" / name)
    model = VAE(config.model.model_copy(update={"image_shape": (3, side, side)}))
    x = torch.rand(2, 3, side, side)
    out = model(x)
    assert out.elbo.shape == (2,) and torch.isfinite(out.elbo).all()
    assert model.reconstruct(x).shape == model.sample(2).shape == (2, 3, side, side)
