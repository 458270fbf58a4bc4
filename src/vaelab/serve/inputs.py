"""What a request names, checked against the model it is for: the model, latents, class labels, images.

The schemas check what they can alone (types, ranges, exactly one source); these check what needs the
model (its latent size, its number of classes, its test set) and raise ``HTTPException`` 422 with a
message that names the field. Images are encoded through the model's own ``encode``, with the label
when the model is conditional.
"""

from __future__ import annotations

import torch
from fastapi import HTTPException, Request
from fastapi.responses import Response

from vaelab.serve import schemas as s
from vaelab.serve.images import data_urls, decode_base64, grid_png, load_image
from vaelab.serve.state import ServedModel


def served_model(request: Request, model_id: str) -> ServedModel:
    """The model named ``model_id`` in the URL, or a 404 listing the ids there are."""
    models: dict[str, ServedModel] = request.app.state.models
    if model_id not in models:
        raise HTTPException(404, f"no model {model_id!r}; served models: {', '.join(models)}")
    return models[model_id]


def check_latent(m: ServedModel, z: list[float], what: str = "z") -> torch.Tensor:
    """A latent from JSON as a tensor; a 422 naming ``what`` when its length is not the model's."""
    if len(z) != m.model.latent_dim:
        raise HTTPException(
            422, f"{what} has {len(z)} numbers; model {m.id!r} has latent_dim {m.model.latent_dim}"
        )
    return torch.tensor(z, dtype=torch.float32)


def check_label(m: ServedModel, label: int | None, field: str = "label", required: bool = True) -> int | None:
    """The class a request gives, checked against the model: a conditional model needs one (unless
    not ``required``) in [0, num_classes), an unconditional model takes none. A 422 names ``field``."""
    n = m.num_classes
    if n is None:
        if label is not None:
            raise HTTPException(422, f"model {m.id!r} is unconditional: it takes no '{field}'")
        return None
    if label is None:
        if required:
            raise HTTPException(
                422, f"model {m.id!r} is conditional on {n} classes: give '{field}' (0 to {n - 1})"
            )
        return None
    if label >= n:
        raise HTTPException(
            422, f"'{field}' {label} is out of range: model {m.id!r} has {n} classes (0 to {n - 1})"
        )
    return label


def label_tensor(label: int | None, n: int) -> torch.Tensor | None:
    """``n`` copies of a checked class as int64 labels (None stays None: an unconditional model)."""
    return None if label is None else torch.full((n,), label, dtype=torch.int64)


def source_image(
    m: ServedModel, src: s.ImageSource, field: str = ""
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The image a request names, as a float tensor (1, C, H, W) in [0, 1], and its label (1,) when the
    model is conditional: the one given, else a test-set image's own. ``field`` prefixes error names."""
    if src.index is not None:
        size = len(m.test_set())
        if src.index >= size:
            raise HTTPException(
                422, f"{field}index {src.index} is out of range: the test set has {size} images"
            )
        index = torch.tensor([src.index])
        image = m.test_images(index)
        own = m.test_labels(index) if src.label is None else None
        if own is not None:
            return image, own
    else:
        assert src.image is not None
        data = decode_base64(src.image)
        image = load_image(data, m.model.image_shape, resize=src.resize, invert=src.invert)[None]
    return image, label_tensor(check_label(m, src.label, f"{field}label"), 1)


def source_latent(m: ServedModel, src: s.LatentSource, field: str = "") -> torch.Tensor:
    """The latent point a request names: ``z`` itself, or the posterior mean of its image."""
    if src.z is not None:
        return check_latent(m, src.z, f"{field}z")
    (q,) = m.encode(*source_image(m, src, field))
    return q.mean[0].cpu()


@torch.inference_mode()
def decode(m: ServedModel, z: torch.Tensor, label: int | None) -> torch.Tensor:
    """Images (N, C, H, W) in [0, 1] on the CPU for latents (N, latent_dim), of a checked class when
    the model is conditional: the model's ``decode`` (a hierarchical model's lower layers at their
    prior means, so the same z always gives the same image)."""
    labels = label_tensor(label, len(z))
    device = m.model.device
    return m.model.decode(z.to(device), None if labels is None else labels.to(device)).cpu()


def images_response(
    images: torch.Tensor, fmt: str, nrow: int, latents: torch.Tensor | None = None
) -> s.ImagesResponse | Response:
    """Images as PNG data URLs in JSON, or (``fmt == "png"``) one PNG grid with ``nrow`` per row."""
    if fmt == "png":
        return Response(grid_png(images, nrow=nrow), media_type="image/png")
    rows = None if latents is None else [[round(float(v), 5) for v in row] for row in latents]
    return s.ImagesResponse(images=data_urls(images), nrow=nrow, latents=rows)


def floats(t: torch.Tensor, digits: int = 5) -> list[float]:
    """Rounded floats for JSON (shorter bodies; no precision anyone can see in a 28x28 image is lost)."""
    return [round(float(v), digits) for v in t.flatten()]
