"""Images for the web-app tests: blob datasets and PNG encoding helpers."""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

from vaelab.data.synthetic import quadrant_squares

SIDE = 12


def blobs(n: int = 240, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images of a bright square in one of four quadrants (the label), with noise."""
    return quadrant_squares(n, SIDE, seed)


def png_bytes(array: np.ndarray, mode: str = "L") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array.astype(np.uint8), mode=mode).save(buf, format="PNG")
    return buf.getvalue()


def png_b64(array: np.ndarray, data_url: bool = False) -> str:
    text = base64.b64encode(png_bytes(array)).decode()
    return f"data:image/png;base64,{text}" if data_url else text


def decode_data_url(url: str) -> np.ndarray:
    assert url.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))))
