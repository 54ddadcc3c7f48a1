"""PNG bytes <-> numpy arrays in image layout: ``array[row, column]``, i.e. shape (height, width)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def decode_png(data: bytes) -> np.ndarray:
    """A single-channel PNG as a 2-D array (rows, columns); anything else is a ``ValueError``."""
    with Image.open(io.BytesIO(data)) as image:
        if image.mode not in ("L", "I", "I;16", "1"):
            raise ValueError(f"expected a single-channel PNG, got mode {image.mode!r}")
        return np.asarray(image)


def encode_png(array: np.ndarray) -> bytes:
    """8-bit PNG bytes of a 2-D uint8 array."""
    if array.ndim != 2 or array.dtype != np.uint8:
        raise ValueError(f"expected a 2-D uint8 array, got {array.dtype} {array.shape}")
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def mask_png(mask: np.ndarray) -> bytes:
    """A label mask as the server stores it: 0 = background, 1 = lesion (any non-zero input)."""
    return encode_png((np.asarray(mask) > 0).astype(np.uint8))


def unit_range(array: np.ndarray) -> np.ndarray:
    """``array`` as float32 scaled to [0, 1] by its maximum (all zeros stay zeros)."""
    values = np.asarray(array, dtype=np.float32)
    peak = float(values.max()) if values.size else 0.0
    return values / peak if peak > 0 else values
