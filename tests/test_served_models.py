"""Each kind of served model over real HTTP: click model, LA-Net, ACSNet, end2end on a DICOM mammogram, GLAM (slow)."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import requests
from PIL import Image
from requests_toolbelt.multipart.decoder import MultipartDecoder
from scipy import ndimage

from breastlab.bundle import PROJECT_ROOT
from breastlab.metrics.birads import birads_probabilities
from breastlab.metrics.segmentation import dice

from helpers import FLOAT32, SAMPLES, dicom_bytes, infer, model_entry, png_bytes, sample_server, upload
from tests.server_process import bundles_folder

pytestmark = pytest.mark.slow
INTERACTIVE = "breast_us_interactive"
BIRADS = {"categories": ["2", "3", "4", "5"], "slope": 1.2, "cuts": [-4.0, -2.5, 2.0]}  # as `calibrate --write` puts it


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with sample_server(tmp_path_factory.mktemp("served_models"), FLOAT32) as srv:
        yield srv


@pytest.fixture(scope="module")
def calibrated_server(tmp_path_factory):
    """A server of ``breast_us_acsnet`` alone, whose inference config has a known BI-RADS model (whatever the shipped
    config holds)."""
    workdir = tmp_path_factory.mktemp("calibrated")
    bundles = bundles_folder(workdir / "bundles", {"breast_us_acsnet": {"birads": BIRADS}}, ["breast_us_acsnet"])
    with sample_server(workdir, {**FLOAT32, "BREASTLAB_BUNDLES": str(bundles)}) as srv:
        yield srv


def mask_of(response: requests.Response) -> np.ndarray:
    assert response.status_code == 200, response.text
    return np.asarray(Image.open(io.BytesIO(response.content))) > 0


def test_a_click_on_the_lesion_marks_it(server):
    truth = np.asarray(Image.open(SAMPLES / "masks" / "case001.png")) > 0
    info = requests.get(f"{server.url}/info/", timeout=10).json()["models"][INTERACTIVE]
    assert info["type"] == "deepedit" and info["labels"] == {"lesion": 1}
    clicked = mask_of(infer(server, "case001", model=INTERACTIVE, output="image", foreground=[[353, 39]]))
    assert clicked[39, 353] and dice(clicked, truth) > 0.45


def test_a_background_click_removes_what_it_is_on(server):
    automatic = mask_of(infer(server, "case002", model=INTERACTIVE, output="image"))
    assert automatic.any()
    row, col = np.unravel_index(np.argmax(ndimage.distance_transform_edt(automatic)), automatic.shape)
    unclicked = mask_of(infer(server, "case002", model=INTERACTIVE, output="image", background=[[int(col), int(row)]]))
    assert not unclicked[row, col] and unclicked.sum() < automatic.sum()


@pytest.mark.parametrize("points, words", [
    ({"foreground": [[900, 10]]}, "outside the 485 x 537 image"),
    ({"background": [[10, -1]]}, "outside"),
    ({"foreground": [[1, 2, 3]]}, "foreground[0]"),
    ({"foreground": "here"}, "foreground"),
])
def test_clicks_outside_the_image_or_malformed_get_422(server, points, words):
    response = infer(server, "case001", model=INTERACTIVE, **points)
    assert response.status_code == 422 and words in response.json()["detail"]


def test_lanet_returns_every_class_probability_boxes_and_its_map(server):
    result = infer(server, "case002", model="breast_us_lanet").json()
    assert set(result["probabilities"]) == {"benign", "malignant"}
    assert sum(result["probabilities"].values()) == pytest.approx(1.0, abs=1e-3)
    assert result["prediction"] == max(result["probabilities"], key=result["probabilities"].get)
    for box in result["boxes"]:
        x0, y0, x1, y1 = box["box"]
        assert 0 <= x0 < x1 <= 761 and 0 <= y0 < y1 <= 572
    heat = infer(server, "case002", model="breast_us_lanet_saliency", output="image")
    assert heat.status_code == 200, heat.text
    assert np.asarray(Image.open(io.BytesIO(heat.content))).shape == (572, 761)



def test_acsnet_returns_the_mask_and_every_class_probability_in_one_call(server):
    response = infer(server, "case002", model="breast_us_acsnet", output="all")
    assert response.status_code == 200, response.text
    parts = {p.headers[b"Content-Disposition"].split(b'name="')[1].split(b'"')[0]: p
             for p in MultipartDecoder.from_response(response).parts}
    mask = np.asarray(Image.open(io.BytesIO(parts[b"image"].content)))
    result = json.loads(parts[b"params"].content)
    assert mask.shape == (572, 761) and set(np.unique(mask)) <= {0, 1}
    assert result["lesion_pixels"] == int(mask.sum()) > 0
    assert set(result["probabilities"]) == {"normal", "benign", "malignant"}
    assert sum(result["probabilities"].values()) == pytest.approx(1.0, abs=1e-3)
    assert result["model"] == model_entry("breast_us_acsnet")  # the bundle, version and weights that answered
    shipped = json.loads((PROJECT_ROOT / "bundles" / "breast_us_acsnet" / "configs" / "inference.json").read_text())
    assert ("birads" in result) == (shipped["birads"] is not None)  # a BI-RADS model once calibrated
    info = requests.get(f"{server.url}/info/", timeout=10).json()["models"]["breast_us_acsnet"]
    assert info["type"] == "segmentation" and info["labels"] == {"lesion": 1}


def test_a_calibrated_acsnet_suggests_a_birads_category_from_its_class_probabilities(calibrated_server):
    assert list(requests.get(f"{calibrated_server.url}/info/", timeout=10).json()["models"]) == ["breast_us_acsnet"]
    result = infer(calibrated_server, "case002", model="breast_us_acsnet").json()
    p, birads = result["probabilities"], result["birads"]
    assert list(birads["probabilities"]) == ["1", "2", "3", "4", "5"]
    assert birads["suggestion"] == max(birads["probabilities"], key=birads["probabilities"].get)
    expected = birads_probabilities(p["malignant"] / (p["benign"] + p["malignant"]), BIRADS, [p["normal"]])[0]
    np.testing.assert_allclose(list(birads["probabilities"].values()), expected, atol=2e-3)


def test_end2end_classifies_a_12_bit_monochrome1_mammogram_and_maps_the_breast_side(server):
    rows, cols = np.mgrid[:512, :384]
    display = np.where((rows - 256) ** 2 + cols ** 2 <= 230 ** 2, 2600 + (rows * 7 + cols * 3) % 900, 40)
    stored = (4095 - display).astype(np.uint16)  # MONOCHROME1: dense tissue is stored dark
    data = dicom_bytes(stored, photometric="MONOCHROME1", bits_stored=12, WindowCenter=2048, WindowWidth=4096)
    assert upload(server, "mammogram", data, name="mammogram.dcm").status_code == 200
    result = infer(server, "mammogram", model="breast_mammo_end2end").json()
    assert set(result["probabilities"]) == {"no_cancer", "malignant"}
    assert sum(result["probabilities"].values()) == pytest.approx(1.0, abs=1e-3)
    heat = infer(server, "mammogram", model="breast_mammo_end2end_saliency", output="image")
    assert heat.status_code == 200, heat.text
    heat = np.asarray(Image.open(io.BytesIO(heat.content)))
    assert heat.shape == (512, 384)
    assert heat[:, 250:].max() == 0 < heat[:, :230].max()  # on the breast (left), not on the inverted background


def test_glam_returns_probabilities_its_windows_as_boxes_and_the_fused_map(server):
    rows, cols = np.mgrid[:600, :400]
    breast = (rows - 300) ** 2 + (cols - 400) ** 2 <= 280 ** 2  # breast on the right, chest wall at the edge
    image = np.where(breast, 110 + (rows * 5 + cols * 11) % 90, 8).astype(np.uint8)
    image[20:60, 20:90] = 255  # a film label, off the breast
    assert upload(server, "glam_view", png_bytes(image)).status_code == 200
    result = infer(server, "glam_view", model="breast_mammo_glam").json()
    probabilities = result["probabilities"]
    assert set(probabilities) == {"no_cancer", "malignant"}  # trained on mammo_bcd's malignant vs no cancer
    assert probabilities["no_cancer"] == pytest.approx(1 - probabilities["malignant"], abs=1e-3)
    boxes = result["boxes"]  # the local module's four windows, best first, on the breast
    assert len(boxes) == 4 and [b["score"] for b in boxes] == sorted((b["score"] for b in boxes), reverse=True)
    assert all(b["box"][0] >= 100 and b["box"][2] <= 400 and 0 <= b["box"][1] < b["box"][3] <= 600 for b in boxes)
    heat = infer(server, "glam_view", model="breast_mammo_glam_saliency", output="image")
    assert heat.status_code == 200, heat.text
    heat = np.asarray(Image.open(io.BytesIO(heat.content)))
    assert heat.shape == (600, 400) and heat[:, :100].max() == 0  # restored to the breast box


def test_the_wrong_kind_of_image_gets_a_clear_answer(server):
    """A model refuses an image of the other kind (its DICOM Modality, or a sure check of a PNG) and warns where the
    check is unsure; the samples are ultrasound images."""
    refused = infer(server, "case002", model="breast_mammo_glam")
    assert refused.status_code == 422 and "reads mammograms (MG)" in refused.json()["detail"], refused.text
    unsure = infer(server, "case005", model="breast_mammo_end2end")
    assert unsure.status_code == 200 and "may be one of breast ultrasound" in unsure.json()["modality_warning"]
    assert "modality_warning" not in infer(server, "case005", model="breast_us_lanet").json()
    rows, cols = np.mgrid[:256, :192]
    mammogram = np.where((rows - 128) ** 2 + cols ** 2 <= 120 ** 2, 150 + (rows + cols) % 60, 0).astype(np.uint8)
    assert upload(server, "mg_view", dicom_bytes(mammogram), name="mg.dcm").status_code == 200  # Modality MG
    for model in ("breast_us_t2kd", "breast_us_medsam"):
        response = infer(server, "mg_view", model=model)
        assert response.status_code == 422 and "Modality is MG" in response.json()["detail"], response.text
    us_dicom = dicom_bytes(mammogram, Modality="US")
    as_file = requests.post(f"{server.url}/infer/breast_mammo_end2end", params={"output": "json"}, timeout=120,
                            files={"file": ("us.dcm", us_dicom, "application/dicom")})
    assert as_file.status_code == 422 and "Modality is US" in as_file.json()["detail"], as_file.text
