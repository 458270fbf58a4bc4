"""The adversarial objective: VQGAN's adaptive weight, the discriminator's losses and guards, and the
perceptual net that loads only from safetensors."""

import pickle

import pytest
import torch
from safetensors.torch import save_file
from tests.helpers import mlp_vae
from torch import nn

from vaelab.errors import ConfigError
from vaelab.objectives import AdversarialConfig, build_objective
from vaelab.objectives.discriminator import PatchDiscriminator, discriminator_loss, generator_loss, r1_penalty
from vaelab.objectives.perceptual import VGG16, PerceptualDistance, TappedFeatures, vgg16_features


def adversarial(**options):
    torch.manual_seed(0)
    model = mlp_vae(8, 4, 16, likelihood={"name": "gaussian", "variance": "shared"}, image_shape=(3, 8, 8))
    return model, build_objective(AdversarialConfig(**options), model=model)


def test_adaptive_weight_is_the_ratio_of_gradient_norms_at_the_last_layer():
    _, objective = adversarial()
    w = nn.Parameter(torch.randn(5, 7))
    a, b = torch.randn(5, 7), torch.randn(5, 7)
    objective._last_layer = (w,)
    rec, adv = (w * a).sum(), (w * b).sum()  # gradients a and b: the closed form is |a| / (|b| + 1e-4)
    weight = objective.adaptive_weight(rec, adv, pixels=1)
    assert weight.item() == pytest.approx((a.norm() / (b.norm() + 1e-4)).item(), rel=1e-6)
    assert not weight.requires_grad
    flat = objective.adaptive_weight(rec, (w * 0).sum(), pixels=3)  # no adversarial gradient: the bound
    assert flat.item() == pytest.approx(3e4)


def test_the_generator_loss_adds_the_weighted_adversarial_term_after_disc_start():
    model, objective = adversarial(disc_start=2, disc_weight=0.5)
    x = torch.rand(4, 3, 8, 8)
    before = objective(model(x))
    assert "g_loss" not in before.stats and torch.allclose(before.loss, (-before.log_px_z + before.kl).mean())
    for _ in range(2):
        objective.discriminator_step(x, before.fake)
    after = objective(model(x))
    s = after.stats
    expected = s["rec_loss"] + after.kl.mean() + s["adaptive_weight"] * s["g_loss"]
    assert torch.allclose(after.loss, expected, rtol=1e-5)
    after.loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.decoder.parameters())


def test_the_generator_step_leaves_the_discriminator_weights_alone_but_trains_and_updates_it_after():
    model, objective = adversarial(sample_weight=1.0)
    x = torch.rand(4, 3, 8, 8)
    terms = objective(model(x))
    terms.loss.backward()
    # The generator's backward reaches the decoder through the discriminator's inputs only ...
    assert all(p.grad is not None for p in model.decoder.parameters())
    assert all(p.grad is None for p in objective.discriminator.parameters())
    # ... and the discriminator is trainable again for its own step, which changes its weights.
    assert all(p.requires_grad for p in objective.discriminator.parameters())
    kernels = [p for p in objective.discriminator.parameters() if p.dim() > 1]
    before = [p.detach().clone() for p in kernels]
    objective.discriminator_step(x, terms.fake)
    assert all(not torch.equal(a, b) for a, b in zip(before, kernels, strict=True))


def test_sample_weight_lets_the_discriminator_judge_prior_samples_and_trains_the_decoder_on_them():
    model, objective = adversarial(sample_weight=0.5)
    x = torch.rand(4, 3, 8, 8)
    out = model(x)
    torch.manual_seed(3)
    terms = objective(out)
    assert terms.fake.shape == (8, 3, 8, 8)  # 4 reconstructions, then 4 decoded prior draws
    torch.manual_seed(3)
    samples = model.decode(model.prior.sample(4, 1.0), clip=False)
    assert torch.allclose(terms.fake[4:], samples.detach())
    on_recons = generator_loss(objective.discriminator(terms.fake[:4]), "hinge")
    on_samples = generator_loss(objective.discriminator(samples), "hinge")
    assert torch.allclose(terms.stats["g_loss"], on_recons + 0.5 * on_samples, rtol=1e-5)
    model.zero_grad()
    on_samples.backward()  # the samples' term reaches the decoder, never the encoder
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.decoder.parameters())
    assert all(p.grad is None for p in model.encoder.parameters())


def test_a_decoder_output_far_out_of_range_still_gets_the_discriminators_gradient():
    # Judged through the clip that ``decode`` shows, a prior draw decoded to -5 everywhere would look
    # black and its generator loss would have no gradient: such regions stayed as black blotches.
    model, objective = adversarial(sample_weight=1.0)
    with torch.no_grad():
        model.decoder.last_layer_weight().zero_()
        last_bias = [p for n, p in model.decoder.named_parameters() if n.endswith("bias")][-1]
        last_bias.fill_(-5.0)
    samples = objective.prior_samples(4)
    assert samples.max() < -4.9 and model.decode(model.prior.sample(4, 1.0)).max() == 0
    generator_loss(objective.discriminator(samples), "hinge").backward()
    assert last_bias.grad is not None and last_bias.grad.abs().sum() > 0


