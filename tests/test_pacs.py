"""BreastLab on a real PACS: Orthanc with DICOMweb, MG (synthetic) and US (the shipped samples) instances, SEG and
SR results.

Starts Orthanc (Debian's ``orthanc`` + ``orthanc-dicomweb``) and a BreastLab server on its DICOMweb URL, once for
the module; skipped only when Orthanc is not installed. Every test that changes what the PACS holds works on
instances of its own (see ``CASES``), so the tests pass in any order; everything is written under the module's
temporary folders.
"""

from __future__ import annotations

import io
import json
import time

import numpy as np
import pydicom
import pytest
import requests
from dicomweb_client import DICOMwebClient
from PIL import Image
from pydicom.uid import JPEGLSLossless, generate_uid

from breastlab.formats.dicom_seg import mask_to_seg
from breastlab.formats.dicom_sr import read_assessment

from helpers import dicom_bytes, infer, png_bytes, save_label, upload
from orthanc import Orthanc, instance, mammogram, missing
from tests.server_process import Server

pytestmark = [pytest.mark.slow, pytest.mark.skipif(missing() is not None, reason=str(missing()))]
# synthetic mammograms: (side, rows, columns, lesion disc or None)
MAMMOGRAMS = {"mg_seg": ("left", 320, 256, (160, 80, 18)), "mg_unlabelled": ("right", 288, 224, None),
              "mg_other_tool": ("left", 288, 384, (150, 90, 24))}
# shipped samples, benign and malignant, spanning 0..255: shown as stored (an instance without a window is shown
# stretched from its lowest to its highest value)
US_CASES = ("case002", "case005")
UPLOADED_US = "case008"  # shipped sample, only ever stored by the upload test
# which test changes what about which case (no two tests touch the same one)
CASES = {"SEG saved through BreastLab": ("mg_seg", "case005"), "never labelled": ("mg_unlabelled",),
         "SR": ("case002",), "SEG stored by another tool": ("mg_other_tool",)}


def read_png(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("L"))


def eventually(condition, timeout: float = 30.0):
    """``condition()`` once it is truthy, polled until ``timeout`` s have passed (then its last, falsy, value): the
    server refreshes from the PACS on each listing, but serves its cache when a refresh is busy or fails."""
    deadline = time.monotonic() + timeout
    while not (value := condition()) and time.monotonic() < deadline:
        time.sleep(0.2)  # poll interval, bounded by the deadline
    return value


@pytest.fixture(scope="module")
def pacs(tmp_path_factory, samples_dir):
    """Orthanc holding 3 MG + 2 US cases, a CT (filtered out) and an MG without pixel data (skipped)."""
    with Orthanc(tmp_path_factory.mktemp("orthanc")).start() as orthanc:
        client = DICOMwebClient(orthanc.dicomweb)
        images = {**{case: (mammogram(*spec), "MG") for case, spec in MAMMOGRAMS.items()},
                  **{case: (read_png(samples_dir / "images" / f"{case}.png"), "US") for case in US_CASES}}
        assert all((pixels.min(), pixels.max()) == (0, 255) for pixels, _ in images.values())
        cases = {}
        for case, (pixels, modality) in images.items():
            side = {"ImageLaterality": MAMMOGRAMS[case][0][0].upper()} if modality == "MG" else {}
            ds = pydicom.dcmread(io.BytesIO(instance(pixels, modality, **side)))
            cases[case] = (ds, pixels)
            client.store_instances([ds])
        ct = pydicom.dcmread(io.BytesIO(instance(np.zeros((64, 64), np.uint8), "CT")))
        client.store_instances([ct])
        no_pixels = pydicom.dcmread(io.BytesIO(instance(np.zeros((64, 64), np.uint8), "MG")))
        del no_pixels.PixelData
        client.store_instances([no_pixels])
        orthanc.cases, orthanc.client = cases, client
        orthanc.ct, orthanc.no_pixels = ct.SOPInstanceUID, no_pixels.SOPInstanceUID
        yield orthanc


def start_server(pacs, tmp_path_factory, attempts: int = 3) -> Server:
    """A BreastLab server on the PACS. Its port is chosen free but only bound later: when another program took it
    meanwhile, the server exits (then a new port is tried) or another server answers there (it does not serve
    this PACS: a new port too)."""
    for _ in range(attempts):
        workdir = tmp_path_factory.mktemp("server")
        env = {"BREASTLAB_DICOMWEB_CACHE": str(workdir / "cache"), "BREASTLAB_DICOMWEB_REFRESH_S": "0",
               "BREASTLAB_DICOMWEB_MODALITIES": "MG,US"}
        srv = Server(pacs.dicomweb, workdir, env=env)
        try:
            srv.start()
        except RuntimeError:
            if "already in use" not in srv.log.read_text():
                raise
            continue
        try:
            info = requests.get(f"{srv.url}/info/", timeout=30).json()
        except (requests.RequestException, ValueError):
            info = {}
        if info.get("datastore", {}).get("pacs", {}).get("url") == pacs.dicomweb and srv.process.poll() is None:
            srv.cache = workdir / "cache"
            return srv
        srv.stop()
    raise RuntimeError(f"no free port for the BreastLab server in {attempts} tries")


@pytest.fixture(scope="module")
def server(pacs, tmp_path_factory):
    srv = start_server(pacs, tmp_path_factory)
    try:
        yield srv
    finally:
        srv.stop()


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
        (seg,) = results_for(pacs, "SEG", source.SOPInstanceUID)
        np.testing.assert_array_equal(seg.pixel_array, mask)
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
