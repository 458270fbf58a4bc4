"""The GPU path: the hierarchical MNIST config trains on CUDA in each speed variant, agrees with the CPU,
and what it saves loads on a CPU. Skipped, with its reason, where torch sees no CUDA GPU."""

import copy
from pathlib import Path

import pytest
import torch

from vaelab.config import load_config
from vaelab.models import VAE
from vaelab.objectives import build_objective
from vaelab.training import train
from vaelab.training.step import build_step
from vaelab.training.trainer import build_optimizer

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="the GPU path needs a CUDA GPU; torch sees none on this machine"
)
HOUR = str(Path(__file__).resolve().parents[2] / "configs" / "mnist-hour.yaml")
VARIANTS = {
    "fp32": ["train.precision=fp32"],
    "bf16": ["train.precision=bf16"],
    "bf16+channels_last": ["train.precision=bf16", "train.channels_last=true"],
    "bf16+compile": ["train.precision=bf16", "train.compile=true"],
    "bf16+cudagraphs": ["train.precision=bf16", "train.compile=true", "train.compile_mode=reduce-overhead"],
}


def _config(*overrides: str):
    # fp32 unless a variant says otherwise: the config's precision is auto, which is bf16 on a GPU
    sets = ["model.image_shape=[1,28,28]", "train.batch_size=64", "train.precision=fp32"]
    return load_config(HOUR, [*sets, *overrides])


def _losses(config, model: VAE, x: torch.Tensor, device: str, steps: int) -> list[float]:
    """Per-step losses of ``steps`` training steps of a copy of ``model`` on the fixed batch ``x``."""
    model = copy.deepcopy(model).to(device)
    if config.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    objective = build_objective(config.objective)
    step = build_step(model, objective, build_optimizer(model, config), config.train, torch.device(device))
    return [step(x.to(device))[0].loss.item() for _ in range(steps)]


def test_the_posterior_mean_reconstruction_matches_the_cpu():
    config = _config()
    torch.manual_seed(0)
    model = VAE(config.model).eval()
    x = torch.bernoulli(torch.full((32, 1, 28, 28), 0.13), generator=torch.Generator().manual_seed(2))
    expected = model.reconstruct(x)
    got = copy.deepcopy(model).to("cuda").reconstruct(x.to("cuda")).cpu()
    # cuDNN convolutions run in TF32 by default: about 1e-3 relative, far below a pixel level
    torch.testing.assert_close(got, expected, atol=3e-3, rtol=0)


def test_a_model_trained_on_the_gpu_loads_and_decodes_on_a_cpu(tmp_path):
    sets = ["data.name=digits", "train.epochs=1", "train.max_steps=5", "train.eval_every=0"]
    sets.append("train.device=cuda")
    result = train(load_config(HOUR, sets), tmp_path / "run", progress=False, log=False)
    model = VAE.from_pretrained(tmp_path / "run", device="cpu")
    assert model.device.type == "cpu"
    samples = model.sample(4)
    assert samples.shape == (4, 1, 28, 28) and torch.isfinite(samples).all()
    assert result.history[-1]["step"] == 5 and result.model.device.type == "cuda"


@pytest.mark.parametrize("variant", VARIANTS)
def test_a_cuda_training_step_follows_the_cpu_and_learns(variant):
    config = _config(*VARIANTS[variant])
    torch.manual_seed(0)
    model = VAE(config.model)
    x = torch.bernoulli(torch.full((64, 1, 28, 28), 0.13), generator=torch.Generator().manual_seed(1))
    cpu = _losses(_config(), model, x, "cpu", 12)
    gpu = _losses(config, model, x, "cuda", 12)
    # Same weights, same batch: the first loss differs only by the reparameterisation draw (and bf16
    # rounding); after the updates the GPU's loss has fallen as the CPU's has.
    assert gpu[0] == pytest.approx(cpu[0], rel=0.02)
    assert gpu[-1] == pytest.approx(cpu[-1], rel=0.05)
    assert gpu[-1] < 0.9 * gpu[0]
