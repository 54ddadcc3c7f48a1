"""Two readers and a reviewer on a real PACS: each reader's label is a SEG naming the reader and an SR with their
class and BI-RADS, the approved final label a SEG naming the reviewer with a verified SR; a new cache reads it all
back from Orthanc. Uses the session's Orthanc and server (conftest.py) and an US instance of its own."""

from __future__ import annotations

import io
import json

import numpy as np
import pydicom
import pytest
import requests

from breastlab.formats.dicom_seg import seg_mask, seg_reader
from breastlab.formats.dicom_sr import read_assessment
from breastlab.metrics.consensus import staple
from breastlab.server.datastore.dicomweb import DicomWebDatastore
from breastlab.server.datastore.review import Review

from helpers import png_bytes
from orthanc import eventually, instance, missing, read_png, results_for

pytestmark = [pytest.mark.slow, pytest.mark.skipif(missing() is not None, reason=str(missing()))]
LABELS = {"ann": {"class": "benign", "birads": "4a"}, "bob": {"class": "malignant", "birads": "4c"}}


def box(shape, top: int, left: int) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    mask[top:top + shape[0] // 3, left:left + shape[1] // 3] = 1
    return mask


@pytest.fixture(scope="module")
def reviewed(pacs, pacs_server, samples_dir) -> dict:
    """An US instance stored for this module, read by ann and bob through the server, its consensus approved by
    rev with BI-RADS 5."""
    pixels = read_png(samples_dir / "images" / "case007.png")
    ds = pydicom.dcmread(io.BytesIO(instance(pixels, "US")))
    pacs.client.store_instances([ds])
    image, url = str(ds.SOPInstanceUID), pacs_server.url
    listed = lambda: requests.get(f"{url}/datastore/", params={"output": "all"}, timeout=30).json()["objects"]  # noqa: E731
    assert eventually(lambda: image in listed()), "the new instance was not listed"
    masks = {"ann": box(pixels.shape, 40, 50), "bob": box(pixels.shape, 48, 58)}
    for reader, mask in masks.items():
        saved = requests.put(f"{url}/datastore/label", params={"image": image, "reader": reader},
                             data={"params": json.dumps(LABELS[reader])},
                             files={"label": ("label.png", png_bytes(mask), "image/png")}, timeout=60)
        assert saved.status_code == 200, saved.text
    decision = {"image": image, "source": "consensus", "reviewer": "rev"}
    approved = requests.post(f"{url}/datastore/review/approve", params=decision,
                             data={"params": json.dumps({"birads": "5"})}, timeout=60)
    assert approved.status_code == 200, approved.text
    return {"image": image, "masks": masks}


def test_each_reader_is_a_seg_and_an_sr_naming_them_and_the_approval_a_verified_sr(pacs, reviewed):
    image, masks = reviewed["image"], reviewed["masks"]
    segs = results_for(pacs, "SEG", image)
    by_reader = {seg_reader(ds): ds for ds in segs if seg_reader(ds)}
    assert set(by_reader) == {"ann", "bob"}
    for reader, ds in by_reader.items():
        np.testing.assert_array_equal(seg_mask(ds), masks[reader])
    finals = sorted((ds for ds in segs if not seg_reader(ds)), key=lambda ds: (ds.ContentDate, ds.ContentTime))
    assert str(finals[-1].ContentCreatorName) == "rev"
    np.testing.assert_array_equal(seg_mask(finals[-1]), staple(list(masks.values()))["mask"])
    assessments = [read_assessment(ds)[1] for ds in results_for(pacs, "SR", image)]
    for reader, labels in LABELS.items():
        assert {**labels, "reader": reader} in assessments
    assert {"class": "malignant", "birads": "5", "approved": {"by": "rev", "source": "consensus"}} in assessments


def test_nothing_is_lost_in_a_round_trip_through_the_pacs(pacs, reviewed, tmp_path):
    image, masks = reviewed["image"], reviewed["masks"]
    store = DicomWebDatastore(pacs.dicomweb, tmp_path / "cache", ("US",), refresh_s=0)
    review = Review.of(store)
    assert review.readers(image) == ["ann", "bob"] and review.status(image)["status"] == "approved"
    for reader, read in review.reads(image).items():
        np.testing.assert_array_equal(read["mask"], masks[reader] > 0)
        assert {key: read[key] for key in ("class", "birads")} == LABELS[reader]
    np.testing.assert_array_equal(read_png(store.get_label_uri(image, "final")) > 0,
                                  staple(list(masks.values()))["mask"])
    info = store.get_image_info(image)
    assert (info["class"], info["birads"], info["approved"]) == ("malignant", "5", {"by": "rev", "source": "consensus"})
