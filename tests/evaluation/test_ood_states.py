"""The density of states (vaelab.evaluation.ood.states): the statistics, their mixture density, its
round trip with the background, and the score built on it."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vaelab.data import ImageDataset
from vaelab.errors import UsageError
from vaelab.evaluation.ood.background import BackgroundSpec, fit_background, load_background, save_background
from vaelab.evaluation.ood.codec import codec_bits
from vaelab.evaluation.ood.metrics import auroc
from vaelab.evaluation.ood.scores import Scorer
from vaelab.evaluation.ood.states import (
    IMAGES_PER_COMPONENT,
    STATE_NAMES,
    fit_density,
    held_out,
    used_states,
)


def correlated(n: int, seed: int) -> np.ndarray:
    """Statistics that move together, as a likelihood and its parts do: (a, 2a + small noise, b)."""
    rng = np.random.default_rng(seed)
    a, b = rng.normal(0, 1, n), rng.normal(5, 3, n)
    return np.c_[a, 2 * a + rng.normal(0, 0.1, n), b]


def test_the_density_is_the_scikit_learn_mixture_of_the_standardised_statistics():
    from sklearn.mixture import GaussianMixture

    stats = correlated(1000, 0)
    density = fit_density(stats, ["a", "b", "c"], components=3, seed=0)
    z = (stats - stats.mean(0)) / stats.std(0)
    gmm = GaussianMixture(3, covariance_type="full", reg_covar=1e-4, random_state=0).fit(z)
    new = correlated(50, 1)
    np.testing.assert_allclose(
        density.log_prob(torch.from_numpy(new)).numpy(),
        gmm.score_samples((new - stats.mean(0)) / stats.std(0)),
        rtol=1e-9,
        atol=1e-9,
    )
    # one component per IMAGES_PER_COMPONENT held-out rows: small sets get fewer
    assert fit_density(stats[: 2 * IMAGES_PER_COMPONENT + 1], ["a", "b", "c"]).info["components"] == 2
    assert fit_density(stats[:10], ["a", "b", "c"]).info["components"] == 1
    with pytest.raises(ValueError, match="finite"):
        fit_density(np.r_[stats[:5], [[np.nan, 0, 0]]], ["a", "b", "c"])
    with pytest.raises(ValueError, match="expected 3 statistics"):
        density.log_prob(torch.zeros(2, 4))


def test_it_flags_a_combination_that_no_single_statistic_flags():
    stats = correlated(2000, 0)
    density = fit_density(stats, ["a", "b", "c"], seed=0)
    ref = correlated(500, 1)
    # each statistic alone is typical, but the second no longer follows the first
    odd = correlated(500, 2)
    odd[:, 1] = -odd[:, 1]
    for column in range(3):
        assert abs(auroc(np.abs(ref[:, column]), np.abs(odd[:, column])) - 0.5) < 0.06
    score = lambda s: -density.log_prob(torch.from_numpy(s)).numpy()  # noqa: E731
    assert auroc(score(ref), score(odd)) > 0.95  # all but the odd rows near a = 0, where -2a is 2a


def test_the_statistics_are_the_three_log_likelihoods_of_the_image(blob_model):
    model, data, background = blob_model
    scorer = Scorer(model, background=background)
    x = data.images[:8].float() / 255
    torch.manual_seed(0)
    stats = scorer.statistics(x)
    assert stats.shape == (8, len(STATE_NAMES)) and stats.dtype == np.float64
    torch.manual_seed(0)
    np.testing.assert_allclose(stats[:, 0], -Scorer(model).score(data.images[:8], ["nll"])["nll"], rtol=1e-6)
    np.testing.assert_allclose(stats[:, 1], background.log_prob(x, 1).numpy(), rtol=1e-6)
    np.testing.assert_allclose(stats[:, 2], -codec_bits(data.images[:8], "png") * math.log(2))


def test_the_density_is_fitted_on_what_the_scorer_scores(blob_model):
    model, data, background = blob_model
    scorer = Scorer(model, background=background)
    density = background.states
    assert density is not None and density.info["n"] > 0
    assert density.info["names"] == list(STATE_NAMES) and density.info["iw_samples"] == 1
    assert density.info["codec"] == "png"
    # the score is minus the density of the statistics, whatever else is asked with it
    alone = scorer.score(data, ["density_of_states"])["density_of_states"]
    together = scorer.score(data, ["nll", "likelihood_ratio", "complexity", "density_of_states"])
    np.testing.assert_allclose(together["density_of_states"], alone, rtol=1e-9)
    # with another codec asked (for complexity), the statistics still use the density's own (png)
    other = Scorer(model, background=background, codec="webp")
    got = other.score(data, ["complexity", "density_of_states"])["density_of_states"]
    np.testing.assert_allclose(got, alone, rtol=1e-9)


def test_the_held_out_images_are_the_validation_part_training_left_out():
    images = torch.arange(100, dtype=torch.uint8).view(100, 1, 1, 1).expand(100, 1, 2, 2).contiguous()
    train = ImageDataset(images, None, "t", None)
    trained_on, val = train.split(0.1, 7)
    got = held_out(train, 0.1, 7)
    assert sorted(got.images[:, 0, 0, 0].tolist()) == sorted(val.images[:, 0, 0, 0].tolist())
    assert not set(got.images[:, 0, 0, 0].tolist()) & set(trained_on.images[:, 0, 0, 0].tolist())
    assert len(held_out(train, 0.0, 7)) == 100  # nothing held out: the training images


def test_the_density_saves_and_loads_with_the_background(tmp_path, blob_model):
    model, data, background = blob_model
    model.save_pretrained(tmp_path / "m")
    save_background(background, tmp_path / "m")
    loaded = load_background(tmp_path / "m")
    assert loaded is not None and loaded.states is not None
    a = Scorer(model, background=background).score(data, ["density_of_states"])["density_of_states"]
    b = Scorer(model, background=loaded).score(data, ["density_of_states"])["density_of_states"]
    np.testing.assert_array_equal(a, b)


def test_the_score_separates_noise_and_flat_images_from_the_training_images(blob_model):
    model, data, background = blob_model
    g = torch.Generator().manual_seed(0)
    noise = torch.randint(0, 256, (64, 1, 12, 12), generator=g, dtype=torch.uint8)
    flat = torch.randint(0, 256, (64, 1, 1, 1), generator=g, dtype=torch.uint8).expand(64, 1, 12, 12)
    scorer = Scorer(model, background=background)
    ref = scorer.score(data, ["density_of_states"])["density_of_states"]
    for ood in (noise, flat.contiguous()):
        assert auroc(ref, scorer.score(ood, ["density_of_states"])["density_of_states"]) > 0.95


def test_a_background_without_the_density_is_refused_with_the_fix(blob_model):
    model, data, _ = blob_model
    background = fit_background(model, data, "none", BackgroundSpec(epochs=1))  # no density yet
    with pytest.raises(UsageError, match="--fit-background"):
        Scorer(model, background=background).score(data, ["density_of_states"])
    with pytest.raises(UsageError, match="--fit-background"):
        Scorer(model).score(data, ["density_of_states"])


def test_a_damaged_density_file_is_one_clear_error(tmp_path, blob_model):
    from vaelab.errors import ModelLoadError

    model, _, background = blob_model
    model.save_pretrained(tmp_path / "m")
    folder = save_background(background, tmp_path / "m")
    (folder / "states.safetensors").write_bytes(b"not tensors")
    with pytest.raises(ModelLoadError, match="fit it again"):
        load_background(tmp_path / "m")


def test_over_8_bit_levels_the_density_leaves_the_background_out():
    from tests.helpers import mlp_vae

    assert used_states(False) == ["log_p_model", "log_p_background", "log_p_codec"]  # Bernoulli
    assert used_states(True) == ["log_p_model", "log_p_codec"]  # PNG is the background already
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (120, 1, 12, 12), generator=g, dtype=torch.uint8)
    torch.manual_seed(0)
    model = mlp_vae(12, 4, 16, likelihood={"name": "gaussian", "variance": "shared"}).eval()
    train = ImageDataset(images, None, "noise", None)
    background = fit_background(model, train, "none", BackgroundSpec(epochs=1, batch_size=32))
    assert background.uses_codec
    density = Scorer(model, background=background).fit_states(train)
    assert density.names == ["log_p_model", "log_p_codec"] and density.columns == [0, 2]
    scores = Scorer(model, background=background).score(images[:10], ["density_of_states"])
    assert np.isfinite(scores["density_of_states"]).all()
