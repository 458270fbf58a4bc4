"""OOD scores, their metrics, the background model and calibration (vaelab.evaluation.ood)."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from tests.helpers import mlp_vae

from vaelab.data import ImageDataset
from vaelab.errors import UsageError
from vaelab.evaluation.ood.background import (
    BackgroundSpec,
    background_likelihood,
    causal_taps,
    fit_background,
    load_background,
    save_background,
)
from vaelab.evaluation.ood.calibration import (
    calibrate,
    load_calibrations,
    save_calibration,
    symlog_edges,
    threshold_at_fpr,
)
from vaelab.evaluation.ood.codec import codec_bits, decodes_to
from vaelab.evaluation.ood.evaluate import hardest_classes
from vaelab.evaluation.ood.metrics import auprc, auroc, fpr_at_tpr, separation
from vaelab.evaluation.ood.scores import SCORES, Scorer, likelihood_ratio
from vaelab.models.config import ModelConfig


# --- metrics --------------------------------------------------------------------------------------
def test_auroc_of_a_perfect_and_of_a_reversed_separator():
    in_dist, ood = np.arange(100.0), np.arange(100.0) + 1000
    assert auroc(in_dist, ood) == 1.0
    assert auroc(ood, in_dist) == 0.0  # the OOD images score lowest: perfectly reversed
    assert auprc(in_dist, ood) == 1.0
    assert fpr_at_tpr(in_dist, ood) == 0.0
    assert fpr_at_tpr(ood, in_dist) == 1.0


def test_hardest_classes_name_the_class_a_score_cannot_separate():
    rng = np.random.default_rng(0)
    reference = rng.normal(0, 1, 400)
    labels = torch.tensor([0] * 200 + [1] * 200 + [2] * 200)
    scores = np.r_[rng.normal(0, 1, 200), rng.normal(6, 1, 200), rng.normal(1, 1, 200)]
    data = ImageDataset(torch.zeros(600, 1, 2, 2, dtype=torch.uint8), labels, "ood:t", 3, ("a", "b", "c"))
    rows = hardest_classes(reference, scores, data)
    assert [name for name, _, _ in rows] == ["a", "c", "b"] and [n for *_, n in rows] == [200, 200, 200]
    assert abs(rows[0][1] - 0.5) < 0.07 and rows[2][1] > 0.99
    assert abs(rows[1][1] - auroc(reference, scores[400:])) < 1e-12
    assert hardest_classes(reference, scores, data, count=1) == rows[:1]
    unlabelled = ImageDataset(data.images, None, "ood:u", None)
    assert hardest_classes(reference, scores, unlabelled) == []


def test_metrics_at_chance_and_on_a_hand_computed_case():
    same = np.ones(50)
    assert auroc(same, same) == 0.5  # ties count one half
    # OOD {2, 4}, in {1, 3}: pairs (ood > in) are 2>1, 4>1, 4>3 of 4 -> 0.75
    assert auroc([1, 3], [2, 4]) == 0.75
    # Catching 95% of the OOD {2, 4} needs the threshold below 2: in-image 3 is flagged, 1 is not.
    assert fpr_at_tpr([1, 3], [2, 4]) == 0.5
    out = separation([1, 3], [2, 4])
    assert out["n_in"] == 2 and out["n_ood"] == 2
    with pytest.raises(ValueError, match="both kinds"):
        auroc([], [1.0])
    with pytest.raises(ValueError, match="finite"):
        auroc([1.0, math.nan], [2.0])


# --- the likelihood ratio -------------------------------------------------------------------------
@given(
    st.lists(st.floats(-1e4, 1e4), min_size=1, max_size=20),
    st.floats(-1e6, 1e6),
)
def test_likelihood_ratio_cancels_a_constant_shift_in_both_models(log_p, shift):
    model = np.array(log_p)
    background = model * 0.5 - 3.0
    plain = likelihood_ratio(model, background)
    shifted = likelihood_ratio(model + shift, background + shift)
    np.testing.assert_allclose(shifted, plain, atol=1e-6 * (1 + abs(shift)))


class Shifted:
    """A background (or model) whose log-likelihood is another's plus a constant."""

    def __init__(self, inner, shift: float) -> None:
        self.inner, self.shift = inner, shift
        self.spec, self.info, self.uses_codec = inner.spec, inner.info, inner.uses_codec

    def log_prob(self, x, k):
        return self.inner.log_prob(x, k) + self.shift


