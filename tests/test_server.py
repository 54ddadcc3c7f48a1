"""The real MONAI Label server with the BreastLab app, called over HTTP (slow: starts a server)."""

from __future__ import annotations

import io
import json
import time
import zipfile

import numpy as np
import pytest
import requests
from PIL import Image

from breastlab.data import read_dataset
from breastlab.formats.dicom import read_dicom_image

from helpers import MODEL, SAMPLES, dicom_bytes, infer, model_entry, png_bytes, sample_server, save_label, upload

pytestmark = pytest.mark.slow
INTERACTIVE = "breast_us_interactive"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with sample_server(tmp_path_factory.mktemp("server")) as srv:
        yield srv


def test_info_lists_the_bundle_as_a_2d_segmentation_model(server):
    info = requests.get(f"{server.url}/info/", timeout=10).json()
    model = info["models"][MODEL]
    assert model["type"] == "segmentation"
    assert model["labels"] == {"lesion": 1}
    assert model["dimension"] == 2
    assert MODEL in info["trainers"]
    listing = requests.get(f"{server.url}/datastore/", params={"output": "all"}, timeout=10).json()["objects"]
    assert info["datastore"]["total"] == len(listing) >= 6  # the samples, and what other tests uploaded


def test_upload_infer_and_save_label(server):
    image = (SAMPLES / "images" / "case002.png").read_bytes()
    assert upload(server, "uploaded_case", image).json() == {"image": "uploaded_case"}
    listing = requests.get(f"{server.url}/datastore/", params={"output": "all"}, timeout=10).json()
    assert "uploaded_case" in listing["objects"]

    response = infer(server, "uploaded_case", output="image")
    assert response.status_code == 200, response.text
    mask = np.asarray(Image.open(io.BytesIO(response.content)))
    assert mask.shape == (572, 761)  # height x width of case002, not transposed
    assert set(np.unique(mask)) <= {0, 1}
    summary = infer(server, "uploaded_case").json()
    assert summary["height"] == 572 and summary["width"] == 761
    assert summary["lesion_pixels"] == int(mask.sum())
    assert 0.0 <= summary["lesion_probability"] <= 1.0

    truth = np.asarray(Image.open(SAMPLES / "masks" / "case002.png"))
    assert save_label(server, "uploaded_case", png_bytes(truth)).status_code == 200
    saved = requests.get(f"{server.url}/datastore/label", params={"label": "uploaded_case", "tag": "final"}, timeout=10)
    stored = np.asarray(Image.open(io.BytesIO(saved.content)))
    np.testing.assert_array_equal(stored, (truth > 0).astype(np.uint8))


def test_train_one_epoch_changes_the_served_model(server):
    listing = requests.get(f"{server.url}/datastore/", params={"output": "all"}, timeout=10).json()["objects"]
    labelled = sum("final" in entry["labels"] for entry in listing.values())
    before = infer(server, "case001").json()
    response = requests.post(f"{server.url}/train/{MODEL}", json={"max_epochs": 1, "val_fraction": 0.3}, timeout=30)
    assert response.status_code == 200, response.text
    status = wait_for_training(server)
    assert status["status"] == "DONE", json.dumps(status)[-2000:]

    stats = requests.get(f"{server.url}/info/", timeout=10).json()["train_stats"][MODEL]
    assert stats["status"] == "DONE" and stats["epochs"] == 1
    assert stats["train_images"] + stats["val_images"] == labelled
    after = infer(server, "case001").json()
    assert after["weights"]["file"] == f"{MODEL}.pt"  # the fine-tuned weights, not the bundle's own
    assert after["weights"]["modified"] > before["weights"]["modified"]
    assert before["model"] == model_entry(MODEL)
    assert after["model"] == model_entry(MODEL, server.app_dir / "model" / f"{MODEL}.pt")  # hashed once reloaded


def wait_for_training(server, timeout: float = 600) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        status = requests.get(f"{server.url}/train/", timeout=10).json()
        if status.get("status") not in ("SUBMITTED", "RUNNING", "QUEUED"):
            return status
        time.sleep(1)
    raise TimeoutError("training did not finish")


@pytest.mark.parametrize(
    "data, status, words",
    [
        ((SAMPLES / "images" / "case001.png").read_bytes()[:300], 400, "truncated"),
        (b"definitely not a png", 400, "cannot decode"),
        (b"", 400, "cannot decode"),
        (png_bytes(np.full((64, 64), 1000, np.uint16)), 415, "mode"),
        (png_bytes(np.zeros((64, 64, 4), np.uint8)), 415, "RGBA"),
        (png_bytes(np.zeros((64, 64), np.uint8), "P"), 415, "'P'"),
        (png_bytes(np.zeros((8, 8), np.uint8)), 415, "size"),
    ],
    ids=["truncated", "garbage", "empty", "16-bit", "rgba", "palette", "too-small"],
)
def test_bad_uploads_get_a_clear_4xx(server, data, status, words):
    response = upload(server, "bad_upload", data)
    assert response.status_code == status, response.text
    assert words in response.json()["detail"]
    assert "bad_upload" not in requests.get(f"{server.url}/datastore/", params={"output": "all"}, timeout=10).json()[
        "objects"]


