"""Refinement that builds on the last answer: the annotation history (previous mask, undo, reset), a client's own
mask as the start, clicks honoured in the final mask; in the library and on a real server."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import requests
import torch
from PIL import Image

from breastlab.engines.promptable import AnnotationHistory
from breastlab.transforms.prompts import MASK_PROMPT_LOGIT, HonourClicksd, PromptsToNetworkd

from helpers import SAMPLES, model_entry, png_bytes, sample_server

MODEL = "breast_us_medsam"


def test_a_click_refines_the_last_answer_of_the_same_box_and_anything_else_starts_afresh():
    history, box, answer = AnnotationHistory(depth=3), [1, 2, 30, 40], torch.full((1, 8, 8), -3.0)
    answer[0, 2:5, 2:5] = 4.0
    assert history.previous(box, clicked=False) is None  # a box alone: a new annotation
    history.push(answer)
    previous = history.previous(box, clicked=True)
    assert torch.equal(previous > 0, answer > 0) and previous.abs().eq(MASK_PROMPT_LOGIT).all()
    history.push(answer + 1)
    assert len(history) == 2 and history.previous([1, 2, 30, 41], clicked=True) is None and len(history) == 0
    sent = torch.zeros(1, 8, 8)
    history.push(answer)
    assert history.previous(box, clicked=True, sent=sent) is sent and len(history) == 0  # a client's mask


def test_undo_steps_back_one_answer_at_a_time_down_to_the_start_then_refuses():
    history = AnnotationHistory(depth=2)
    for value in (1.0, 2.0, 3.0):
        history.push(torch.full((1, 4, 4), value), foreground=[[value, 0]])
    assert len(history) == 2  # the oldest beyond the depth is forgotten
    before = history.undo()
    assert before.foreground == [[2.0, 0]] and before.logits.float().eq(2.0).all()
    assert history.undo() is None and len(history) == 0
    with pytest.raises(LookupError):
        history.undo()


def test_clicks_are_honoured_in_the_final_mask_and_an_agreeing_mask_is_left_alone():
    mask = torch.zeros(1, 40, 30)  # [channel, x, y]
    mask[0, 10:20, 10:20] = 1
    honour = HonourClicksd("pred", radius=2)
    same = honour({"pred": mask.clone(), "foreground": [[15, 15]], "background": [[2, 2]]})["pred"]
    assert torch.equal(same, mask)
    fixed = honour({"pred": mask.clone(), "foreground": [[30, 5]], "background": [[12, 12]]})["pred"]
    assert fixed[0, 30, 5] == 1 and fixed[0, 12, 12] == 0
    assert (fixed != mask).sum() == 2 * 13  # a disc of radius 2 (13 pixels) each, nothing else
    corner = honour({"pred": torch.zeros(1, 40, 30), "foreground": [[0, 0]], "background": []})["pred"]
    assert corner.sum() == 6  # the quarter of the disc inside the image


def test_a_clients_mask_maps_onto_the_network_input_as_training_labels_do():
    from monai.transforms import Resize, SpatialPad

    image = torch.zeros(1, 200, 100)  # [channel, x, y]: 200 wide, 100 high
    mask = np.zeros((100, 200), bool)  # rows, columns
    mask[20:40, 100:160] = True
    data = PromptsToNetworkd("image", size=64)({"image": image, "mask": mask})
    label = SpatialPad(64, method="end")(Resize(64, size_mode="longest", mode="nearest")(torch.tensor(mask)[None]))
    assert torch.equal(data["previous_mask"] > 0, label > 0.5) and label.sum() > 0
    with pytest.raises(ValueError, match="200 x 100"):
        PromptsToNetworkd("image", size=64)({"image": image, "mask": mask.T})


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with sample_server(tmp_path_factory.mktemp("refinement")) as srv:
        yield srv


def infer(server, image: str, label: bytes | None = None, model: str = MODEL, **params):
    """The mask and the JSON result (``(None, response)`` on an error)."""
    files = {"label": ("mask.png", label, "image/png")} if label is not None else None
    response = requests.post(f"{server.url}/infer/{model}", params={"image": image},
                             data={"params": json.dumps(params)}, files=files, timeout=120)
    if response.status_code != 200:
        return None, response
    parts = dict(_parts(response))
    return np.asarray(Image.open(io.BytesIO(parts["image"]))) > 0, json.loads(parts["params"])


def _parts(response):
    from requests_toolbelt.multipart.decoder import MultipartDecoder

    for part in MultipartDecoder.from_response(response).parts:
        name = part.headers[b"Content-Disposition"].decode().split('name="')[1].split('"')[0]
        yield name, part.content


@pytest.mark.slow
def test_served_clicks_build_on_the_last_answer_and_undo_gives_each_earlier_answer_back(server):
    truth = np.asarray(Image.open(SAMPLES / "masks" / "case008.png")) > 0
    rows, cols = np.nonzero(truth)
    box = [int(cols.min()), int(rows.min()), int(cols.max()), int(rows.max())]
    by_box, first = infer(server, "case008", roi=box)
    inside = [int(cols[len(cols) // 2]), int(rows[len(rows) // 2])]
    by_click, second = infer(server, "case008", roi=box, background=[inside])
    assert (first["history"], second["history"]) == (1, 2) and not by_click[inside[1], inside[0]]  # honoured
    _, other_client = infer(server, "case008", undo=True, client_id="another reader")
    assert other_client.status_code == 409  # each client has its own history
    undone, third = infer(server, "case008", undo=True)
    assert third["history"] == 1 and third["undone"] and np.array_equal(undone, by_box)
    assert third["model"] == first["model"] == model_entry(MODEL)  # an undo (no network pass) names the weights too
    empty, fourth = infer(server, "case008", undo=True)
    assert fourth["history"] == 0 and not empty.any()
    _, refused = infer(server, "case008", undo=True)
    assert refused.status_code == 409 and "nothing to undo" in refused.json()["detail"]


@pytest.mark.slow
def test_a_clients_mask_is_refined_by_its_clicks_and_bad_masks_get_422(server):
    image = np.asarray(Image.open(SAMPLES / "images" / "case002.png"))
    start = np.zeros(image.shape[:2], np.uint8)
    start[200:400, 300:500] = 255
    refined, result = infer(server, "case002", label=png_bytes(start), background=[[310, 210]])
    assert result["history"] == 1 and not refined[210, 310]
    _, wrong_size = infer(server, "case002", label=png_bytes(start[:100]), background=[[310, 210]])
    assert wrong_size.status_code == 422 and "image's size" in wrong_size.json()["detail"]
    _, not_promptable = infer(server, "case002", label=png_bytes(start), model="breast_us_t2kd")
    assert not_promptable.status_code == 422 and "promptable" in not_promptable.json()["detail"]
    for params, message in (({"mask": [[1]]}, "label="), ({"undo": "yes"}, "true or false"),
                            ({"client_id": ""}, "client_id"), ({"previous_mask": [1]}, "previous_mask")):
        _, response = infer(server, "case002", **params)
        assert response.status_code == 422 and message in response.json()["detail"], (params, response.text)


@pytest.mark.slow
@pytest.mark.parametrize("model", [MODEL, "breast_us_interactive"])
def test_every_served_click_model_honours_each_click(server, model):
    truth = np.asarray(Image.open(SAMPLES / "masks" / "case007.png")) > 0
    rows, cols = np.nonzero(truth)
    inside, corner = [int(cols[len(cols) // 2]), int(rows[len(rows) // 2])], [5, 5]
    mask, _ = infer(server, "case007", model=model, foreground=[corner, inside], background=[inside[:1] + [
        inside[1] + 1]])
    assert mask[corner[1], corner[0]] and mask[inside[1], inside[0]] and not mask[inside[1] + 1, inside[0]]
