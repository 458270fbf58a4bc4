"""The API over a conditional and a hierarchical model: every route goes through the model's own methods.

A conditional model needs the class (``label``) wherever it encodes or decodes, and says so with a 422
naming the field when it is missing or out of range; an unconditional one refuses a label. A
hierarchical model reconstructs through every layer (``model.reconstruct``), not just the top latent.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from .helpers import SIDE, decode_data_url, png_b64, png_bytes
from .test_api import DIGIT, assert_error

CVAE, LADDER = "cvae", "ladder"
IMAGE = {"image": png_b64(DIGIT)}
X = torch.from_numpy(DIGIT.astype(np.float32) / 255.0)[None, None]


@torch.no_grad()
def posterior_mean(model, labels: list[int] | None = None) -> np.ndarray:
    """The model's own posterior mean of the test digit X (with its label when conditional)."""
    return model.encode(X, None if labels is None else torch.tensor(labels)).mean[0].numpy()


def same_pixels(url: str, image: torch.Tensor) -> bool:
    """Whether a PNG data URL shows ``image`` (1, H, W) in [0, 1], up to PNG's 8 bits."""
    want = (image[0].detach().numpy() * 255).round()
    return bool(np.abs(decode_data_url(url).astype(float) - want).max() <= 1)


def test_models_say_what_they_take(variant_client):
    models = {m["id"]: m for m in variant_client.get("/api/models").json()}
    assert models[CVAE]["classes"] == ["0", "1", "2", "3"] and models[CVAE]["stochastic_layers"] == 1
    assert models[LADDER]["classes"] is None and models[LADDER]["stochastic_layers"] == 3
    assert models[CVAE]["guidance"] is True and models[LADDER]["guidance"] is False


def test_guided_samples_are_the_models(variant_app, variant_client):
    """``guidance`` reaches the model's own guided decode: the same latents, other images."""
    from vaelab.models.guidance import guided_decode

    model = variant_app.state.models[CVAE].model
    url = f"/api/models/{CVAE}/sample"
    plain = variant_client.post(url, json={"n": 4, "seed": 2, "label": 1}).json()
    guided = variant_client.post(url, json={"n": 4, "seed": 2, "label": 1, "guidance": 3}).json()
    assert guided["latents"] == plain["latents"] and guided["images"] != plain["images"]
    z = torch.tensor(guided["latents"])
    want = guided_decode(model, z, torch.ones(4, dtype=torch.long), guidance=3.0)
    assert all(same_pixels(url_, image) for url_, image in zip(guided["images"], want, strict=True))
    assert_error(variant_client.post(url, json={"guidance": -0.5}), 422, "guidance")
    res = variant_client.post(f"/api/models/{LADDER}/sample", json={"guidance": 2})
    assert_error(res, 422, "guidance needs a conditional model")


@pytest.mark.parametrize("model_id", [CVAE, LADDER])
def test_model_views_work(variant_client, model_id):
    """Model info ranks dimensions by KL and the map encodes the test set: a conditional model's with
    each image's own label."""
    info = variant_client.get(f"/api/models/{model_id}").json()
    assert sorted(d["dim"] for d in info["latent_dims"]) == [0, 1, 2, 3]
    assert len(variant_client.get(f"/api/models/{model_id}/latent-map").json()["x"]) == 40


def test_conditional_reconstruct_is_the_models(variant_app, variant_client):
    model = variant_app.state.models[CVAE].model
    url = f"/api/models/{CVAE}/reconstruct"
    recons = {}
    for label in (0, 2):
        res = variant_client.post(url, json={**IMAGE, "label": label}).json()
        assert same_pixels(res["reconstruction"], model.reconstruct(X, torch.tensor([label]))[0])
        assert np.allclose(res["mean"], posterior_mean(model, [label]), atol=1e-4)
        recons[label] = res["reconstruction"]
    assert recons[0] != recons[2]  # the label is used
    upload = variant_client.post(
        f"{url}/upload?resize=false&label=2", files={"file": ("d.png", png_bytes(DIGIT), "image/png")}
    ).json()
    assert upload["reconstruction"] == recons[2]


def test_a_test_image_is_encoded_with_its_own_label(variant_app, variant_client):
    served = variant_app.state.models[CVAE]
    index = torch.tensor([3])
    x, y = served.test_images(index), served.test_labels(index)
    res = variant_client.post(f"/api/models/{CVAE}/reconstruct", json={"index": 3}).json()
    assert same_pixels(res["reconstruction"], served.model.reconstruct(x, y)[0])
    other = (int(y) + 1) % 4
    relabelled = variant_client.post(f"/api/models/{CVAE}/reconstruct", json={"index": 3, "label": other})
    assert relabelled.json()["reconstruction"] != res["reconstruction"]