def test_jpeg_uploads_are_stored_as_gray_png(server):
    gray = np.tile(np.linspace(0, 255, 80, dtype=np.uint8), (60, 1))
    colour = np.zeros((60, 80, 3), np.uint8)
    colour[..., 2] = 180
    jpeg = [io.BytesIO(), io.BytesIO()]
    Image.fromarray(gray).convert("RGB").save(jpeg[0], "JPEG", quality=95)  # gray saved as RGB, as mammo_bcd is
    Image.fromarray(colour).save(jpeg[1], "JPEG")
    assert upload(server, "jpeg_upload", jpeg[0].getvalue(), "scan.jpg").status_code == 200
    stored = requests.get(f"{server.url}/datastore/image", params={"image": "jpeg_upload"}, timeout=10)
    with Image.open(io.BytesIO(stored.content)) as image:
        assert (image.format, image.mode, image.size) == ("PNG", "L", (80, 60))
        assert np.abs(np.asarray(image, dtype=int) - gray).mean() < 2
    response = upload(server, "colour_upload", jpeg[1].getvalue(), "photo.jpg")
    assert response.status_code == 415 and "colour JPEG" in response.json()["detail"]
    assert requests.delete(f"{server.url}/datastore/image", params={"id": "jpeg_upload"}, timeout=10).status_code == 200


@pytest.mark.parametrize("image_id", ["../escape", "a/b", ".hidden", "x" * 300])
def test_odd_image_ids_are_rejected(server, image_id):
    response = upload(server, image_id, (SAMPLES / "images" / "case001.png").read_bytes())
    assert response.status_code == 400 and "invalid image id" in response.json()["detail"]


def test_infer_on_an_uploaded_file_checks_it_first(server):
    def infer_file(data: bytes) -> requests.Response:
        return requests.post(f"{server.url}/infer/{MODEL}", params={"output": "json"},
                             files={"file": ("x.png", data, "image/png")}, timeout=120)

    good = infer_file((SAMPLES / "images" / "case007.png").read_bytes())
    assert good.status_code == 200 and good.json()["width"] == 485
    bad = infer_file(b"\x89PNG\r\n\x1a\n truncated")
    assert bad.status_code == 400 and "cannot decode" in bad.json()["detail"]


def test_unknown_ids_and_models_get_404(server):
    assert infer(server, "no_such_image").status_code == 404
    response = infer(server, "case001", model="no_such_model")
    assert response.status_code == 404 and MODEL in response.json()["detail"]
    assert requests.post(f"{server.url}/train/no_such_model", json={}, timeout=10).status_code == 404
    label = png_bytes(np.zeros((537, 485), np.uint8))
    assert save_label(server, "no_such_image", label).status_code == 404
    missing_image = requests.delete(f"{server.url}/datastore/image", params={"id": "no_such_image"}, timeout=10)
    assert missing_image.status_code == 404
    missing_label = requests.delete(f"{server.url}/datastore/label", params={"id": "case001", "tag": "x"}, timeout=10)
    assert missing_label.status_code == 404


def test_label_of_the_wrong_size_is_rejected_and_the_old_one_kept(server):
    before = requests.get(f"{server.url}/datastore/label", params={"label": "case001", "tag": "final"}, timeout=10)
    response = save_label(server, "case001", png_bytes(np.ones((20, 40), np.uint8)))
    assert response.status_code == 422 and "does not match" in response.json()["detail"]
    after = requests.get(f"{server.url}/datastore/label", params={"label": "case001", "tag": "final"}, timeout=10)
    assert after.content == before.content


def test_server_still_answers_after_bad_input(server):
    assert server.alive()


def set_image_labels(server, image_id: str, info) -> requests.Response:
    return requests.put(f"{server.url}/datastore/image/info", params={"image": image_id},
                        data={"info": json.dumps(info)}, timeout=10)


