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


def edit_by_hand(session, rows: slice, columns: slice, value: int) -> np.ndarray:
    """What an annotator does with the Segment Editor: set a block of the lesion segment; the edited mask."""
    mask = session.mask()
    mask[rows, columns] = value
    mrml.set_segment_mask(session.segmentation, session.segment_id, mask, session.volume)
    return mask


def lesion_box(session, samples, image_id: str) -> list[int]:
    """Draw the box around the image's true lesion; the box in pixels ``[x0, y0, x1, y1]``."""
    rows, columns = np.nonzero(np.asarray(Image.open(samples / "masks" / f"{image_id}.png")))
    (r0, a0, _), (r1, a1, _) = (mrml.pixel_to_ras(session.volume, columns.min(), rows.min()),
                                mrml.pixel_to_ras(session.volume, columns.max(), rows.max()))
    session.box.SetXYZ((r0 + r1) / 2, (a0 + a1) / 2, 0)
    session.box.SetRadiusXYZ(abs(r1 - r0) / 2, abs(a1 - a0) / 2, 0.5)
    return [int(columns.min()), int(rows.min()), int(columns.max()), int(rows.max())]


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
    box = lesion_box(session, samples, "case002")
    assert session.refine("breast_us_medsam") > 0
    mask = session.mask() > 0
    assert 2 * (mask & truth).sum() / (mask.sum() + truth.sum()) > 0.85
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


def test_undoing_a_second_ai_step_keeps_the_edit_made_before_it_and_then_the_first_step_keeps_it_too(session):
    session.load("case002")
    session.segment(MODEL)
    first = session.mask()
    edited = edit_by_hand(session, slice(0, 30), slice(0, 50), 1)  # outside the lesion: a manual addition
    assert not first[:30, :50].any()
    session.segment("breast_us_acsnet")
    assert not np.array_equal(session.mask(), edited)
    assert session.undo() == int(edited.sum())
    np.testing.assert_array_equal(session.mask(), edited)  # the first step's mask, with the manual edit
    assert session.undo() == 30 * 50
    np.testing.assert_array_equal(session.mask(), np.where(first > 0, 0, edited))  # no AI step, the edit kept


