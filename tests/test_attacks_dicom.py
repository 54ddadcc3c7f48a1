"""Uploads from an outside attack on a running server (issue 41, rows 6-8): crafted DICOM attributes, a deflate
bomb behind a lying group length, and a gray JPEG saved as RGB, each sent to ``PUT /datastore/image`` and to
``/infer`` as a file (slow: starts a server)."""

from __future__ import annotations

import io
import json

import pytest
import requests
from PIL import Image

from breastlab.formats.dicom import MAX_INFLATED

from helpers import MODEL, SAMPLES, sample_server, upload
from test_dicom import BAD_ATTRIBUTES, lying_group_length, padded_deflated_dicom

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with sample_server(tmp_path_factory.mktemp("attacks_dicom")) as srv:
        yield srv


def infer_file(server, data: bytes, name: str, model: str = MODEL, **params) -> requests.Response:
    return requests.post(f"{server.url}/infer/{model}", params={"output": "json"}, files={"file": (name, data)},
                         data={"params": json.dumps(params)}, timeout=300)


def stored_ids(server) -> set[str]:
    return set(requests.get(f"{server.url}/datastore/", params={"output": "all"}, timeout=10).json()["objects"])


@pytest.mark.parametrize("data, kind, words", BAD_ATTRIBUTES.values(), ids=BAD_ATTRIBUTES.keys())
def test_dicom_with_a_bad_attribute_gets_a_4xx_naming_it(server, data, kind, words):
    for response in (upload(server, "bad_dicom", data, "x.dcm"), infer_file(server, data, "x.dcm")):
        assert response.status_code == (415 if kind == "unsupported" else 400), response.text
        assert words in response.json()["detail"]
    assert "bad_dicom" not in stored_ids(server)


def test_a_deflate_bomb_behind_a_lying_group_length_is_refused(server):
    bomb = lying_group_length(padded_deflated_dicom(MAX_INFLATED + 2**20))  # a 64 x 64 image and 97 MB of zeros
    assert len(bomb) < 1_000_000
    for response in (upload(server, "lying_bomb", bomb, "x.dcm"), infer_file(server, bomb, "x.dcm")):
        assert response.status_code == 415 and "inflates to more than" in response.json()["detail"], response.text
    assert "lying_bomb" not in stored_ids(server) and server.alive()


@pytest.fixture(scope="module")
def gray_as_rgb_jpeg() -> bytes:
    buffer = io.BytesIO()
    with Image.open(SAMPLES / "images" / "case007.png") as image:
        image.convert("RGB").save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


@pytest.mark.parametrize("model", [MODEL, "breast_us_medsam", "breast_us_interactive"])
def test_a_gray_jpeg_saved_as_rgb_is_inferred_as_the_gray_image_it_is(server, gray_as_rgb_jpeg, model):
    response = infer_file(server, gray_as_rgb_jpeg, "scan.jpg", model)
    assert response.status_code == 200, response.text
    assert (response.json()["height"], response.json()["width"]) == (537, 485)


def test_an_uploaded_file_is_inferred_as_the_datastore_stores_it(server, gray_as_rgb_jpeg):
    assert upload(server, "jpeg_scan", gray_as_rgb_jpeg, "scan.jpg").status_code == 200
    by_id = requests.post(f"{server.url}/infer/{MODEL}", params={"image": "jpeg_scan", "output": "json"}, timeout=300)
    assert by_id.status_code == 200
    by_file = infer_file(server, gray_as_rgb_jpeg, "scan.jpg")
    results = [{k: v for k, v in r.json().items() if k != "latencies"} for r in (by_id, by_file)]
    assert results[0] == results[1]  # the same pixels, the same answer
