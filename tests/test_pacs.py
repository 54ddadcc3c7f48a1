"""BreastLab on a real PACS: Orthanc with DICOMweb, MG (synthetic) and US (the shipped samples) instances, SEG and
SR results.

Orthanc (Debian's ``orthanc`` + ``orthanc-dicomweb``) and a BreastLab server on its DICOMweb URL run once for the
session (``pacs`` and ``pacs_server`` in conftest.py); skipped only when Orthanc is not installed. Every test that
changes what the PACS holds works on instances of its own (see ``CASES``; tests/test_pacs_review.py stores its own),
so the tests pass in any order; everything is written under the run's temporary folders.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pydicom
import pytest
import requests
from pydicom.uid import JPEGLSLossless, generate_uid

from breastlab.formats.dicom_seg import mask_to_seg, seg_reader
from breastlab.formats.dicom_sr import read_assessment

from helpers import dicom_bytes, infer, png_bytes, save_label, upload
from orthanc import eventually, instance, missing, read_png, results_for

pytestmark = [pytest.mark.slow, pytest.mark.skipif(missing() is not None, reason=str(missing()))]
UPLOADED_US = "case008"  # shipped sample, only ever stored by the upload test
# which test changes what about which case (no two tests touch the same one)
CASES = {"SEG saved through BreastLab": ("mg_seg", "case005"), "never labelled": ("mg_unlabelled",),
         "SR": ("case002",), "SEG stored by another tool": ("mg_other_tool",)}


@pytest.fixture
def server(pacs_server):
    return pacs_server


def uid(pacs, case: str) -> str:
    return str(pacs.cases[case][0].SOPInstanceUID)


def objects(server) -> dict:
    response = requests.get(f"{server.url}/datastore/", params={"output": "all"}, timeout=30)
    response.raise_for_status()
    return response.json()["objects"]


def labels(server, image: str) -> dict:
    return objects(server)[image]["labels"]


def orthanc_id(pacs, sop: str) -> str:
    """Orthanc's own id of an instance (its REST API deletes by that id)."""
    return requests.post(f"{pacs.url}/tools/lookup", data=sop, timeout=10).json()[0]["ID"]


def pacs_instances(pacs, modality: str) -> set[str]:
    return {pydicom.Dataset.from_json(hit).SOPInstanceUID
            for hit in pacs.client.search_for_instances(search_filters={"Modality": modality})}


def test_serves_the_pacs_mg_and_us_instances_as_display_ready_images(pacs, server):
    listed = objects(server)
    # every MG and US instance the PACS holds (the upload test's too, while it exists), no CT, no MG without pixels
    assert set(listed) == (pacs_instances(pacs, "MG") | pacs_instances(pacs, "US")) - {pacs.no_pixels}
    assert {uid(pacs, c) for c in pacs.cases} <= set(listed) and pacs.ct not in listed
    status = requests.get(f"{server.url}/info/", timeout=30).json()["datastore"]
    assert pacs.no_pixels in status["pacs"]["skipped"] and "pixel data" in status["pacs"]["skipped"][pacs.no_pixels]
    mg = listed[uid(pacs, "mg_seg")]["image"]["info"]
    assert mg["dicom"] == {"modality": "MG", "spacing_mm": [0.2, 0.2], "photometric": "MONOCHROME2", "bits_stored": 12}
    assert (mg["patient"], mg["laterality"]) == (pacs.cases["mg_seg"][0].PatientID, "left")  # per woman and breast
    for case, (ds, pixels) in pacs.cases.items():
        got = requests.get(f"{server.url}/datastore/image", params={"image": ds.SOPInstanceUID}, timeout=30)
        assert got.status_code == 200, (case, got.text)
        served = read_png(io.BytesIO(got.content))
        assert served.shape == pixels.shape, case
        assert np.abs(served.astype(int) - pixels).max() <= 1, case


def test_label_save_stores_a_seg_with_the_mask_and_geometry(pacs, server):
    for case in CASES["SEG saved through BreastLab"]:  # one MG, one US
        source, pixels = pacs.cases[case]
        if source.Modality == "US":  # the ultrasound model's mask (it refuses a mammogram)
            response = infer(server, source.SOPInstanceUID, output="image")
            assert response.status_code == 200, response.text
            mask = read_png(io.BytesIO(response.content)).copy()
        else:
            mask = np.zeros(pixels.shape, np.uint8)
        assert mask.shape == pixels.shape
        mask[10:40, 20:70] = 1  # never empty, and not only the model's answer
        assert save_label(server, source.SOPInstanceUID, png_bytes(mask)).status_code == 200
        segs = results_for(pacs, "SEG", source.SOPInstanceUID)
        (read,), (seg,) = ([ds for ds in segs if (seg_reader(ds) is None) == final] for final in (False, True))
        assert seg_reader(read) == "admin" and str(seg.ContentCreatorName) == "admin"  # the one reader decided it
        np.testing.assert_array_equal(seg.pixel_array, mask)
        np.testing.assert_array_equal(read.pixel_array, mask)
        assert seg.SegmentSequence[0].SegmentAlgorithmType == "MANUAL"  # the annotator's, whatever model proposed it
        assert (seg.Rows, seg.Columns) == pixels.shape
        assert seg.StudyInstanceUID == source.StudyInstanceUID and seg.PatientID == source.PatientID
        ref = seg.ReferencedSeriesSequence[0]
        assert ref.SeriesInstanceUID == source.SeriesInstanceUID
        assert ref.ReferencedInstanceSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
        spacing = seg.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing
        assert [float(v) for v in spacing] == [float(v) for v in source.PixelSpacing]
        assert seg.get("FrameOfReferenceUID") == source.get("FrameOfReferenceUID")
    listed = objects(server)
    assert "final" in listed[uid(pacs, "mg_seg")]["labels"]
    assert "final" not in listed[uid(pacs, "mg_unlabelled")]["labels"]


