"""BreastLab on a real PACS: Orthanc with DICOMweb, MG (MIAS) and US (BUSI) instances, SEG and SR results.

Starts Orthanc (Debian's ``orthanc`` + ``orthanc-dicomweb``) and a BreastLab server on its DICOMweb URL;
skipped only when Orthanc is not installed.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pydicom
import pytest
import requests
from dicomweb_client import DICOMwebClient
from PIL import Image
from pydicom.uid import JPEGLSLossless, generate_uid

from breastlab.formats.dicom_seg import mask_to_seg
from breastlab.server.process import Server

from helpers import dicom_bytes, infer, png_bytes, save_label, upload
from orthanc import Orthanc, missing

pytestmark = [pytest.mark.slow, pytest.mark.skipif(missing() is not None, reason=str(missing()))]
US_STORAGE = "1.2.840.10008.5.1.4.1.1.6.1"
MG_CASES, US_CASES = ("mdb001", "mdb002"), ("busi_benign_001", "busi_malignant_001")


def instance(pixels: np.ndarray, modality: str, **attributes) -> bytes:
    """A plausible single-frame MG or US instance of an 8-bit image: MG stored as 12-bit MONOCHROME2."""
    study = dict(PatientName="Test^Case", PatientID=f"P{generate_uid()[-8:]}", PatientBirthDate="", PatientSex="F",
                 StudyInstanceUID=generate_uid(), SeriesInstanceUID=generate_uid(), StudyDate="20240101",
                 StudyTime="120000", StudyID="1", AccessionNumber="", ReferringPhysicianName="", SeriesNumber=1,
                 InstanceNumber=1, Modality=modality, **attributes)
    if modality != "MG":
        data = dicom_bytes(pixels, PixelSpacing=[0.1, 0.1], FrameOfReferenceUID=generate_uid(), **study)
        ds = pydicom.dcmread(io.BytesIO(data))
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = US_STORAGE
        buffer = io.BytesIO()
        ds.save_as(buffer, write_like_original=False)
        return buffer.getvalue()
    stored = pixels.astype(np.uint16) * 16 + pixels // 16  # 0..255 -> 0..4095
    return dicom_bytes(stored, bits_stored=12, WindowCenter=2048, WindowWidth=4096, PixelSpacing=[0.2, 0.2],
                       ImagerPixelSpacing=[0.2, 0.2], **study)


def read_png(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("L"))


@pytest.fixture(scope="module")
def pacs(tmp_path_factory, shared_data):
    """Orthanc holding 2 MG + 2 US cases, a CT (filtered out) and an MG without pixel data (skipped)."""
    orthanc = Orthanc(tmp_path_factory.mktemp("orthanc")).start()
    client = DICOMwebClient(orthanc.dicomweb)
    cases = {}
    for case, modality, data in [*[(c, "MG", shared_data / "mias") for c in MG_CASES],
                                 *[(c, "US", shared_data / "busi") for c in US_CASES]]:
        pixels = read_png(data / "images" / f"{case}.png")
        ds = pydicom.dcmread(io.BytesIO(instance(pixels, modality)))
        cases[case] = (ds, pixels)
        client.store_instances([ds])
    client.store_instances([pydicom.dcmread(io.BytesIO(instance(np.zeros((64, 64), np.uint8), "CT")))])
    no_pixels = pydicom.dcmread(io.BytesIO(instance(np.zeros((64, 64), np.uint8), "MG")))
    del no_pixels.PixelData
    client.store_instances([no_pixels])
    orthanc.cases, orthanc.client, orthanc.no_pixels = cases, client, no_pixels.SOPInstanceUID
    yield orthanc
    orthanc.stop()


@pytest.fixture(scope="module")
def server(pacs, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("server")
    env = {"BREASTLAB_DICOMWEB_CACHE": str(workdir / "cache"), "BREASTLAB_DICOMWEB_REFRESH_S": "0"}
    srv = Server(pacs.dicomweb, workdir, env=env).start()
    srv.cache = workdir / "cache"
    yield srv
    srv.stop()


def uid(pacs, case: str) -> str:
    return str(pacs.cases[case][0].SOPInstanceUID)


def objects(server) -> dict:
    return requests.get(f"{server.url}/datastore/", params={"output": "all"}, timeout=30).json()["objects"]


def orthanc_id(pacs, sop: str) -> str:
    """Orthanc's own id of an instance (its REST API deletes by that id)."""
    return requests.post(f"{pacs.url}/tools/lookup", data=sop, timeout=10).json()[0]["ID"]


