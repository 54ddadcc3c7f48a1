"""ReviewSession: readers' masks and their consensus as segments of one segmentation, approvals and a return, a
review round of 20 images, against a real server in a real MRML scene (slow)."""

from __future__ import annotations

import contextlib
from types import SimpleNamespace

import numpy as np
import pytest
import requests
import slicer
from BreastLabLib import mrml
from BreastLabLib.client import BreastLabClient
from BreastLabLib.images import encode_png
from BreastLabLib.panel import ReviewPanel
from BreastLabLib.review import CONSENSUS, CONSENSUS_COLOR, READER_COLORS
from BreastLabLib.review_mrml import ReviewSession
from BreastLabLib.session import AnnotationSession

pytestmark = pytest.mark.slow
SHAPE = (64, 64)
ROUND = 20


@pytest.fixture
def session(server, scene) -> AnnotationSession:
    return AnnotationSession(BreastLabClient(server["url"]), scene)


@pytest.fixture
def review(session) -> ReviewSession:
    return ReviewSession(session)


def box(top: int, left: int, size: int = 20) -> np.ndarray:
    mask = np.zeros(SHAPE, np.uint8)
    mask[top:top + size, left:left + size] = 1
    return mask


def read(session, image_id: str, reads: dict[str, np.ndarray], birads: str = "4a") -> None:
    """Upload a small image; each reader draws their mask in the lesion segment and saves it under their name."""
    image = (np.arange(SHAPE[0] * SHAPE[1]).reshape(SHAPE) % 251).astype(np.uint8)
    requests.put(f"{session.client.url}/datastore/image", params={"image": image_id},
                 files={"file": ("upload.png", encode_png(image), "image/png")}, timeout=30).raise_for_status()
    for reader, mask in reads.items():
        session.load(image_id)
        mrml.set_segment_mask(session.segmentation, session.segment_id, mask, session.volume)
        assert session.save("malignant", birads, reader=reader) == {"class": "malignant", "birads": birads}


def segments(segmentation) -> dict[str, tuple[str, tuple]]:
    """``{segment id: (name, colour)}``."""
    seg = segmentation.GetSegmentation()
    return {seg.GetNthSegmentID(i): (seg.GetNthSegment(i).GetName(), tuple(seg.GetNthSegment(i).GetColor()))
            for i in range(seg.GetNumberOfSegments())}


class Widget(SimpleNamespace):
    """A stand-in for the panel's Qt widgets: a button's click, a field's text, a combo box's items."""

    def connect(self, signal, handler):
        self.clicked = handler

    def clear(self):
        self.items = []

    def addItems(self, names):
        self.items = list(names)

    def setCurrentText(self, text):
        self.currentText = text


@pytest.fixture
def panel(session, review, monkeypatch) -> ReviewPanel:
    """The Review section on stand-in widgets; Slicer's error and info pop-ups raise and record instead."""
    monkeypatch.setattr(slicer.util, "tryWithErrorDisplay", lambda *args, **kwargs: contextlib.nullcontext())
    monkeypatch.setattr(slicer.util, "infoDisplay", lambda text: panel.infos.append(text))
    names = ("nextReviewButton", "approveConsensusButton", "approveReaderButton", "approveEditedButton",
             "returnButton", "reviewSummaryLabel")
    ui = SimpleNamespace(**{name: Widget(text="") for name in names}, readerEdit=Widget(text=" rev "),
                         commentEdit=Widget(text=""), reviewReaderComboBox=Widget(currentText="", items=[]),
                         classComboBox=Widget(currentText=""), biradsComboBox=Widget(currentText=""))
    logic = SimpleNamespace(session=session, review=review)
    panel = ReviewPanel(ui, logic, lambda review: panel.show(), lambda: panel.enable(True))
    panel.infos = []
    return panel


def test_readers_and_consensus_are_segments_of_one_segmentation_in_distinct_colours(session, review, scene):
    masks = {"ann": box(10, 10), "bob": box(14, 18), "cy": box(12, 12, 22)}
    read(session, "mrml_review_a", masks)
    state = review.load("mrml_review_a")
    assert scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") == 1
    found = segments(session.segmentation)
    assert {name for name, _ in found.values()} == {CONSENSUS, "ann", "bob", "cy"}
    assert found[session.segment_id] == (CONSENSUS, pytest.approx(CONSENSUS_COLOR))
    colors = [found[review.reader_segments[r]][1] for r in ("ann", "bob", "cy")]
    np.testing.assert_allclose(colors, READER_COLORS[:3], atol=1e-6)
    assert len({np.round(c, 3).tobytes() for c in np.array([*colors, CONSENSUS_COLOR])}) == 4  # all distinct
    display = session.segmentation.GetDisplayNode()
    for reader, mask in masks.items():
        np.testing.assert_array_equal(mrml.segment_mask(session.segmentation, review.reader_segments[reader],
                                                        session.volume), mask)
        assert display.GetSegmentOpacity2DFill(review.reader_segments[reader]) == 0.0  # outlined
    np.testing.assert_array_equal(session.mask(), session.client.consensus("mrml_review_a"))
    assert review.readers() == ["ann", "bob", "cy"] and state["status"] == "labelled"
    assert "Dice ann / bob: " in review.summary() and "cy: malignant, BI-RADS 4a; sensitivity" in review.summary()


