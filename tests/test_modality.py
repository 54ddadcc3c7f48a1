"""The mammogram-or-ultrasound check: its verdicts from a probability, and the shipped parameters on the samples."""

import numpy as np
import pytest
from PIL import Image

from breastlab.data import modality
from breastlab.data.modality import SURE, image_features, modality_check


def test_features_are_finite_and_of_a_fixed_length_for_any_image_shape():
    rng = np.random.default_rng(0)
    for shape in ((16, 16), (572, 761), (1024, 600)):
        features = image_features(rng.integers(0, 256, shape, dtype=np.uint8))
        assert features.shape == (25,) and np.isfinite(features).all()
    assert np.isfinite(image_features(np.zeros((64, 64), np.uint8))).all()  # a blank image too


@pytest.mark.parametrize("p_mammogram, expected, verdict", [
    (0.999, "MG", "match"), (0.6, "MG", "match"), (0.3, "MG", "unsure"), (0.001, "MG", "mismatch"),
    (0.001, "US", "match"), (0.7, "US", "unsure"), (0.999, "US", "mismatch")])
def test_only_a_sure_check_refuses(monkeypatch, p_mammogram, expected, verdict):
    logit = float(np.log(p_mammogram / (1 - p_mammogram)))
    monkeypatch.setattr(modality, "shipped_parameters", lambda: {"mean": [0.0] * 25, "scale": [1.0] * 25,
                                                                 "coef": [0.0] * 25, "intercept": logit})
    found, p_expected = modality_check(np.indices((32, 32)).sum(0).astype(np.uint8), expected)  # not flat
    assert found == verdict and p_expected == pytest.approx(p_mammogram if expected == "MG" else 1 - p_mammogram)
    assert (found == "mismatch") == (p_expected <= 1 - SURE)


def test_a_flat_image_is_neither():
    assert modality_check(np.zeros((64, 80), np.uint8), "US") == modality_check(np.full((9, 9), 80, np.uint8), "MG") \
        == ("unsure", 0.5)


def test_the_shipped_samples_are_taken_for_ultrasound(samples_dir):
    for path in sorted((samples_dir / "images").glob("*.png")):
        image = np.asarray(Image.open(path).convert("L"))
        assert modality_check(image, "US")[0] == "match", path.name
        assert modality_check(image, "MG")[0] != "match", path.name
