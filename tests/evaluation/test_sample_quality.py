"""Frechet distance against independent computations; precision/recall and density/coverage on point sets
with known answers."""

import math

import numpy as np
import pytest
import torch

from vaelab.evaluation.sample_quality import (
    compare_features,
    density_coverage,
    frechet_distance,
    frechet_distance_features,
    knn_radii,
    precision_recall,
)


def random_spd(d: int, rng: np.random.Generator) -> np.ndarray:
    a = rng.normal(size=(d, d))
    return a @ a.T + 0.1 * np.eye(d)


def test_frechet_distance_closed_form_for_diagonal_covariances():
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.0])
    v1, v2 = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    # Commuting covariances: the W2 distance splits per axis into (mean gap)^2 + (std gap)^2.
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(v1) - np.sqrt(v2)) ** 2).sum()
    assert frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2)) == pytest.approx(expected, rel=1e-12)


def test_frechet_distance_matches_scipy_sqrtm_on_general_covariances():
    scipy_linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(0)
    for d in (2, 5, 16):
        mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
        s1, s2 = random_spd(d, rng), random_spd(d, rng)
        # The formula as pytorch-fid writes it, through a general matrix square root.
        covmean = scipy_linalg.sqrtm(s1 @ s2).real
        expected = ((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean)
        assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-8, abs=1e-8)
        assert frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-8)


def test_frechet_distance_from_samples_converges_to_the_gaussians_value():
    rng = np.random.default_rng(1)
    mu1, mu2 = np.zeros(3), np.array([1.0, 0.0, 0.5])
    s1, s2 = random_spd(3, rng), random_spd(3, rng)
    truth = frechet_distance(mu1, s1, mu2, s2)
    a = torch.from_numpy(rng.multivariate_normal(mu1, s1, size=40_000))
    b = torch.from_numpy(rng.multivariate_normal(mu2, s2, size=40_000))
    fd, se = frechet_distance_features(a, b, bootstrap=10)
    assert 0 < se < 0.1 * truth
    assert abs(fd - truth) < 4 * se + 1e-3


def test_knn_radii_on_a_line():
    pts = torch.arange(10, dtype=torch.float32).view(-1, 1)
    torch.testing.assert_close(knn_radii(pts, k=1), torch.ones(10))
    radii2 = knn_radii(pts, k=2)
    assert radii2[0] == 2 and radii2[5] == 1  # an end point's 2nd neighbour is 2 away


def test_precision_recall_on_constructed_point_sets():
    real = torch.arange(10, dtype=torch.float32).view(-1, 1)  # 0..9, k=1 radius 1 each
    # Half the fakes sit between real points (inside), half far away (outside): precision 1/2.
    fake = torch.tensor([0.5, 1.5, 2.5, 3.5, 4.5, 100, 101, 102, 103, 104]).view(-1, 1)
    pr = precision_recall(real, fake, k=1)
    assert pr["precision"] == 0.5
    # Fake balls (radius 1) around 0.5..4.5 cover reals 0..5; 6..9 are more than 1 from 4.5.
    assert pr["recall"] == 0.6
    assert pr["precision_se"] == pytest.approx(math.sqrt(0.25 / 10))
    same = precision_recall(real, real.clone(), k=3)
    assert same["precision"] == 1.0 and same["recall"] == 1.0
    far = precision_recall(real, real + 1000, k=3)
    assert far["precision"] == 0.0 and far["recall"] == 0.0


def test_precision_recall_separate_quality_from_coverage():
    gen = torch.Generator().manual_seed(0)
    real = torch.randn(2000, 2, generator=gen)
    collapsed = 0.2 * torch.randn(2000, 2, generator=gen)  # good samples of one mode only
    pr = precision_recall(real, collapsed, k=3)
    assert pr["precision"] > 0.95 and pr["recall"] < 0.3


def test_density_coverage_by_hand_on_a_line():
    real = torch.arange(10, dtype=torch.float32).view(-1, 1)  # 0..9
    fake = torch.tensor([0.5, 1.5, 2.5, 3.5, 4.5, 100, 101, 102, 103, 104]).view(-1, 1)
    # k=1: every real ball has radius 1; each near fake lies in the balls of its two real neighbours,
    # the far ones in none: density = (5 x 2) / (10 x 1) = 1; reals 0..5 hold a fake: coverage 0.6.
    dc = density_coverage(real, fake, k=1)
    assert dc["density"] == pytest.approx(1.0) and dc["coverage"] == pytest.approx(0.6)
    assert dc["density_se"] == pytest.approx(math.sqrt(10 / 9) / math.sqrt(10))  # sd of [2]*5 + [0]*5
    assert dc["coverage_se"] == pytest.approx(math.sqrt(0.6 * 0.4 / 10))
    # k=2: the end reals' 2nd neighbours are 2 away, so 1.5 lies in three balls (0, 1, 2), the other
    # near fakes in two: density = 11 / (10 x 2); the covered reals are the same six.
    dc2 = density_coverage(real, fake, k=2)
    assert dc2["density"] == pytest.approx(0.55) and dc2["coverage"] == pytest.approx(0.6)
    assert dc2["k_density_coverage"] == 2


def test_density_coverage_of_identical_and_of_far_sets():
    real = torch.randn(300, 4, generator=torch.Generator().manual_seed(0))  # no ties among distances
    same = density_coverage(real, real.clone(), k=5)
    # Each ball holds its own centre and its k nearest neighbours: k + 1 points per ball.
    assert same["coverage"] == 1.0 and same["density"] == pytest.approx(6 / 5)
    far = density_coverage(real, real + 1000, k=5)
    assert far["coverage"] == 0.0 and far["density"] == 0.0


def test_density_coverage_of_two_draws_of_one_distribution():
    gen = torch.Generator().manual_seed(1)
    real, fake = torch.randn(4000, 2, generator=gen), torch.randn(4000, 2, generator=gen)
    dc = density_coverage(real, fake, k=5)
    # Naeem et al. 2020: E[density] = 1; E[coverage] = 1 - 2^-k for two sets of the same size.
    assert dc["density"] == pytest.approx(1.0, abs=0.05)
    assert dc["coverage"] == pytest.approx(1 - 2**-5, abs=0.015)


def test_density_coverage_see_a_collapsed_generator():
    gen = torch.Generator().manual_seed(0)
    real = torch.randn(2000, 2, generator=gen)
    collapsed = 0.2 * torch.randn(2000, 2, generator=gen)  # the densest part only
    dc = density_coverage(real, collapsed, k=5)
    # Every sample is as realistic as a real point (about k real balls each), but few real points
    # have a sample near them.
    assert dc["density"] > 0.9 and dc["coverage"] < 0.3


def test_compare_features_reports_all_five_with_their_ks():
    gen = torch.Generator().manual_seed(2)
    real, fake = torch.randn(200, 3, generator=gen), torch.randn(150, 3, generator=gen)
    out = compare_features(real, fake, bootstrap=2)
    assert {"fd", "precision", "recall", "density", "coverage"} <= set(out)
    assert out["k"] == 3 and out["k_density_coverage"] == 5
    assert out["real_images"] == 200 and out["fake_images"] == 150
