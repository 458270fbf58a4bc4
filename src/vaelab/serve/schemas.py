"""Request and response bodies of the REST API, with the limits that keep one request cheap.

The OpenAPI schema at /openapi.json (and the page at /docs) is generated from these models, so every
limit below is documented there too. Floats reject NaN and infinity: JSON has no such numbers, and
a NaN latent would only decode to noise.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

MAX_SAMPLES = 64  # images per sample request
MAX_DECODE = 64  # latents per decode request
MAX_STEPS = 32  # images per interpolation
MAX_TRAVERSE_DIMS = 16
MAX_TRAVERSE_STEPS = 15
MAX_EXAMPLES = 64
MAX_BODY_BYTES = 4 * 1024 * 1024  # whole request body; a 28x28 PNG is ~300 bytes
LATENT_BOUND = 1000.0  # |z_j| beyond this is meaningless under an N(0, I) prior
MAX_SEED = 2**63 - 1
MAX_CLASS = 2**31 - 1

Finite = Annotated[float, Field(allow_inf_nan=False)]
Latent = Annotated[float, Field(allow_inf_nan=False, ge=-LATENT_BOUND, le=LATENT_BOUND)]
Base64Image = Annotated[
    str,
    Field(
        min_length=1,
        max_length=3_000_000,
        description="A PNG (or JPEG, ...) file as base64, or as a 'data:image/png;base64,...' URL.",
    ),
]


def label_field(description: str) -> Any:
    """A ``label`` field: a class index, checked against the model's ``classes`` by the handler (the
    schema cannot know how many a model has)."""
    return Field(default=None, ge=0, le=MAX_CLASS, description=description)


DECODE_LABEL = "class to decode as: required by a conditional model, refused by an unconditional one"


class Strict(BaseModel):
    """Request bodies: unknown fields are errors, so a misspelt option is never silently ignored."""

    model_config = ConfigDict(extra="forbid")


# --- requests --------------------------------------------------------------------------------------
class SampleRequest(Strict):
    """Draw ``n`` images: z from the prior (std scaled by ``temperature``), decoded."""

    n: int = Field(default=16, ge=1, le=MAX_SAMPLES)
    temperature: Finite = Field(default=1.0, gt=0.0, le=10.0)
    guidance: Finite = Field(
        default=1.0,
        ge=0.0,
        le=10.0,
        description="classifier-free guidance scale (1: none); other values only for a model whose "
        "`guidance` is true (conditional, trained with label dropout)",
    )
    seed: int = Field(default=0, ge=0, le=MAX_SEED)
    prior: str | None = Field(default=None, description="one of the model's `priors`; default: its own")
    label: int | None = label_field("class to draw (conditional models only; default: all, balanced)")


class ImageSource(Strict):
    """An image: uploaded (``image``) or taken from the model's test set (``index``); exactly one."""

    image: Base64Image | None = None
    index: int | None = Field(default=None, ge=0, description="test-set index (see /examples)")
    resize: bool = Field(default=False, description="centre-crop and scale an image of another size")
    invert: bool = Field(default=False, description="invert grey levels (dark ink on light paper)")
    label: int | None = label_field(
        "the image's class, which a conditional model encodes it with (required for an uploaded image; "
        "a test-set image defaults to its own label); an unconditional model takes none"
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> ImageSource:
        given = [name for name in self._source_fields() if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of {', '.join(self._source_fields())}; got {given or 'none'}")
        return self

    @classmethod
    def _source_fields(cls) -> tuple[str, ...]:
        return ("image", "index")


class LatentSource(ImageSource):
    """A point in latent space: an image's posterior mean (``image`` or ``index``), or ``z`` itself."""

    z: list[Latent] | None = Field(default=None, min_length=1, max_length=4096)

    @model_validator(mode="after")
    def _label_is_an_images(self) -> LatentSource:
        if self.z is not None and self.label is not None:
            raise ValueError("'label' is the class of an image source; a 'z' source takes none")
        return self

    @classmethod
    def _source_fields(cls) -> tuple[str, ...]:
        return ("image", "index", "z")


class DecodeRequest(Strict):
    """Latents to decode, one row per image (each row has the model's ``latent_dim`` numbers)."""

    z: list[Annotated[list[Latent], Field(min_length=1, max_length=4096)]] = Field(
        min_length=1, max_length=MAX_DECODE
    )
    label: int | None = label_field(DECODE_LABEL)


class InterpolateRequest(Strict):
    """Decode ``steps`` points on the path from ``a`` to ``b`` (ends included)."""

    a: LatentSource
    b: LatentSource
    steps: int = Field(default=8, ge=2, le=MAX_STEPS)
    mode: Literal["linear", "slerp"] = "linear"
    label: int | None = label_field(DECODE_LABEL)


class TraverseRequest(Strict):
    """Sweep latent dimensions one at a time around a point: one row of ``steps`` images per dimension."""

    source: LatentSource | None = Field(default=None, description="the point to start from; default z = 0")
    dims: list[Annotated[int, Field(ge=0)]] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_TRAVERSE_DIMS,
        description="dimensions to sweep; default: the `top` dimensions with the most KL",
    )
    top: int = Field(default=6, ge=1, le=MAX_TRAVERSE_DIMS)
    steps: int = Field(default=9, ge=2, le=MAX_TRAVERSE_STEPS)
    span: Finite = Field(default=3.0, gt=0.0, le=10.0, description="sweep from -span to +span")
    label: int | None = label_field(DECODE_LABEL)


# --- responses -------------------------------------------------------------------------------------
class ModelSummary(BaseModel):
    """What the page lists per model, and what it may ask of it."""

    id: str
    name: str
    path: str
    image_shape: tuple[int, int, int]
    latent_dim: int
    priors: list[str] = Field(description="priors `sample` accepts")
    classes: list[str] | None = Field(description="class names for `label`; null: unconditional model")
    guidance: bool = Field(description="whether `sample` takes a `guidance` other than 1")
    stochastic_layers: int = Field(description="1, or more for a hierarchical model (`z` is the top one)")
    dataset: str | None
    epoch: int | None


class LatentDim(BaseModel):
    """One latent dimension and how much it is used over test images."""

    dim: int
    kl: float | None = Field(
        description="mean KL it carries (nats); null where the KL does not split by dimension (VampPrior)"
    )
    activity: float = Field(description="variance of its posterior mean across images")


class ModelInfo(ModelSummary):
    """A model in full: its config, its training curves and its latent dimensions ranked by KL."""

    config: dict[str, Any]
    metrics: list[dict[str, float | int | None]]
    latent_dims: list[LatentDim] = Field(
        description="every dimension, the most used first (by KL, else by activity)"
    )


class ImagesResponse(BaseModel):
    """Images as PNG data URLs, row-major in rows of ``nrow`` (``format=png`` gives one PNG grid)."""

    images: list[str]
    nrow: int
    latents: list[list[float]] | None = None


class TraverseResponse(ImagesResponse):
    dims: list[int]
    values: list[float]


class EncodeResponse(BaseModel):
    """The posterior q(z|x) of one image: its mean and standard deviation per dimension."""

    mean: list[float]
    std: list[float]


class ReconstructResponse(EncodeResponse):
    """The image as the model read it, and its reconstruction: the posterior mean decoded (every
    layer's, for a hierarchical model; ``mean`` and ``std`` are the top latent's)."""

    input: str
    reconstruction: str


class Examples(BaseModel):
    """Test-set images to pick from (e.g. the two ends of an interpolation)."""

    indices: list[int]
    labels: list[int] | None
    images: list[str]


class LatentMapResponse(BaseModel):
    """PCA of test-set posterior means: point i is (x[i], y[i]), of test image indices[i].

    A map point (x, y) is the latent ``mean + x * components[0] + y * components[1]``.
    """

    x: list[float]
    y: list[float]
    indices: list[int]
    labels: list[int] | None
    mean: list[float]
    components: list[list[float]]
    explained_variance: list[float]


class ErrorResponse(BaseModel):
    """Every 4xx answer: a message saying what was wrong (and, for validation errors, where)."""

    detail: str | list[dict[str, Any]]


# --- out-of-distribution scores ----------------------------------------------------------------------
ScoreName = Literal[
    "nll", "bits_per_dim", "complexity", "likelihood_ratio", "density_of_states", "likelihood_regret"
]
SCORE_FIELD = (
    "the score (see docs/ood.md); default: the model's calibrated one, else density_of_states "
    "when a background model is saved beside it (likelihood_ratio for one without the density), else nll"
)


class ScoreRequest(Strict):
    """An image to score: uploaded (``image``) or taken from the model's test set (``index``)."""

    image: Base64Image | None = None
    index: int | None = Field(default=None, ge=0, description="test-set index (see /examples)")
    resize: bool = Field(default=True, description="centre-crop and scale an image of another size")
    invert: bool = Field(default=False, description="invert grey levels (dark ink on light paper)")
    score: ScoreName | None = Field(default=None, description=SCORE_FIELD)

    @model_validator(mode="after")
    def _exactly_one(self) -> ScoreRequest:
        if (self.image is None) == (self.index is None):
            raise ValueError("give exactly one of image, index")
        return self


class ScoreReference(BaseModel):
    """The in-distribution reference: a histogram of its scores (bins of unequal width, fine in the
    bulk and stretching to the tails), from the calibration images or from scored test images."""

    source: str
    n: int
    edges: list[float]
    counts: list[float]


class ScoreResponse(BaseModel):
    """One image's score (higher: less like the training data), where it falls among the reference's,
    and in or out when the score is calibrated."""

    score: str
    title: str
    value: float
    percentile: float | None = Field(description="fraction of reference images scoring lower (0-100)")
    verdict: Literal["in", "out"] | None = Field(description="null: this score is not calibrated")
    threshold: float | None
    fpr: float | None = Field(description="the calibration's false-positive rate")
    reference: ScoreReference | None = Field(description="null: no test set or calibration to compare")
    input: str = Field(description="the image as the model read it (PNG data URL)")
    note: str | None = None


class ScoreReferenceResponse(BaseModel):
    """A score's reference histogram, before any image is scored (what the page draws first)."""

    score: str
    title: str
    reference: ScoreReference | None
    threshold: float | None
    note: str | None = None
