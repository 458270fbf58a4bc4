"""Lossless code lengths of images (PNG or WebP through Pillow): the universal model of input complexity
(Serra et al. 2020) behind the ``complexity`` score, the codec half of the likelihood ratio's background
over 8-bit levels, and one of the statistics of the density of states."""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image, features

from vaelab.errors import UsageError

CODECS = ("png", "webp")
_CODEC_OPTIONS = {
    "png": {"format": "PNG", "optimize": True, "compress_level": 9},
    "webp": {"format": "WEBP", "lossless": True, "quality": 100, "method": 6},
}


def codec_bits(images: torch.Tensor, codec: str, verify: bool = False) -> np.ndarray:
    """Bits of each uint8 image (B, C, H, W) under the lossless ``codec`` (png or webp) at its strongest
    setting, as Pillow writes it (headers included: the same for every image of one shape). ``verify``:
    decode each file again and raise unless it gives back the same pixels (the codec is lossless)."""
    if codec == "webp" and not features.check("webp"):
        raise UsageError("this Pillow has no WebP support: use --codec png")
    options = _CODEC_OPTIONS[codec]
    arrays = images.permute(0, 2, 3, 1).cpu().numpy()
    out = np.empty(len(arrays))
    for i, a in enumerate(arrays):
        image = Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a)
        buffer = io.BytesIO()
        image.save(buffer, **options)
        if verify and not decodes_to(buffer.getvalue(), image):
            raise RuntimeError(f"{codec} did not give back the same pixels: not lossless")
        out[i] = 8 * buffer.getbuffer().nbytes
    return out


def decodes_to(encoded: bytes, image: Image.Image) -> bool:
    """Whether the file ``encoded`` decodes to exactly the pixels of ``image``."""
    return Image.open(io.BytesIO(encoded)).convert(image.mode).tobytes() == image.tobytes()
