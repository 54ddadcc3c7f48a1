"""A model's DICOM SEG and SR name it (bundle, version, weights, BreastLab's version); an annotator's do not."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from breastlab import __version__
from breastlab.formats.dicom_seg import mask_to_seg, seg_mask, seg_reader
from breastlab.formats.dicom_sr import assessment_sr, read_assessment
from breastlab.formats.provenance import ModelIdentity

from helpers import dicom_bytes

ACSNET = ModelIdentity("breast_us_acsnet", "0.3.0", "ab" * 32)


def written(ds: Dataset) -> Dataset:
    """``ds`` as a reader of the file sees it (written, then read back with pydicom)."""
    buffer = io.BytesIO()
    ds.save_as(buffer, write_like_original=False)
    return pydicom.dcmread(io.BytesIO(buffer.getvalue()))


def source_image() -> Dataset:
    data = dicom_bytes(np.zeros((32, 48), np.uint8), Modality="US", StudyInstanceUID=generate_uid(),
                       SeriesInstanceUID=generate_uid(), PixelSpacing=[0.1, 0.1])
    return pydicom.dcmread(io.BytesIO(data))


def test_a_models_seg_is_automatic_and_names_the_bundle_its_version_and_weights():
    mask = np.zeros((32, 48), np.uint8)
    mask[5:20, 10:30] = 1
    seg = written(mask_to_seg(source_image(), mask, ACSNET))
    segment = seg.SegmentSequence[0]
    assert segment.SegmentAlgorithmType == "AUTOMATIC" and segment.SegmentAlgorithmName == "breast_us_acsnet 0.3.0"
    algorithm = segment.SegmentationAlgorithmIdentificationSequence[0]
    assert (algorithm.AlgorithmName, algorithm.AlgorithmVersion) == ("breast_us_acsnet", "0.3.0")
    assert algorithm.AlgorithmFamilyCodeSequence[0].CodeMeaning == "Artificial Intelligence"
    assert algorithm.AlgorithmParameters == f"weights_sha256={'ab' * 32},breastlab={__version__}"
    assert list(seg.SoftwareVersions) == [f"breastlab {__version__}", "breast_us_acsnet 0.3.0"]
    np.testing.assert_array_equal(seg_mask(seg), mask)


def test_an_annotators_seg_stays_manual_and_names_no_model():
    seg = written(mask_to_seg(source_image(), np.ones((32, 48), np.uint8)))
    segment = seg.SegmentSequence[0]
    assert segment.SegmentAlgorithmType == "MANUAL" and "SegmentationAlgorithmIdentificationSequence" not in segment
    assert "SegmentAlgorithmName" not in segment and seg.SoftwareVersions == __version__


@pytest.mark.parametrize("model", [ACSNET, None], ids=["model", "annotator"])
def test_sr_probabilities_name_the_model_they_are_from(model):
    source = source_image()
    labels = {"class": "benign", "birads": "4a", "probabilities": {"benign": 0.7, "malignant": 0.3}}
    sr = written(assessment_sr(source, labels, model))
    assert read_assessment(sr) == (source.SOPInstanceUID, {**labels, **({"model": model.as_json()} if model else {})})
    numbers = [item for item in sr.ContentSequence if item.ValueType == "NUM"]
    algorithms = [[(child.ConceptNameCodeSequence[0].CodeMeaning, child.TextValue)
                   for child in item.get("ContentSequence", [])] for item in numbers]
    expected = [("Algorithm Name", "breast_us_acsnet"), ("Algorithm Version", "0.3.0"),
                ("Algorithm Parameters", f"weights_sha256={'ab' * 32}"),
                ("Algorithm Parameters", f"breastlab={__version__}")] if model else []
    assert algorithms == [expected, expected]


def test_a_readers_seg_names_the_reader_and_a_final_one_who_decided():
    mask = np.zeros((32, 48), np.uint8)
    mask[2:9, 3:12] = 1
    read = written(mask_to_seg(source_image(), mask, creator="ann", reader=True))
    assert (str(read.ContentCreatorName), read.ContentLabel, seg_reader(read)) == ("ann", "READER", "ann")
    assert read.SeriesDescription == "BreastLab reader label"
    np.testing.assert_array_equal(seg_mask(read), mask)
    final = written(mask_to_seg(source_image(), mask, creator="rev"))
    assert (str(final.ContentCreatorName), seg_reader(final)) == ("rev", None)


def test_a_readers_sr_names_the_reader_and_an_approved_one_is_verified_by_the_reviewer():
    source = source_image()
    read = written(assessment_sr(source, {"class": "benign", "birads": "3", "reader": "ann"}))
    assert read_assessment(read) == (source.SOPInstanceUID, {"class": "benign", "birads": "3", "reader": "ann"})
    assert read.VerificationFlag == "UNVERIFIED"
    approved = {"class": "malignant", "birads": "4c", "approved": {"by": "rev", "source": "consensus"}}
    final = written(assessment_sr(source, approved))
    assert read_assessment(final) == (source.SOPInstanceUID, approved)
    assert final.VerificationFlag == "VERIFIED"
    assert str(final.VerifyingObserverSequence[0].VerifyingObserverName) == "rev"
