"""Annotation effort: the store on its own (a temp folder), the ``breastlab effort`` command, and a real server that
hands out an image, proposes its mask and records the saved label."""

from __future__ import annotations

import io
import json
import threading
import zipfile

import numpy as np
import pytest
import requests
from fastapi import HTTPException
from PIL import Image

from breastlab.cli import main
from breastlab.server.datastore.effort import EffortStore, annotator_of, summary

from helpers import MODEL, SAMPLES, infer, png_bytes, sample_server, upload

MASK = np.zeros((40, 60), np.uint8)
MASK[10:20, 20:40] = 1


def mask_file(tmp_path, mask: np.ndarray = MASK) -> str:
    path = tmp_path / "proposal.png"
    Image.fromarray(mask).save(path)
    return str(path)


def test_a_kept_proposal_is_recorded_with_its_model_prompts_and_dice_1(tmp_path):
    store = EffortStore.of(tmp_path)
    store.handed_out("a", "ann")
    store.inferred("a", "ann", "seg", {}, mask_file(tmp_path))
    store.inferred("a", "ann", "cls", {}, None)  # a classifier's answer proposes no mask and counts no prompt
    row = store.saved("a", "ann", MASK * 255)
    assert row["model"] == "seg" and row["handed_out"] is True
    assert (row["automatic"], row["prompts"], row["dice"], row["kept_as_proposed"]) == (1, 0, 1.0, True)
    assert row["seconds"] >= 0
    assert EffortStore.of(tmp_path).rows() == [row]


def test_prompts_count_new_boxes_clicks_and_undos(tmp_path):
    store, proposal = EffortStore.of(tmp_path), mask_file(tmp_path)
    requests_sent = [
        {"roi": [1, 1, 30, 30]},
        {"roi": [1, 1, 30, 30], "foreground": [[5, 5]]},  # the same box again: one new click
        {"roi": [1, 1, 30, 30], "foreground": [[5, 5], [6, 6]], "background": [[0, 0]]},  # two new clicks
        {"roi": [1, 1, 30, 30], "foreground": [[5, 5]], "background": [[0, 0]], "undo": True},
        {"roi": [2, 2, 30, 30], "foreground": [[5, 5]], "background": [[0, 0]]},  # a new box
    ]
    for request in requests_sent:
        store.inferred("a", "ann", "promptable", request, proposal)
    row = store.saved("a", "ann", MASK)
    assert (row["boxes"], row["clicks"], row["undos"], row["automatic"]) == (2, 3, 1, 0)
    assert row["prompts"] == 6 and row["handed_out"] is False  # started by the first inference


def test_the_first_proposal_survives_reopening_and_is_compared_with_the_saved_label(tmp_path):
    EffortStore.of(tmp_path).inferred("a", "ann", "first", {}, mask_file(tmp_path))
    other = np.zeros_like(MASK)
    reopened = EffortStore.of(tmp_path)
    reopened.inferred("a", "ann", "second", {}, mask_file(tmp_path, other))
    half = MASK.copy()
    half[10:20, 30:40] = 0  # half of the proposal kept: Dice 2 * 100 / (200 + 100)
    row = reopened.saved("a", "ann", half)
    assert row["model"] == "first" and row["automatic"] == 2
    assert row["dice"] == pytest.approx(2 / 3, abs=1e-6) and row["kept_as_proposed"] is False


def test_a_label_without_session_has_no_model_seconds_or_dice(tmp_path):
    store = EffortStore.of(tmp_path)
    row = store.saved("a", "ann", MASK)
    assert (row["model"], row["seconds"], row["dice"], row["kept_as_proposed"], row["prompts"]) == (
        None, None, None, None, 0)


def test_a_new_hand_out_starts_over_and_remove_forgets_the_image(tmp_path):
    store = EffortStore.of(tmp_path)
    store.inferred("a", "ann", "seg", {"foreground": [[1, 1]]}, mask_file(tmp_path))
    store.handed_out("a", "ann")
    assert store.saved("a", "ann", MASK)["model"] is None
    store.saved("b", "ann", MASK)
    store.remove("a")
    assert [row["image"] for row in store.rows()] == ["b"]


