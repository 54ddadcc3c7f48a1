"""BreastLabLib's HTTP client against the real BreastLab server: every call the Slicer module makes (slow)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import requests
from BreastLabLib.client import MODEL_TYPES, ServerError
from BreastLabLib.results import training_progress
from PIL import Image

pytestmark = pytest.mark.slow
MODEL = "breast_us_t2kd"
INTERACTIVE = "breast_us_interactive"


def test_info_sorts_models_by_type_and_lists_strategies(client, server):
    info = client.info()
    raw = requests.get(f"{server.url}/info/", timeout=10).json()
    assert info.name == "BreastLab"
    assert info.models_of_type("segmentation") == ["breast_us_acsnet", MODEL]
    served = {t: info.models_of_type(t) for t in MODEL_TYPES if t != "segmentation"}
    assert served == {"classification": ["breast_mammo_end2end", "breast_mammo_glam", "breast_us_lanet"],
                      "interactive": [INTERACTIVE, "breast_us_medsam"],
                      "saliency": ["breast_mammo_end2end_saliency", "breast_mammo_glam_saliency",
                                   "breast_us_lanet_saliency"]}
    assert info.strategies == tuple(raw["strategies"])
    assert set(info.strategies) == {"random", "uncertainty", "diverse", "hybrid", "second_read", "review"}
    assert info.default_epochs(MODEL) == 10


def test_a_model_that_also_classifies_gives_mask_and_probabilities_in_one_call(client):
    mask, result = client.segment_and_summarize("breast_us_acsnet", "case002")
    assert mask.shape == (572, 761) and result["lesion_pixels"] == int(mask.sum())
    assert set(result["probabilities"]) == {"normal", "benign", "malignant"}
    np.testing.assert_array_equal(mask, client.segment("breast_us_acsnet", "case002"))
    assert "probabilities" not in client.segment_and_summarize(MODEL, "case002")[1]


def test_image_download_is_rows_by_columns(client, samples):
    image = client.image("case002")
    assert image.shape == (572, 761) and image.dtype == np.uint8
    np.testing.assert_array_equal(image, np.asarray(Image.open(samples / "images" / "case002.png")))


def test_segment_returns_a_binary_mask_of_the_image_size(client):
    mask = client.segment(MODEL, "case002")
    assert mask.shape == (572, 761)
    assert set(np.unique(mask)) == {0, 1}
    assert client.summary(MODEL, "case002")["lesion_pixels"] == int(mask.sum())


def test_click_points_reach_the_server_as_params(client, server):
    automatic = client.segment(INTERACTIVE, "case001")
    mask = client.segment(INTERACTIVE, "case001", foreground=[[353, 39], [130, 210]], background=[[5, 6]])
    assert mask.shape == (537, 485) and mask[39, 353] and not automatic[39, 353]
    assert "'foreground': [[353, 39], [130, 210]], 'background': [[5, 6]]" in server.log.read_text()


def test_classify_needs_probabilities_in_the_result(client):
    with pytest.raises(ServerError, match="returned no 'probabilities'.*lesion_probability"):
        client.classify(MODEL, "case001")


def test_saliency_is_a_unit_range_map_of_the_image_size(client):
    saliency = client.saliency(MODEL, "case002")
    assert saliency.dtype == np.float32 and saliency.shape == (572, 761)
    assert saliency.min() == 0.0 and saliency.max() == 1.0
    np.testing.assert_array_equal(saliency, client.segment(MODEL, "case002").astype(np.float32))


def test_image_info_update_is_merged_and_read_back(client):
    client.set_image_info("case005", {"class": "benign", "birads": "4a"})
    info = client.image_info("case005")
    assert info["class"] == "benign" and info["birads"] == "4a"
    assert (info["height"], info["width"]) == (538, 831)  # the server's own fields are kept


def test_next_sample_then_save_labels_until_none_is_left(client, unlabelled):
    handed_out = {client.next_sample("random")["id"] for _ in unlabelled}
    assert handed_out == set(unlabelled)
    for image_id in handed_out:
        mask = np.zeros(client.image(image_id).shape, np.uint8)
        mask[100:200, 150:300] = 255
        client.save_label(image_id, mask, {"class": "malignant", "birads": "5"})
        np.testing.assert_array_equal(client.label(image_id), (mask > 0).astype(np.uint8))
        assert client.label_info(image_id)["class"] == "malignant"
    assert client.next_sample("random") is None


def test_server_errors_carry_status_and_message(client):
    with pytest.raises(ServerError) as wrong_size:
        client.save_label("case001", np.ones((20, 40), np.uint8))
    assert wrong_size.value.status == 422 and "does not match" in wrong_size.value.detail
    with pytest.raises(ServerError) as unknown_model:
        client.segment("no_such_model", "case001")
    assert unknown_model.value.status == 404 and MODEL in unknown_model.value.detail
    with pytest.raises(ServerError) as unknown_strategy:
        client.next_sample("no_such_strategy")
    assert unknown_strategy.value.status == 404 and "random" in unknown_strategy.value.detail


def test_training_progress_follows_the_server_until_done(client):
    assert client.start_training(MODEL, max_epochs=2)["status"] in ("SUBMITTED", "RUNNING")  # it may start at once
    seen, deadline = [], time.monotonic() + 600
    while True:
        progress = training_progress(client.training_status(), client.info().default_epochs(MODEL))
        seen.append((progress.state, progress.epochs_done))
        if not progress.running:
            break
        assert time.monotonic() < deadline, seen
        time.sleep(0.2)
    assert (progress.state, progress.percent, progress.text) == ("DONE", 100, "DONE: epoch 2 of 2"), seen
    running = [epochs for state, epochs in seen if state == "RUNNING"]
    assert running == sorted(running) and set(running) <= {0, 1, 2}, seen  # counts up, never past the last epoch
    assert client.info().trainers and client.training_status()["request"]["max_epochs"] == 2


def test_score_button_jobs_order_new_images_for_the_diverse_and_hybrid_strategies(client, server, samples):
    """The strategies hand out unlabelled images from the jobs' orders (whatever other tests labelled before)."""
    extras = ["scored_a", "scored_b"]
    for image_id, case in zip(extras, ("case001", "case008")):
        data = (samples / "images" / f"{case}.png").read_bytes()
        requests.put(f"{server.url}/datastore/image", params={"image": image_id}, files={"file": (
            f"{image_id}.png", data)}, timeout=30).raise_for_status()
    try:
        assert client.start_scoring(MODEL, wait=True) == ["diversity", "uncertainty"]
        listing = requests.get(f"{server.url}/datastore/", params={"output": "all"}, timeout=30).json()["objects"]
        unlabelled = {image_id for image_id, entry in listing.items() if "final" not in entry["labels"]}
        picked = [client.next_sample(strategy) for strategy in ("diverse", "hybrid")]
        assert {p["id"] for p in picked} <= unlabelled and not any("fallback" in p for p in picked), picked
        assert len({p["id"] for p in picked}) == 2  # an image handed out is not handed out again at once
        assert picked[1]["scored_with"]["uncertainty"]["model"] == MODEL
    finally:
        for image_id in extras:
            requests.delete(f"{server.url}/datastore/image", params={"id": image_id}, timeout=30)
