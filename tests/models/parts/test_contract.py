"""The parts' contract: every registered part of every kind does what the VAE asks of it.

Parametrised over the registries (``vaelab.models.registry`` and ``vaelab.objectives.OBJECTIVES``), so a
part is covered here as soon as it is registered, built at its config's defaults made small by
``tests/models/tiny.py``: shapes, finite values and gradients, seeded repeatability, normalised
log-probabilities where that is cheap to check, KL >= 0 where it has a closed form.
"""

from __future__ import annotations

import pytest
import torch
from pydantic import TypeAdapter
from tests.models.tiny import likelihood_channels, model_config, part, tiny_vae
from torch.distributions import Independent, Normal

from vaelab.errors import UsageError
from vaelab.models.parts.base import Draw
from vaelab.models.parts.conditioning import Unconditional
from vaelab.models.parts.kl import layer_kl
from vaelab.models.registry import CONDITIONS, DECODERS, ENCODERS, LIKELIHOODS, POSTERIORS, PRIORS
from vaelab.objectives import OBJECTIVES, ObjectiveConfig, build_objective

SHAPE = (2, 8, 12)  # two channels and unequal sides catch mixed-up axes


def finite_grads(module: torch.nn.Module) -> bool:
    return all(p.grad is None or torch.isfinite(p.grad).all() for p in module.parameters())


def grid_integral(log_density, low: float, high: float, steps: int = 20001) -> float:
    """Trapezoid integral of exp(log_density) over [low, high] (a 1-D density)."""
    x = torch.linspace(low, high, steps, dtype=torch.float64)
    return float(torch.trapezoid(log_density(x).double().exp(), x))


@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_encoder(name):
    torch.manual_seed(0)
    encoder = ENCODERS[name](model_config(SHAPE, encoder=name).encoder, SHAPE, 6)
    x = torch.rand(3, *SHAPE)
    params = encoder(x)
    assert params.shape == (3, 6) and torch.isfinite(params).all()
    again, features = encoder.forward_features(x)
    torch.testing.assert_close(again, params, rtol=0, atol=0)
    assert (features is None) == (encoder.feature_channels is None)
    if features is not None:
        assert set(features) == set(encoder.feature_channels)
        for side, f in features.items():
            assert f.shape[:3] == (3, encoder.feature_channels[side], side)
    params.square().sum().backward()
    assert finite_grads(encoder) and any(p.grad is not None for p in encoder.parameters())


@pytest.mark.parametrize("name", sorted(DECODERS))
def test_decoder(name):
    torch.manual_seed(0)
    # Features from a tiny residual encoder with as many stages as the tiny decoders, for the decoders
    # whose stochastic layers read them (the others ignore them).
    cfg = model_config(SHAPE, encoder="resnet", decoder=name)
    encoder = ENCODERS["resnet"](cfg.encoder, SHAPE, 6)
    _, features = encoder.forward_features(torch.rand(5, *SHAPE))
    DECODERS[name].check_encoder(cfg.decoder, cfg.encoder, encoder.feature_channels)
    decoder = DECODERS[name](cfg.decoder, 3, (4, *SHAPE[1:]), encoder.feature_channels)
    z = torch.randn(5, 3)
    params = decoder(z)
    assert params.shape == (5, 4, *SHAPE[1:]) and torch.isfinite(params).all()
    n = decoder.num_latent_layers
    assert decoder.activation_elements >= 0
    # the mean path is forward; a seeded prior draw repeats
    mean_path = decoder.top_down(z, draw=Draw([0.0] * n))
    torch.testing.assert_close(mean_path.params, params, rtol=0, atol=0)
    draws = [decoder.top_down(z, draw=Draw([1.0] * n, torch.Generator().manual_seed(1))) for _ in "ab"]
    torch.testing.assert_close(draws[0].params, draws[1].params, rtol=0, atol=0)
    # the posterior pass: one KL per lower layer, closed form >= 0, or the log-ratio at the draw
    out = decoder.top_down(z, features)
    assert out.params.shape == params.shape and len(out.layers) == n
    for layer in out.layers:
        assert layer.kl.shape == (5,) and torch.isfinite(layer.kl).all()
        if layer.per_dim is not None:
            assert (layer.per_dim >= -1e-6).all()
            torch.testing.assert_close(layer.per_dim.flatten(1).sum(1), layer.kl)
    sampled = decoder.top_down(z, features, Draw(sampled_kl=True))
    assert all(layer.per_dim is None and torch.isfinite(layer.kl).all() for layer in sampled.layers)
    loss = out.params.square().mean() + sum((layer.kl.sum() for layer in out.layers), torch.tensor(0.0))
    loss.backward()
    assert finite_grads(decoder)


