"""Latent priors fitted after training (gmm, flow, diffusion, two_stage): a flow's density integrates to
1, the diffusion prior recovers a known 2-D mixture, every prior saves and loads with the model
(safetensors + JSON) and refuses another latent size, fits and samples repeat with a seed, and
``sample`` draws a hierarchical model's top latent only from them."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from tests.models.tiny import tiny_vae

from vaelab.errors import ConfigError, ModelLoadError, UsageError
from vaelab.generation import sample
from vaelab.generation.priors import PRIORS, LatentCodes, fit_codes, fit_prior, load_prior, save_prior

CENTRES = torch.tensor([[-3.0, 0.0], [3.0, 0.0], [0.0, 3.5]])
WEIGHTS = torch.tensor([0.5, 0.3, 0.2])
TINY = {
    "gmm": {"components": 2},
    "flow": {"steps": 4, "hidden": 16, "layers": 3},
    "diffusion": {"steps": 4, "hidden": 16, "layers": 1, "sample_steps": 5},
    "two_stage": {"steps": 4, "hidden": 16, "layers": 1},
}


def mixture(n: int, seed: int = 0) -> LatentCodes:
    """A known 2-D mixture of three round Gaussians (std 0.4); the labels are the components."""
    gen = torch.Generator().manual_seed(seed)
    comp = torch.multinomial(WEIGHTS, n, replacement=True, generator=gen)
    z = CENTRES[comp] + 0.4 * torch.randn(n, 2, generator=gen)
    return LatentCodes(z, torch.full_like(z, 0.1), comp, 3)


def nearest(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each point's nearest centre and its distance."""
    d = torch.cdist(z.double(), CENTRES.double())
    return d.argmin(1), d.min(1).values


@pytest.mark.parametrize("conditional", [False, True])
def test_flow_density_integrates_to_one(conditional):
    options = {
        "steps": 400,
        "hidden": 32,
        "layers": 4,
        "batch_size": 256,
        "lr": 3e-3,
        "conditional": conditional,
    }
    flow = fit_codes("flow", mixture(2000), options, seed=0)
    side = torch.linspace(-9, 9, 361)
    grid = torch.cartesian_prod(side, side)
    cell = float(side[1] - side[0]) ** 2
    for label in [0, 2] if conditional else [None]:
        labels = None if label is None else torch.full((len(grid),), label)
        mass = float(flow.log_prob(grid, labels).exp().sum()) * cell
        assert mass == pytest.approx(1.0, abs=0.03)
    # It learnt the mixture: the centres are far more likely than the empty middle.
    points, labels = torch.cat([CENTRES[:1], torch.zeros(1, 2)]), torch.zeros(2) if conditional else None
    at = flow.log_prob(points, labels)
    assert float(at[0] - at[1]) > 2.0


def test_diffusion_prior_recovers_a_known_mixture():
    options = {"steps": 960, "hidden": 128, "layers": 2, "batch_size": 256, "sample_steps": 30}
    prior = fit_codes("diffusion", mixture(4000), options, seed=0)
    comp, dist = nearest(prior.sample(4000, seed=1))
    assert float((dist < 1.2).float().mean()) > 0.9  # on the components, not between them
    weights = torch.bincount(comp, minlength=3).double() / len(comp)
    torch.testing.assert_close(weights, WEIGHTS.double(), atol=0.05, rtol=0)
    steps = prior.steps
    prior.steps = 5  # fewer DDIM steps: cheaper, still on the components
    assert float((nearest(prior.sample(2000, seed=1))[1] < 1.5).float().mean()) > 0.8
    prior.steps = steps


def test_a_class_conditional_mixture_is_one_mixture_per_class(tmp_path):
    """Each class's samples come from its own cluster, its density is its own mixture's, and the
    per-class mixture saves and loads with its classes."""
    prior = fit_codes("gmm", mixture(900), {"components": 1, "conditional": True}, seed=0)
    assert (prior.num_classes, prior.components, tuple(prior.means.shape)) == (3, 1, (3, 2))
    labels = torch.tensor([0, 1, 2]).repeat_interleave(200)
    z = prior.sample(600, labels=labels, seed=1)
    assert torch.equal(nearest(z)[0], labels)
    torch.testing.assert_close(prior.means.float(), CENTRES, atol=0.1, rtol=0)
    point = CENTRES[:1]  # class 0's centre: likely under class 0, not under class 1
    log_p = [float(prior.log_prob(point, torch.tensor([c]))[0]) for c in (0, 1)]
    assert log_p[0] == pytest.approx(-math.log(2 * math.pi * 0.4**2), abs=0.2) and log_p[1] < -50
    marginal = float(prior.log_prob(point)[0])  # the classes' even mix
    assert marginal == pytest.approx(math.log(sum(math.exp(v) for v in log_p) / 3), abs=1e-6)
    (tmp_path / "config.json").write_text("{}")
    again = load_prior(save_prior(prior, tmp_path).parent, "gmm", 2)
    assert again.num_classes == 3
    assert torch.equal(
        again.sample(30, labels=labels[::20], seed=2), prior.sample(30, labels=labels[::20], seed=2)
    )


def test_a_class_conditional_diffusion_prior_samples_each_class():
    options = {"steps": 480, "hidden": 128, "layers": 2, "batch_size": 256, "conditional": True}
    prior = fit_codes("diffusion", mixture(3000), options, seed=0)
    labels = torch.tensor([0, 1, 2] * 300)
    comp, _ = nearest(prior.sample(len(labels), labels=labels, seed=2))
    assert float((comp == labels).float().mean()) > 0.9
    with pytest.raises(UsageError, match=r"need 4 labels in \[0, 3\)"):
        prior.sample(4, labels=torch.tensor([0, 1, 2, 3]))


