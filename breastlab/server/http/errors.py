"""HTTP errors with a clear message; MONAI Label lets FastAPI's HTTPException through to the client."""

import os
import threading

import numpy as np
from fastapi import HTTPException

from breastlab.formats.dicom import DicomImage, is_dicom, read_dicom_image
from breastlab.formats.jpeg import read_gray_image
from breastlab.formats.png import ImageError, read_gray_png

DICOM_MODALITIES = ("MG", "US")
DECODES = threading.BoundedSemaphore(int(os.environ.get("BREASTLAB_DECODES", "2")))  # uploads decoded at once


def status_error(status: int):
    """The constructor of one kind of error: ``kind(message)`` is an HTTPException with ``status`` and the message."""
    def error(message: str) -> HTTPException:
        return HTTPException(status_code=status, detail=message)

    return error


bad_request = status_error(400)
forbidden = status_error(403)
not_found = status_error(404)
not_allowed = status_error(405)
conflict = status_error(409)
too_large = status_error(413)
unprocessable = status_error(422)
too_many = status_error(429)
bad_gateway = status_error(502)  # the PACS behind the datastore refused or did not answer


def integer_param(value, name: str, highest: int) -> int:
    """A request parameter that must be an integer from 1 to ``highest``: 400 otherwise."""
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):
        number = 0
    if isinstance(value, bool) or not 1 <= number <= highest:
        raise bad_request(f"{name} must be an integer from 1 to {highest}, not {value!r}")
    return number


def image_error(what: str, error: ImageError, path: str | None = None) -> HTTPException:
    """415 for a well-formed but unsupported image, 400 for a corrupt one; the file's server ``path`` (which a
    decoder's message may name) is left out."""
    message = str(error).replace(str(path), "upload") if path else str(error)
    return HTTPException(status_code=415 if error.kind == "unsupported" else 400, detail=f"{what}: {message}")


def read_upload(path: str, what: str, read=read_gray_png) -> np.ndarray:
    """``read(path)`` (default: a grayscale PNG) for files that came over HTTP: a rejected file becomes a 400/415."""
    try:
        with DECODES:
            return read(path)
    except ImageError as e:
        raise image_error(what, e, path) from e


def read_image_upload(path: str, modalities: tuple[str, ...] = DICOM_MODALITIES
                      ) -> tuple[np.ndarray, DicomImage | None]:
    """An uploaded image, PNG, JPEG or DICOM (of ``modalities``); the DICOM details too when it was one."""
    if not is_dicom(path):
        return read_upload(path, "image", read_gray_image), None
    try:
        with DECODES:
            image = read_dicom_image(path, modalities)
    except ImageError as e:
        raise image_error("image", e, path) from e
    return image.pixels, image