@pytest.mark.parametrize("name", sorted(POSTERIORS))
def test_posterior(name):
    torch.manual_seed(0)
    posterior = POSTERIORS[name](model_config(posterior=name).posterior, 3)
    params = torch.randn(4, posterior.param_dim, requires_grad=True)
    q = posterior(params)
    assert q.batch_shape == (4,) and q.event_shape == (3,)
    z = q.rsample()
    assert z.shape == (4, 3) and q.rsample((2,)).shape == (2, 4, 3)
    z.sum().backward()
    assert params.grad is not None and torch.isfinite(params.grad).all()
    # absurd encoder outputs still give a usable distribution (the parameterisation guards itself)
    for extreme in (1e4, -1e4):
        wild = posterior(torch.full((1, posterior.param_dim), extreme))
        assert torch.isfinite(wild.stddev).all() and (wild.stddev > 0).all()
    standard = Independent(Normal(torch.zeros(3), torch.ones(3)), 1)
    kl = layer_kl(q, standard, z.detach())
    assert kl.kl.shape == (4,) and (kl.kl >= -1e-6).all()
    # normalised: a one-dimensional posterior integrates to 1
    one = POSTERIORS[name](model_config(posterior=name).posterior, 1)
    q1 = one(torch.tensor([[0.3, -0.5]])[:, : one.param_dim])
    total = grid_integral(lambda t: q1.log_prob(t[:, None, None]).squeeze(-1), -20, 20)
    assert total == pytest.approx(1, abs=1e-3)


@pytest.mark.parametrize("name", sorted(PRIORS))
def test_prior(name):
    torch.manual_seed(0)
    model = tiny_vae(latent_dim=2, prior=name)
    p = model.prior()
    assert p.event_shape == (2,)
    z = model.prior.sample(7, 1.0, generator=torch.Generator().manual_seed(3))
    again = model.prior.sample(7, 1.0, generator=torch.Generator().manual_seed(3))
    assert z.shape == (7, 2) and torch.isfinite(z).all()
    torch.testing.assert_close(z, again, rtol=0, atol=0)
    assert torch.isfinite(model.prior.sample(4, 0.0)).all()
    log_p = p.log_prob(z)
    assert log_p.shape == (7,) and torch.isfinite(log_p).all()
    q = model.encode(torch.rand(5, 1, 12, 12))
    kl = layer_kl(q, p, q.rsample())
    assert kl.kl.shape == (5,) and torch.isfinite(kl.kl).all()
    if kl.per_dim is not None:  # closed form: never negative
        assert (kl.per_dim >= -1e-6).all()
    params = list(model.prior.parameters())
    if params:  # a learned prior learns from its density
        (-log_p.sum()).backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in params)
    # normalised: a one-dimensional prior integrates to 1
    p1 = tiny_vae(latent_dim=1, prior=name).prior()
    with torch.no_grad():
        assert grid_integral(lambda t: p1.log_prob(t[:, None].float()), -30, 30) == pytest.approx(1, abs=1e-3)


def likelihood_variants() -> list[tuple[str, dict]]:
    extra = {"gaussian": [{"variance": "learned"}, {"variance": "shared"}]}
    return [(name, options) for name in sorted(LIKELIHOODS) for options in [{}, *extra.get(name, [])]]


