"""AnnotationSession: the module's buttons end to end, a real server's results in a real MRML scene (slow)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import requests
from BreastLabLib import mrml
from BreastLabLib.client import BreastLabClient
from BreastLabLib.session import AnnotationSession
from PIL import Image

pytestmark = pytest.mark.slow
MODEL = "breast_us_t2kd"


@pytest.fixture
def session(server, scene) -> AnnotationSession:
    return AnnotationSession(BreastLabClient(server["url"]), scene)


def red_view(scene):
    return scene.GetFirstNodeByClass("vtkMRMLSliceCompositeNode")


def test_loaded_image_is_shown_with_an_empty_lesion_segment(session, scene, samples):
    volume = session.load("case002")
    np.testing.assert_array_equal(mrml.image_of(volume), np.asarray(Image.open(samples / "images" / "case002.png")))
    assert red_view(scene).GetBackgroundVolumeID() == volume.GetID()
    mask = session.mask()
    assert mask.shape == (572, 761) and mask.sum() == 0


def test_segmentation_result_fills_the_lesion_segment(session):
    session.load("case002")
    result = session.segment(MODEL)
    expected = session.client.segment(MODEL, "case002")
    assert result["lesion_pixels"] == int(expected.sum()) > 0
    assert "probabilities" not in result  # breast_us_t2kd only segments
    np.testing.assert_array_equal(session.mask(), expected)
    both = session.segment("breast_us_acsnet")  # segments and classifies
    assert set(both["probabilities"]) == {"normal", "benign", "malignant"}
    assert both["lesion_pixels"] == int(session.mask().sum())


def test_placed_points_are_sent_as_image_pixels(session, server):
    volume = session.load("case001")
    session.foreground.AddControlPointWorld(mrml.pixel_to_ras(volume, 240, 100))
    session.foreground.AddControlPointWorld(mrml.pixel_to_ras(volume, 250, 120))
    session.background.AddControlPointWorld(mrml.pixel_to_ras(volume, 10, 500))
    assert session.refine(MODEL) == int(session.mask().sum()) > 0
    assert "'foreground': [[240, 100], [250, 120]], 'background': [[10, 500]]" in Path(server["log"]).read_text()


def test_saliency_overlay_follows_the_opacity_slider(session, scene):
    volume = session.load("case001")
    overlay = session.show_saliency(MODEL, opacity=0.3)
    np.testing.assert_array_equal(mrml.image_of(overlay), session.client.saliency(MODEL, "case001"))
    assert (red_view(scene).GetBackgroundVolumeID(), red_view(scene).GetForegroundVolumeID()) == (
        volume.GetID(), overlay.GetID())
    session.set_overlay_opacity(0.7)
    assert red_view(scene).GetForegroundOpacity() == pytest.approx(0.7)


def test_save_stores_the_edited_segment_and_the_class(session):
    volume = session.load("case005")
    session.segment(MODEL)
    edited = session.mask()
    edited[:40, :60] = 1  # an annotator's correction, e.g. with the Segment Editor
    mrml.set_segment_mask(session.segmentation, session.segment_id, edited, volume)
    assert session.save("malignant", "4c") == {"class": "malignant", "birads": "4c"}
    np.testing.assert_array_equal(session.client.label("case005"), edited)
    assert session.client.label_info("case005")["birads"] == "4c"
    assert {k: session.image_info()[k] for k in ("class", "birads")} == {"class": "malignant", "birads": "4c"}


def test_next_sample_loads_unlabelled_images_until_none_is_left(session, server, samples):
    data = (samples / "images" / "case003.png").read_bytes()
    requests.put(f"{server['url']}/datastore/image", params={"image": "fresh_case"},
                 files={"file": ("upload.png", data, "image/png")}, timeout=30).raise_for_status()
    assert session.load_next("random") == "fresh_case"
    assert session.volume.GetName() == "fresh_case"
    session.segment(MODEL)
    session.save()
    assert session.load_next("random") is None
    assert session.image_id == "fresh_case"  # nothing left: the current image stays


def test_a_new_image_replaces_the_previous_nodes(session, scene):
    session.load("case001")
    nodes = scene.GetNumberOfNodes()
    session.show_saliency(MODEL, opacity=0.5)
    session.foreground.AddControlPointWorld(mrml.pixel_to_ras(session.volume, 5, 5))
    session.load("case002")
    assert scene.GetNumberOfNodes() == nodes + 1  # only the saliency colour table stays, for the next overlay
    assert scene.GetFirstNodeByName("case001") is None and session.foreground.GetNumberOfControlPoints() == 0


def test_actions_before_an_image_is_loaded_say_so(session):
    with pytest.raises(RuntimeError, match="load an image first"):
        session.segment(MODEL)


def test_a_box_then_clicks_go_to_the_box_model_as_image_pixels(session, server, samples):
    volume = session.load("case002")  # 761 columns x 572 rows: a swapped x and y would miss the lesion
    truth = np.asarray(Image.open(samples / "masks" / "case002.png")) > 0
    rows, columns = np.nonzero(truth)
    (r0, a0, _), (r1, a1, _) = (mrml.pixel_to_ras(volume, columns.min(), rows.min()),
                                mrml.pixel_to_ras(volume, columns.max(), rows.max()))
    session.box.SetXYZ((r0 + r1) / 2, (a0 + a1) / 2, 0)
    session.box.SetRadiusXYZ(abs(r1 - r0) / 2, abs(a1 - a0) / 2, 0.5)
    assert session.refine("breast_us_medsam") > 0
    mask = session.mask() > 0
    assert 2 * (mask & truth).sum() / (mask.sum() + truth.sum()) > 0.85
    box = [int(columns.min()), int(rows.min()), int(columns.max()), int(rows.max())]
    assert f"'roi': {box}" in Path(server["log"]).read_text()
    session.clear_points()
    assert mrml.pixel_box(session.box, volume) is None


def test_an_ended_session_leaves_no_node_in_the_scene(session, scene):
    """What the module does on every reconnect: the next session starts on a scene without the last one's nodes."""
    session.load("case002")
    session.segment(MODEL)
    session.end()
    for kind in ("vtkMRMLMarkupsNode", "vtkMRMLDisplayNode", "vtkMRMLVolumeNode", "vtkMRMLSegmentationNode"):
        assert scene.GetNodesByClass(kind).GetNumberOfItems() == 0, kind
