"""HTTP helpers shared by the tests that call a real BreastLab server."""

from __future__ import annotations

import io

import numpy as np
import requests
from PIL import Image

MODEL = "breast_us_t2kd"


def png_bytes(array: np.ndarray, mode: str | None = None) -> bytes:
    """PNG bytes of ``array`` (mode from its dtype and shape, or converted to ``mode``)."""
    image = Image.fromarray(array)
    buffer = io.BytesIO()
    (image.convert(mode) if mode else image).save(buffer, format="PNG")
    return buffer.getvalue()


def upload(server, image_id: str, data: bytes, name: str = "upload.png") -> requests.Response:
    return requests.put(f"{server.url}/datastore/image", params={"image": image_id},
                        files={"file": (name, data, "image/png")}, timeout=30)


def save_label(server, image_id: str, data: bytes, tag: str = "final") -> requests.Response:
    return requests.put(f"{server.url}/datastore/label", params={"image": image_id, "tag": tag},
                        files={"label": ("label.png", data, "image/png")}, timeout=30)


def infer(server, image_id: str, model: str = MODEL, output: str = "json") -> requests.Response:
    return requests.post(f"{server.url}/infer/{model}", params={"image": image_id, "output": output}, timeout=120)
