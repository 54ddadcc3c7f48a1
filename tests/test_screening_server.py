"""Mammography results per breast and per woman over real HTTP: a server of ``breast_mammo_end2end`` alone on six
synthetic mammograms (``mammograms``: breasts on alternating sides), three of them of woman 105 by the manifest."""

from __future__ import annotations

import csv
import shutil

import pytest
import requests

from breastlab.server.datastore.studies import import_dataset

from helpers import infer
from tests.server_process import Server, bundles_folder

pytestmark = pytest.mark.slow
MODEL = "breast_mammo_end2end"
PATIENTS = {"m00": "105", "m01": "105", "m02": "105"}  # m00, m02 left; m01 right
CASES = ("m00", "m01", "m02", "m03", "m04", "m05")


@pytest.fixture(scope="module")
def server(tmp_path_factory, mammograms):
    workdir = tmp_path_factory.mktemp("screening")
    data = workdir / "data"
    (data / "images").mkdir(parents=True)
    with open(mammograms / "manifest.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["case"] in CASES]
    for row in rows:
        shutil.copy(mammograms / "images" / f"{row['case']}.png", data / "images")
    with open(data / "manifest.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, [*rows[0], "patient"])
        writer.writeheader()
        writer.writerows({**r, "patient": PATIENTS.get(r["case"], "")} for r in rows)
    import_dataset(data, workdir / "studies")
    bundles = bundles_folder(workdir / "bundles", {}, [MODEL])
    srv = Server(workdir / "studies", workdir, env={"BREASTLAB_BUNDLES": str(bundles)}).start()
    try:
        yield srv
    finally:
        srv.stop()


def read(server, image: str) -> dict:
    response = infer(server, image, model=MODEL)
    assert response.status_code == 200, response.text
    return response.json()


def set_info(server, image: str, info: str) -> requests.Response:
    return requests.put(f"{server.url}/datastore/image/info", params={"image": image}, data={"info": info}, timeout=30)


def test_views_of_one_woman_pool_per_breast_and_per_woman(server):
    first, second, third = (read(server, image) for image in ("m00", "m01", "m02"))
    p = [r["probabilities"]["malignant"] for r in (first, second, third)]
    assert [r["side"] for r in (first, second, third)] == ["left", "right", "left"]
    assert second["woman"] == {"patient": "105", "images": ["m00", "m01"], "malignant": pytest.approx(
        (p[0] + p[1]) / 2, abs=1e-4), "pooling": "mean"}
    assert second["breast"] == {"patient": "105", "side": "right", "images": ["m01"],
                                "malignant": pytest.approx(p[1], abs=1e-4), "pooling": "mean"}
    assert third["breast"]["images"] == ["m00", "m02"] and third["woman"]["images"] == ["m00", "m01", "m02"]
    assert third["breast"]["malignant"] == pytest.approx((p[0] + p[2]) / 2, abs=1e-4)
    stored = requests.get(f"{server.url}/datastore/predictions", params={"image": "m01", "model": MODEL},
                          timeout=30).json()
    assert stored[0]["result"]["side"] == "right" and "woman" not in stored[0]["result"]


def test_an_image_without_a_patient_is_read_alone(server):
    result = read(server, "m03")
    assert result["side"] == "right" and "breast" not in result and "woman" not in result


def test_a_patient_set_in_the_image_info_brings_the_images_stored_result_along(server):
    assert "woman" not in read(server, "m04")
    for image in ("m04", "m05"):
        assert set_info(server, image, '{"patient": "106"}').status_code == 200
    result = read(server, "m05")
    assert result["woman"]["images"] == ["m04", "m05"] and result["breast"]["images"] == ["m05"]


@pytest.mark.parametrize("info", ['{"patient": "../105"}', '{"patient": 105}', '{"patient": "105 106"}',
                                  '{"laterality": "front"}'])
def test_a_hostile_patient_in_the_image_info_gets_422(server, info):
    assert set_info(server, "m01", info).status_code == 422
    assert requests.get(f"{server.url}/datastore/image/info", params={"image": "m01"},
                        timeout=30).json()["patient"] == "105"
