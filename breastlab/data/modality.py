"""Is a picture a mammogram or a breast ultrasound image? A cheap check on image statistics, for the server to tell a
user who sends one kind of image to a model of the other.

Twenty-five numbers describe an image (an intensity histogram, its shape, where it is dark, how grainy it is); a
logistic regression on them, fitted by ``scripts/modality_check.py`` on the shared sets' train splits and stored in
``modality_check.json``, gives the probability that the image is a mammogram.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

MODALITIES = ("US", "MG")  # the check's two classes: probability of the second
PARAMETERS = Path(__file__).with_name("modality_check.json")
SURE = 0.99  # a probability this far from the other modality refuses; less sure answers warn


def image_features(image: np.ndarray) -> np.ndarray:
    """The statistics the check reads from a gray (H, W) uint8 image."""
    h, w = image.shape
    small = np.asarray(Image.fromarray(image).resize((32, 32), Image.BILINEAR), np.float64) / 255
    texture = np.asarray(Image.fromarray(image).resize((128, 128), Image.BILINEAR), np.float64) / 255
    histogram = np.histogram(small, bins=16, range=(0, 1))[0] / small.size
    left, right, top, bottom = small[:, :16].mean(), small[:, 16:].mean(), small[:16].mean(), small[16:].mean()
    corners = [small[:6, :6].mean(), small[:6, -6:].mean(), small[-6:, :6].mean(), small[-6:, -6:].mean()]
    grain = (np.abs(np.diff(texture, axis=0)).mean() + np.abs(np.diff(texture, axis=1)).mean()) / (texture.std() + .01)
    return np.array([*histogram, np.log(h / w), abs(left - right), abs(top - bottom), *corners, small.std(), grain])


def fit(features: np.ndarray, is_mammogram: np.ndarray) -> dict:
    """Logistic regression of ``is_mammogram`` on standardised ``features``: the parameters ``check`` reads."""
    from sklearn.linear_model import LogisticRegression

    mean, scale = features.mean(0), features.std(0) + 1e-9
    model = LogisticRegression(C=1.0, max_iter=2000).fit((features - mean) / scale, is_mammogram)
    return {"mean": mean.tolist(), "scale": scale.tolist(), "coef": model.coef_[0].tolist(),
            "intercept": float(model.intercept_[0])}


def mammogram_probability(features: np.ndarray, parameters: dict) -> np.ndarray:
    """P(mammogram) of each row of ``features`` (or of one feature vector)."""
    z = (features - np.asarray(parameters["mean"])) / np.asarray(parameters["scale"])
    return 1 / (1 + np.exp(-(z @ np.asarray(parameters["coef"]) + parameters["intercept"])))


@lru_cache(maxsize=1)
def shipped_parameters() -> dict:
    return json.loads(PARAMETERS.read_text())


def modality_check(image: np.ndarray, expected: str) -> tuple[str, float]:
    """``("match" | "unsure" | "mismatch", probability of expected)`` for a gray image sent to an ``expected``
    (``US`` or ``MG``) model: a mismatch is sure (``SURE``) that the image is the other kind. A flat image (no
    contrast at all) tells nothing: unsure."""
    if image.std() < 1:
        return "unsure", 0.5
    p_mammogram = float(mammogram_probability(image_features(image), shipped_parameters()))
    p_expected = p_mammogram if expected == "MG" else 1 - p_mammogram
    verdict = "mismatch" if p_expected <= 1 - SURE else "match" if p_expected >= 0.5 else "unsure"
    return verdict, p_expected
