"""End to end: the training loop's cheap evaluation, ``vaelab evaluate`` and ``vaelab compare``."""

import json

import pytest

from vaelab.cli import main
from vaelab.evaluation import load_report
from vaelab.training import train


@pytest.fixture
def run(tiny_config, tmp_path):
    cfg = tiny_config(
        3, "data.binarize=dynamic", "train.eval_every=2", "train.eval_iw_samples=10", "train.eval_images=40"
    )
    return train(cfg, tmp_path / "run", progress=False, log=False).run_dir


def evaluate(run, *extra):
    args = ["evaluate", str(run), "--iw-samples", "20", "--n-samples", "60", "--subset", "30"]
    return main([*args, "--no-progress", "--device", "cpu", *extra])


def test_training_logs_the_cheap_evaluation_every_n_epochs(run):
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    logged = [r["epoch"] for r in rows if "eval_log_px" in r]
    assert logged == [2, 3]  # every 2 epochs, and the last
    row = rows[-1]
    assert row["eval_iw_samples"] == 10 and row["eval_images"] == 20  # the whole validation split
    assert row["eval_log_px"] < 0 and row["eval_log_px_se"] > 0
    assert 0 <= row["eval_active_units"] <= 4


def test_evaluate_writes_a_report_that_states_k_images_and_errors(run, capsys):
    assert evaluate(run) == 0
    printed = capsys.readouterr().out
    report = load_report(run)
    assert (run / "report.md").read_text() == printed
    ll = report["log_likelihood"]
    assert ll["iw_samples"] == 20 and ll["images"] == 30 and ll["log_px_se"] > 0
    assert list(ll["by_k"]) == ["1", "10", "20"] and ll["k_gap"]["k_low"] == 10
    assert "bits_per_dim" not in ll and "binarised" in ll["unit_note"]
    # The IW bound sits above the one-sample ELBO on the same images.
    assert ll["log_px"] > report["elbo"]["elbo"]
    assert report["data"]["binarize"] == "dynamic" and report["data"]["binarize_seed"] is not None
    assert report["data"]["images"] == 30 and report["data"]["split_images"] == 40
    assert report["posterior"]["latent_dim"] == 4 and len(report["posterior"]["kl_per_dim"]) == 4
    assert 0 < report["reconstruction"]["ssim"] <= 1 and report["reconstruction"]["psnr"] > 0
    sq = report["sample_quality"]
    assert sq["available"] and sq["fake_images"] == 60 and sq["real_images"] == 40
    assert 0 <= sq["precision"] <= 1 and sq["fd"] >= 0 and "feature net" in sq["feature_space"]
    # Sharpness beside PSNR / SSIM and beside FD / precision / recall, from the same samples.
    recon = report["reconstruction"]
    assert recon["hf_power_ratio"] > 0 and recon["laplacian_var_ratio_se"] > 0
    sharp = report["sample_sharpness"]
    assert sharp["available"] and sharp["samples"] == 60 and sharp["reference_images"] == 40
    assert sharp["sample_seed"] == sq["sample_seed"] and sharp["hf_power_ratio"] > 0
    assert 0 <= sharp["near_binary_fraction"] <= 1 and 0 <= sharp["data_near_binary_fraction"] <= 1
    rows = [line.split(" | ")[0] for line in printed.splitlines()]
    at = rows.index("| FD, feature net")
    assert rows[at - 2 : at] == [
        "| HF power ratio, reconstructions",
        "| Laplacian variance ratio, reconstructions",
    ]
    assert "| near-binary pixels, samples" in rows[at:] and "| near-binary pixels, data" in rows[at:]
    assert report["inception_fid"]["available"] is False and report["inception_fid"]["reason"]
    # Density and coverage (k=5), and the references: N(0, I) is this model's own sampling; the ceiling
    # is a random half B of the 40 test images against the other half A, beside 20 samples against A.
    assert sq["k_density_coverage"] == 5 and 0 <= sq["coverage"] <= 1 and sq["density"] >= 0
    refs = sq["references"]
    assert refs["standard_normal"]["same_as_model"] and refs["standard_normal"]["fd"] == sq["fd"]
    ceiling, matched = refs["held_out_real"], refs["model_vs_half"]
    assert ceiling["fake_images"] == matched["fake_images"] == 20
    assert ceiling["real_images"] == matched["real_images"] == 20 and "random half B" in ceiling["kind"]
    ratio = sq["vs_references"]["coverage_over_ceiling"]
    assert ratio == pytest.approx(matched["coverage"] / ceiling["coverage"])
    assert "per_class" not in sq and "class_accuracy" not in sq
    assert "## Samples beside their references" in printed
    assert "| held-out real: half B of the test split (ceiling) | half A (20) | 20 |" in printed
    assert "|   coverage / held-out real images'" in rows[at:] and "| coverage" in rows[at:]
    assert "K=20, 30 images" in printed and "±" in printed
    # Same seed, same numbers.
    assert evaluate(run, "--out", str(run / "again")) == 0
    again = load_report(run / "again")
    assert again["log_likelihood"]["log_px"] == ll["log_px"]
    assert again["sample_quality"]["fd"] == sq["fd"]
    assert again["sample_sharpness"]["hf_power_ratio"] == sharp["hf_power_ratio"]


