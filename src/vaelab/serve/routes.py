"""The REST API: model info, sample, reconstruct, encode, decode, interpolate, traverse, and the views
the page needs (test-set examples, the PCA map).

Every handler goes through the model's own methods (``encode``, ``decode``, ``decode_sample`` with
guidance, ``reconstruct``), so a conditional model gets its ``label`` and a hierarchical one
reconstructs through every layer. Handlers are plain ``def``: FastAPI runs them in its thread pool, so
a decode never blocks the event loop. What the schema cannot check (latent sizes, labels, test-set
indices) is checked in ``inputs.py``, with a 422 that names the field; image problems raise
``ImageError`` (a 422, see ``app.py``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import torch
from fastapi import APIRouter, File, HTTPException, Path, Query, Request, UploadFile
from fastapi.responses import Response

from vaelab.generation import interpolate_latents, traverse_latents
from vaelab.generation.conditional import balanced_labels
from vaelab.models.guidance import check_guidance, guided_decode, takes_guidance
from vaelab.serve import schemas as s
from vaelab.serve.images import data_url, data_urls, grid_png, load_image
from vaelab.serve.inputs import (
    check_label,
    check_latent,
    decode,
    floats,
    images_response,
    label_tensor,
    served_model,
    source_image,
    source_latent,
)
from vaelab.serve.scoring import register as register_scoring
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


def images_route(name: str, title: str, response_model: type = s.ImagesResponse) -> Any:
    """The decorator of an endpoint that answers images: JSON, or one PNG grid with format=png."""
    return router.post(
        f"/models/{{model_id}}/{name}", summary=title, response_model=response_model, responses=PNG_RESPONSE
    )


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
        guidance=takes_guidance(m.model),
        stochastic_layers=m.model.num_stochastic_layers,
        dataset=m.data_config_dict.get("name"),
        epoch=m.meta.get("epoch"),
    )


# --- endpoints -------------------------------------------------------------------------------------
@router.get("/health", summary="Liveness check")
def health(request: Request) -> dict[str, object]:
    return {"status": "ok", "models": len(request.app.state.models)}


@router.get("/models", summary="List the served models")
def list_models(request: Request) -> list[s.ModelSummary]:
    return [summary(m) for m in request.app.state.models.values()]


@router.get(
    "/models/{model_id}", summary="One model: config, training curves, latent dims by use", responses=ERRORS
)
def model_info(request: Request, model_id: ModelId) -> s.ModelInfo:
    m = served_model(request, model_id)
    kl, activity = m.dim_usage()
    config = m.run_config or {"model": m.meta.get("model"), "data": m.data_config_dict}
    numeric = [
        {k: v for k, v in row.items() if isinstance(v, int | float) and not isinstance(v, bool) and v == v}
        for row in m.metrics
    ]
    return s.ModelInfo(
        **summary(m).model_dump(),
        config=config,
        metrics=numeric,
        latent_dims=[
            s.LatentDim(
                dim=d,
                kl=None if kl is None else round(float(kl[d]), 5),
                activity=round(float(activity[d]), 5),
            )
            for d in m.dims_by_use()
        ],
    )


@images_route("sample", "Sample images from the prior")
def sample_images(
    request: Request, model_id: ModelId, body: s.SampleRequest, format: Format = "json"
) -> s.ImagesResponse | Response:
    m = served_model(request, model_id)
    if body.prior is not None and body.prior not in m.priors:
        raise HTTPException(422, f"model {m.id!r} samples from {m.priors}; got prior {body.prior!r}")
    check_guidance(m.model, body.guidance)  # a UsageError (422) saying why, before any work
    labels = label_tensor(check_label(m, body.label, required=False), body.n)
    if labels is None and m.num_classes is not None:  # no class asked for: all classes, balanced
        labels = balanced_labels(body.n, list(range(m.num_classes)))
    gen = torch.Generator().manual_seed(body.seed)
    if body.prior is not None and body.prior != m.priors[0]:  # fitted to the aggregate posterior
        prior = m.fitted_prior(body.prior)
        prior_labels = labels if prior.num_classes and m.num_classes else None
        z = prior.sample(body.n, temperature=body.temperature, labels=prior_labels, seed=body.seed)
        z = z.to(m.model.device)
    else:
        z = m.model.prior.sample(body.n, body.temperature, generator=gen)
    # decode_sample, through guided_decode: a hierarchical model's lower layers draw from their priors,
    # from the same generator
    lab = labels.to(m.model.device) if labels is not None else None
    options = {"temperature": body.temperature, "generator": gen, "guidance": body.guidance}
    images = guided_decode(m.model, z, lab, **options).cpu()
    return images_response(images, format, min(body.n, 8), latents=z)


@images_route("decode", "Decode latents to images (a hierarchical model's lower layers: prior means)")
def decode_latents(
    request: Request, model_id: ModelId, body: s.DecodeRequest, format: Format = "json"
) -> s.ImagesResponse | Response:
    m = served_model(request, model_id)
    z = torch.stack([check_latent(m, row, f"z[{i}]") for i, row in enumerate(body.z)])
    return images_response(decode(m, z, check_label(m, body.label)), format, min(len(z), 8))


@router.post("/models/{model_id}/encode", summary="Posterior q(z|x) of an image", responses=ERRORS)
def encode_image(request: Request, model_id: ModelId, body: s.ImageSource) -> s.EncodeResponse:
    m = served_model(request, model_id)
    (q,) = m.encode(*source_image(m, body))
    return s.EncodeResponse(mean=floats(q.mean[0]), std=floats(q.stddev[0]))


@router.post("/models/{model_id}/reconstruct", summary="Reconstruct an image", responses=ERRORS)
def reconstruct_image(request: Request, model_id: ModelId, body: s.ImageSource) -> s.ReconstructResponse:
    m = served_model(request, model_id)
    return _reconstruct(m, *source_image(m, body))


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
    label: Annotated[
        int | None, Query(ge=0, le=s.MAX_CLASS, description="the image's class (conditional models only)")
    ] = None,
) -> s.ReconstructResponse:
    m = served_model(request, model_id)
    labels = label_tensor(check_label(m, label), 1)
    data = file.file.read(s.MAX_BODY_BYTES + 1)
    image = load_image(data, m.model.image_shape, resize=resize, invert=invert)
    return _reconstruct(m, image[None], labels)


def _reconstruct(m: ServedModel, image: torch.Tensor, labels: torch.Tensor | None) -> s.ReconstructResponse:
    """The model's own reconstruction of one image (1, C, H, W), with its top latent's posterior."""
    device = m.model.device
    x, y = image.to(device), None if labels is None else labels.to(device)
    with torch.inference_mode():
        q = m.model.encode(x, y)
        recon = m.model.reconstruct(x, y).cpu()[0]
    return s.ReconstructResponse(
        input=data_url(image[0]),
        reconstruction=data_url(recon),
        mean=floats(q.mean[0]),
        std=floats(q.stddev[0]),
    )


@images_route("interpolate", "Decode a path between two points")
def interpolate_images(
    request: Request, model_id: ModelId, body: s.InterpolateRequest, format: Format = "json"
) -> s.ImagesResponse | Response:
    m = served_model(request, model_id)
    label = check_label(m, body.label)
    ends = source_latent(m, body.a, "a."), source_latent(m, body.b, "b.")
    z = interpolate_latents(*ends, body.steps, body.mode)
    return images_response(decode(m, z, label), format, body.steps, latents=z)


@images_route("traverse", "Sweep latent dimensions one at a time", s.TraverseResponse)
def traverse_images(
    request: Request, model_id: ModelId, body: s.TraverseRequest, format: Format = "json"
) -> s.TraverseResponse | Response:
    m = served_model(request, model_id)
    label = check_label(m, body.label)
    d = m.model.latent_dim
    if body.dims is None:
        dims = m.dims_by_use()[: body.top]
    else:
        if any(dim >= d for dim in body.dims):
            raise HTTPException(422, f"dims must lie in [0, {d}) for model {m.id!r}; got {body.dims}")
        dims = body.dims
    start = torch.zeros(d) if body.source is None else source_latent(m, body.source, "source.")
    values = torch.linspace(-body.span, body.span, body.steps)
    images = decode(m, traverse_latents(start, dims, values), label)
    if format == "png":
        return Response(grid_png(images, nrow=body.steps), media_type="image/png")
    return s.TraverseResponse(images=data_urls(images), nrow=body.steps, dims=dims, values=floats(values))


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
        x=floats(p.coords[:, 0], 4),
        y=floats(p.coords[:, 1], 4),
        indices=lm.indices.tolist(),
        labels=None if lm.labels is None else lm.labels.tolist(),
        mean=floats(p.mean),
        components=[floats(c) for c in p.components],
        explained_variance=floats(p.explained_variance_ratio),
    )


# OOD scores (serve/scoring.py): under /api like the rest, so /docs and the schema fuzz see them.
register_scoring(router)