def test_undo_restores_the_mask_before_the_ai_step_plus_the_manual_edits_made_since(session):
    session.load("case002")
    before = edit_by_hand(session, slice(0, 40), slice(0, 60), 1)  # an outline drawn before asking the AI
    session.segment(MODEL)
    rows, columns = np.nonzero(session.mask())
    row, column = int(rows[len(rows) // 2]), int(columns[len(rows) // 2])
    assert not session.mask()[500:520, 700:740].any() and not before[row, column]
    edit_by_hand(session, slice(row, row + 1), slice(column, column + 1), 0)  # erased in the AI mask
    edit_by_hand(session, slice(500, 520), slice(700, 740), 1)  # painted outside it
    expected = before.copy()
    expected[500:520, 700:740] = 1
    assert session.undo() == int(expected.sum())
    np.testing.assert_array_equal(session.mask(), expected)


def test_undo_with_no_ai_step_changes_nothing(session):
    assert session.undo() is None  # no image
    session.load("case002")
    edited = edit_by_hand(session, slice(10, 20), slice(10, 20), 1)
    assert session.undo() is None
    np.testing.assert_array_equal(session.mask(), edited)
    session.segment(MODEL)
    segmented = session.mask()
    session.clear_points()  # forgets the steps
    assert session.undo() is None
    np.testing.assert_array_equal(session.mask(), segmented)
    session.segment(MODEL)
    session.load("case001")  # a new image starts with no step
    assert not session.steps and session.undo() is None


def test_undo_removes_the_click_that_made_the_step(session):
    volume = session.load("case001")
    session.foreground.AddControlPointWorld(mrml.pixel_to_ras(volume, 240, 100))
    session.refine(MODEL)
    session.background.AddControlPointWorld(mrml.pixel_to_ras(volume, 10, 500))
    session.refine(MODEL)
    session.segment(MODEL)  # an automatic step adds no prompt
    session.undo()
    assert (session.foreground.GetNumberOfControlPoints(), session.background.GetNumberOfControlPoints()) == (1, 1)
    session.undo()
    assert (session.foreground.GetNumberOfControlPoints(), session.background.GetNumberOfControlPoints()) == (1, 0)
    assert not any(step.synced for step in session.steps)  # breast_us_t2kd keeps no history on the server


def test_undo_of_a_click_on_the_box_model_steps_the_server_history_back_too(session, samples):
    session.load("case002")
    lesion_box(session, samples, "case002")
    session.refine("breast_us_medsam")
    after_box = session.mask()
    rows, columns = np.nonzero(after_box)
    session.foreground.AddControlPointWorld(mrml.pixel_to_ras(session.volume, int(columns.mean()), int(rows.max())))
    session.refine("breast_us_medsam")
    after_click = session.mask()
    session.background.AddControlPointWorld(mrml.pixel_to_ras(session.volume, int(columns.mean()), int(rows.mean())))
    session.refine("breast_us_medsam")
    assert all(step.synced for step in session.steps)
    assert session.undo() == int(after_click.sum())
    np.testing.assert_array_equal(session.mask(), after_click)
    assert session.background.GetNumberOfControlPoints() == 0 and session.foreground.GetNumberOfControlPoints() == 1
    mask, result = session.client.undo("breast_us_medsam", "case002")  # the server kept box and first click
    assert result["history"] == 1
    np.testing.assert_array_equal(mask, after_box)




def click_inside(session, points, mask: np.ndarray) -> None:
    """Place a point on a pixel of ``mask`` (the middle one in row order)."""
    rows, columns = np.nonzero(mask)
    points.AddControlPointWorld(mrml.pixel_to_ras(session.volume, int(columns[len(rows) // 2]),
                                                  int(rows[len(rows) // 2])))


def refine_uploads_the_segment(session, server, model: str) -> bool:
    """Refine with ``model``; whether the request carried the segment as its mask to refine (the server logs it)."""
    log = Path(server["log"])
    start = log.stat().st_size
    session.refine(model)
    with log.open("rb") as file:
        file.seek(start)
        return "'mask': array(" in file.read().decode(errors="replace")


def test_a_click_after_a_manual_edit_refines_the_edited_segment_not_the_servers_last_answer(session, server, samples):
    session.load("case002")
    lesion_box(session, samples, "case002")
    assert not refine_uploads_the_segment(session, server, "breast_us_medsam")  # a box: a new annotation
    by_box = session.mask()
    click_inside(session, session.foreground, by_box)
    assert not refine_uploads_the_segment(session, server, "breast_us_medsam")  # the server's answer: not sent
    assert not session.mask()[480:540, 620:720].any()
    edit_by_hand(session, slice(480, 540), slice(620, 720), 1)  # a blob far from the lesion
    click_inside(session, session.foreground, by_box)
    assert refine_uploads_the_segment(session, server, "breast_us_medsam")
    _, result = session.client.undo("breast_us_medsam", "case002")
    assert result["history"] == 0  # the server's history restarted from the edited segment


def test_a_click_refines_another_models_segment_and_a_click_model_gets_its_clicks_alone(session, server):
    session.load("case002")
    session.segment(MODEL)
    click_inside(session, session.foreground, session.mask())
    assert session.promptable("breast_us_medsam") and not session.promptable("breast_us_interactive")
    assert not refine_uploads_the_segment(session, server, "breast_us_interactive")  # a click model: clicks alone
    assert not session.steps[-1].synced
    assert refine_uploads_the_segment(session, server, "breast_us_medsam")  # the other model's segment goes along


def test_the_birads_suggestion_is_saved_only_once_the_annotator_accepts_it(session, server, samples):
    image_id, data = "suggested_case", (samples / "images" / "case007.png").read_bytes()
    requests.put(f"{server['url']}/datastore/image", params={"image": image_id},
                 files={"file": ("upload.png", data, "image/png")}, timeout=30).raise_for_status()
    session.load(image_id)
    session.segment(MODEL)
    assert session.suggestion is None  # breast_us_t2kd does not classify
    result = session.segment("breast_us_acsnet")
    suggestion = session.suggestion
    assert suggestion.category == result["birads"]["suggestion"] and list(suggestion.probabilities) == list("12345")
    assert session.save("malignant", "") == {"class": "malignant"}  # the field left blank: no BI-RADS
    assert "birads" not in session.image_info() and "birads" not in session.client.label_info(image_id)
    session.save("malignant", suggestion.accept(["", "1", "2", "3", "4", "4a", "4b", "4c", "5"]))
    assert session.image_info()["birads"] == session.client.label_info(image_id)["birads"] == suggestion.category
    session.load("case001")
    assert session.suggestion is None  # a suggestion belongs to its image