def test_approving_the_edited_consensus_sends_the_segment_as_edited(session, review):
    review.load("mrml_review_a")
    edited = session.mask()
    edited[40:50, 40:50] = 1  # the reviewer's correction in the Segment Editor
    mrml.set_segment_mask(session.segmentation, session.segment_id, edited, session.volume)
    state = review.approve("edited", birads="4c")
    assert state["status"] == "approved" and "approved" in review.summary()
    np.testing.assert_array_equal(session.client.label("mrml_review_a"), edited)
    assert session.client.label_info("mrml_review_a")["birads"] == "4c"


def test_a_returned_image_comes_back_to_its_reader_with_the_comment_and_their_mask(session, review, panel):
    masks = {"ann": box(5, 5), "bob": box(30, 30)}
    read(session, "mrml_review_b", masks)
    review.load("mrml_review_b")
    assert review.return_to_readers("bob: the lesion is upper left")["status"] == "returned"
    assert session.load_next("second_read", reader="bob") == "mrml_review_b"
    assert session.comment == "bob: the lesion is upper left"
    panel.show()
    assert panel.ui.reviewSummaryLabel.text == "Reviewer's comment: bob: the lesion is upper left"
    np.testing.assert_array_equal(session.mask(), masks["bob"])  # bob corrects their own mask
    assert not review.reviewing() and not panel.ui.approveEditedButton.enabled  # loaded for bob, not for review
    with pytest.raises(RuntimeError, match="Next for review"):
        review.approve("consensus")
    mrml.set_segment_mask(session.segmentation, session.segment_id, box(6, 6), session.volume)
    session.save("malignant", "4b", reader="bob")
    assert review.load("mrml_review_b")["status"] == "labelled"
    assert review.approve("reader:bob")["status"] == "approved"
    np.testing.assert_array_equal(session.client.label("mrml_review_b"), box(6, 6))
    assert session.client.label_info("mrml_review_b")["birads"] == "4b"


def test_the_review_sections_buttons_approve_and_return_the_image_under_review(panel, session):
    ui, client = panel.ui, session.client
    read(session, "mrml_panel_a", {"ann": box(5, 5), "bob": box(30, 30)})  # no overlap: reviewed first
    read(session, "mrml_panel_b", {"ann": box(10, 10), "bob": box(12, 12)})
    panel.enable(True)
    assert not ui.approveConsensusButton.enabled  # nothing under review yet
    ui.nextReviewButton.clicked()
    assert ui.reviewReaderComboBox.items == ["ann", "bob"] and ui.approveReaderButton.enabled
    assert ui.reviewSummaryLabel.text.startswith("mrml_panel_a: in review, readers ann, bob")
    last = client.review("mrml_panel_a")["events"][-1]
    assert (last["event"], last["user"]) == ("review", "rev")  # the Reader field names the reviewer
    ui.reviewReaderComboBox.setCurrentText("bob")
    ui.approveReaderButton.clicked()
    np.testing.assert_array_equal(client.label("mrml_panel_a"), box(30, 30))
    ui.nextReviewButton.clicked()
    ui.classComboBox.setCurrentText("benign")
    ui.approveConsensusButton.clicked()
    np.testing.assert_array_equal(client.label("mrml_panel_b"), client.consensus("mrml_panel_b"))
    assert client.label_info("mrml_panel_b")["class"] == "benign" and "approved" in ui.reviewSummaryLabel.text
    mrml.set_segment_mask(session.segmentation, session.segment_id, box(20, 20), session.volume)
    ui.approveEditedButton.clicked()
    np.testing.assert_array_equal(client.label("mrml_panel_b"), box(20, 20))
    ui.commentEdit.text = "ann and bob: the lesion is larger"
    ui.returnButton.clicked()
    assert client.review("mrml_panel_b")["status"] == "returned"
    assert ui.reviewSummaryLabel.text.endswith("Comment: ann and bob: the lesion is larger")
    ui.nextReviewButton.clicked()
    assert panel.infos == ["No image awaits review."]


def test_a_review_round_approves_20_images_lowest_agreement_first(session, review):
    pending = {}
    for i in range(ROUND):
        image_id, shift = f"mrml_round_{i:02d}", i % 10  # ten levels of agreement, two images each
        pending[image_id] = {"ann": box(10, 10), "bob": box(10, 10 + shift)}
        read(session, image_id, pending[image_id], birads="4a" if i % 2 else "4c")
    dices, sources = [], ["consensus", "reader:ann", "edited"]
    for n in range(ROUND):
        image_id = review.load_next("rev")
        assert image_id in pending and review.state["status"] == "in_review"
        dices.append(review.state["agreement"][0]["dice"])
        source = sources[n % 3]
        expected = {"consensus": session.client.consensus(image_id), "reader:ann": pending[image_id]["ann"],
                    "edited": session.mask()}[source]
        assert review.approve(source)["status"] == "approved"
        np.testing.assert_array_equal(session.client.label(image_id), expected)
        del pending[image_id]
    assert not pending and review.load_next("rev") is None
    assert dices == sorted(dices) and dices[0] < dices[-1] == 1.0
