"""The local web app and REST API over trained VAEs (``vaelab serve``).

Needs the ``serve`` extra (FastAPI, uvicorn, python-multipart, fastapi-offline). ``create_app``
builds the FastAPI app over loaded models; the page and its assets live in ``static/`` inside the
package, so it works with no network. The names below load on first use, so the modules that need
no FastAPI (``vaelab.serve.images``, say) import on a machine without the extra.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "create_app": "app",
    "create_app_from_paths": "app",
    "ServedModel": "state",
    "load_served_models": "state",
}
__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'vaelab.serve' has no attribute {name!r}")
    return getattr(importlib.import_module(f"vaelab.serve.{_HOMES[name]}"), name)
