"""HTTP errors with a clear message; MONAI Label lets FastAPI's HTTPException through to the client."""

from fastapi import HTTPException

from breastlab.imageio import ImageError


def bad_request(message: str) -> HTTPException:
    return HTTPException(status_code=400, detail=message)


def not_found(message: str) -> HTTPException:
    return HTTPException(status_code=404, detail=message)


def conflict(message: str) -> HTTPException:
    return HTTPException(status_code=409, detail=message)


def unprocessable(message: str) -> HTTPException:
    return HTTPException(status_code=422, detail=message)


def image_error(what: str, error: ImageError) -> HTTPException:
    """415 for a well-formed but unsupported image, 400 for a corrupt one."""
    return HTTPException(status_code=415 if error.kind == "unsupported" else 400, detail=f"{what}: {error}")
