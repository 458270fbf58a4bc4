"""``POST /api/models/{id}/score`` (and its upload twin): how unlike the training data one image is, where
it falls in the reference histogram, and in or out when the score is calibrated beside the model.

Each model's scorer (its background model and calibrations, read from beside it) and each score's
reference histogram are computed on first use and kept (``ServedModel._cached``). The reference is the
calibration's histogram when the score is calibrated, else the scores of up to ``REFERENCE_IMAGES``
test images. The default score is the calibrated one, else the default of ``vaelab score`` when the
background model and its density of states are saved beside the model (``likelihood_ratio`` when only
an older background is), else ``nll`` with a note saying what is missing.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Annotated

import numpy as np
import torch
from fastapi import APIRouter, File, HTTPException, Query, Request, UploadFile

from vaelab.evaluation.ood.background import load_background
from vaelab.evaluation.ood.calibration import Calibration, load_calibrations, symlog_edges
from vaelab.evaluation.ood.scores import DEFAULT_SCORE, SCORES, Scorer
from vaelab.io.images import to_uint8
from vaelab.serve import schemas as s
from vaelab.serve.images import data_url, decode_base64, load_image
from vaelab.serve.inputs import served_model
from vaelab.serve.state import ServedModel, Unavailable

REFERENCE_IMAGES = 1000
NO_BACKGROUND = (
    "no background model beside this model, so the default is the raw likelihood (nll), which ranks "
    "simple images (flat, dark) as in-distribution; fit one with 'vaelab score MODEL --fit-background'"
)
ERRORS: dict[int | str, dict[str, object]] = {code: {"model": s.ErrorResponse} for code in (404, 413, 422)}


@dataclass
class ModelScoring:
    scorer: Scorer
    default: str
    note: str | None
    calibrations: dict[str, Calibration]
    lock: threading.Lock  # one scoring at a time per model: the IW draws are seeded per call


def scoring(m: ServedModel) -> ModelScoring:
    """The model's scorer and calibrations, read once from beside it."""

    def load() -> ModelScoring:
        background = load_background(m.path, m.model.device)
        binarize = "static" if m.data_config_dict.get("binarize") == "static" else "none"
        calibrations = load_calibrations(m.path)
        c = next(iter(calibrations.values()), None)
        scorer = Scorer(
            m.model,
            binarize,
            c.iw_samples if c else 1,
            background,
            (c.settings.get("codec") if c else None) or "png",
            batch_size=256,
        )
        if c is not None:
            default, note = c.score, None
        elif background is not None:
            default, note = DEFAULT_SCORE if background.states is not None else "likelihood_ratio", None
        else:
            default, note = "nll", NO_BACKGROUND
        return ModelScoring(scorer, default, note, calibrations, threading.Lock())

    return m._cached("scoring", load)


def reference(m: ServedModel, ms: ModelScoring, name: str) -> s.ScoreReference | None:
    """The reference histogram of score ``name`` (None when the model has neither a calibration of it
    nor a test set here)."""
    c = ms.calibrations.get(name)
    if c is not None and c.iw_samples == ms.scorer.iw_samples:
        return s.ScoreReference(source=f"calibration: {c.dataset}", n=c.n, **c.histogram)

    def compute() -> s.ScoreReference:
        data = m.test_set()
        pick = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))[:REFERENCE_IMAGES]
        with ms.lock:
            values = ms.scorer.score(data.images[pick.sort().values], [name])[name]
        edges = symlog_edges(values)
        counts, _ = np.histogram(values, bins=edges)
        return s.ScoreReference(
            source=f"{data.name} test images",
            n=len(values),
            edges=edges.tolist(),
            counts=counts.astype(float).tolist(),
        )

    try:
        return m._cached(f"score-reference:{name}", compute)
    except Unavailable:
        return None


def percentile(ref: s.ScoreReference, value: float) -> float:
    """Percent of the reference below ``value``, interpolated linearly inside its bin."""
    edges, counts = np.asarray(ref.edges), np.asarray(ref.counts)
    below = np.clip((value - edges[:-1]) / np.maximum(np.diff(edges), 1e-300), 0.0, 1.0)
    return float(100 * (below * counts).sum() / max(counts.sum(), 1.0))


def score_one(m: ServedModel, image: torch.Tensor, name: str | None) -> s.ScoreResponse:
    """The response for one image (C, H, W) in [0, 1]."""
    ms = scoring(m)
    name = name or ms.default
    ms.scorer.check([name])  # a UsageError (422) names what this score needs
    pixels = to_uint8(image)[None]
    with ms.lock:
        value = float(ms.scorer.score(pixels, [name])[name][0])
    ref = reference(m, ms, name)
    c = ms.calibrations.get(name)
    if c is not None and c.iw_samples != ms.scorer.iw_samples:
        c = None
    return s.ScoreResponse(
        score=name,
        title=SCORES[name].title,
        value=value,
        percentile=None if ref is None else round(percentile(ref, value), 2),
        verdict=None if c is None else ("out" if value > c.threshold else "in"),
        threshold=None if c is None else c.threshold,
        fpr=None if c is None else c.fpr,
        reference=ref,
        input=data_url(image),
        note=ms.note if name == "nll" and ms.default == "nll" else None,
    )


Score = Annotated[s.ScoreName | None, Query(description=s.SCORE_FIELD)]


def score_image(request: Request, model_id: str, body: s.ScoreRequest) -> s.ScoreResponse:
    m = served_model(request, model_id)
    if body.index is not None:
        size = len(m.test_set())
        if body.index >= size:
            raise HTTPException(422, f"index {body.index} is out of range: the test set has {size} images")
        image = m.test_images(torch.tensor([body.index]))[0]
    else:
        assert body.image is not None
        image = load_image(
            decode_base64(body.image), m.model.image_shape, resize=body.resize, invert=body.invert
        )
    return score_one(m, image, body.score)


def score_upload(
    request: Request,
    model_id: str,
    file: Annotated[UploadFile, File(description="an image file (PNG, JPEG, ...)")],
    score: Score = None,
    resize: Annotated[bool, Query(description="centre-crop and scale to the model's size")] = True,
    invert: Annotated[bool, Query(description="invert grey levels (dark ink on light paper)")] = False,
) -> s.ScoreResponse:
    m = served_model(request, model_id)
    data = file.file.read(s.MAX_BODY_BYTES + 1)
    return score_one(m, load_image(data, m.model.image_shape, resize=resize, invert=invert), score)


def score_reference(request: Request, model_id: str, score: Score = None) -> s.ScoreReferenceResponse:
    m = served_model(request, model_id)
    ms = scoring(m)
    name = score or ms.default
    ms.scorer.check([name])
    c = ms.calibrations.get(name)
    ref = reference(m, ms, name)
    return s.ScoreReferenceResponse(
        score=name,
        title=SCORES[name].title,
        reference=ref,
        threshold=None if c is None else c.threshold,
        note=ms.note if name == "nll" and ms.default == "nll" else None,
    )


def register(router: APIRouter) -> None:
    """Add the score endpoints to the API's router (under its /api prefix)."""
    path = "/models/{model_id}/score"
    router.add_api_route(
        path,
        score_image,
        methods=["POST"],
        responses=ERRORS,
        summary="Score an image: how unlike the training data it is",
    )
    router.add_api_route(
        f"{path}/upload",
        score_upload,
        methods=["POST"],
        responses=ERRORS,
        summary="Score an uploaded image file (multipart form, field 'file')",
    )
    router.add_api_route(
        f"{path}/reference",
        score_reference,
        methods=["GET"],
        responses=ERRORS,
        summary="A score's in-distribution reference histogram",
    )
