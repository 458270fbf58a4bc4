"""Every endpoint of the REST API through FastAPI's test client: good requests and bad ones.

Bad requests must get a 4xx with a JSON ``detail``, never a 500 (the client re-raises server errors,
so an unhandled exception fails the test outright).
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from .helpers import SIDE, decode_data_url, png_b64, png_bytes

MLP, CONV = "mlp", "conv"
DIGIT = np.zeros((SIDE, SIDE), np.uint8)
DIGIT[2:8, 3:9] = 255


def assert_error(response, status: int, *words: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    detail = str(response.json()["detail"])
    for word in words:
        assert word in detail, detail


def test_health_and_models(client):
    assert client.get("/api/health").json() == {"status": "ok", "models": 2}
    models = client.get("/api/models").json()
    assert [m["id"] for m in models] == [MLP, CONV]
    for m in models:
        assert m["image_shape"] == [1, SIDE, SIDE] and m["latent_dim"] == 4
        assert m["priors"] == ["standard_normal"] and m["classes"] is None and m["guidance"] is False
        assert m["dataset"] == "npz" and m["epoch"] == 2


def test_model_info(client):
    info = client.get(f"/api/models/{CONV}").json()
    assert info["config"]["model"]["encoder"]["name"] == "conv"
    assert [row["epoch"] for row in info["metrics"]] == [1, 2] and "val_neg_elbo" in info["metrics"][0]
    kl = [d["kl"] for d in info["latent_dims"]]
    assert sorted(d["dim"] for d in info["latent_dims"]) == [0, 1, 2, 3]
    assert kl == sorted(kl, reverse=True) and min(kl) >= 0


def test_unknown_model_is_404(client):
    assert_error(client.get("/api/models/nope"), 404, "no model 'nope'", MLP)
    assert_error(client.post("/api/models/nope/sample", json={}), 404)


def test_sample(client):
    body = {"n": 5, "temperature": 0.7, "seed": 3}
    first = client.post(f"/api/models/{MLP}/sample", json=body).json()
    assert len(first["images"]) == 5 and first["nrow"] == 5
    assert len(first["latents"]) == 5 and len(first["latents"][0]) == 4
    assert decode_data_url(first["images"][0]).shape == (SIDE, SIDE)
    assert client.post(f"/api/models/{MLP}/sample", json=body).json() == first  # same seed, same images
    other = client.post(f"/api/models/{MLP}/sample", json={**body, "seed": 4}).json()
    assert other["latents"] != first["latents"]
    png = client.post(f"/api/models/{MLP}/sample?format=png", json=body)
    assert png.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(png.content)).width > 5 * SIDE


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"n": 65}, ["n"]),
        ({"n": 0}, ["n"]),
        ({"n": "many"}, ["n"]),
        ({"temperature": 0}, ["temperature"]),
        ({"seed": -1}, ["seed"]),
        ({"colour": "red"}, ["colour"]),
        ({"prior": "vamp"}, ["standard_normal", "vamp"]),
        ({"label": 3}, ["unconditional"]),
        ({"guidance": 2}, ["guidance", "unconditional"]),
        ({"guidance": -1}, ["guidance"]),
        ({"guidance": 11}, ["guidance"]),
    ],
)
def test_sample_bad_inputs(client, body, words):
    assert_error(client.post(f"/api/models/{MLP}/sample", json=body), 422, *words)


def test_bad_bodies(client):
    url = f"/api/models/{MLP}/sample"
    assert_error(client.post(url, content=b"{not json", headers={"content-type": "application/json"}), 422)
    assert_error(client.post(url, json=[1, 2]), 422)
    assert_error(client.post(url, content=b"x" * (5 * 1024 * 1024)), 413, "too large")
    chunked = client.post(url, content=iter([b"x" * (1024 * 1024)] * 5))  # no Content-Length header
    assert_error(chunked, 413)
    assert_error(client.post(f"/api/models/{MLP}/sample?format=gif", json={}), 422, "format")


def test_decode(client):
    z = [[0.0, 0.0, 0.0, 0.0], [2.0, -1.0, 0.5, 0.0]]
    res = client.post(f"/api/models/{CONV}/decode", json={"z": z}).json()
    assert len(res["images"]) == 2
    assert (
        client.post(f"/api/models/{CONV}/decode?format=png", json={"z": z}).headers["content-type"]
        == "image/png"
    )


@pytest.mark.parametrize(
    ("payload", "status", "word"),
    [
        (b'{"z": [[0, 0, 0]]}', 422, "latent_dim 4"),
        (b'{"z": []}', 422, "z"),
        (b'{"z": [[NaN, 0, 0, 0]]}', 422, "finite"),
        (b'{"z": [[Infinity, 0, 0, 0]]}', 422, "finite"),
        (b'{"z": [[1e300, 0, 0, 0]]}', 422, "z"),
        (b'{"z": [["a", 0, 0, 0]]}', 422, "z"),
        (b'{"z": ' + str([[0.0] * 4] * 65).encode() + b"}", 422, "z"),
    ],
)
def test_decode_bad_inputs(client, payload, status, word):
    res = client.post(
        f"/api/models/{MLP}/decode", content=payload, headers={"content-type": "application/json"}
    )
    assert_error(res, status, word)


def test_encode_and_reconstruct(client):
    enc = client.post(f"/api/models/{MLP}/encode", json={"image": png_b64(DIGIT)}).json()
    assert len(enc["mean"]) == 4 and all(s > 0 for s in enc["std"])
    by_index = client.post(f"/api/models/{MLP}/encode", json={"index": 0}).json()
    assert by_index["mean"] != enc["mean"]
    rec = client.post(f"/api/models/{MLP}/reconstruct", json={"image": png_b64(DIGIT, data_url=True)}).json()
    assert rec["mean"] == enc["mean"]
    assert np.array_equal(decode_data_url(rec["input"]), DIGIT)
    assert decode_data_url(rec["reconstruction"]).shape == (SIDE, SIDE)
    inverted = client.post(
        f"/api/models/{MLP}/reconstruct", json={"image": png_b64(DIGIT), "invert": True}
    ).json()
    assert np.array_equal(decode_data_url(inverted["input"]), 255 - DIGIT)
    # An image of another size is refused unless resize is asked for; colour is converted.
    big = np.zeros((3 * SIDE, 3 * SIDE, 3), np.uint8)
    big_b64 = __import__("base64").b64encode(png_bytes(big, "RGB")).decode()
    assert_error(client.post(f"/api/models/{MLP}/reconstruct", json={"image": big_b64}), 422, "resize")
    resized = client.post(f"/api/models/{MLP}/reconstruct", json={"image": big_b64, "resize": True})
    assert decode_data_url(resized.json()["input"]).shape == (SIDE, SIDE)


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({}, ["exactly one"]),
        ({"image": png_b64(DIGIT), "index": 0}, ["exactly one"]),
        ({"image": "%%%not base64"}, ["base64"]),
        ({"image": "aGVsbG8gd29ybGQ="}, ["not a readable image"]),  # base64 of "hello world"
        ({"image": "data:text/plain,hi"}, ["data URL"]),
        ({"index": 10_000}, ["out of range"]),
        ({"index": -1}, ["index"]),
        ({"image": 5}, ["image"]),
    ],
)
def test_encode_bad_inputs(client, body, words):
    assert_error(client.post(f"/api/models/{MLP}/encode", json=body), 422, *words)
    assert_error(client.post(f"/api/models/{CONV}/reconstruct", json=body), 422, *words)


def test_decompression_bomb_is_refused(client):
    bomb = Image.new("1", (6000, 6000))  # 36 MP of zeros: a few kB as PNG
    buf = io.BytesIO()
    bomb.save(buf, format="PNG")
    res = client.post(f"/api/models/{MLP}/reconstruct/upload", files={"file": ("bomb.png", buf.getvalue())})
    assert_error(res, 422, "pixels")


def test_upload(client):
    url = f"/api/models/{CONV}/reconstruct/upload"
    ok = client.post(url, files={"file": ("d.png", png_bytes(DIGIT), "image/png")}).json()
    assert np.array_equal(decode_data_url(ok["input"]), DIGIT)
    photo = np.full((40, 30), 255, np.uint8)  # dark ink on paper, another size: resized, inverted
    photo[10:30, 12:18] = 0
    res = client.post(f"{url}?invert=true", files={"file": ("p.png", png_bytes(photo))}).json()
    assert decode_data_url(res["input"]).max() > 200
    assert_error(
        client.post(url, files={"file": ("a.txt", b"not an image", "text/plain")}), 422, "not a readable"
    )
    assert_error(client.post(url, files={"file": ("e.png", b"")}), 422, "empty")
    assert_error(
        client.post(f"{url}?resize=false", files={"file": ("p.png", png_bytes(photo))}), 422, "30x40"
    )
    assert_error(client.post(url, data={"other": "x"}), 422, "file")
    assert_error(client.post(url, json={"file": "x"}), 422)


def test_interpolate(client):
    body = {"a": {"index": 0}, "b": {"index": 1}, "steps": 5}
    res = client.post(f"/api/models/{MLP}/interpolate", json=body).json()
    assert len(res["images"]) == 5 and res["nrow"] == 5
    ends = [client.post(f"/api/models/{MLP}/encode", json={"index": i}).json()["mean"] for i in (0, 1)]
    assert np.allclose(res["latents"][0], ends[0], atol=1e-4) and np.allclose(
        res["latents"][-1], ends[1], atol=1e-4
    )
    mixed = {"a": {"z": [0, 0, 0, 0]}, "b": {"image": png_b64(DIGIT)}, "steps": 3, "mode": "slerp"}
    slerp = client.post(f"/api/models/{CONV}/interpolate", json=mixed).json()
    assert len(slerp["images"]) == 3
    assert (
        client.post(f"/api/models/{CONV}/interpolate?format=png", json=mixed).headers["content-type"]
        == "image/png"
    )
    for bad, word in [
        ({**body, "steps": 1}, "steps"),
        ({**body, "steps": 33}, "steps"),
        ({**body, "mode": "cubic"}, "mode"),
        ({"a": {"z": [0, 0]}, "b": {"index": 0}}, "latent_dim"),
        ({"a": {"index": 0}}, "b"),
    ]:
        assert_error(client.post(f"/api/models/{MLP}/interpolate", json=bad), 422, word)


def test_traverse(client):
    info = client.get(f"/api/models/{MLP}").json()
    res = client.post(f"/api/models/{MLP}/traverse", json={"top": 2, "steps": 3}).json()
    assert res["dims"] == [d["dim"] for d in info["latent_dims"][:2]]
    assert len(res["images"]) == 6 and res["values"] == [-3.0, 0.0, 3.0]
    explicit = client.post(
        f"/api/models/{MLP}/traverse", json={"dims": [3], "source": {"index": 2}, "span": 1}
    ).json()
    assert explicit["dims"] == [3] and len(explicit["images"]) == 9
    png = client.post(f"/api/models/{MLP}/traverse?format=png", json={"dims": [0, 1]})
    assert png.headers["content-type"] == "image/png"
    assert_error(client.post(f"/api/models/{MLP}/traverse", json={"dims": [4]}), 422, "dims")
    assert_error(client.post(f"/api/models/{MLP}/traverse", json={"dims": []}), 422, "dims")
    assert_error(client.post(f"/api/models/{MLP}/traverse", json={"steps": 16}), 422, "steps")


def test_examples_and_latent_map(client):
    ex = client.get(f"/api/models/{MLP}/examples?n=6&seed=2").json()
    assert len(ex["images"]) == len(ex["indices"]) == len(ex["labels"]) == 6
    assert set(ex["labels"]) <= {0, 1, 2, 3}
    assert_error(client.get(f"/api/models/{MLP}/examples?n=65"), 422, "n")
    assert_error(client.get(f"/api/models/{MLP}/examples?n=two"), 422, "n")
    m = client.get(f"/api/models/{CONV}/latent-map").json()
    n = len(m["x"])
    assert n == 40 and len(m["y"]) == len(m["indices"]) == len(m["labels"]) == n  # 1/6 of 240 blobs
    assert len(m["mean"]) == 4 and np.array(m["components"]).shape == (2, 4)
    assert abs(float(np.mean(m["x"]))) < 1e-3  # PCA coordinates are centred
    # The map's point (x, y) decodes like any latent.
    z = (
        np.array(m["mean"])
        + m["x"][0] * np.array(m["components"][0])
        + m["y"][0] * np.array(m["components"][1])
    )
    assert client.post(f"/api/models/{CONV}/decode", json={"z": [z.tolist()]}).status_code == 200


def test_model_without_test_set(tiny_runs, tmp_path):
    """A model whose dataset is not on this machine still serves; test-set views answer 404."""
    import shutil

    from fastapi.testclient import TestClient

    from vaelab.serve import create_app_from_paths

    moved = tmp_path / "moved"
    shutil.copytree(tiny_runs["mlp"] / "model", moved)
    text = (moved / "config.json").read_text().replace("blobs.npz", "gone.npz")
    (moved / "config.json").write_text(text)
    with TestClient(create_app_from_paths([moved])) as c:
        (model,) = c.get("/api/models").json()
        assert model["name"] == "moved"
        assert len(c.get(f"/api/models/{model['id']}").json()["latent_dims"]) == 4  # KL over samples
        assert_error(c.get(f"/api/models/{model['id']}/latent-map"), 404, "not available")
        assert_error(c.get(f"/api/models/{model['id']}/examples"), 404)
        assert_error(c.post(f"/api/models/{model['id']}/encode", json={"index": 0}), 404)
        assert c.post(f"/api/models/{model['id']}/sample", json={"n": 2}).status_code == 200


def test_page_assets_and_docs_are_local(client):
    page = client.get("/")
    assert page.status_code == 200 and "latent-space explorer" in page.text
    for asset in ("app.js", "lib.js", "pad.js", "plots.js", "style.css", "favicon.svg"):
        res = client.get(f"/static/{asset}")
        assert res.status_code == 200, asset
        assert "http://" not in res.text.replace("http://www.w3.org", "") and "https://" not in res.text
    docs = client.get("/docs").text
    assert "/docs-assets/swagger-ui-bundle.js" in docs and "cdn" not in docs.lower()
    assert client.get("/docs-assets/swagger-ui-bundle.js").status_code == 200
    schema = client.get("/openapi.json").json()
    ops = {f"{method.upper()} {path}" for path, item in schema["paths"].items() for method in item}
    for name in ("sample", "decode", "encode", "reconstruct", "interpolate", "traverse"):
        assert f"POST /api/models/{{model_id}}/{name}" in ops
    assert "GET /api/models/{model_id}" in ops


def test_served_model_decodes_like_the_library(app, client):
    """The API's decode is the model's decode: same pixels (up to PNG's 8 bits)."""
    model = app.state.models[MLP].model
    z = torch.tensor([[0.5, -0.5, 1.0, 0.0]])
    want = (model.decode(z)[0, 0].detach().numpy() * 255).round()
    got = decode_data_url(
        client.post(f"/api/models/{MLP}/decode", json={"z": z.tolist()}).json()["images"][0]
    )
    assert np.abs(got.astype(float) - want).max() <= 1


def test_a_fitted_gmm_prior_is_offered_and_sampled(tiny_runs, tmp_path):
    import shutil

    from fastapi.testclient import TestClient

    from vaelab.generation.priors import fit_prior, save_prior
    from vaelab.models import VAE
    from vaelab.serve import create_app_from_paths

    run = tmp_path / "mlp"
    shutil.copytree(tiny_runs["mlp"], run)
    model = VAE.from_pretrained(run / "model")
    images = torch.rand(200, 1, SIDE, SIDE)
    save_prior(fit_prior(model, images, "gmm", {"components": 3}), run)
    save_prior(fit_prior(model, images, "flow", {"steps": 2, "hidden": 8}), run)
    with TestClient(create_app_from_paths([run])) as c:
        assert c.get("/api/models").json()[0]["priors"] == ["standard_normal", "gmm", "flow"]
        url = f"/api/models/{MLP}/sample"
        gmm = c.post(url, json={"n": 4, "seed": 1, "prior": "gmm"}).json()["latents"]
        flow = c.post(url, json={"n": 4, "seed": 1, "prior": "flow"}).json()["latents"]
        own = c.post(url, json={"n": 4, "seed": 1}).json()["latents"]
        assert c.post(url, json={"n": 4, "prior": "diffusion"}).status_code == 422
    assert np.array(gmm).shape == (4, 4) and not np.allclose(gmm, own)
    assert np.array(flow).shape == (4, 4) and not np.allclose(flow, own)


def test_a_model_whose_kl_does_not_split_by_dimension_is_served(tmp_path):
    """A VampPrior's KL has no per-dimension form: the model page still loads, ranking the latent
    dimensions by activity (variance of the posterior mean) and saying the KL is not available."""
    from fastapi.testclient import TestClient

    from vaelab.serve import create_app_from_paths

    from .conftest import VARIANTS, train_runs

    run = train_runs(
        tmp_path, {"vamp": [*VARIANTS["mlp"], "--set", "model.prior={name: vamp, components: 8}"]}
    )
    with TestClient(create_app_from_paths([run["vamp"]])) as c:
        model_id = c.get("/api/models").json()[0]["id"]
        info = c.get(f"/api/models/{model_id}")
        assert info.status_code == 200, info.text
        dims = info.json()["latent_dims"]
        assert [d["kl"] for d in dims] == [None] * 4
        activity = [d["activity"] for d in dims]
        assert activity == sorted(activity, reverse=True) and activity[0] > 0
        traverse = c.post(f"/api/models/{model_id}/traverse", json={"top": 2, "steps": 3})
        assert traverse.status_code == 200, traverse.text
