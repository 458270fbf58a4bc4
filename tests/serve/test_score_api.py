"""POST /api/models/{id}/score (and /score/upload, GET /score/reference): one image's OOD score."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from vaelab.cli import main
from vaelab.evaluation.ood.scores import SCORES
from vaelab.serve import schemas as s

from .helpers import SIDE, blobs, png_b64, png_bytes


def test_the_schema_names_every_score():
    assert set(s.ScoreName.__args__) == set(SCORES)


def test_without_a_background_the_default_is_nll_with_a_note(client):
    image = blobs(1, seed=5)[0][0]
    res = client.post("/api/models/mlp/score", json={"image": png_b64(image)})
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["score"] == "nll" and np.isfinite(body["value"])
    assert "--fit-background" in body["note"] and body["verdict"] is None
    ref = body["reference"]
    assert ref["source"].endswith("test images") and sum(ref["counts"]) == ref["n"] == 40
    assert len(ref["edges"]) == len(ref["counts"]) + 1 and 0 <= body["percentile"] <= 100
    asked = client.post("/api/models/mlp/score", json={"image": png_b64(image), "score": "likelihood_ratio"})
    assert asked.status_code == 422 and "--fit-background" in asked.json()["detail"]


@pytest.mark.parametrize("score", ["nll", "bits_per_dim", "complexity", "likelihood_regret"])
def test_each_score_by_index_and_upload(client, score):
    by_index = client.post("/api/models/conv/score", json={"index": 3, "score": score})
    assert by_index.status_code == 200, by_index.text
    upload = client.post(
        f"/api/models/conv/score/upload?score={score}",
        files={"file": ("x.png", png_bytes(blobs(1, seed=2)[0][0]), "image/png")},
    )
    assert upload.status_code == 200, upload.text
    assert upload.json()["input"].startswith("data:image/png;base64,")


def test_bad_requests_are_4xx(client):
    assert client.post("/api/models/mlp/score", json={}).status_code == 422
    assert client.post("/api/models/mlp/score", json={"index": 10**6}).status_code == 422
    big = png_b64(np.zeros((SIDE * 2, SIDE * 2), np.uint8))
    refused = client.post("/api/models/mlp/score", json={"image": big, "resize": False})
    assert refused.status_code == 422 and "resize" in refused.json()["detail"]
    assert client.post("/api/models/mlp/score", json={"index": 0, "score": "typo"}).status_code == 422
    bad = client.post("/api/models/mlp/score/upload", files={"file": ("x.txt", b"hello")})
    assert bad.status_code == 422
    assert client.post("/api/models/none/score", json={"index": 0}).status_code == 404


def test_conditional_and_hierarchical_models_score(variant_client):
    for model in ("cvae", "ladder"):
        res = variant_client.post(f"/api/models/{model}/score", json={"index": 1})
        assert res.status_code == 200, res.text
    regret = variant_client.post("/api/models/ladder/score", json={"index": 1, "score": "likelihood_regret"})
    assert regret.status_code == 422 and "single-latent" in regret.json()["detail"]


@pytest.fixture(scope="module")
def calibrated_client(tiny_runs, tmp_path_factory):
    """The app over a copy of the MLP run with a background model and a calibration of the default score."""
    from fastapi.testclient import TestClient

    from vaelab.serve import create_app_from_paths

    run = shutil.copytree(tiny_runs["mlp"], tmp_path_factory.mktemp("calibrated") / "mlp")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VAELAB_CACHE", str(tiny_runs["mlp"].parent / "cache"))
        fit = ["score", str(run), "--fit-background", "--background-epochs", "60", "--no-progress"]
        assert main(fit) == 0
        out = str(run.parent / "cal.csv")
        assert main(["score", str(run), "--calibrate", "--out", out, "--no-plot", "--no-progress"]) == 0
        app = create_app_from_paths([run])
        with TestClient(app) as c:
            yield c


def test_a_calibrated_model_says_in_or_out(calibrated_client):
    ref = calibrated_client.get("/api/models/mlp/score/reference").json()
    assert ref["score"] == "density_of_states" and ref["threshold"] is not None
    assert ref["reference"]["source"].startswith("calibration:")
    for index in range(5):  # (their values differ from the calibration's: other draws of the K samples)
        res = calibrated_client.post("/api/models/mlp/score", json={"index": index}).json()
        assert res["score"] == "density_of_states" and res["fpr"] == 0.05 and res["note"] is None
        assert res["verdict"] == ("out" if res["value"] > res["threshold"] else "in")
    other = calibrated_client.get("/api/models/mlp/score/reference?score=nll").json()
    assert other["threshold"] is None and other["reference"]["source"].endswith("test images")