@pytest.mark.parametrize("kind", list(PRIORS))
def test_every_prior_saves_loads_and_refuses_another_latent_size(kind, model, tmp_path):
    images = torch.rand(64, 1, 8, 8)
    prior = fit_prior(model, images, kind, TINY[kind], seed=0)
    assert prior.info["fit_seconds"] > 0 and prior.info["codes"] == 64
    model.save_pretrained(tmp_path)
    path = save_prior(prior, tmp_path)
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    assert meta["kind"] == kind and meta["latent_dim"] == "5" and "fit_seconds" in json.loads(meta["info"])
    again = load_prior(tmp_path, kind, model.latent_dim)
    assert type(again) is type(prior) and again.config == prior.config and again.info == prior.info
    torch.testing.assert_close(again.sample(16, seed=3), prior.sample(16, seed=3), rtol=0, atol=1e-6)
    if kind in ("gmm", "flow"):
        z = prior.sample(8, seed=4)
        torch.testing.assert_close(again.log_prob(z), prior.log_prob(z))
    else:
        with pytest.raises(UsageError, match="no exact log-density"):
            prior.log_prob(torch.zeros(2, 5))
    # through sample(): the same images for the same seed, from the saved prior as from the fitted one
    assert torch.equal(sample(model, 6, seed=1, prior=again), sample(model, 6, seed=1, prior=prior))
    with pytest.raises(ModelLoadError, match=f"{kind} prior over 5 latent dimensions; the model has 7"):
        load_prior(tmp_path, kind, 7)


@pytest.mark.parametrize("kind", list(PRIORS))
def test_fits_and_samples_repeat_with_a_seed(kind):
    codes = mixture(300)
    a, b = (fit_codes(kind, codes, TINY[kind], seed=5) for _ in range(2))
    assert torch.equal(a.sample(10, seed=1), b.sample(10, seed=1))
    assert not torch.equal(a.sample(10, seed=1), a.sample(10, seed=2))


def test_bad_options_and_conditioning_are_refused(model, tmp_path):
    with pytest.raises(ConfigError, match="invalid flow prior options:\n  stpes: unknown option"):
        fit_codes("flow", mixture(100), {"stpes": 3})
    with pytest.raises(ConfigError, match="unknown prior 'vamp'"):
        fit_codes("vamp", mixture(100))
    few = LatentCodes(torch.randn(30, 2), torch.ones(30, 2), torch.tensor([0] * 25 + [1] * 5), 2)
    with pytest.raises(UsageError, match="need at least 6 images of class 1 to fit 3 components; got 5"):
        fit_codes("gmm", few, {"components": 3, "conditional": True})
    with pytest.raises(UsageError, match="the two_stage prior is unconditional"):
        fit_codes("two_stage", mixture(100), {**TINY["two_stage"], "conditional": True})
    with pytest.raises(UsageError, match="needs the training images' labels"):
        fit_prior(model, torch.rand(40, 1, 8, 8), "flow", {**TINY["flow"], "conditional": True})
    with pytest.raises(UsageError, match="not class-conditional"):
        fit_codes("flow", mixture(100), TINY["flow"]).sample(2, labels=torch.tensor([0, 1]))


def test_an_older_gmm_prior_file_still_loads(model, tmp_path):
    prior = fit_prior(model, torch.rand(64, 1, 8, 8), "gmm", {"components": 2})
    model.save_pretrained(tmp_path)
    info = json.dumps({"components": 2})
    save_file(
        prior.tensors(), str(tmp_path / "gmm_prior.safetensors"), {"format": "vaelab-gmm-prior", "info": info}
    )
    again = load_prior(tmp_path, "gmm", 5)
    assert torch.equal(again.means, prior.means) and again.info == {"components": 2}


def test_a_class_conditional_prior_on_an_unconditional_model(model):
    images, labels = torch.rand(90, 1, 8, 8), torch.arange(90) % 3
    prior = fit_prior(
        model, images, "flow", {**TINY["flow"], "conditional": True}, labels=labels, num_classes=3
    )
    assert prior.num_classes == 3
    out = sample(model, 6, seed=0, prior=prior, labels=torch.tensor([2] * 6))  # the decoder takes no label
    assert out.shape == (6, 1, 8, 8)
    assert not torch.equal(out, sample(model, 6, seed=0, prior=prior, labels=torch.tensor([0] * 6)))


def test_a_hierarchical_model_draws_only_its_top_latent_from_the_fitted_prior():
    torch.manual_seed(0)
    vae = tiny_vae((1, 8, 8), 3, encoder="resnet", decoder="ladder").eval()
    prior = fit_prior(vae, torch.rand(64, 1, 8, 8), "flow", TINY["flow"])
    # lower layers at temperature 0 (their prior means): the images are the decoded fitted-prior latents
    cold = sample(vae, 4, temperature=[1.0, 0.0, 0.0], seed=3, prior=prior)
    torch.testing.assert_close(cold, vae.decode(prior.sample(4, seed=3)))
    warm = sample(vae, 4, temperature=[1.0, 1.0, 1.0], seed=3, prior=prior)
    assert not torch.equal(cold, warm)  # the lower layers still draw from their own priors