def test_a_killed_evaluation_resumes_from_its_journal_when_run_again(run, monkeypatch, capsys):
    """The journal lives beside the report: a kill in the middle leaves the finished batches there,
    the same command picks them up and ends with the numbers of one uninterrupted evaluation."""
    from vaelab.evaluation import dataset_likelihood

    assert evaluate(run, "--no-sample-quality", "--batch-size", "10") == 0
    whole = load_report(run)["log_likelihood"]
    real = dataset_likelihood.estimate_batch

    def killed_at_batch_2(model, part, opts, number):
        if number == 2:
            raise KeyboardInterrupt
        return real(model, part, opts, number)

    with monkeypatch.context() as m:
        m.setattr(dataset_likelihood, "estimate_batch", killed_at_batch_2)
        assert evaluate(run, "--no-sample-quality", "--batch-size", "10") == 130  # as after Ctrl-C
    assert len(list(run.glob("iw-journal-*.jsonl"))) == 1
    capsys.readouterr()
    assert evaluate(run, "--no-sample-quality", "--batch-size", "10") == 0
    again = load_report(run)["log_likelihood"]
    assert again["resumed_batches"] == 2 and again["log_px"] == whole["log_px"]
    assert again["by_k"] == whole["by_k"]
    assert not list(run.glob("iw-journal-*"))


def test_conditional_model_reports_guided_samples_per_class(tiny_config, tmp_path, capsys):
    import numpy as np
    from tests.conftest import make_blobs

    images, labels = make_blobs(600)  # 100 test images: about 12 per class and half
    np.savez(tmp_path / "blobs600.npz", images=images, labels=labels)
    extra = ["model.condition.name=label", "model.condition.label_dropout=0.2"]
    cfg = tiny_config(3, f"data.path={tmp_path / 'blobs600.npz'}", *extra)
    run = train(cfg, tmp_path / "cvae", progress=False, log=False).run_dir
    capsys.readouterr()
    assert evaluate(run, "--guidance", "2", "--temperature", "0.8", "--n-samples", "80") == 0
    printed = capsys.readouterr().out
    sq = load_report(run)["sample_quality"]
    assert sq["guidance"] == 2 and sq["temperature"] == 0.8 and "guidance 2" in sq["sample_kind"]
    assert 0 <= sq["class_accuracy"] <= 1
    # Not N(0, I) at T = 1: a second draw, the same labels, no guidance.
    normal = sq["references"]["standard_normal"]
    assert not normal["same_as_model"] and normal["fake_images"] == 80 and normal["fd"] != sq["fd"]
    # The ceiling is class-matched: each class's half-B images beside as many of its samples, all
    # against the class's half-A images; accuracy counts every sample of the class.
    refs = sq["references"]
    per_class = sq["per_class"]
    assert [row["class"] for row in per_class["rows"]] == [0, 1, 2, 3]
    for row in per_class["rows"]:
        assert row["images"] == row["ceiling"]["images"] > 5 and row["accuracy_images"] == 20
        assert 0 <= row["accuracy"] <= 1 and 0 <= row["ceiling"]["recall"] <= 1
        assert row["recall_over_ceiling"] == pytest.approx(row["recall"] / row["ceiling"]["recall"])
    assert sum(row["images"] for row in per_class["rows"]) == refs["held_out_real"]["fake_images"] == 50
    assert sum(row["reference_images"] for row in per_class["rows"]) == 50  # half A, by class
    assert per_class["worst_accuracy"] == min(row["accuracy"] for row in per_class["rows"])
    assert "### Per class" in printed and "|   class accuracy, samples" in printed


