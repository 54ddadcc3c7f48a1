"""Mammography results as screening reads them: per breast and per woman, not per picture.

A mammography classifier's result names the side of its breast (``side``). On a datastore image of a known patient
it also gives ``breast`` and ``woman``: p(malignant) pooled over the latest results of the same model and weights on
that woman's images (of that side, or all), as ``breastlab evaluate`` pools them (``grouped_rows``). The other views
count once they have a stored result (``PredictionStore``): nothing else is inferred in the request.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset

from breastlab.data.mammo import read_mammogram
from breastlab.evaluation.mammograms import grouped_rows
from breastlab.formats.png import check_id
from breastlab.server.http.inputs import SIDES
from breastlab.transforms.mammo import breast_side, uninvert

logger = logging.getLogger(__name__)
POOLING = "mean"  # per-woman AUC on mammo_bcd val: mean above max for both mammography bundles (issue 46)
MALIGNANT = "malignant"
LATERALITY = {"L": "left", "R": "right"}  # DICOM ImageLaterality / Laterality


def is_mammography(bundle) -> bool:
    """A mammography classifier: an MG bundle with a ``malignant`` class."""
    return bundle.metadata["breastlab"].get("modality") == "MG" and MALIGNANT in bundle.classes


def side_entry(bundle, image: str | Path | np.ndarray, laterality: str | None = None) -> dict:
    """``{"side": "left" | "right"}`` for a mammography classifier's result on ``image`` (a file or an (H, W) array),
    else nothing: ``laterality`` where known (a PACS's DICOM), else the side of the breast in the image the right way
    round."""
    if not is_mammography(bundle):
        return {}
    if laterality in SIDES:
        return {"side": laterality}
    pixels = read_mammogram(image) if isinstance(image, (str, Path)) else image
    return {"side": breast_side(uninvert(pixels)[0])}


def woman_entries(predictions, datastore, model: str, result: dict, patient: str | None) -> dict:
    """``breast`` and ``woman`` of ``result`` (with its ``side``, stored for an image of ``patient``): one look-up
    of the patient's results of ``model`` (indexed), kept where the weights are the same and the image still the
    patient's; nothing without a patient or a side."""
    if not patient or "side" not in result:
        return {}
    records = [r for r in predictions.list(model=model, patient=patient)
               if r["result"].get("model") == result.get("model") and patient_of(datastore, r["image"]) == patient]
    return pooled(patient, result["side"], records)


def patient_of(datastore, image: str) -> str | None:
    """The ``patient`` of a datastore image's info (None when unknown or the image is gone)."""
    obj = datastore.objects.get(image)
    return obj.image.info.get("patient") if obj is not None else None


def pooled(patient: str, side: str, records: list[dict], pooling: str = POOLING) -> dict:
    """``breast`` (the records of ``side``) and ``woman`` (all records) of ``patient``: their images and their
    p(malignant) pooled by ``pooling`` (``max`` or ``mean``); ``records`` are ``{image, result}``, a result with
    ``probabilities`` and ``side``. A level without records is left out."""
    rows = [{"image": r["image"], "patient": patient, "side": r["result"].get("side"), "label": None,
             "class_probabilities": r["result"]["probabilities"]}
            for r in records if MALIGNANT in (r["result"].get("probabilities") or {})]
    levels = {"breast": ({"patient": patient, "side": side}, [r for r in rows if r["side"] == side]),
              "woman": ({"patient": patient}, rows)}
    return {level: {**key, **_pooled(members, level, pooling)} for level, (key, members) in levels.items() if members}


def _pooled(rows: list[dict], level: str, pooling: str) -> dict:
    (group,) = grouped_rows(rows, level, pooling)
    return {"images": [r["image"] for r in rows], MALIGNANT: round(group["class_probabilities"][MALIGNANT], 4),
            "pooling": pooling}


def pacs_identity(ds: Dataset) -> dict:
    """A PACS instance's ``patient`` (its PatientID, where that is a safe id) and ``laterality`` (ImageLaterality,
    else Laterality: ``L``/``R``), for its image info."""
    identity = {}
    patient = str(ds.get("PatientID") or "").strip()
    try:
        identity["patient"] = check_id(patient, "PatientID")
    except ValueError as e:
        if patient:
            logger.warning(f"PACS instance {ds.get('SOPInstanceUID')}: no patient grouping ({e})")
    side = LATERALITY.get(str(ds.get("ImageLaterality") or ds.get("Laterality") or "").strip().upper())
    return {**identity, **({"laterality": side} if side else {})}