def test_scorer_likelihood_ratio_cancels_a_shift_of_both_log_likelihoods(blob_model):
    model, data, background = blob_model
    base = Scorer(model, background=background).score(data, ["likelihood_ratio"])["likelihood_ratio"]

    class ShiftedScorer(Scorer):
        def log_px(self, x):
            return super().log_px(x) + 1234.5

    shifted = ShiftedScorer(model, background=Shifted(background, 1234.5))  # type: ignore[arg-type]
    again = shifted.score(data, ["likelihood_ratio"])["likelihood_ratio"]
    np.testing.assert_allclose(again, base, rtol=0, atol=1e-6)
    # while the raw likelihood moves with the shift
    nll = ShiftedScorer(model).score(data, ["nll"])["nll"]
    np.testing.assert_allclose(nll, Scorer(model).score(data, ["nll"])["nll"] - 1234.5, atol=1e-6)


# --- the scores on a small trained model ----------------------------------------------------------
def test_every_score_is_finite_and_consistent(blob_model):
    model, data, background = blob_model
    scorer = Scorer(model, background=background, regret_steps=5, iw_samples=4)
    scores = scorer.score(data, list(SCORES))
    assert set(scores) == set(SCORES)
    for name, values in scores.items():
        assert values.shape == (len(data),) and np.isfinite(values).all(), name
    dims = 144
    np.testing.assert_allclose(scores["bits_per_dim"], scores["nll"] / (dims * math.log(2)))  # Bernoulli
    png = codec_bits(data.images, "png") / dims
    np.testing.assert_allclose(scores["complexity"], scores["bits_per_dim"] - png)
    assert (scores["likelihood_regret"] >= 0).all()  # the optimised posterior keeps its best ELBO
    again = Scorer(model, background=background, regret_steps=5, iw_samples=4).score(data, list(SCORES))
    for name in SCORES:  # seeded: the same numbers twice
        np.testing.assert_array_equal(again[name], scores[name])


