"""The REST API: model info, sample, reconstruct, encode, decode, interpolate, traverse, and the views
the page needs (test-set examples, the PCA map).

Handlers are plain ``def``: FastAPI runs them in its thread pool, so a decode never blocks the event
loop. Each one validates what the schema cannot (latent sizes, test-set indices) and raises
``HTTPException`` with a message; image problems raise ``ImageError`` (a 422, see ``app.py``).
"""

from __future__ import annotations

from typing import Annotated, Literal

import torch
from fastapi import APIRouter, File, HTTPException, Path, Query, Request, UploadFile
from fastapi.responses import Response

from vaelab.generation import encode_mean, interpolate_latents, traverse_latents
from vaelab.generation.conditional import balanced_labels
from vaelab.serve import schemas as s
from vaelab.serve.images import data_url, data_urls, decode_base64, grid_png, load_image
from vaelab.serve.state import ServedModel

router = APIRouter(prefix="/api")

ModelId = Annotated[str, Path(description="a model's id, as listed by GET /api/models")]
Format = Annotated[
    Literal["json", "png"],
    Query(description="json: PNG data URLs in JSON; png: one image/png grid of all the images"),
]
ERRORS: dict[int | str, dict[str, object]] = {code: {"model": s.ErrorResponse} for code in (404, 413, 422)}
PNG_RESPONSE: dict[int | str, dict[str, object]] = {
    200: {"content": {"image/png": {}}, "description": "JSON, or a PNG grid with format=png"},
    **ERRORS,
}


def served_model(request: Request, model_id: str) -> ServedModel:
    """The model named ``model_id`` in the URL, or a 404 listing the ids there are."""
    models: dict[str, ServedModel] = request.app.state.models
    if model_id not in models:
        raise HTTPException(404, f"no model {model_id!r}; served models: {', '.join(models)}")
    return models[model_id]


def summary(m: ServedModel) -> s.ModelSummary:
    """What GET /api/models lists for one model, including what sampling it supports."""
    return s.ModelSummary(
        id=m.id,
        name=m.name,
        path=str(m.path),
        image_shape=m.model.image_shape,
        latent_dim=m.model.latent_dim,
        priors=m.priors,
        classes=m.classes,
        dataset=m.data_config_dict.get("name"),
        epoch=m.meta.get("epoch"),
    )


def images_response(
    images: torch.Tensor, fmt: str, nrow: int, latents: torch.Tensor | None = None
) -> s.ImagesResponse | Response:
    """Images as PNG data URLs in JSON, or (``fmt == "png"``) one PNG grid with ``nrow`` per row."""
    if fmt == "png":
        return Response(grid_png(images, nrow=nrow), media_type="image/png")
    rows = None if latents is None else [[round(float(v), 5) for v in row] for row in latents]
    return s.ImagesResponse(images=data_urls(images), nrow=nrow, latents=rows)


def check_latent(m: ServedModel, z: list[float], what: str = "z") -> torch.Tensor:
    """A latent from JSON as a tensor; a 422 naming ``what`` when its length is not the model's."""
    if len(z) != m.model.latent_dim:
        raise HTTPException(
            422, f"{what} has {len(z)} numbers; model {m.id!r} has latent_dim {m.model.latent_dim}"
        )
    return torch.tensor(z, dtype=torch.float32)


def source_image(m: ServedModel, src: s.ImageSource) -> torch.Tensor:
    """The image a request names, as a float tensor (C, H, W) in [0, 1]."""
    if src.index is not None:
        size = len(m.test_set())
        if src.index >= size:
            raise HTTPException(422, f"index {src.index} is out of range: the test set has {size} images")
        return m.test_images(torch.tensor([src.index]))[0]
    assert src.image is not None
    return load_image(decode_base64(src.image), m.model.image_shape, resize=src.resize, invert=src.invert)


def source_latent(m: ServedModel, src: s.LatentSource) -> torch.Tensor:
    """The latent point a request names: ``z`` itself, or the posterior mean of its image."""
    if src.z is not None:
        return check_latent(m, src.z)
    return encode_mean(m.model, source_image(m, src)[None])[0]


