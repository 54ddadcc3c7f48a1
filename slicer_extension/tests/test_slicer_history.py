"""Undo of AI steps without Slicer: the mask merge that keeps manual edits, the prompts a step added, when a click
sends the segment for the server to refine, and the client's undo, reset and mask-upload requests."""

from __future__ import annotations

import json

import numpy as np
import pytest
from BreastLabLib.client import BreastLabClient, ServerError
from BreastLabLib.history import AIStep, Prompts, keeps_history, mask_to_send, undo_mask
from BreastLabLib.images import decode_png


def block(rows: slice, columns: slice, shape=(8, 10)) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[rows, columns] = True
    return mask


def step(before, after, prompts_before=Prompts(), prompts=Prompts(), synced=False) -> AIStep:
    return AIStep("model", before, after, prompts_before, prompts, synced)


def test_undo_without_manual_edits_restores_the_mask_before_the_step():
    before, after = block(slice(1, 3), slice(1, 3)), block(slice(2, 7), slice(2, 9))
    restored = undo_mask(step(before, after), after.astype(np.uint8))
    assert restored.dtype == np.uint8
    np.testing.assert_array_equal(restored, before)


def test_undo_keeps_the_pixels_edited_by_hand_since_the_step():
    after = block(slice(2, 7), slice(2, 9))
    current = after.copy()
    current[0, 0] = True  # painted outside the AI mask
    current[4, 5] = False  # erased inside it
    expected = np.zeros_like(after)
    expected[0, 0] = True
    np.testing.assert_array_equal(undo_mask(step(np.zeros_like(after), after), current), expected)


def test_undoing_the_second_of_two_steps_gives_the_first_with_the_edit_made_between_them():
    first = block(slice(1, 4), slice(1, 4))
    edited = first | block(slice(6, 8), slice(8, 10))
    second = block(slice(3, 7), slice(3, 7))
    np.testing.assert_array_equal(undo_mask(step(edited, second), second * 255), edited)


def test_a_segment_of_another_size_is_refused():
    with pytest.raises(ValueError, match="does not match"):
        undo_mask(step(block(slice(0, 1), slice(0, 1)), block(slice(0, 1), slice(0, 1))), np.zeros((3, 3)))


@pytest.mark.parametrize("before, after, added", [
    (Prompts(), Prompts(box=(1, 2, 30, 40)), (0, 0, True)),
    (Prompts(box=(1, 2, 30, 40)), Prompts(1, 0, (1, 2, 30, 40)), (1, 0, False)),
    (Prompts(2, 1), Prompts(2, 2), (0, 1, False)),
    (Prompts(1, 0, (1, 2, 30, 40)), Prompts(1, 0, (5, 2, 30, 40)), (0, 0, True)),
    (Prompts(3, 1, (1, 2, 30, 40)), Prompts(3, 1, (1, 2, 30, 40)), (0, 0, False)),  # an automatic segmentation
])
def test_a_step_added_the_click_or_the_box_that_differs_from_before(before, after, added):
    mask = block(slice(0, 1), slice(0, 1))
    assert step(mask, mask, before, after).added_prompts() == added


def test_clicks_send_the_segment_unless_it_is_the_servers_last_answer_or_empty():
    answer = block(slice(2, 6), slice(2, 6))
    assert mask_to_send(answer.astype(np.uint8), answer) is None  # the server refines its own answer anyway
    edited = answer | block(slice(0, 1), slice(8, 10))  # a blob painted by hand
    np.testing.assert_array_equal(mask_to_send(edited * 255, answer), edited)
    np.testing.assert_array_equal(mask_to_send(edited, None), edited)  # another model's mask, or a loaded label
    empty = np.zeros((8, 10), np.uint8)
    assert mask_to_send(empty, None) is None and mask_to_send(empty, answer) is None  # the clicks start afresh


def test_promptable_results_are_those_the_server_keeps_for_undo():
    assert keeps_history({"history": 2}) and keeps_history({"predicted_iou": 0.9, "embedding": "cached"})
    assert not keeps_history({"lesion_pixels": 10, "probabilities": {"benign": 1.0}})


class Answer(Exception):
    """Stands for the server: carries the request the client made."""


def recorded_request(monkeypatch, status: int | None = None) -> dict:
    """Replace the client's HTTP call: record the request, then raise ``ServerError(status)`` or ``Answer``."""
    seen = {}

    def call(self, method, path, **kwargs):
        seen.update(method=method, path=path, params=json.loads(kwargs["data"]["params"]), query=kwargs["params"],
                    files=kwargs.get("files"))
        if status is not None:
            raise ServerError(status, "no answer to go back to")
        raise Answer()

    monkeypatch.setattr(BreastLabClient, "_call", call)
    return seen


def test_undo_asks_the_model_to_drop_its_last_answer_and_a_409_means_nothing_to_undo(monkeypatch):
    seen = recorded_request(monkeypatch, 409)
    assert BreastLabClient("http://server").undo("breast_us_medsam", "case002") is None
    assert seen == {"method": "POST", "path": "/infer/breast_us_medsam", "params": {"undo": True},
                    "query": {"image": "case002", "output": "all"}, "files": None}
    recorded_request(monkeypatch, 500)
    with pytest.raises(ServerError, match="500"):
        BreastLabClient("http://server").undo("breast_us_medsam", "case002")


def test_reset_is_sent_with_the_prompts_only_when_asked(monkeypatch):
    seen = recorded_request(monkeypatch)
    client = BreastLabClient("http://server")
    with pytest.raises(Answer):
        client.segment("breast_us_medsam", "case002", foreground=[[5, 6]], box=[1, 2, 30, 40], reset=True)
    assert seen["params"] == {"foreground": [[5, 6]], "background": [], "roi": [1, 2, 30, 40], "reset": True}
    with pytest.raises(Answer):
        client.segment("breast_us_medsam", "case002", foreground=[[5, 6]])
    assert seen["params"] == {"foreground": [[5, 6]], "background": []}


def test_a_mask_to_refine_is_uploaded_as_the_label_file_with_the_clicks(monkeypatch):
    seen = recorded_request(monkeypatch)
    mask = block(slice(2, 6), slice(3, 9)).astype(np.uint8) * 255
    with pytest.raises(Answer):
        BreastLabClient("http://server").segment("breast_us_medsam", "case002", background=[[4, 4]], mask=mask)
    assert seen["params"] == {"foreground": [], "background": [[4, 4]]}
    assert seen["query"] == {"image": "case002", "output": "all"} and set(seen["files"]) == {"label"}
    name, data, kind = seen["files"]["label"]
    assert (name, kind) == ("label.png", "image/png")
    np.testing.assert_array_equal(decode_png(data), mask > 0)  # 0/1 at the image's size