def test_image_labels_are_stored_as_an_sr_naming_the_model_of_the_probabilities(pacs, server):
    (case,) = CASES["SR"]
    image = uid(pacs, case)
    result = infer(server, image, model="breast_us_acsnet").json()
    model = result["model"]
    info = {"class": "benign", "birads": "4A", "probabilities": result["probabilities"], "model": model}
    response = requests.put(f"{server.url}/datastore/image/info", params={"image": image},
                            data={"info": json.dumps(info)}, timeout=30)
    assert response.status_code == 200, response.text
    (sr,) = results_for(pacs, "SR", image)
    assert sr.StudyInstanceUID == pacs.cases[case][0].StudyInstanceUID
    items = {item.ConceptNameCodeSequence[0].CodeMeaning: item for item in sr.ContentSequence}
    assert items["Source image"].ReferencedSOPSequence[0].ReferencedSOPInstanceUID == image
    assert items["Finding"].TextValue == "benign" and items["Assessment Category"].TextValue == "4a"
    benign = items["Probability of benign"]
    assert float(benign.MeasuredValueSequence[0].NumericValue) == result["probabilities"]["benign"]
    algorithm = {item.ConceptNameCodeSequence[0].CodeMeaning: item.TextValue for item in benign.ContentSequence}
    assert (algorithm["Algorithm Name"], algorithm["Algorithm Version"]) == ("breast_us_acsnet", model["version"])
    metadata = pacs.client.retrieve_instance_metadata(sr.StudyInstanceUID, sr.SeriesInstanceUID, sr.SOPInstanceUID)
    assert read_assessment(pydicom.Dataset.from_json(metadata))[1]["model"] == model  # as a server reads it back
    stored = requests.get(f"{server.url}/datastore/image/info", params={"image": image}, timeout=30).json()
    assert [stored[key] for key in ("class", "birads", "sr", "model")] == ["benign", "4a", sr.SOPInstanceUID, model]
    for bad in ({"probabilities": {"benign": 7}},
                {**info, "model": {**model, "weights_sha256": "0" * 64}}):  # weights it never served
        response = requests.put(f"{server.url}/datastore/image/info", params={"image": image},
                                data={"info": json.dumps(bad)}, timeout=30)
        assert response.status_code == 422 and len(results_for(pacs, "SR", image)) == 1


def test_labelled_status_follows_the_segs_in_the_pacs(pacs, server):
    (case,) = CASES["SEG stored by another tool"]
    source, pixels = pacs.cases[case]
    mask = np.zeros(pixels.shape, np.uint8)
    mask[100:200, 300:350] = 1
    seg = mask_to_seg(source, mask)  # a SEG another tool stored
    pacs.client.store_instances([seg])
    image = source.SOPInstanceUID
    assert eventually(lambda: "final" in labels(server, image)), "the listing did not refresh from the PACS"
    label = requests.get(f"{server.url}/datastore/label", params={"label": image, "tag": "final"}, timeout=30)
    assert label.status_code == 200, label.text
    np.testing.assert_array_equal(read_png(io.BytesIO(label.content)), mask)
    assert requests.delete(f"{pacs.url}/instances/{orthanc_id(pacs, seg.SOPInstanceUID)}", timeout=10).ok
    assert eventually(lambda: "final" not in labels(server, image)), "the SEG deleted in the PACS is still a label"


def test_bad_dicom_is_refused_and_nothing_is_stored(pacs, server):
    pixels = np.full((64, 64), 100, np.uint8)
    no_pixels = instance(pixels, "US")
    ds = pydicom.dcmread(io.BytesIO(no_pixels))
    del ds.PixelData
    buffer = io.BytesIO()
    ds.save_as(buffer, write_like_original=False)
    jpeg_ls = dicom_bytes(pixels, syntax=JPEGLSLossless, Modality="US", StudyInstanceUID=generate_uid(),
                           SeriesInstanceUID=generate_uid())
    cases = {"no pixel data": (buffer.getvalue(), 400), "JPEG-LS": (jpeg_ls, 415),
             "CT": (instance(pixels, "CT"), 415), "PNG": (png_bytes(pixels), 415)}
    before, cached = pacs.instances(), sorted(p.name for p in server.cache.rglob("*"))
    for what, (data, status) in cases.items():
        response = upload(server, "ignored", data, name="upload.dcm")
        assert response.status_code == status, (what, response.text)
    assert pacs.instances() == before
    assert sorted(p.name for p in server.cache.rglob("*")) == cached


def test_dicom_upload_is_stowed_to_the_pacs(pacs, server, samples_dir):
    pixels = read_png(samples_dir / "images" / f"{UPLOADED_US}.png")
    data = instance(pixels, "US")
    sop = pydicom.dcmread(io.BytesIO(data)).SOPInstanceUID
    response = upload(server, "ignored", data, name="upload.dcm")
    try:
        assert response.status_code == 200 and response.json() == {"image": sop}
        assert pacs.client.search_for_instances(search_filters={"SOPInstanceUID": sop})
        assert sop in objects(server)
        assert requests.delete(f"{server.url}/datastore/image", params={"id": sop}, timeout=30).status_code == 409
    finally:  # deleted in the PACS (also when a check above failed: the other tests see the PACS as it was)
        stowed = requests.post(f"{pacs.url}/tools/lookup", data=sop, timeout=10).json()
        deleted = [requests.delete(f"{pacs.url}/instances/{hit['ID']}", timeout=10).ok for hit in stowed]
    assert deleted == [True]
    assert eventually(lambda: sop not in objects(server)), "the instance deleted in the PACS is still listed"
