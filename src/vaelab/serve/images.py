"""PNG in and out of the API: tensors <-> PNG bytes and base64 data URLs, with the upload checks.

Every way an image can be wrong (not base64, not an image, too many pixels, the wrong size) raises
:class:`ImageError` with a message that says what to change; the app turns it into a 422.
"""

from __future__ import annotations

import base64
import binascii
import io

import numpy as np
import torch
from PIL import Image, ImageOps

from vaelab.io.images import make_grid, to_uint8_nhwc

# Uploads are digits and small photos: 4 MP is plenty, and a bound stops decompression bombs (a tiny
# PNG that inflates to gigabytes) before PIL allocates anything.
MAX_IMAGE_PIXELS = 2048 * 2048
MAX_IMAGE_BYTES = 2 * 1024 * 1024
DATA_URL_PREFIX = "data:image/png;base64,"


class ImageError(ValueError):
    """An image given to the API cannot be used; the message says why and what would work."""


def png_bytes(image: torch.Tensor) -> bytes:
    """One image (C, H, W) in [0, 1] -> PNG bytes (grey for one channel, RGB for three)."""
    arr = to_uint8_nhwc(image[None])[0]
    pil = Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr)
    buf = io.BytesIO()
    # compress_level 1: a 28x28 PNG is ~0.3 kB at any level; level 1 keeps encoding off the latency path.
    pil.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def data_url(image: torch.Tensor) -> str:
    """One image (C, H, W) in [0, 1] as a ``data:image/png;base64,...`` URL (an <img> shows it as is)."""
    return DATA_URL_PREFIX + base64.b64encode(png_bytes(image)).decode("ascii")


def data_urls(images: torch.Tensor) -> list[str]:
    """A batch (N, C, H, W) -> N PNG data URLs."""
    return [data_url(img) for img in images]


def grid_png(images: torch.Tensor, nrow: int | None = None) -> bytes:
    """A batch (N, C, H, W) tiled into one PNG (the ``format=png`` answer of the image endpoints)."""
    grid = make_grid(images, nrow=nrow)
    pil = Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid)
    buf = io.BytesIO()
    pil.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def decode_base64(text: str) -> bytes:
    """The bytes of a base64 string or a ``data:...;base64,`` URL; ImageError if it is not base64."""
    if text.startswith("data:"):
        header, sep, text = text.partition(",")
        if not sep or not header.endswith(";base64"):
            raise ImageError("a data URL must look like 'data:image/png;base64,<base64 bytes>'")
    if len(text) > (MAX_IMAGE_BYTES * 4) // 3 + 4:
        raise ImageError(f"the image is larger than {MAX_IMAGE_BYTES // 1024} KiB")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ImageError("'image' is not valid base64 (send a PNG as base64 or as a data URL)") from None


def load_image(
    data: bytes,
    image_shape: tuple[int, int, int],
    *,
    resize: bool = False,
    invert: bool = False,
) -> torch.Tensor:
    """Image file bytes (PNG, JPEG, ...) -> float tensor (C, H, W) in [0, 1] for a model of ``image_shape``.

    Colour is converted to the model's channels. Transparent pixels count as background (black, as in
    MNIST). A size other than the model's is an error unless ``resize``: then the image is centre-cropped
    to a square and scaled. ``invert`` turns dark-ink-on-paper scans into the white-on-black digits the
    MNIST models know.
    """
    if len(data) == 0:
        raise ImageError("the image is empty (0 bytes)")
    if len(data) > MAX_IMAGE_BYTES:
        raise ImageError(f"the image is {len(data)} bytes; at most {MAX_IMAGE_BYTES} are accepted")
    channels, height, width = image_shape
    try:
        pil = Image.open(io.BytesIO(data))
        if pil.width * pil.height > MAX_IMAGE_PIXELS:
            raise ImageError(
                f"the image is {pil.width}x{pil.height} pixels; "
                f"at most {MAX_IMAGE_PIXELS} pixels are accepted"
            )
        pil.load()
        if pil.mode in ("RGBA", "LA", "PA") or (pil.mode == "P" and "transparency" in pil.info):
            rgba = pil.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
            pil = Image.alpha_composite(background, rgba)
        pil = pil.convert("L" if channels == 1 else "RGB")
    except ImageError:
        raise
    except Exception as exc:  # PIL raises many types (OSError, SyntaxError, struct.error) on bad files
        raise ImageError(f"not a readable image file (PNG, JPEG, ...): {type(exc).__name__}") from None
    if pil.size != (width, height):
        if not resize:
            raise ImageError(
                f"the image is {pil.width}x{pil.height} pixels but the model takes {width}x{height}; "
                "send it at that size, or set resize=true to centre-crop and scale it"
            )
        pil = ImageOps.fit(pil, (width, height), method=Image.Resampling.LANCZOS)
    arr = np.asarray(pil, dtype=np.float32) / 255.0
    tensor = torch.from_numpy(arr.reshape(height, width, channels).copy()).permute(2, 0, 1)
    return 1.0 - tensor if invert else tensor