def results_for(pacs, modality: str, image_uid: str) -> list[pydicom.Dataset]:
    """The instances of ``modality`` in Orthanc that reference ``image_uid`` (QIDO-RS, then WADO-RS)."""
    found = []
    for hit in pacs.client.search_for_instances(search_filters={"Modality": modality}):
        ds = pydicom.Dataset.from_json(hit)
        full = pacs.client.retrieve_instance(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
        if image_uid in json.dumps(full.to_json_dict(None, None)):
            found.append(full)
    return found


def test_serves_the_pacs_mg_and_us_instances_as_display_ready_images(pacs, server):
    listed = objects(server)
    assert set(listed) == {uid(pacs, c) for c in (*MG_CASES, *US_CASES)}  # no CT, no MG without pixels
    status = requests.get(f"{server.url}/info/", timeout=30).json()["datastore"]
    assert pacs.no_pixels in status["pacs"]["skipped"] and "pixel data" in status["pacs"]["skipped"][pacs.no_pixels]
    mg = listed[uid(pacs, "mdb001")]["image"]["info"]
    assert mg["dicom"] == {"modality": "MG", "spacing_mm": [0.2, 0.2], "photometric": "MONOCHROME2", "bits_stored": 12}
    for case, (ds, pixels) in pacs.cases.items():
        got = requests.get(f"{server.url}/datastore/image", params={"image": ds.SOPInstanceUID}, timeout=30)
        served = read_png(io.BytesIO(got.content))
        assert served.shape == pixels.shape
        assert np.abs(served.astype(int) - pixels).max() <= 1, case


def test_label_save_stores_a_seg_with_the_mask_and_geometry(pacs, server):
    for case in ("mdb001", "busi_malignant_001"):
        source, pixels = pacs.cases[case]
        response = infer(server, source.SOPInstanceUID, output="image")
        assert response.status_code == 200, response.text
        mask = read_png(io.BytesIO(response.content)).copy()
        assert mask.shape == pixels.shape
        mask[10:40, 20:70] = 1  # never empty, and not only the model's answer
        assert save_label(server, source.SOPInstanceUID, png_bytes(mask)).status_code == 200
        (seg,) = results_for(pacs, "SEG", source.SOPInstanceUID)
        np.testing.assert_array_equal(seg.pixel_array, mask)
        assert (seg.Rows, seg.Columns) == pixels.shape
        assert seg.StudyInstanceUID == source.StudyInstanceUID and seg.PatientID == source.PatientID
        ref = seg.ReferencedSeriesSequence[0]
        assert ref.SeriesInstanceUID == source.SeriesInstanceUID
        assert ref.ReferencedInstanceSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
        spacing = seg.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing
        assert [float(v) for v in spacing] == [float(v) for v in source.PixelSpacing]
        assert seg.get("FrameOfReferenceUID") == source.get("FrameOfReferenceUID")
    listed = objects(server)
    assert "final" in listed[uid(pacs, "mdb001")]["labels"]
    assert "final" not in listed[uid(pacs, "mdb002")]["labels"]


def test_image_labels_are_stored_as_an_sr(pacs, server):
    image = uid(pacs, "busi_benign_001")
    info = {"class": "benign", "birads": "4A", "probabilities": {"normal": 0.1, "benign": 0.7, "malignant": 0.2}}
    response = requests.put(f"{server.url}/datastore/image/info", params={"image": image},
                            data={"info": json.dumps(info)}, timeout=30)
    assert response.status_code == 200, response.text
    (sr,) = results_for(pacs, "SR", image)
    assert sr.StudyInstanceUID == pacs.cases["busi_benign_001"][0].StudyInstanceUID
    items = {item.ConceptNameCodeSequence[0].CodeMeaning: item for item in sr.ContentSequence}
    assert items["Source image"].ReferencedSOPSequence[0].ReferencedSOPInstanceUID == image
    assert items["Finding"].TextValue == "benign" and items["Assessment Category"].TextValue == "4a"
    assert float(items["Probability of benign"].MeasuredValueSequence[0].NumericValue) == 0.7
    stored = requests.get(f"{server.url}/datastore/image/info", params={"image": image}, timeout=30).json()
    assert stored["class"] == "benign" and stored["birads"] == "4a" and stored["sr"] == sr.SOPInstanceUID
    bad = requests.put(f"{server.url}/datastore/image/info", params={"image": image},
                       data={"info": json.dumps({"probabilities": {"benign": 7}})}, timeout=30)
    assert bad.status_code == 422 and len(results_for(pacs, "SR", image)) == 1


def test_labelled_status_follows_the_segs_in_the_pacs(pacs, server):
    source, pixels = pacs.cases["mdb002"]
    mask = np.zeros(pixels.shape, np.uint8)
    mask[100:200, 300:350] = 1
    seg = mask_to_seg(source, mask)  # a SEG another tool stored
    pacs.client.store_instances([seg])
    assert "final" in objects(server)[source.SOPInstanceUID]["labels"]  # listing refreshes from the PACS
    label = requests.get(f"{server.url}/datastore/label", params={"label": source.SOPInstanceUID, "tag": "final"},
                         timeout=30)
    np.testing.assert_array_equal(read_png(io.BytesIO(label.content)), mask)
    assert requests.delete(f"{pacs.url}/instances/{orthanc_id(pacs, seg.SOPInstanceUID)}", timeout=10).ok
    assert "final" not in objects(server)[source.SOPInstanceUID]["labels"]


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


def test_dicom_upload_is_stowed_to_the_pacs(pacs, server, shared_data):
    pixels = read_png(shared_data / "busi" / "images" / "busi_benign_002.png")
    data = instance(pixels, "US")
    sop = pydicom.dcmread(io.BytesIO(data)).SOPInstanceUID
    response = upload(server, "ignored", data, name="upload.dcm")
    assert response.status_code == 200 and response.json() == {"image": sop}
    assert pacs.client.search_for_instances(search_filters={"SOPInstanceUID": sop})
    assert sop in objects(server)
    assert requests.delete(f"{server.url}/datastore/image", params={"id": sop}, timeout=30).status_code == 409
    assert requests.delete(f"{pacs.url}/instances/{orthanc_id(pacs, sop)}", timeout=10).ok  # deleted in the PACS
    assert sop not in objects(server)