def test_the_codecs_are_lossless_and_a_lossy_file_is_caught():
    rgb = torch.randint(0, 256, (3, 3, 12, 12), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    for images in (rgb, rgb[:, :1]):  # colour and grey
        for codec in ("png", "webp"):
            np.testing.assert_array_equal(codec_bits(images, codec, verify=True), codec_bits(images, codec))
    image = Image.fromarray(rgb[0].permute(1, 2, 0).numpy())
    jpeg = io.BytesIO()
    image.save(jpeg, format="JPEG", quality=50)
    assert not decodes_to(jpeg.getvalue(), image)


def test_scores_separate_noise_from_the_training_images(blob_model):
    model, data, background = blob_model
    noise = torch.randint(
        0, 256, (64, 1, 12, 12), generator=torch.Generator().manual_seed(0), dtype=torch.uint8
    )
    scorer = Scorer(model, background=background)
    ref, ood = (
        scorer.score(data, ["nll", "likelihood_ratio"]),
        scorer.score(noise, ["nll", "likelihood_ratio"]),
    )
    assert auroc(ref["nll"], ood["nll"]) > 0.95
    assert auroc(ref["likelihood_ratio"], ood["likelihood_ratio"]) > 0.95


def test_scorer_refuses_what_it_cannot_do(blob_model):
    model, data, _ = blob_model
    with pytest.raises(UsageError, match="--fit-background"):
        Scorer(model).score(data, ["likelihood_ratio"])
    with pytest.raises(UsageError, match="unknown score 'typo'"):
        Scorer(model).score(data, ["typo"])
    with pytest.raises(UsageError, match="model takes"):
        Scorer(model).score(torch.zeros(2, 1, 8, 8, dtype=torch.uint8), ["nll"])
    with pytest.raises(UsageError, match="K"):
        Scorer(model, iw_samples=0)


def test_a_conditional_model_scores_the_mixture_over_its_classes():
    from tests.models.tiny import tiny_vae

    torch.manual_seed(0)
    model = tiny_vae(condition={"name": "label", "num_classes": 3}).eval()
    x = torch.randint(0, 256, (5, 1, 12, 12), dtype=torch.uint8)
    nll = Scorer(model, iw_samples=1).score(x, ["nll"])["nll"]
    from vaelab.evaluation.likelihood import iw_log_likelihood_batch

    with torch.random.fork_rng():
        torch.manual_seed(0)
        per_class = torch.stack(
            [
                iw_log_likelihood_batch(model, x.float() / 255, 1, labels=torch.full((5,), y))[1]
                for y in range(3)
            ]
        )
    expected = -(torch.logsumexp(per_class.double(), 0) - math.log(3)).numpy()
    np.testing.assert_allclose(nll, expected, rtol=1e-6)


# --- the background model -------------------------------------------------------------------------
@pytest.mark.parametrize("kernel", [3, 5])
def test_causal_taps_read_only_earlier_pixels(kernel):
    x = torch.rand(1, 2, 7, 7, requires_grad=True)
    taps = causal_taps(x, kernel)
    r = kernel // 2
    assert taps.shape == (1, 7, 7, 2 * r * (kernel + 1))
    taps[0, 3, 3].sum().backward()
    seen = x.grad[0].abs().sum(0).nonzero().tolist()
    expected = [[3 + dy, 3 + dx] for dy in range(-r, 1) for dx in range(-r, r + 1) if dy < 0 or dx < 0]
    assert sorted(seen) == sorted(expected)


@pytest.mark.parametrize("kind", ["pixelcnn", "vae-perturbed"])
def test_background_saves_and_loads_to_the_same_numbers(tmp_path, kind, blob_model):
    model, data, _ = blob_model
    model.save_pretrained(tmp_path / "m")
    spec = BackgroundSpec(kind=kind, epochs=1, batch_size=64)
    background = fit_background(model, data, "none", spec)
    save_background(background, tmp_path / "m")
    loaded = load_background(tmp_path / "m")
    assert loaded is not None and loaded.info["kind"] == kind
    x = data.images.float() / 255
    torch.manual_seed(1)
    a = background.log_prob(x, 2)
    torch.manual_seed(1)
    b = loaded.log_prob(x, 2)
    torch.testing.assert_close(a, b)


def test_a_missing_or_damaged_background(tmp_path, blob_model):
    from vaelab.errors import ModelLoadError

    model, _, background = blob_model
    model.save_pretrained(tmp_path / "m")
    assert load_background(tmp_path / "m") is None
    folder = save_background(background, tmp_path / "m")
    (folder / "model.safetensors").write_bytes(b"not tensors")
    with pytest.raises(ModelLoadError, match="fit it again"):
        load_background(tmp_path / "m")


# --- calibration ----------------------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(st.integers(1, 3000), st.sampled_from([0.01, 0.05, 0.1, 0.2, 0.5]), st.integers(0, 2**31))
def test_calibration_threshold_gives_the_asked_fpr_on_the_calibration_set(n, fpr, seed):
    scores = np.random.default_rng(seed).normal(size=n)
    threshold = threshold_at_fpr(scores, fpr)
    assert (scores > threshold).sum() == math.floor(fpr * n + 1e-9)  # distinct scores: exactly


def test_calibration_with_ties_never_exceeds_the_fpr():
    scores = np.repeat([1.0, 2.0, 3.0], 100)
    threshold = threshold_at_fpr(scores, 0.05)
    assert threshold == 3.0 and (scores > threshold).mean() <= 0.05


def test_calibration_is_stored_beside_the_model(tmp_path):
    torch.manual_seed(0)
    mlp_vae(12, 2, 8).save_pretrained(tmp_path / "m")
    scores = np.random.default_rng(0).normal(size=1000)
    c = calibrate(scores, "nll", 0.05, 1, "quadrants (test)", {})
    assert c.observed_fpr == 0.05 and c.n == 1000 and sum(c.histogram["counts"]) == 1000
    save_calibration(c, tmp_path / "m")
    save_calibration(calibrate(scores, "complexity", 0.1, 1, "q", {"codec": "png"}), tmp_path / "m")
    loaded = load_calibrations(tmp_path / "m")
    assert set(loaded) == {"nll", "complexity"}
    assert loaded["nll"].threshold == c.threshold and loaded["nll"].dataset == "quadrants (test)"
    assert loaded["complexity"].matches(1, {"codec": "png"}) and not loaded["complexity"].matches(
        1, {"codec": "webp"}
    )
    assert loaded["nll"].is_out(np.array([c.threshold, c.threshold + 1])).tolist() == [False, True]
    with pytest.raises(UsageError, match="false-positive rate"):
        threshold_at_fpr(scores, 1.5)


def test_symlog_edges_cover_a_far_tail():
    values = np.concatenate([np.random.default_rng(0).normal(size=1000), [1e6]])
    edges = symlog_edges(values, 40)
    counts, _ = np.histogram(values, edges)
    assert counts.sum() == len(values) and np.all(np.diff(edges) > 0)
    assert counts.max() < len(values) / 2  # the bulk still spreads over several bins


@pytest.mark.parametrize(
    ("likelihood", "expected"),
    [
        ({"name": "bernoulli"}, "bernoulli"),
        ({"name": "pixelcnn", "pixel": "bernoulli"}, "bernoulli"),
        ({"name": "pixelcnn"}, "logistic_mixture"),
        ({"name": "gaussian"}, "logistic_mixture"),
    ],
)
def test_the_background_models_binary_pixels_for_any_bernoulli_vae(likelihood: dict, expected: str) -> None:
    """A VAE whose pixels are Bernoulli (plain or autoregressive) gets a Bernoulli background, so the
    likelihood ratio compares like with like; the others a distribution over 8-bit levels."""
    config = ModelConfig(image_shape=(1, 8, 8), likelihood=likelihood)
    assert background_likelihood(config)["name"] == expected
