"""DICOM SEG for BreastLab's 2D lesion masks: written with highdicom, read back with pydicom.

A SEG is written on its single-frame source image: same patient and study, a new series, the source
instance in ``ReferencedSeriesSequence`` and in the frame's derivation, the source's pixel spacing
(``PixelMeasuresSequence``) and its frame of reference when it has one. highdicom 0.22 (the last for
pydicom 2) cannot parse back a SEG without ``SliceThickness``, which 2D images lack, so reading uses pydicom.

A reader's label (several readers per image, ``breastlab.server.datastore.review``) names its reader as
``ContentCreatorName``, with content label ``READER``; a final label names who decided it. The segment of an
annotator's mask is MANUAL; that of a model's result is AUTOMATIC and names the model
(``breastlab.formats.provenance``): segment algorithm name ``<bundle> <version>``, the algorithm identification
(bundle, version, family artificial intelligence, the weights' SHA-256 in its parameters), and both BreastLab's and
the bundle's version in ``SoftwareVersions``.
"""

from __future__ import annotations

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from breastlab import __version__
from breastlab.formats.provenance import ModelIdentity

SERIES_NUMBER = 9901
READER_LABEL = "READER"
PATIENT_STUDY_TYPE2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyID", "StudyDate",
                       "StudyTime", "AccessionNumber", "ReferringPhysicianName")


def writable_source(source: Dataset) -> Dataset:
    """A shallow copy of ``source`` with its empty type-2 patient/study attributes present (highdicom requires them)."""
    ds = Dataset()
    ds.update(source)
    for keyword in PATIENT_STUDY_TYPE2:
        if keyword not in ds:
            setattr(ds, keyword, None)
    return ds


def mask_to_seg(source: Dataset, mask: np.ndarray, model: ModelIdentity | None = None, creator: str | None = None,
                reader: bool = False) -> hd.seg.Segmentation:
    """A binary SEG (one segment, ``lesion``) of ``mask`` ((H, W), non-zero = lesion) on ``source``: ``model``'s
    result, or an annotator's mask (None) made by ``creator``; ``reader``: the creator's label as one of several
    readers."""
    src = writable_source(source)
    frame_of_reference = src.get("FrameOfReferenceUID")
    if frame_of_reference:  # highdicom then wants plane positions, which a 2D projection image does not have
        del src.FrameOfReferenceUID
    seg = hd.seg.Segmentation(
        source_images=[src], pixel_array=np.asarray(mask) > 0, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[lesion_segment(model)], series_instance_uid=generate_uid(), series_number=SERIES_NUMBER,
        sop_instance_uid=generate_uid(), instance_number=1, manufacturer="BreastLab",
        manufacturer_model_name="BreastLab", software_versions=model.software_versions if model else __version__,
        device_serial_number="0", omit_empty_frames=False, content_creator_name=creator,
        content_label=READER_LABEL if reader else "LESION")
    seg.SeriesDescription = "BreastLab reader label" if reader else "BreastLab lesion segmentation"
    if frame_of_reference:
        seg.FrameOfReferenceUID = frame_of_reference
    return seg


def lesion_segment(model: ModelIdentity | None) -> hd.seg.SegmentDescription:
    """Segment 1, ``lesion``: MANUAL (an annotator's), or AUTOMATIC naming ``model``."""
    types = hd.seg.SegmentAlgorithmTypeValues
    algorithm = {"algorithm_type": types.MANUAL} if model is None else {
        "algorithm_type": types.AUTOMATIC, "algorithm_identification": model.seg_algorithm()}
    lesion = hd.seg.SegmentDescription(
        segment_number=1, segment_label="lesion",
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Lesion, **algorithm)
    if model:
        lesion.SegmentAlgorithmName = model.label
    return lesion


def referenced_instance(ds: Dataset) -> str:
    """The SOPInstanceUID of the one image a SEG (or its WADO-RS metadata) references."""
    refs = {str(i.ReferencedSOPInstanceUID) for s in ds.get("ReferencedSeriesSequence", [])
            for i in s.get("ReferencedInstanceSequence", [])}
    if len(refs) != 1:
        raise ValueError(f"SEG references {len(refs)} instances; one 2D image is expected")
    return refs.pop()


def seg_reader(ds: Dataset) -> str | None:
    """The reader whose label a SEG is (its ``ContentCreatorName``); None for a final label or a model's result."""
    if str(ds.get("ContentLabel", "")) != READER_LABEL or not ds.get("ContentCreatorName"):
        return None
    return str(ds.ContentCreatorName)


def seg_mask(ds: Dataset) -> np.ndarray:
    """The lesion mask (H, W) 0/1 uint8 of a single-image SEG: the union of its segments' frames."""
    if str(ds.get("Modality", "")) != "SEG":
        raise ValueError(f"not a SEG (modality {ds.get('Modality')!r})")
    frames = ds.pixel_array.reshape(-1, int(ds.Rows), int(ds.Columns))
    if ds.get("SegmentationType") == "FRACTIONAL":
        frames = frames >= int(ds.get("MaximumFractionalValue", 255)) / 2
    return np.any(frames > 0, axis=0).astype(np.uint8)
