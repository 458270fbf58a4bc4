"""The FastAPI application: the API router, the page and its assets, offline /docs, and the guards.

Guards: a cap on the request body (413 before anything is parsed), and exception handlers that turn
every user error (a bad image, a ``vaelab.errors.UserError``) into a 4xx JSON ``{"detail": ...}``. An
unexpected error still answers JSON (500) and the server keeps serving; the tests and the schema fuzz
check that none is reachable.
"""

from __future__ import annotations

import importlib.resources
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vaelab import __version__
from vaelab.errors import UserError
from vaelab.serve.images import ImageError
from vaelab.serve.routes import router
from vaelab.serve.schemas import MAX_BODY_BYTES
from vaelab.serve.state import ServedModel, Unavailable, load_served_models

log = logging.getLogger(__name__)
STATIC_DIR = Path(str(importlib.resources.files("vaelab.serve") / "static"))

DESCRIPTION = """Explore trained variational autoencoders: sample, reconstruct, encode, decode,
interpolate and traverse the latent space. Images travel as PNG: base64 data URLs in JSON, or one
image/png grid with `format=png`. Every error is a 4xx JSON body `{"detail": ...}`."""


class BodyLimit:
    """ASGI middleware: refuse request bodies over ``max_bytes`` with a 413, whether or not they declare
    a Content-Length (a chunked upload is counted as it arrives, and buffered only up to the cap)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._too_large(scope, receive, send)
            return
        chunks: list[bytes] = []
        size, more = 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._too_large(scope, receive, send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body, sent = b"".join(chunks), False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        detail = f"request body too large: at most {self.max_bytes} bytes are accepted"
        await JSONResponse({"detail": detail}, status_code=413)(scope, receive, send)


def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    """422 with each problem's location and message. The offending input is left out: it may hold NaN
    or bytes, which JSON cannot carry (echoing it is how a 422 becomes a 500)."""
    assert isinstance(exc, RequestValidationError)
    errors = [
        {
            "loc": [str(part) for part in err.get("loc", ())],
            "msg": str(err.get("msg", "")),
            "type": err.get("type"),
        }
        for err in exc.errors()
    ]
    return JSONResponse({"detail": errors}, status_code=422)


def _user_error(request: Request, exc: Exception) -> JSONResponse:
    """An image that cannot be used, or a user error the model itself found (e.g. a class out of range
    that a handler did not check first): the request is what is wrong, so a 422 with the message."""
    return JSONResponse({"detail": str(exc)}, status_code=422)


def _unavailable(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": f"not available for this model: {exc}"}, status_code=404)


def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error in %s %s", request.method, request.url.path)
    return JSONResponse({"detail": f"internal error: {type(exc).__name__}"}, status_code=500)


def create_app(models: Sequence[ServedModel]) -> FastAPI:
    """The web app over already-loaded models (the tests build it this way; ``vaelab serve`` too)."""
    if not models:
        raise ValueError("the web app needs at least one model")
    app = FastAPIOffline(
        title="vaelab",
        version=__version__,
        description=DESCRIPTION,
        static_url="/docs-assets",
    )
    app.state.models = {m.id: m for m in models}
    app.include_router(router)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(ImageError, _user_error)
    app.add_exception_handler(UserError, _user_error)
    app.add_exception_handler(Unavailable, _unavailable)
    app.add_exception_handler(Exception, _unexpected)
    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    _list_model_ids_in_schema(app)

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> FileResponse:
        return FileResponse(STATIC_DIR / "favicon.svg", media_type="image/svg+xml")

    return app


def _list_model_ids_in_schema(app: FastAPI) -> None:
    """Make ``model_id`` an enum of the served ids in the OpenAPI schema: /docs offers them in a menu,
    and a schema-driven fuzzer reaches the handlers instead of stopping at 404."""
    generate = app.openapi
    ids = list(app.state.models)

    def openapi() -> dict[str, Any]:
        schema = generate()
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                for param in operation.get("parameters", []):
                    if param.get("name") == "model_id":
                        param["schema"]["enum"] = ids
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def create_app_from_paths(paths: Sequence[str | Path], device: str | torch.device = "cpu") -> FastAPI:
    """Load the models at ``paths`` (run or saved-model directories) and build the app over them."""
    return create_app(load_served_models(paths, device))
