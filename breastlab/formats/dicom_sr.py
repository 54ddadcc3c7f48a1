"""Image-level labels (class, BI-RADS, class probabilities) as a DICOM Comprehensive SR on the source image.

Content tree, under a ``Findings`` (DCM 121070) container: ``Source image`` (DCM 121324, IMAGE, the
labelled instance); ``Finding`` (DCM 121071, TEXT: normal | benign | malignant); ``Assessment Category``
(DCM 111005, TEXT: BI-RADS 0-6, 4a-4c); one NUM per class probability, coded in the private scheme
``99BREASTLAB`` (``prob-<class>``, unit UCUM ``1``). The SR is in the source's study, in a new series.

Labels are the annotator's; probabilities that are a model's result each name it (TID 300 Measurement with a TID
4019 Algorithm Identification: bundle, version, ``weights_sha256=<hex>`` and ``breastlab=<version>`` parameters,
``breastlab.formats.provenance``). A reader's labels (one of several readers) name the reader in a TEXT item
``reader`` (``99BREASTLAB``); those of an approved final label are a verified SR (``VerifyingObserverSequence``: the
reviewer) with a TEXT item ``final-source`` (``consensus``, ``reader:<name>`` or ``edited``).
"""

from __future__ import annotations

import highdicom as hd
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from breastlab.formats.dicom_seg import writable_source
from breastlab.formats.provenance import ModelIdentity

SCHEME = "99BREASTLAB"
SERIES_NUMBER = 9902
NO_UNITS = hd.sr.CodedConcept("1", "UCUM", "no units")
TEXT_ITEMS = {"class": codes.DCM.Finding, "birads": codes.DCM.AssessmentCategory}
ALGORITHM_ITEMS = {codes.DCM.AlgorithmName.value: "bundle", codes.DCM.AlgorithmVersion.value: "version"}


def probability_code(name: str) -> hd.sr.CodedConcept:
    return hd.sr.CodedConcept(f"prob-{name}", SCHEME, f"Probability of {name}")


def private_code(name: str) -> hd.sr.CodedConcept:
    return hd.sr.CodedConcept(name, SCHEME, {"reader": "Reader", "final-source": "Final label source"}[name])


def assessment_sr(source: Dataset, labels: dict, model: ModelIdentity | None = None) -> hd.sr.ComprehensiveSR:
    """An SR of ``labels`` (``class``, ``birads``, ``probabilities`` {class: 0..1}, ``reader``, ``approved``
    {by, source}; any may be absent) on ``source``; ``model``: the model whose result the probabilities are (None:
    the annotator's)."""
    items = [hd.sr.ImageContentItem(codes.DCM.SourceImage, source.SOPClassUID, source.SOPInstanceUID,
                                    relationship_type="CONTAINS")]
    items += [hd.sr.TextContentItem(code, str(labels[key]), relationship_type="CONTAINS")
              for key, code in TEXT_ITEMS.items() if labels.get(key) is not None]
    approved = labels.get("approved") or {}
    for key, value in (("reader", labels.get("reader")), ("final-source", approved.get("source"))):
        if value:
            items.append(hd.sr.TextContentItem(private_code(key), str(value), relationship_type="CONTAINS"))
    for name, p in sorted((labels.get("probabilities") or {}).items()):
        algorithm = model.sr_algorithm() if model else None
        items += hd.sr.Measurement(probability_code(name), float(p), NO_UNITS, algorithm_id=algorithm)
    root = hd.sr.ContainerContentItem(codes.DCM.Findings)
    root.ContentSequence = hd.sr.ContentSequence(items)
    verified = {"is_verified": True, "verifying_observer_name": str(approved["by"]),
                "verifying_organization": "BreastLab review"} if approved.get("by") else {}
    sr = hd.sr.ComprehensiveSR([writable_source(source)], root, generate_uid(), SERIES_NUMBER, generate_uid(), 1,
                               manufacturer="BreastLab", is_complete=True, **verified)
    sr.SeriesDescription = "BreastLab reader assessment" if labels.get("reader") else "BreastLab image assessment"
    return sr


def read_assessment(ds: Dataset) -> tuple[str, dict]:
    """The labelled image's SOPInstanceUID and its labels from an SR written by ``assessment_sr`` (or its metadata),
    with ``model`` (a result's ``model`` entry) where its probabilities name one."""
    texts = {(code.value, code.scheme_designator): key for key, code in TEXT_ITEMS.items()}
    image, labels, probabilities, model = None, {}, {}, None
    for item in ds.get("ContentSequence", []):
        code = item.ConceptNameCodeSequence[0]
        concept = (str(code.CodeValue), str(code.CodingSchemeDesignator))
        if item.ValueType == "IMAGE":
            image = str(item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID)
        elif item.ValueType == "TEXT" and concept in texts:
            labels[texts[concept]] = str(item.TextValue)
        elif item.ValueType == "TEXT" and concept in ((key, SCHEME) for key in ("reader", "final-source")):
            labels[concept[0]] = str(item.TextValue)
        elif item.ValueType == "NUM" and concept[1] == SCHEME:
            probabilities[concept[0].removeprefix("prob-")] = float(item.MeasuredValueSequence[0].NumericValue)
            model = model or algorithm_of(item)
    if image is None:
        raise ValueError("SR has no source image")
    named = {"probabilities": probabilities, **({"model": model} if model else {})} if probabilities else {}
    source = labels.pop("final-source", None)
    verifier = ds.get("VerifyingObserverSequence")
    if source and verifier:
        named["approved"] = {"by": str(verifier[0].VerifyingObserverName), "source": source}
    return image, {**labels, **named}


def algorithm_of(measurement: Dataset) -> dict | None:
    """The ``model`` entry (bundle, version, weights_sha256, breastlab) of a measurement's TID 4019 Algorithm
    Identification, as ``ModelIdentity.sr_algorithm`` writes it; None without one."""
    found, parameters = {}, {}
    for item in measurement.get("ContentSequence", []):
        code = item.ConceptNameCodeSequence[0]
        if item.ValueType != "TEXT" or str(code.CodingSchemeDesignator) != "DCM":
            continue
        if str(code.CodeValue) in ALGORITHM_ITEMS:
            found[ALGORITHM_ITEMS[str(code.CodeValue)]] = str(item.TextValue)
        elif str(code.CodeValue) == codes.DCM.AlgorithmParameters.value:
            key, _, value = str(item.TextValue).partition("=")
            parameters[key] = value
    if "bundle" not in found:
        return None
    return {"bundle": found["bundle"], "version": found.get("version"),
            "weights_sha256": parameters.get("weights_sha256"), "breastlab": parameters.get("breastlab")}
