"""Mammography results per breast and per woman without a server: the pooling, the patient look-up in the predictions
store, the side of an image and what a PACS instance says of its woman and breast."""

from __future__ import annotations

import sqlite3

import numpy as np
import pydicom
import pytest
from fastapi import HTTPException

from breastlab.bundle import get_bundle
from breastlab.server.datastore.predictions import PredictionStore
from breastlab.server.datastore.screening import pacs_identity, pooled, side_entry
from breastlab.server.http.inputs import checked_image_labels

from tests.test_mammo import synthetic_breast


def record(image: str, side: str | None, p: float) -> dict:
    return {"image": image, "result": {"probabilities": {"no_cancer": 1 - p, "malignant": p},
                                       **({"side": side} if side else {})}}


def test_a_breast_pools_the_womans_images_of_its_side_and_the_woman_all_of_them():
    records = [record("cc_left", "left", 0.2), record("mlo_left", "left", 0.6), record("cc_right", "right", 0.1)]
    entries = pooled("105", "left", records)
    assert entries["breast"] == {"patient": "105", "side": "left", "images": ["cc_left", "mlo_left"],
                                 "malignant": pytest.approx(0.4), "pooling": "mean"}
    assert entries["woman"] == {"patient": "105", "images": ["cc_left", "mlo_left", "cc_right"],
                                "malignant": pytest.approx(0.3), "pooling": "mean"}
    assert pooled("105", "left", records, "max")["woman"]["malignant"] == pytest.approx(0.6)
    right = pooled("105", "right", records)["breast"]
    assert (right["side"], right["images"], right["malignant"]) == ("right", ["cc_right"], pytest.approx(0.1))


def test_results_without_a_side_count_for_the_woman_only_and_those_without_malignant_not_at_all():
    records = [record("old", None, 0.8), record("new", "right", 0.2), {"image": "seg", "result": {"lesion_pixels": 3}}]
    entries = pooled("105", "right", records)
    assert entries["woman"]["images"] == ["old", "new"] and entries["woman"]["malignant"] == pytest.approx(0.5)
    assert entries["breast"]["images"] == ["new"]
    assert pooled("105", "left", records).keys() == {"woman"}
    assert pooled("105", "left", []) == {}


def test_the_store_finds_a_patients_results_of_a_model_through_an_index(tmp_path):
    store = PredictionStore.of(tmp_path)
    store.put("a", "mg", {"i": 1}, "105")
    store.put("b", "mg", {"i": 2}, "105")
    store.put("b", "other", {"i": 3}, "105")
    store.put("c", "mg", {"i": 4}, "106")
    store.put("d", "mg", {"i": 5})
    assert [r["image"] for r in store.list(model="mg", patient="105")] == ["a", "b"]
    store.set_patient("a", "106")
    assert [r["image"] for r in store.list(model="mg", patient="106")] == ["a", "c"]
    with sqlite3.connect(store.path) as db:
        plan = db.execute("EXPLAIN QUERY PLAN SELECT * FROM predictions WHERE model = ? AND patient = ?",
                          ("mg", "105")).fetchall()
    assert "predictions_patient" in str(plan)


def test_a_store_of_an_older_version_gains_the_patient_column_and_keeps_its_records(tmp_path):
    path = tmp_path / ".breastlab" / "predictions.sqlite"
    path.parent.mkdir()
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE predictions (image TEXT NOT NULL, model TEXT NOT NULL, time REAL NOT NULL, "
                   "result TEXT NOT NULL, PRIMARY KEY (image, model))")
        db.execute("INSERT INTO predictions VALUES ('a', 'mg', 1.0, '{}')")
    store = PredictionStore.of(tmp_path)
    store.put("b", "mg", {}, "105")
    assert [r["image"] for r in store.list(model="mg")] == ["a", "b"]
    assert [r["image"] for r in PredictionStore.of(tmp_path).list(model="mg", patient="105")] == ["b"]


@pytest.mark.parametrize("info", [{"patient": "../105"}, {"patient": 105}, {"patient": "105 106"},
                                  {"patient": ""}, {"laterality": "up"}, {"laterality": "L"}])
def test_a_hostile_patient_or_laterality_gets_422(info):
    with pytest.raises(HTTPException) as error:
        checked_image_labels(info)
    assert error.value.status_code == 422


def test_the_side_of_a_mammogram_is_where_its_breast_lies_the_right_way_round():
    bundle = get_bundle("breast_mammo_end2end")
    left = synthetic_breast("left")
    assert side_entry(bundle, left) == {"side": "left"}
    assert side_entry(bundle, np.ascontiguousarray(255 - left[:, ::-1])) == {"side": "right"}  # inverted display
    assert side_entry(bundle, left, "right") == {"side": "right"}  # the DICOM laterality, where known
    assert side_entry(get_bundle("breast_us_acsnet"), left) == {}


def test_a_pacs_instance_names_its_woman_and_breast_where_it_can():
    ds = pydicom.Dataset()
    ds.PatientID, ds.ImageLaterality = "P-105", "L"
    assert pacs_identity(ds) == {"patient": "P-105", "laterality": "left"}
    ds.PatientID, ds.Laterality = "105^Doe", "R"
    del ds.ImageLaterality
    assert pacs_identity(ds) == {"laterality": "right"}  # a PatientID that is not a safe id groups nothing
    assert pacs_identity(pydicom.Dataset()) == {}