@torch.inference_mode()
def decode(m: ServedModel, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
    """Images (N, C, H, W) in [0, 1] on the CPU for latents (N, latent_dim) (and labels, if conditional)."""
    if labels is not None:
        labels = labels.to(m.model.device)
    return m.model.decode(z.to(m.model.device), labels).cpu()


# --- endpoints -------------------------------------------------------------------------------------
@router.get("/health", summary="Liveness check")
def health(request: Request) -> dict[str, object]:
    return {"status": "ok", "models": len(request.app.state.models)}


@router.get("/models", summary="List the served models")
def list_models(request: Request) -> list[s.ModelSummary]:
    return [summary(m) for m in request.app.state.models.values()]


@router.get(
    "/models/{model_id}", summary="One model: config, training curves, latent dims by KL", responses=ERRORS
)
def model_info(request: Request, model_id: ModelId) -> s.ModelInfo:
    m = served_model(request, model_id)
    kl = m.kl_dims()
    order = torch.argsort(kl, descending=True).tolist()
    config = m.run_config or {"model": m.meta.get("model"), "data": m.data_config_dict}
    numeric = [
        {k: v for k, v in row.items() if isinstance(v, int | float) and not isinstance(v, bool) and v == v}
        for row in m.metrics
    ]
    return s.ModelInfo(
        **summary(m).model_dump(),
        config=config,
        metrics=numeric,
        latent_dims=[s.LatentDim(dim=d, kl=round(float(kl[d]), 5)) for d in order],
    )


@router.post(
    "/models/{model_id}/sample",
    summary="Sample images from the prior",
    response_model=s.ImagesResponse,
    responses=PNG_RESPONSE,
)
def sample_images(
    request: Request, model_id: ModelId, body: s.SampleRequest, format: Format = "json"
) -> s.ImagesResponse | Response:
    m = served_model(request, model_id)
    if body.prior is not None and body.prior not in m.priors:
        raise HTTPException(422, f"model {m.id!r} samples from {m.priors}; got prior {body.prior!r}")
    labels = None
    if body.label is not None:
        if m.classes is None:
            raise HTTPException(422, f"model {m.id!r} is unconditional: it takes no 'label'")
        if body.label >= len(m.classes):
            raise HTTPException(422, f"label {body.label} is out of range: {len(m.classes)} classes")
        labels = torch.full((body.n,), body.label, dtype=torch.int64)
    elif m.classes is not None:  # a conditional model with no class asked for: all classes, balanced
        labels = balanced_labels(body.n, list(range(len(m.classes))))
    gen = torch.Generator().manual_seed(body.seed)
    if body.prior == "gmm":  # the ex-post mixture fitted to the aggregate posterior
        z = m.gmm_prior().sample(body.n, temperature=body.temperature, seed=body.seed).to(m.model.device)
    else:
        z = m.model.prior.sample(body.n, body.temperature, generator=gen)
    # decode_sample: a hierarchical model's lower layers draw from their priors, from the same generator
    lab = labels.to(m.model.device) if labels is not None else None
    images = m.model.decode_sample(z, lab, temperature=body.temperature, generator=gen).cpu()
    nrow = min(body.n, 8)
    return images_response(images, format, nrow, latents=z)


@router.post(
    "/models/{model_id}/decode",
    summary="Decode latents to images",
    response_model=s.ImagesResponse,
    responses=PNG_RESPONSE,
)
def decode_latents(
    request: Request, model_id: ModelId, body: s.DecodeRequest, format: Format = "json"
) -> s.ImagesResponse | Response:
    m = served_model(request, model_id)
    z = torch.stack([check_latent(m, row, f"z[{i}]") for i, row in enumerate(body.z)])
    return images_response(decode(m, z), format, min(len(z), 8))


@router.post("/models/{model_id}/encode", summary="Posterior q(z|x) of an image", responses=ERRORS)
def encode_image(request: Request, model_id: ModelId, body: s.ImageSource) -> s.EncodeResponse:
    m = served_model(request, model_id)
    with torch.inference_mode():
        q = m.model.encode(source_image(m, body)[None].to(m.model.device))
    return s.EncodeResponse(mean=_floats(q.mean[0]), std=_floats(q.stddev[0]))


@router.post("/models/{model_id}/reconstruct", summary="Reconstruct an image", responses=ERRORS)
def reconstruct_image(request: Request, model_id: ModelId, body: s.ImageSource) -> s.ReconstructResponse:
    m = served_model(request, model_id)
    return _reconstruct(m, source_image(m, body))


@router.post(
    "/models/{model_id}/reconstruct/upload",
    summary="Reconstruct an uploaded image file (multipart form, field 'file')",
    responses=ERRORS,
)
def reconstruct_upload(
    request: Request,
    model_id: ModelId,
    file: Annotated[UploadFile, File(description="an image file (PNG, JPEG, ...)")],
    resize: Annotated[bool, Query(description="centre-crop and scale to the model's size")] = True,
    invert: Annotated[bool, Query(description="invert grey levels (dark ink on light paper)")] = False,
) -> s.ReconstructResponse:
    m = served_model(request, model_id)
    data = file.file.read(s.MAX_BODY_BYTES + 1)
    image = load_image(data, m.model.image_shape, resize=resize, invert=invert)
    return _reconstruct(m, image)


def _reconstruct(m: ServedModel, image: torch.Tensor) -> s.ReconstructResponse:
    with torch.inference_mode():
        q = m.model.encode(image[None].to(m.model.device))
        recon = m.model.decode(q.mean).cpu()[0]
    return s.ReconstructResponse(
        input=data_url(image),
        reconstruction=data_url(recon),
        mean=_floats(q.mean[0]),
        std=_floats(q.stddev[0]),
    )


@router.post(
    "/models/{model_id}/interpolate",
    summary="Decode a path between two points",
    response_model=s.ImagesResponse,
    responses=PNG_RESPONSE,
)
def interpolate_images(
    request: Request, model_id: ModelId, body: s.InterpolateRequest, format: Format = "json"
) -> s.ImagesResponse | Response:
    m = served_model(request, model_id)
    z = interpolate_latents(source_latent(m, body.a), source_latent(m, body.b), body.steps, body.mode)
    return images_response(decode(m, z), format, body.steps, latents=z)


@router.post(
    "/models/{model_id}/traverse",
    summary="Sweep latent dimensions one at a time",
    response_model=s.TraverseResponse,
    responses=PNG_RESPONSE,
)
def traverse_images(
    request: Request, model_id: ModelId, body: s.TraverseRequest, format: Format = "json"
) -> s.TraverseResponse | Response:
    m = served_model(request, model_id)
    d = m.model.latent_dim
    if body.dims is None:
        dims = torch.argsort(m.kl_dims(), descending=True)[: body.top].tolist()
    else:
        if any(dim >= d for dim in body.dims):
            raise HTTPException(422, f"dims must lie in [0, {d}) for model {m.id!r}; got {body.dims}")
        dims = body.dims
    start = torch.zeros(d) if body.source is None else source_latent(m, body.source)
    values = torch.linspace(-body.span, body.span, body.steps)
    images = decode(m, traverse_latents(start, dims, values))
    if format == "png":
        return Response(grid_png(images, nrow=body.steps), media_type="image/png")
    return s.TraverseResponse(images=data_urls(images), nrow=body.steps, dims=dims, values=_floats(values))


@router.get("/models/{model_id}/examples", summary="Test-set images to pick from", responses=ERRORS)
def examples(
    request: Request,
    model_id: ModelId,
    n: Annotated[int, Query(ge=1, le=s.MAX_EXAMPLES)] = 16,
    seed: Annotated[int, Query(ge=0, le=s.MAX_SEED)] = 0,
) -> s.Examples:
    m = served_model(request, model_id)
    data = m.test_set()
    indices = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:n]
    labels = None if data.labels is None else data.labels[indices].tolist()
    return s.Examples(indices=indices.tolist(), labels=labels, images=data_urls(m.test_images(indices)))


@router.get("/models/{model_id}/latent-map", summary="2-D PCA map of test-set encodings", responses=ERRORS)
def latent_map(request: Request, model_id: ModelId) -> s.LatentMapResponse:
    m = served_model(request, model_id)
    lm = m.latent_map()
    p = lm.projection
    return s.LatentMapResponse(
        x=_floats(p.coords[:, 0], 4),
        y=_floats(p.coords[:, 1], 4),
        indices=lm.indices.tolist(),
        labels=None if lm.labels is None else lm.labels.tolist(),
        mean=_floats(p.mean),
        components=[_floats(c) for c in p.components],
        explained_variance=_floats(p.explained_variance_ratio),
    )


def _floats(t: torch.Tensor, digits: int = 5) -> list[float]:
    """Rounded floats for JSON (shorter bodies; no precision anyone can see in a 28x28 image is lost)."""
    return [round(float(v), digits) for v in t.flatten()]
