"""Adversarial training in the loop: the discriminator's state is checkpointed and a run stopped in the
middle of GAN training resumes to the same losses and weights; its per-step scalars are logged."""

import json

import pytest
import torch
from tests.helpers import mlp_vae

from vaelab.config import load_config
from vaelab.errors import ConfigError
from vaelab.objectives import AdversarialConfig, build_objective
from vaelab.training import train
from vaelab.training.checkpoint import Checkpoint
from vaelab.training.config import TrainConfig
from vaelab.training.signals import TrainingInterrupted
from vaelab.training.step import build_step

GAN = ["objective.name=adversarial", "objective.disc_start=3", "objective.disc_channels=8",
       "objective.pixel_weight=1.0", "model.likelihood.name=gaussian", "model.likelihood.variance=shared",
       "model.encoder.hidden_dims=[32]", "model.decoder.hidden_dims=[32]", "model.latent_dim=4",
       "train.batch_size=16", "train.device=cpu", "train.grid_samples=4",
       "train.grid_reconstructions=4"]  # fmt: skip


def config(npz, *extra):
    return load_config(overrides=["data.name=npz", f"data.path={npz}", "train.epochs=2", *GAN, *extra])


def steps(run_dir):
    return [json.loads(line) for line in (run_dir / "steps.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("extra", [(), ("objective.sample_weight=0.5",)], ids=["vqgan", "prior-samples-too"])
def test_a_run_stopped_mid_gan_training_resumes_to_the_same_losses(
    blobs_npz, tmp_path, stop_at_step, monkeypatch, extra
):
    full = train(config(blobs_npz, *extra), tmp_path / "full", progress=False, log=False)
    stop_at_step(9)  # of 12 per epoch: the discriminator has trained 6 steps
    with pytest.raises(TrainingInterrupted):
        train(config(blobs_npz, *extra), tmp_path / "cut", progress=False, log=False)
    monkeypatch.undo()
    saved = Checkpoint.load(tmp_path / "cut" / "checkpoint.pt")
    assert int(saved.objective["module"]["step"]) == 9
    assert saved.objective["optimizer"]["state"], "the discriminator's Adam moments are in the checkpoint"
    resumed = train(config(blobs_npz, *extra), tmp_path / "cut", resume=True, progress=False, log=False)
    a, b = (Checkpoint.load(r.run_dir / "checkpoint.pt") for r in (full, resumed))
    assert all(torch.equal(a.model[k], b.model[k]) for k in a.model)
    da, db = a.objective["module"], b.objective["module"]
    assert da.keys() == db.keys() and all(torch.equal(da[k], db[k]) for k in da)
    assert steps(full.run_dir) == steps(resumed.run_dir)  # every step's D and G losses, logits, weight
    rows = steps(full.run_dir)
    assert [r["step"] for r in rows] == list(range(1, a.step + 1))  # one row per step, none twice
    assert "d_loss" not in rows[2]  # before disc_start
    assert {"d_loss", "g_loss", "adaptive_weight", "logits_real", "logits_fake"} <= rows[3].keys()
    assert ("logits_sample_g" in rows[3]) == bool(extra)  # the decoded prior draws, judged too
    for x, y in zip(full.history, resumed.history, strict=True):
        assert x["train_loss"] == y["train_loss"] and x["val_elbo"] == y["val_elbo"]
        assert x["disc_loss"] == y["disc_loss"] and x["disc_paused"] == y["disc_paused"] == 0


def test_the_perceptual_term_falls_back_to_a_self_trained_net_and_says_so(blobs_npz, tmp_path, capsys):
    cfg = config(blobs_npz, "objective.perceptual_weight=0.1", "train.epochs=1", "train.max_steps=4")
    result = train(cfg, tmp_path / "run", progress=False, log=True)
    assert "no objective.perceptual_weights file given" in capsys.readouterr().err
    assert all(torch.isfinite(p).all() for p in result.model.parameters())


def test_compiling_an_adversarial_objective_is_refused_with_a_clear_error(blobs_npz, tmp_path):
    with pytest.raises(ConfigError, match="cannot be compiled"):
        train(config(blobs_npz, "train.compile=true"), tmp_path / "run", progress=False, log=False)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_the_discriminator_update_runs_at_the_step_precision_with_its_loss_in_fp32(precision):
    torch.manual_seed(0)
    model = mlp_vae(8, 4, 16, likelihood={"name": "gaussian", "variance": "shared"}, image_shape=(3, 8, 8))
    objective = build_objective(AdversarialConfig(disc_channels=8, r1_gamma=1.0), model=model)
    optimizer = torch.optim.Adam(model.parameters())
    step = build_step(model, objective, optimizer, TrainConfig(precision=precision), torch.device("cpu"))
    seen = []
    objective.discriminator.net[0].register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    kernel = objective.discriminator.net[0].weight.detach().clone()
    terms, applied = step(torch.rand(4, 3, 8, 8))
    # The generator's pass judges the reconstructions, then the discriminator's update judges the
    # real and the reconstructed images (then R1 re-judges the real ones in fp32).
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    assert applied and seen == [dtype, dtype, dtype, torch.float32]
    assert terms.stats["d_loss"].dtype == torch.float32 and torch.isfinite(terms.stats["d_loss"])
    assert terms.stats["r1"].dtype == torch.float32
    assert not torch.equal(objective.discriminator.net[0].weight, kernel)
