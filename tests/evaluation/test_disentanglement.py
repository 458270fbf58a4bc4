"""MIG: 1 for an encoder whose dimensions are the factors, about 0 for one that ignores them."""

from __future__ import annotations

import numpy as np
import pytest

from vaelab.evaluation.disentanglement import mutual_information_gap


def _factors(n: int = 5000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([rng.integers(0, 3, n), rng.integers(0, 6, n), rng.integers(0, 10, n)], axis=1)


def test_factor_aligned_encoder_scores_near_one():
    v = _factors()
    rng = np.random.default_rng(1)
    # One dimension per factor (a monotone map of it plus small noise), two pure-noise dimensions.
    z = np.concatenate([np.tanh(v * 0.3) + 0.001 * rng.normal(size=v.shape), rng.normal(size=(len(v), 2))], 1)
    result = mutual_information_gap(z, v, ("shape", "scale", "x"))
    assert result["mig"] > 0.9
    assert set(result["per_factor"]) == {"shape", "scale", "x"}


def test_random_encoder_scores_near_zero():
    v = _factors()
    z = np.random.default_rng(2).normal(size=(len(v), 5))
    assert mutual_information_gap(z, v)["mig"] < 0.05


def test_a_factor_shared_by_two_dimensions_has_no_gap():
    v = _factors()[:, :1]
    z = np.concatenate([v, v], axis=1).astype(float)
    assert mutual_information_gap(z, v)["mig"] == pytest.approx(0.0, abs=1e-9)


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="latents"):
        mutual_information_gap(np.zeros((5, 3)), np.zeros((4, 2)))