def test_hinge_and_non_saturating_losses_match_their_closed_forms():
    real, fake = torch.tensor([2.0, 0.5]), torch.tensor([-3.0, 0.0])
    assert discriminator_loss(real, fake, "hinge").item() == pytest.approx(0.5 * (0.25 + 0.5))
    sp = nn.functional.softplus
    ns = 0.5 * (sp(-real).mean() + sp(fake).mean())
    assert discriminator_loss(real, fake, "non_saturating").item() == pytest.approx(ns.item())
    assert generator_loss(fake, "hinge").item() == pytest.approx(1.5)


def test_r1_of_a_linear_critic_is_its_squared_weight_norm():
    critic = nn.Sequential(nn.Flatten(), nn.Linear(12, 1))
    assert r1_penalty(critic, torch.rand(5, 3, 2, 2)).item() == pytest.approx(
        critic[1].weight.square().sum().item()
    )


def test_patch_discriminator_gives_one_logit_per_patch_and_takes_spectral_norm():
    for spectral in (False, True):
        d = PatchDiscriminator(3, channels=8, layers=2, spectral=spectral)
        assert d(torch.rand(2, 3, 32, 32)).shape == (2, 1, 7, 7)


def test_a_non_finite_discriminator_loss_is_skipped_and_a_winning_one_pauses():
    _, objective = adversarial()
    x = torch.rand(4, 3, 8, 8)
    weights = [p.detach().clone() for p in objective.discriminator.parameters()]

    def unchanged():
        now = objective.discriminator.parameters()
        return all(torch.equal(a, b) for a, b in zip(weights, now, strict=True))

    stats = objective.discriminator_step(x, torch.full_like(x, float("nan")))
    assert stats["d_skipped"] == 1 and not torch.isfinite(stats["d_loss"])
    assert unchanged()
    objective.loss_ema.fill_(0.0)  # as if it had won outright for a while
    stats = objective.discriminator_step(x, torch.rand_like(x))
    assert stats["d_paused"] == 1
    assert unchanged()
    objective.loss_ema.fill_(1.0)
    objective.discriminator_step(x, torch.rand_like(x))
    assert not all(
        torch.equal(a, b) for a, b in zip(weights, objective.discriminator.parameters(), strict=True)
    )


def test_state_dict_round_trips_the_discriminator_its_adam_and_counters():
    _, a = adversarial()
    x = torch.rand(4, 3, 8, 8)
    for _ in range(3):
        a.discriminator_step(x, torch.rand_like(x))
    _, b = adversarial()
    b.load_state_dict(a.state_dict())
    assert int(b.step) == 3 and b.optimizer.state_dict()["state"][0]["step"] == 3
    sa, sb = a.state_dict()["module"], b.state_dict()["module"]
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_perceptual_distance_is_zero_for_identical_images_and_grows_with_noise():
    torch.manual_seed(0)
    net = TappedFeatures(
        nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.ReLU()), [1, 3], 3
    )
    distance = PerceptualDistance(net)
    x = torch.rand(3, 3, 16, 16)
    near, far = distance(x, (x + 0.05 * torch.randn_like(x))), distance(x, (x + 0.3 * torch.randn_like(x)))
    assert torch.equal(distance(x, x), torch.zeros(3))
    assert (near > 0).all() and (far > near).all()
    assert all(not p.requires_grad for p in net.parameters()) and not net.train().training


def test_a_pickled_perceptual_weights_file_is_refused_and_never_unpickled(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "vgg.pth"
    path.write_bytes(pickle.dumps({"features.0.weight": Payload()}))
    with pytest.raises(ConfigError, match="not a safetensors file"):
        vgg16_features(path)
    assert not marker.exists()
    with pytest.raises(ConfigError, match="does not exist"):
        vgg16_features(tmp_path / "missing.safetensors")


def test_vgg16_weights_load_from_safetensors_with_torchvision_names(tmp_path):
    weights, width, index = {}, 3, 0
    for spec in VGG16:
        if spec != "M":
            weights[f"features.{index}.weight"] = torch.randn(spec, width, 3, 3) * 0.01
            weights[f"features.{index}.bias"] = torch.zeros(spec)
            width, index = spec, index + 2
        else:
            index += 1
    save_file(weights, str(tmp_path / "vgg16.safetensors"))
    net = vgg16_features(tmp_path / "vgg16.safetensors")
    assert [f.shape[1] for f in net(torch.rand(1, 1, 32, 32))] == [64, 128, 256, 512, 512]  # grey repeated
    del weights["features.28.weight"]
    save_file(weights, str(tmp_path / "partial.safetensors"))
    with pytest.raises(ConfigError, match="lacks 1 VGG16 weights"):
        vgg16_features(tmp_path / "partial.safetensors")


def test_disc_ramp_steps_raises_the_adversarial_weight_linearly_after_disc_start():
    model, objective = adversarial(disc_start=2, disc_ramp_steps=3, adaptive_weight=False, disc_weight=0.8)
    x = torch.rand(4, 3, 8, 8)
    seen = []
    for _ in range(7):
        terms = objective(model(x))
        seen.append(
            round(float(terms.stats["adaptive_weight"]), 6) if "adaptive_weight" in terms.stats else None
        )
        objective.discriminator_step(x, terms.fake)
    # Off before disc_start; then 1/4, 2/4, 3/4 of disc_weight; then all of it.
    assert seen == [None, None, 0.2, 0.4, 0.6, 0.8, 0.8]
    state = objective.state_dict()
    _, again = adversarial(disc_start=2, disc_ramp_steps=3, adaptive_weight=False, disc_weight=0.8)
    again.load_state_dict(state)
    assert again.ramp == objective.ramp == 1.0  # the step count, and so the ramp, is in the checkpoint