def test_summary_per_model_and_annotator(tmp_path):
    store = EffortStore.of(tmp_path)
    for image, annotator in (("a", "x"), ("b", "x"), ("c", "y")):
        store.handed_out(image, annotator)
        store.inferred(image, annotator, "seg", {"foreground": [[1, 1]]} if image == "c" else {}, mask_file(tmp_path))
    store.saved("a", "x", MASK)
    store.saved("b", "x", np.zeros_like(MASK))
    store.saved("c", "y", MASK)
    store.saved("d", "y", MASK)
    report = summary(store.rows())
    assert [g["model"] for g in report["models"]] == ["seg", None]
    seg = report["models"][0]
    assert (seg["images"], seg["median_prompts"], seg["kept_as_proposed"]) == (3, 0, pytest.approx(2 / 3, abs=1e-4))
    assert seg["mean_dice"] == pytest.approx(2 / 3, abs=1e-4)
    assert report["models"][1] == {"model": None, "images": 1, "median_seconds": None, "median_prompts": 0,
                                   "kept_as_proposed": None, "mean_dice": None}
    assert [(g["annotator"], g["images"]) for g in report["annotators"]] == [("x", 2), ("y", 2)]
    assert "rows" not in report and len(summary(store.rows(), detail=True)["rows"]) == 4
    lines = store.csv(["a", "c"]).splitlines()
    assert lines[0].startswith("image,annotator,model,") and [line.split(",")[0] for line in lines[1:]] == ["a", "c"]


def test_concurrent_requests_of_one_session_lose_no_count(tmp_path):
    store, proposal = EffortStore.of(tmp_path), mask_file(tmp_path)
    threads = [threading.Thread(target=lambda: [store.inferred("a", "ann", "seg", {}, proposal) for _ in range(10)])
               for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.saved("a", "ann", MASK)["automatic"] == 40


def test_the_client_id_in_params_names_the_annotator_else_the_user():
    assert annotator_of({}, "alice") == "alice"
    assert annotator_of({"client_id": None}, "alice") == "alice"
    assert annotator_of({"client_id": "slicer-1"}, "alice") == "slicer-1"
    for bad in ("", 7, "x" * 129, "a\nb"):
        with pytest.raises(HTTPException) as error:
            annotator_of({"client_id": bad}, "alice")
        assert error.value.status_code == 422


def test_the_command_prints_the_table_and_plots(tmp_path, capsys):
    store = EffortStore.of(tmp_path)
    store.inferred("a", "ann", "seg", {}, mask_file(tmp_path))
    store.saved("a", "ann", MASK)
    out = tmp_path / "effort.png"
    assert main(["effort", str(tmp_path), "--plot", str(out)]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].split() == ["model", "images", "median", "s", "median", "prompts", "kept", "mean", "Dice"]
    assert printed[2].split()[0] == "seg" and printed[2].split()[-2:] == ["100%", "1.000"]
    assert printed[-1] == f"wrote {out}" and Image.open(out).size[0] > 0
    assert main(["effort", str(tmp_path / "missing")]) == 2
    assert "no effort records" in capsys.readouterr().err


@pytest.mark.slow
def test_the_server_records_a_handed_out_image_kept_as_proposed(tmp_path, capsys):
    client = {"client_id": "slicer-7"}  # one annotator's client, named in every request
    with sample_server(tmp_path) as server:  # the samples have final labels: the new image is the one handed out
        assert upload(server, "fresh", (SAMPLES / "images" / "case002.png").read_bytes()).status_code == 200
        image = requests.post(f"{server.url}/activelearning/random", json=client, timeout=30).json()["id"]
        assert image == "fresh"
        response = infer(server, image, output="image", **client)
        assert response.status_code == 200, response.text
        mask = np.asarray(Image.open(io.BytesIO(response.content)))
        saved = requests.put(f"{server.url}/datastore/label", params={"image": image},
                             data={"params": json.dumps(client)},
                             files={"label": ("label.png", png_bytes(mask * 255), "image/png")}, timeout=30)
        assert saved.status_code == 200, saved.text
        report = requests.get(f"{server.url}/datastore/effort", params={"detail": "true"}, timeout=10).json()
        bad = requests.get(f"{server.url}/datastore/effort", params={"detail": "maybe"}, timeout=10)
        archive = requests.get(f"{server.url}/datastore/dataset", timeout=60).content
    [row] = report["rows"]
    assert (row["image"], row["annotator"], row["model"], row["handed_out"]) == (image, "slicer-7", MODEL, True)
    assert (row["automatic"], row["prompts"], row["dice"], row["kept_as_proposed"]) == (1, 0, 1.0, True)
    assert report["models"] == [{"model": MODEL, "images": 1, "median_seconds": report["models"][0]["median_seconds"],
                                 "median_prompts": 0, "kept_as_proposed": 1.0, "mean_dice": 1.0}]
    assert [g["annotator"] for g in report["annotators"]] == ["slicer-7"]
    assert bad.status_code == 422
    with zipfile.ZipFile(io.BytesIO(archive)) as zipped:
        effort_csv = zipped.read("effort.csv").decode().splitlines()
    assert len(effort_csv) == 2 and effort_csv[1].startswith(f"{image},slicer-7,{MODEL},")
    assert main(["effort", str(tmp_path / "studies")]) == 0
    assert capsys.readouterr().out.splitlines()[2].split()[0] == MODEL