@pytest.mark.parametrize(("name", "options"), likelihood_variants())
def test_likelihood(name, options):
    torch.manual_seed(0)
    channels = likelihood_channels(part("likelihood", name, **options))
    cfg = model_config((channels, 4, 5), likelihood=part("likelihood", name, **options)).likelihood
    likelihood = LIKELIHOODS[name](cfg, channels)
    params = (0.5 * torch.randn(2, likelihood.param_channels, 4, 5)).requires_grad_()
    x = torch.randint(0, 256, (2, channels, 4, 5)).float() / 255
    dist = likelihood(params)
    log_p = dist.log_prob(x)
    assert log_p.shape == (2,) and torch.isfinite(log_p).all()
    log_p.sum().backward()
    assert torch.isfinite(params.grad).all() and finite_grads(likelihood)
    with torch.no_grad():
        mean = likelihood.mean(params)
        assert mean.shape == x.shape and mean.min() >= 0 and mean.max() <= 1
        assert dist.sample().shape == x.shape
    if channels != 1:
        return  # normalising over whole colour pixels (256^3 values) is not cheap
    # normalised over one pixel's values: the 256 levels, the two binary values, or a density over R
    with torch.no_grad():
        pixel = params[:1, :, :1, :1]
        if likelihood.discrete:
            values = torch.arange(256.0) / 255
        elif dist.support.is_discrete:
            values = torch.tensor([0.0, 1.0])
        else:
            log_density = lambda t: likelihood(pixel.expand(len(t), -1, -1, -1)).log_prob(t.view(-1, 1, 1, 1))  # noqa: E731
            assert grid_integral(log_density, -20, 20, 200001) == pytest.approx(1, abs=1e-3)
            return
        log_masses = likelihood(pixel.expand(len(values), -1, -1, -1)).log_prob(values.view(-1, 1, 1, 1))
        assert float(torch.logsumexp(log_masses, 0)) == pytest.approx(0, abs=1e-4)


@pytest.mark.parametrize("name", [*sorted(CONDITIONS), None])
def test_conditioning(name):
    torch.manual_seed(0)
    cfg = model_config(condition=name).condition
    condition = CONDITIONS[name](cfg, (1, 8, 8)) if name else Unconditional()
    x, z = torch.rand(3, 1, 8, 8), torch.randn(3, 4)
    if condition.num_classes is None:
        assert condition.check(None, 3) is None
        with pytest.raises(UsageError, match="unconditional"):
            condition.check(torch.tensor([0, 1, 0]), 3)
        torch.testing.assert_close(condition.encoder_input(x, None), x)
        torch.testing.assert_close(condition.decoder_input(z, None), z)
        return
    labels = condition.check(torch.tensor([0, 2, 1]), 3)
    assert labels.dtype == torch.int64 and labels.shape == (3,)
    for bad in (None, torch.tensor([0, 1]), torch.tensor([0, 1, condition.num_classes])):
        with pytest.raises(UsageError):
            condition.check(bad, 3)
    enc_in, dec_in = condition.encoder_input(x, labels), condition.decoder_input(z, labels)
    assert enc_in.shape == (3, 1 + condition.encoder_extra_channels, 8, 8)
    assert dec_in.shape == (3, 4 + condition.decoder_extra_dims)
    other = condition.check(torch.tensor([1, 0, 2]), 3)
    assert not torch.equal(condition.decoder_input(z, other), dec_in)
    assert not torch.equal(condition.encoder_input(x, other), enc_in)


@pytest.mark.parametrize("decoder", ["mlp", "ladder"])
@pytest.mark.parametrize("name", sorted(OBJECTIVES))
def test_objective(name, decoder):
    torch.manual_seed(0)
    config = TypeAdapter(ObjectiveConfig).validate_python({"name": name})
    model = tiny_vae(encoder="resnet", decoder=decoder)
    objective = build_objective(config, dataset_size=100, model=model)
    x = (torch.rand(6, 1, 12, 12) > 0.5).float()
    out = model(x, **objective.forward_kwargs)
    for kl_weight in (1.0, 0.0):
        terms = objective(out, kl_weight)
        assert terms.loss.shape == () and torch.isfinite(terms.loss)
        for term in (terms.elbo, terms.log_px_z, terms.kl):
            assert term.shape == (6,) and torch.isfinite(term).all()
    terms.loss.backward()
    assert finite_grads(model)
