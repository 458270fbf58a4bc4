"""The control commands end to end on tiny runs: conditional training and sampling, the GMM prior,
interpolation / traversal / attribute images, and their error messages."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from vaelab.cli import main

TINY = [
    "--epochs", "2", "--no-progress", "--device", "cpu",
    "--set", "model.encoder.hidden_dims=[32]", "--set", "model.decoder.hidden_dims=[32]",
    "--set", "model.latent_dim=4", "--set", "train.grid_samples=16",
]  # fmt: skip


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A conditional, a guided conditional (label dropout) and an unconditional tiny run on the
    four-class blobs (a couple of seconds)."""
    from vaelab.data.synthetic import quadrant_squares

    root = tmp_path_factory.mktemp("control")
    images, labels = quadrant_squares(240, 12, 0)
    npz = root / "blobs.npz"
    np.savez(npz, images=images, labels=labels)
    out = {"npz": npz}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VAELAB_CACHE", str(root / "cache"))
        cond = ["--set", "model.condition.name=label"]
        guided = ["--set", "model.condition={name: label, label_dropout: 0.2}"]
        for name, extra in (("cond", cond), ("guided", guided), ("plain", [])):
            run = root / name
            assert main(["train", "--dataset", str(npz), "--run-dir", str(run), *TINY, *extra]) == 0
            out[name] = run
    return out


def test_conditional_sampling_writes_labels(runs, tmp_path, capsys):
    grid = Image.open(runs["cond"] / "samples" / "epoch_002.png")  # one row per class
    assert grid.height > 3 * 12 and grid.width > grid.height
    out = tmp_path / "s.npz"
    assert main(["sample", str(runs["cond"]), "-n", "8", "--class", "all", "--out", str(out)]) == 0
    data = np.load(out)
    assert data["labels"].dtype == np.int64 and data["labels"].tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert data["images"].shape == (8, 12, 12, 1)
    assert main(["sample", str(runs["cond"]), "-n", "3", "--class", "2", "--out", str(out)]) == 0
    assert np.load(out)["labels"].tolist() == [2, 2, 2]
    capsys.readouterr()
    assert main(["sample", str(runs["cond"]), "-n", "3", "--class", "4", "--out", str(out)]) == 2
    assert "class 4 is out of range: this model has 4 classes" in capsys.readouterr().err
    assert main(["sample", str(runs["plain"]), "-n", "3", "--class", "1", "--out", str(out)]) == 2
    assert "unconditional" in capsys.readouterr().err


def test_guided_sampling_from_the_command_line(runs, tmp_path, capsys):
    plain, guided = tmp_path / "w1.npz", tmp_path / "w3.npz"
    args = ["sample", str(runs["guided"]), "-n", "8", "--temperature", "0.8"]
    assert main([*args, "--out", str(plain)]) == 0
    assert main([*args, "--guidance", "3", "--out", str(guided), "--grid", str(tmp_path / "w3.png")]) == 0
    a, b = np.load(plain), np.load(guided)
    assert a["labels"].tolist() == b["labels"].tolist() and not np.array_equal(a["images"], b["images"])
    capsys.readouterr()
    assert main(["sample", str(runs["cond"]), "-n", "3", "--guidance", "2", "--out", str(plain)]) == 2
    assert "trained without: retrain with --set model.condition.label_dropout" in capsys.readouterr().err
    assert main(["sample", str(runs["plain"]), "-n", "3", "--guidance", "2", "--out", str(plain)]) == 2
    assert "unconditional" in capsys.readouterr().err


def test_conditional_training_needs_labels(runs, tmp_path, capsys):
    npz = tmp_path / "unlabelled.npz"
    np.savez(npz, images=np.load(runs["npz"])["images"])
    args = ["train", "--dataset", str(npz), "--run-dir", str(tmp_path / "r"), *TINY]
    assert main([*args, "--set", "model.condition.name=label"]) == 2
    err = capsys.readouterr().err
    assert "model.condition needs class labels, but dataset 'unlabelled' has none" in err


def test_conditional_model_in_the_web_app(runs):
    from fastapi.testclient import TestClient

    from vaelab.serve import create_app_from_paths

    with TestClient(create_app_from_paths([runs["cond"]])) as client:
        model_id = client.get("/api/models").json()[0]["id"]
        url = f"/api/models/{model_id}/sample"
        one = client.post(url, json={"n": 4, "label": 1, "seed": 0})
        two = client.post(url, json={"n": 4, "label": 2, "seed": 0})
        assert one.status_code == 200 and one.json()["images"] != two.json()["images"]
        assert client.post(url, json={"n": 4, "label": 7}).status_code == 422


