"""The local web app and REST API over trained VAEs (``vaelab serve``).

Needs the ``serve`` extra (FastAPI, uvicorn, python-multipart, fastapi-offline). ``create_app``
builds the FastAPI app over loaded models; the page and its assets live in ``static/`` inside the
package, so it works with no network.
"""

from vaelab.serve.app import create_app, create_app_from_paths
from vaelab.serve.state import ServedModel, load_served_models

__all__ = ["ServedModel", "create_app", "create_app_from_paths", "load_served_models"]