def test_hierarchical_reconstruct_uses_every_layer(variant_app, variant_client, monkeypatch):
    """The route answers the model's own reconstruction (every layer's posterior mean), not a decode of
    the top latent alone. (After two epochs of training the lower layers barely change the pixels, so
    the test watches the call too.)"""
    model = variant_app.state.models[LADDER].model
    calls = []
    reconstruct = model.reconstruct

    def spy(x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        calls.append((x.clone(), labels))
        return reconstruct(x, labels)

    monkeypatch.setattr(model, "reconstruct", spy)
    res = variant_client.post(f"/api/models/{LADDER}/reconstruct", json=IMAGE).json()
    assert len(calls) == 1 and torch.equal(calls[0][0], X) and calls[0][1] is None
    assert same_pixels(res["reconstruction"], reconstruct(X)[0])
    assert np.allclose(res["mean"], posterior_mean(model), atol=1e-4)


def test_conditional_routes_with_a_label(variant_app, variant_client):
    model = variant_app.state.models[CVAE].model
    z = [[0.5, -0.5, 1.0, 0.0]]
    decoded = variant_client.post(f"/api/models/{CVAE}/decode", json={"z": z, "label": 1}).json()
    assert same_pixels(decoded["images"][0], model.decode(torch.tensor(z), torch.tensor([1]))[0])
    enc = variant_client.post(f"/api/models/{CVAE}/encode", json={**IMAGE, "label": 3}).json()
    assert np.allclose(enc["mean"], posterior_mean(model, [3]), atol=1e-4)
    body = {"a": {"index": 0}, "b": {**IMAGE, "label": 1}, "steps": 4, "label": 2}
    path = variant_client.post(f"/api/models/{CVAE}/interpolate", json=body).json()
    assert len(path["images"]) == 4
    assert np.allclose(path["latents"][-1], posterior_mean(model, [1]), atol=1e-4)
    trav = variant_client.post(f"/api/models/{CVAE}/traverse", json={"top": 2, "steps": 3, "label": 0})
    assert len(trav.json()["images"]) == 6
    one_class = variant_client.post(f"/api/models/{CVAE}/sample", json={"n": 4, "label": 3}).json()
    balanced = variant_client.post(f"/api/models/{CVAE}/sample", json={"n": 4}).json()
    assert one_class["latents"] == balanced["latents"] and one_class["images"] != balanced["images"]


@pytest.mark.parametrize(
    ("route", "body"),
    [
        ("reconstruct", IMAGE),
        ("encode", IMAGE),
        ("decode", {"z": [[0, 0, 0, 0]]}),
        ("interpolate", {"a": {"index": 0}, "b": {"index": 1}}),
        ("traverse", {}),
    ],
)
def test_conditional_routes_need_a_label_in_range(variant_client, route, body):
    url = f"/api/models/{CVAE}/{route}"
    assert_error(variant_client.post(url, json=body), 422, "conditional on 4 classes", "'label'")
    assert_error(variant_client.post(url, json={**body, "label": 4}), 422, "'label' 4 is out of range")
    assert_error(variant_client.post(url, json={**body, "label": -1}), 422, "label")


def test_label_errors_name_the_field(variant_client):
    url = f"/api/models/{CVAE}"
    interp = {"a": IMAGE, "b": {"index": 1}, "label": 0}
    assert_error(variant_client.post(f"{url}/interpolate", json=interp), 422, "'a.label'")
    trav = {"source": {**IMAGE, "label": 9}, "label": 0}
    assert_error(variant_client.post(f"{url}/traverse", json=trav), 422, "'source.label' 9 is out of range")
    upload = {"file": ("d.png", png_bytes(DIGIT), "image/png")}
    assert_error(variant_client.post(f"{url}/reconstruct/upload", files=upload), 422, "'label'")
    assert_error(variant_client.post(f"{url}/sample", json={"label": 4}), 422, "out of range")
    z_with_label = {"a": {"z": [0, 0, 0, 0], "label": 1}, "b": {"index": 0}, "label": 0}
    assert_error(variant_client.post(f"{url}/interpolate", json=z_with_label), 422, "'z' source")


@pytest.mark.parametrize(
    ("route", "body"),
    [
        ("reconstruct", {**IMAGE, "label": 0}),
        ("reconstruct", {"index": 0, "label": 0}),
        ("encode", {**IMAGE, "label": 0}),
        ("decode", {"z": [[0, 0, 0, 0]], "label": 0}),
        ("interpolate", {"a": {"index": 0}, "b": {"index": 1}, "label": 0}),
        ("traverse", {"label": 0}),
        ("sample", {"label": 0}),
    ],
)
def test_an_unconditional_model_refuses_a_label(variant_client, route, body):
    res = variant_client.post(f"/api/models/{LADDER}/{route}", json=body)
    assert_error(res, 422, "unconditional", "label")


def test_hierarchical_routes(variant_app, variant_client):
    model = variant_app.state.models[LADDER].model
    z = [[0.5, -0.5, 1.0, 0.0]]
    decoded = variant_client.post(f"/api/models/{LADDER}/decode", json={"z": z}).json()
    assert same_pixels(decoded["images"][0], model.decode(torch.tensor(z))[0])
    body = {"a": {"index": 0}, "b": IMAGE, "steps": 3}
    assert len(variant_client.post(f"/api/models/{LADDER}/interpolate", json=body).json()["images"]) == 3
    first = variant_client.post(f"/api/models/{LADDER}/sample", json={"n": 3, "seed": 5}).json()
    assert decode_data_url(first["images"][0]).shape == (SIDE, SIDE)
    assert variant_client.post(f"/api/models/{LADDER}/sample", json={"n": 3, "seed": 5}).json() == first