def test_evaluate_refuses_guidance_for_a_model_without_label_dropout(run, capsys):
    assert evaluate(run, "--guidance", "2") == 2
    assert "unconditional" in capsys.readouterr().err


def test_compare_prints_and_writes_side_by_side(run, tmp_path, capsys):
    assert evaluate(run, "--no-sample-quality") == 0
    assert evaluate(run, "--seed", "1", "--out", str(tmp_path / "seed1"), "--no-sample-quality") == 0
    capsys.readouterr()
    out = tmp_path / "cmp.md"
    assert main(["compare", str(run), str(tmp_path / "seed1" / "report.json"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert out.read_text() == printed
    assert "| metric | run | seed1 |" in printed and "-log p(x), IW (nats)" in printed
    table = json.loads(out.with_suffix(".json").read_text())
    assert table["runs"] == ["run", "seed1"]
    a, b = table["metrics"]["-log p(x), IW (nats)"].values()
    assert a[0] != b[0] and a[1] > 0  # other seed, other draws; with standard errors


def test_evaluate_and_compare_report_user_errors(tmp_path, capsys):
    assert main(["compare", str(tmp_path)]) == 2
    assert "no evaluation report" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "nope")]) == 2


def test_gaussian_model_reports_bits_per_dim_over_8_bit_pixels():
    import torch

    from vaelab.data import ImageDataset
    from vaelab.evaluation import EvaluationOptions, evaluate_model, nats_to_bits_per_dim
    from vaelab.models import VAE, ModelConfig

    torch.manual_seed(0)
    cfg = {"image_shape": (1, 6, 6), "latent_dim": 2, "likelihood": {"name": "gaussian", "sigma": 0.2}}
    model = VAE(ModelConfig.model_validate(cfg)).eval()
    images = torch.randint(0, 256, (12, 1, 6, 6), dtype=torch.uint8)
    opts = EvaluationOptions(iw_samples=5, sample_quality=False)
    report = evaluate_model(model, ImageDataset(images, None, "g", None), options=opts)
    ll = report["log_likelihood"]
    assert ll["bits_per_dim"] == nats_to_bits_per_dim(ll["nll"], 36, levels=256)
    assert ll["bits_per_dim_se"] * 36 * 0.6931471805599453 == pytest.approx(ll["nll_se"])
    assert "ln 256" in ll["unit_note"] and report["sample_quality"]["available"] is False


def test_logistic_mixture_model_reports_bits_per_dim_of_its_discrete_likelihood():
    import math

    import torch

    from vaelab.data import ImageDataset
    from vaelab.evaluation import EvaluationOptions, evaluate_model
    from vaelab.models import VAE, ModelConfig

    torch.manual_seed(0)
    cfg = {
        "image_shape": (1, 8, 8),
        "latent_dim": 2,
        "encoder": {"name": "resnet", "channels": [4, 4]},
        "decoder": {"name": "ladder", "channels": [4, 4], "latent_layers": [1, 0], "latent_channels": 1},
        "likelihood": {"name": "logistic_mixture", "components": 2},
    }
    model = VAE(ModelConfig.model_validate(cfg)).eval()
    images = torch.randint(0, 256, (6, 1, 8, 8), dtype=torch.uint8)
    opts = EvaluationOptions(iw_samples=4, sample_quality=False)
    report = evaluate_model(model, ImageDataset(images, None, "g", None), options=opts)
    ll = report["log_likelihood"]
    # a normalised distribution over 256 levels: bits/dim is the NLL in bits per pixel, no offset,
    # and for an untrained model it is near log2(256) = 8 (uniform), not below 0 or far above
    assert ll["bits_per_dim"] == pytest.approx(ll["nll"] / (64 * math.log(2)))
    assert 0 < ll["bits_per_dim"] < 16 and "256 levels" in ll["unit_note"]