def test_image_level_labels_are_stored_listed_and_validated(server):
    assert set_image_labels(server, "case003", {"class": "malignant", "birads": "4C"}).status_code == 200
    listing = requests.get(f"{server.url}/datastore/", params={"output": "all"}, timeout=10).json()
    assert listing["objects"]["case003"]["image"]["info"]["class"] == "malignant"
    info = requests.get(f"{server.url}/datastore/image/info", params={"image": "case003"}, timeout=10).json()
    assert info["birads"] == "4c"
    unknown = set_image_labels(server, "case003", {"class": "fibroadenoma"})
    assert unknown.status_code == 422 and "normal, benign, malignant" in unknown.json()["detail"]
    assert set_image_labels(server, "case003", {"birads": "9"}).status_code == 422
    assert set_image_labels(server, "no_such_image", {"class": "benign"}).status_code == 404
    assert requests.get(f"{server.url}/datastore/image/info", params={"image": "case003"}, timeout=10
                        ).json()["class"] == "malignant"
    params = json.dumps({"probabilities": {"benign": 1.0}, "model": model_entry(MODEL)})  # no result on a new image
    named = requests.put(f"{server.url}/datastore/image", params={"image": "named"}, data={"params": params},
                         files={"file": ("a.png", png_bytes(np.full((8, 8), 90, np.uint8)), "image/png")}, timeout=10)
    assert named.status_code == 422 and "has no result yet" in named.json()["detail"]
    assert requests.get(f"{server.url}/datastore/image/info", params={"image": "named"}, timeout=10).status_code == 404


def test_dataset_export_is_a_dataset_folder_breastlab_reads(server, tmp_path):
    response = requests.get(f"{server.url}/datastore/dataset", timeout=60)
    assert response.status_code == 200
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        archive.extractall(tmp_path)
    cases = {c.case: c for c in read_dataset(tmp_path)}
    assert {"case001", "case002", "case005"} <= set(cases)
    assert cases["case005"].label == "malignant" and cases["case005"].mask is not None


def test_dicom_uploads_become_display_ready_images_with_their_details(server, tmp_path):
    pixels = np.tile(np.linspace(0, 4095, 96).astype(np.uint16), (80, 1))
    data = dicom_bytes(pixels, photometric="MONOCHROME1", bits_stored=12, PixelSpacing=[0.1, 0.1])
    assert upload(server, "dicom_mg", data, name="mg.dcm").status_code == 200
    info = requests.get(f"{server.url}/datastore/image/info", params={"image": "dicom_mg"}, timeout=10).json()
    assert info["dicom"] == {"modality": "MG", "spacing_mm": [0.1, 0.1], "photometric": "MONOCHROME1",
                             "bits_stored": 12}
    stored = np.asarray(Image.open(io.BytesIO(requests.get(f"{server.url}/datastore/image",
                                                           params={"image": "dicom_mg"}, timeout=10).content)))
    (tmp_path / "mg.dcm").write_bytes(data)
    np.testing.assert_array_equal(stored, read_dicom_image(tmp_path / "mg.dcm").pixels)
    assert stored[0, 0] == 255 and stored[0, -1] == 0  # MONOCHROME1: low values are bright

    inferred = requests.post(f"{server.url}/infer/{MODEL}", params={"output": "json"},
                             files={"file": ("us.dcm", dicom_bytes(pixels.astype(np.uint8), Modality="US"))},
                             timeout=120)
    assert inferred.status_code == 200 and (inferred.json()["height"], inferred.json()["width"]) == (80, 96)

    ct = upload(server, "dicom_ct", dicom_bytes(pixels, Modality="CT"), name="ct.dcm")
    assert ct.status_code == 415 and "modality 'CT'" in ct.json()["detail"]
    assert save_label(server, "dicom_mg", data).status_code == 400  # labels are PNG masks


def test_predictions_are_persisted_listed_and_forgotten_with_their_image(server):
    assert upload(server, "predicted", png_bytes(np.full((40, 56), 90, np.uint8))).status_code == 200
    result = infer(server, "predicted").json()
    listed = requests.get(f"{server.url}/datastore/predictions", params={"image": "predicted"}, timeout=10).json()
    assert [(p["image"], p["model"]) for p in listed] == [("predicted", MODEL)]
    assert listed[0]["result"] == result and listed[0]["time"] <= time.time()
    assert result["model"]["bundle"] == MODEL and len(result["model"]["weights_sha256"]) == 64  # kept with the result
    every = requests.get(f"{server.url}/datastore/predictions", params={"model": MODEL}, timeout=10).json()
    assert ("predicted", MODEL) in [(p["image"], p["model"]) for p in every]
    for params in ({"image": "no_such_image"}, {"model": "no_such_model"}):
        assert requests.get(f"{server.url}/datastore/predictions", params=params, timeout=10).status_code == 404
    assert requests.delete(f"{server.url}/datastore/image", params={"id": "predicted"}, timeout=10).status_code == 200
    every = requests.get(f"{server.url}/datastore/predictions", timeout=10).json()
    assert "predicted" not in [p["image"] for p in every]
