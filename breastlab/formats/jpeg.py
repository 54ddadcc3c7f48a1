"""JPEG images (datasets such as mammo_bcd, uploads) read as 8-bit grayscale, with the PNG reader's size checks.

Grayscale pictures are often saved as colour JPEGs whose three channels are equal (up to compression noise): those
read as gray; a colour picture is refused rather than silently mixed down.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from monai.data import PILReader
from PIL import Image

from breastlab.formats.png import ImageError, read_checked, read_gray_png

JPEG_SIGNATURE = b"\xff\xd8\xff"
GRAY_TOLERANCE = 4.0  # largest mean |difference| between colour channels (of 255) that still reads as gray


def is_jpeg(path: str | Path) -> bool:
    """Whether the file starts with the JPEG signature."""
    with open(path, "rb") as f:
        return f.read(3) == JPEG_SIGNATURE


def to_gray(image: Image.Image) -> Image.Image:
    """An 8-bit grayscale PIL image: ``L`` as it is, RGB/RGBA/LA mixed down (the luminance, which for equal channels
    is their value); MONAI's ``PILReader`` takes it as ``converter``."""
    if image.mode in ("1", "P", "RGB", "RGBA", "LA"):
        return image.convert("L")
    return image


def read_gray_jpeg(path: str | Path) -> np.ndarray:
    """An 8-bit JPEG as an (H, W) uint8 array: grayscale, or colour with equal channels; ``ImageError`` otherwise."""
    return read_checked(path, "JPEG", _gray_jpeg)


def _gray_jpeg(im: Image.Image) -> np.ndarray:
    if im.mode == "L":
        return np.asarray(im)
    if im.mode != "RGB":
        raise ImageError(f"JPEG mode {im.mode!r} is not supported: use grayscale or RGB", "unsupported")
    _check_gray(np.asarray(im, dtype=np.int16))
    return np.asarray(to_gray(im))


def _check_gray(rgb: np.ndarray) -> None:
    spread = max(float(np.abs(rgb[..., i] - rgb[..., j]).mean()) for i, j in ((0, 1), (0, 2), (1, 2)))
    if spread > GRAY_TOLERANCE:
        raise ImageError(f"colour JPEG (channels differ by {spread:.1f} gray levels on average): BreastLab reads "
                         "grayscale images", "unsupported")


def read_gray_image(path: str | Path) -> np.ndarray:
    """A grayscale PNG or JPEG (told apart by content, not name) as an (H, W) uint8 array."""
    return read_gray_jpeg(path) if is_jpeg(path) else read_gray_png(path)


class GrayPILReader(PILReader):
    """MONAI's ``PILReader`` giving one channel for PNG and JPEG alike (a gray JPEG stored as RGB included)."""

    def __init__(self, **kwargs):
        super().__init__(converter=to_gray, **kwargs)
