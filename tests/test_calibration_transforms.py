"""TemperatureScaled and BiradsSuggestiond alone, and in the ACSNet and LA-Net inference pipelines."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from breastlab.bundle import get_bundle
from breastlab.metrics.birads import birads_probabilities
from breastlab.transforms import BiradsSuggestiond, TemperatureScaled

MODEL = {"categories": ["2", "3", "4", "5"], "slope": 1.2, "cuts": [-4.0, -2.5, 2.0]}


def test_temperature_one_leaves_the_logits_identical_and_two_halves_them():
    logits = torch.tensor([2.0, -1.0, 0.5])
    assert TemperatureScaled("cls", 1.0)({"cls": logits})["cls"] is logits
    torch.testing.assert_close(TemperatureScaled("cls", 2.0)({"cls": logits})["cls"], logits / 2)


@pytest.mark.parametrize("temperature", [0.0, -1.0, float("nan"), float("inf")])
def test_temperature_must_be_a_positive_number(temperature):
    with pytest.raises(ValueError, match="temperature"):
        TemperatureScaled("cls", temperature)


def test_a_three_class_classifier_suggests_birads_1_first_and_the_lesion_categories_after():
    classes = ["normal", "benign", "malignant"]
    out = BiradsSuggestiond("class_prob", classes, MODEL)({"class_prob": torch.tensor([0.2, 0.2, 0.6])})
    assert out["birads_categories"] == ["1", "2", "3", "4", "5"]
    assert out["birads_prob"].dtype == torch.float32 and float(out["birads_prob"].sum()) == pytest.approx(1.0)
    assert float(out["birads_prob"][0]) == pytest.approx(0.2)  # p(normal)
    lesion = birads_probabilities(0.75, MODEL)[0]  # p(malignant | lesion) = 0.6 / (0.2 + 0.6)
    np.testing.assert_allclose(out["birads_prob"][1:].numpy(), 0.8 * lesion, rtol=1e-6)


def test_a_benign_malignant_classifier_suggests_only_lesion_categories():
    out = BiradsSuggestiond("class_prob", ["benign", "malignant"], MODEL)({"class_prob": np.array([0.9, 0.1])})
    assert out["birads_categories"] == MODEL["categories"]
    np.testing.assert_allclose(out["birads_prob"].numpy(), birads_probabilities(0.1, MODEL)[0], rtol=1e-6)
    assert float(out["birads_prob"].sum()) == pytest.approx(1.0)


def test_nothing_is_added_without_a_birads_model():
    data = {"class_prob": torch.tensor([0.3, 0.7])}
    assert BiradsSuggestiond("class_prob", ["benign", "malignant"], None)(data) == data


def test_a_classifier_without_a_malignant_class_is_refused():
    with pytest.raises(ValueError, match="malignant"):
        BiradsSuggestiond("class_prob", ["normal", "abnormal"], MODEL)


@pytest.mark.parametrize("name, categories", [("breast_us_acsnet", ["1", "2", "3", "4", "5"]),
                                              ("breast_us_lanet", ["2", "3", "4", "5"])])
def test_the_bundles_serve_birads_probabilities_once_their_inference_config_has_a_model(name, categories, samples_dir):
    image = samples_dir / "images" / "case002.png"
    shipped = get_bundle(name, birads=None, temperature=1.0).predictor()(image)
    assert "birads_probabilities" not in shipped  # "birads": null, as before `breastlab calibrate --write`
    calibrated = get_bundle(name, birads=MODEL, temperature=2.0).predictor()(image)
    assert list(calibrated["birads_probabilities"]) == categories
    assert sum(calibrated["birads_probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    assert max(calibrated["class_probabilities"].values()) < max(shipped["class_probabilities"].values())
