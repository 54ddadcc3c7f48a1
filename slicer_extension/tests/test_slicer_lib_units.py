"""BreastLabLib's codecs and result formatting, without a server."""

from __future__ import annotations

import socket

import numpy as np
import pytest
from BreastLabLib.client import BreastLabClient, ServerError, ServerInfo
from BreastLabLib.images import decode_png, encode_png, mask_png, unit_range
from BreastLabLib.results import BiradsSuggestion, TrainingProgress, probabilities_text, ranked_probabilities
from PIL import Image


def test_png_round_trip_keeps_rows_and_columns(samples):
    data = (samples / "images" / "case005.png").read_bytes()
    image = decode_png(data)
    assert image.shape == (538, 831)
    np.testing.assert_array_equal(decode_png(encode_png(image)), image)


def test_mask_png_stores_any_nonzero_as_one():
    mask = np.array([[0, 255, 7], [0, 0, 1]], np.uint8)
    np.testing.assert_array_equal(decode_png(mask_png(mask)), [[0, 1, 1], [0, 0, 1]])
    np.testing.assert_array_equal(decode_png(mask_png(mask.astype(bool))), [[0, 1, 1], [0, 0, 1]])


def test_colour_png_and_wrong_arrays_are_refused(tmp_path):
    Image.new("RGB", (4, 3)).save(tmp_path / "rgb.png")
    with pytest.raises(ValueError, match="single-channel"):
        decode_png((tmp_path / "rgb.png").read_bytes())
    with pytest.raises(ValueError, match="2-D uint8"):
        encode_png(np.zeros((3, 4), np.float32))


def test_unit_range_scales_by_the_maximum():
    np.testing.assert_allclose(unit_range(np.array([[0, 64], [128, 255]], np.uint8)),
                               [[0, 64 / 255], [128 / 255, 1]], rtol=1e-6)
    assert unit_range(np.zeros((2, 2), np.uint8)).max() == 0.0


def test_probabilities_are_ranked_and_validated():
    probabilities = {"normal": 0.1, "malignant": 0.625, "benign": 0.275}
    assert [name for name, _ in ranked_probabilities(probabilities)] == ["malignant", "benign", "normal"]
    assert probabilities_text(probabilities) == "malignant: 62.5 %\nbenign: 27.5 %\nnormal: 10.0 %"
    with pytest.raises(ValueError, match="'benign' is 1.5"):
        ranked_probabilities({"benign": 1.5})


BIRADS_FIELD = ["", "0", "1", "2", "3", "4", "4a", "4b", "4c", "5", "6"]  # the panel's BI-RADS choices
BIRADS_RESULT = {"probabilities": {"malignant": 0.7}, "birads": {
    "suggestion": "4", "probabilities": {"1": 0.02, "2": 0.1, "3": 0.27, "4": 0.61, "5": 0.0}}}


def test_a_birads_suggestion_reads_as_the_category_and_its_likeliest_neighbours():
    suggestion = BiradsSuggestion.from_result(BIRADS_RESULT)
    assert suggestion.category == "4"
    assert suggestion.text() == "AI suggests BI-RADS 4 (4: 61 %, 3: 27 %, 2: 10 %, …)"
    assert suggestion.text(shown=5) == "AI suggests BI-RADS 4 (4: 61 %, 3: 27 %, 2: 10 %, 1: 2 %, 5: 0 %)"


def test_a_result_without_birads_suggests_nothing_and_a_malformed_one_is_refused():
    assert BiradsSuggestion.from_result({"probabilities": {"benign": 0.4, "malignant": 0.6}}) is None
    with pytest.raises(ValueError, match="'6' is not one of"):
        BiradsSuggestion.from_result({"birads": {"suggestion": "6", "probabilities": {"2": 0.5, "3": 0.5}}})
    with pytest.raises(ValueError, match="outside"):
        BiradsSuggestion.from_result({"birads": {"suggestion": "2", "probabilities": {"2": 1.5}}})


def test_accepting_a_suggestion_selects_its_category_in_the_birads_field():
    assert BiradsSuggestion.from_result(BIRADS_RESULT).accept(BIRADS_FIELD) == "4"
    with pytest.raises(ValueError, match="offers no '4'"):
        BiradsSuggestion("4", {"4": 1.0}).accept(["", "4a", "4b"])


def test_training_progress_percent_is_capped_at_the_requested_epochs():
    assert TrainingProgress("RUNNING", 3, 4).percent == 75
    assert TrainingProgress("RUNNING", 5, 4).text == "RUNNING: epoch 4 of 4"
    assert not TrainingProgress("FAILED", 1, 4).running


def test_an_unreachable_server_is_a_server_error_with_status_0():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound but not listening: connections are refused
        with pytest.raises(ServerError) as error:
            BreastLabClient(f"http://127.0.0.1:{port}/", timeout=5).info()
    assert error.value.status == 0 and f"no answer from http://127.0.0.1:{port}" in error.value.detail


def test_models_are_grouped_by_panel_kind_with_monai_label_click_types_as_interactive():
    info = ServerInfo.from_json({"models": {"seg": {"type": "segmentation"}, "edit": {"type": "deepedit"},
                                            "grow": {"type": "deepgrow"}, "cls": {"type": "classification"},
                                            "cls_saliency": {"type": "saliency"}}})
    assert [info.models_of_type(k) for k in ("segmentation", "interactive", "classification", "saliency")] == [
        ["seg"], ["edit", "grow"], ["cls"], ["cls_saliency"]]



def test_promptable_models_are_those_whose_info_lists_a_box_prompt():
    models = {"box": {"type": "deepedit", "prompts": ["roi", "foreground", "background"]},
              "clicks": {"type": "deepedit", "prompts": []}, "stock": {"type": "deepedit"}}
    info = ServerInfo.from_json({"models": models})
    assert info.promptable_models() == ["box"]
