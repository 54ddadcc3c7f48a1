"""Strict PNG reading for anything that arrives from outside (uploads, label saves, imports)."""

from __future__ import annotations

import io
import os
import re
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

MIN_SIDE = 16
MAX_SIDE = 8192
MAX_PIXELS = 40_000_000  # e.g. a 4096 x 5000 mammogram is 20 million
TEMP_MARK = ".tmp-"
SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


class ImageError(ValueError):
    """An image file that BreastLab does not accept; ``kind`` is ``corrupt`` or ``unsupported``."""

    def __init__(self, message: str, kind: str = "corrupt"):
        super().__init__(message)
        self.kind = kind


def check_id(name: str, what: str = "image id") -> str:
    """Return ``name`` if it is a safe file-system id (no paths, no dot-dot, no odd characters)."""
    if not isinstance(name, str) or not SAFE_ID.fullmatch(name) or ".." in name:
        raise ValueError(
            f"invalid {what} {name!r}: use 1-128 letters, digits, '_', '-', '.' (not starting with '.', no '..')"
        )
    return name


def read_gray_png(path: str | Path) -> np.ndarray:
    """Read an 8-bit grayscale PNG as an (H, W) uint8 array; raise ``ImageError`` on anything else."""
    return read_checked(path, "PNG", _gray_png)


def _gray_png(im: Image.Image) -> np.ndarray:
    if im.mode == "1":
        im = im.convert("L")
    if im.mode != "L":
        raise ImageError(f"PNG mode {im.mode!r} is not supported: convert to 8-bit grayscale (mode 'L')", "unsupported")
    return np.asarray(im)


def read_checked(path: str | Path, image_format: str, decode) -> np.ndarray:
    """``decode(image)`` of the PIL image at ``path`` once it is known to be ``image_format`` of an accepted size
    (checked from the header, before decoding); anything PIL cannot read is an ``ImageError``."""
    try:
        with Image.open(path) as im:
            if im.format != image_format:
                raise ImageError(f"not a {image_format} file (found {im.format or 'unknown format'})", "unsupported")
            check_size(im.size, len(im.getbands()))
            return decode(im)
    except ImageError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise ImageError(f"cannot decode {image_format}: {e}") from e


def encode_png(array: np.ndarray) -> bytes:
    """An (H, W) uint8 array as PNG bytes (fast compression), for a response."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array, dtype=np.uint8)).save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def write_png(array: np.ndarray, path: str | Path, durable: bool = True) -> Path:
    """Write an (H, W) uint8 array as PNG: atomically and fsynced (``durable``, for what must survive a crash), or
    straight into ``path`` with fast compression (a response that lives for one request)."""
    image = Image.fromarray(np.ascontiguousarray(array, dtype=np.uint8))
    if durable:
        return write_atomic(path, lambda f: image.save(f, "PNG"))
    image.save(path, "PNG", compress_level=1)
    return Path(path)


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write text atomically."""
    return write_atomic(path, lambda f: f.write(text.encode("utf-8")))


def remove_stale_temp_files(root: Path) -> list[Path]:
    """Delete the temp files that writes killed before their rename left under ``root``; return them."""
    stale = [p for p in root.rglob(f".*{TEMP_MARK}*") if p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def write_atomic(path: str | Path, write) -> Path:
    """Write through ``write(file)`` to a temp file in the same folder, fsync, then rename over ``path``."""
    path = Path(path)
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}{TEMP_MARK}", delete=False) as tmp:
        try:
            write(tmp)
            tmp.flush()
            os.fsync(tmp.fileno())
            os.chmod(tmp.name, 0o644)
        except BaseException:
            os.unlink(tmp.name)
            raise
    os.replace(tmp.name, path)
    _fsync_dir(path.parent)
    return path


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def check_size(size: tuple[int, int], samples: int = 1) -> None:
    """``ImageError`` (unsupported) unless width and height are within MIN_SIDE..MAX_SIDE and the image holds at
    most MAX_PIXELS values (pixels x ``samples`` per pixel): checked from the header, before any decoding, so that
    a small file declaring a huge image cannot take the memory."""
    w, h = size
    if min(w, h) < MIN_SIDE or max(w, h) > MAX_SIDE:
        raise ImageError(f"image size {w}x{h} outside the accepted {MIN_SIDE}..{MAX_SIDE} px per side", "unsupported")
    if w * h * samples > MAX_PIXELS:
        raise ImageError(f"image of {w}x{h} pixels x {samples} samples holds more than the accepted "
                         f"{MAX_PIXELS / 1e6:.0f} million values", "unsupported")