def test_gmm_prior_commands(runs, tmp_path, capsys):
    out = tmp_path / "g.npz"
    assert main(["sample", str(runs["plain"]), "--prior", "gmm", "--out", str(out)]) == 2
    assert "vaelab fit-prior" in capsys.readouterr().err
    assert main(["fit-prior", str(runs["plain"]), "--components", "3"]) == 0
    assert (runs["plain"] / "model" / "prior_gmm.safetensors").is_file()
    assert main(["sample", str(runs["plain"]), "--prior", "gmm", "-n", "5", "--out", str(out)]) == 0
    assert np.load(out)["images"].shape == (5, 12, 12, 1)


@pytest.mark.parametrize(
    ("kind", "options"),
    [
        ("flow", ["--set", "steps=2", "--set", "hidden=8"]),
        ("diffusion", ["--set", "steps=2", "--set", "hidden=8", "--set", "sample_steps=4"]),
        ("two_stage", ["--set", "steps=2", "--set", "hidden=8"]),
    ],
)
def test_fit_prior_and_sample_from_it(runs, tmp_path, capsys, kind, options):
    assert main(["fit-prior", str(runs["plain"]), "--prior", kind, *options, "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert f"prior_{kind}.safetensors ({kind} prior fitted to" in err and " s, encoding included" in err
    out = tmp_path / "s.npz"
    steps = ["--steps", "2"] if kind == "diffusion" else []
    args = ["sample", str(runs["plain"]), "--prior", kind, "-n", "5", *steps, "--out", str(out)]
    assert main([*args, "--grid", str(tmp_path / "s.png")]) == 0
    assert np.load(out)["images"].shape == (5, 12, 12, 1)


def test_a_class_conditional_prior_samples_the_class_asked_for(runs, tmp_path):
    args = ["fit-prior", str(runs["plain"]), "--prior", "flow", "--set", "steps=2", "--set", "hidden=8"]
    assert main([*args, "--set", "conditional=true", "--no-progress"]) == 0
    out = tmp_path / "c.npz"
    assert (
        main(["sample", str(runs["plain"]), "--prior", "flow", "-n", "4", "--class", "3", "--out", str(out)])
        == 0
    )
    assert np.load(out)["labels"].tolist() == [3, 3, 3, 3]


@pytest.mark.parametrize(
    "command",
    [
        ["interpolate", "--from", "0", "--to", "5", "--steps", "6"],
        ["traverse", "--dims", "3", "--steps", "5"],
        ["attribute", "--from-class", "0", "--to-class", "3", "-n", "2", "--steps", "4"],
    ],
)
@pytest.mark.parametrize("suffix", ["png", "gif"])
def test_latent_tools_write_images(runs, tmp_path, command, suffix):
    out = tmp_path / f"out.{suffix}"
    assert main([command[0], str(runs["plain"]), *command[1:], "--out", str(out)]) == 0
    image = Image.open(out)
    assert image.format == suffix.upper()
    if suffix == "gif":
        assert image.n_frames > 2


def test_latent_tool_errors(runs, tmp_path, capsys):
    out = str(tmp_path / "x.jpg")
    assert main(["interpolate", str(runs["plain"]), "--out", out]) == 2
    assert "--out must end in .png or .gif" in capsys.readouterr().err
    assert main(["interpolate", str(runs["plain"]), "--from", "9999", "--out", out + ".png"]) == 2
    assert "--from 9999 is out of range" in capsys.readouterr().err


def test_evaluate_a_conditional_model(runs, tmp_path):
    out = tmp_path / "report"
    args = ["evaluate", str(runs["cond"]), "--iw-samples", "4", "--n-samples", "40", "--out", str(out)]
    assert main([*args, "--no-progress", "--device", "cpu"]) == 0
    import json

    report = json.loads((out / "report.json").read_text())
    assert report["log_likelihood"]["nll"] > 0 and report["sample_quality"]["available"]


def test_export_refuses_a_conditional_model(runs, tmp_path, capsys):
    assert main(["export", str(runs["cond"]), "--format", "onnx", "--out", str(tmp_path / "x")]) == 2
    assert "no input for a label" in capsys.readouterr().err
