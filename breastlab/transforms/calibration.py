"""Calibrated classifier outputs: temperature-scaled logits (``breastlab.metrics.calibration``) and a BI-RADS
suggestion from the class probabilities (``breastlab.metrics.birads``)."""

from __future__ import annotations

import math

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform


class TemperatureScaled(MapTransform):
    """Divides the logits at ``keys`` by ``temperature`` (> 0; 1.0 leaves them as they are), before the softmax."""

    def __init__(self, keys: KeysCollection, temperature: float = 1.0):
        super().__init__(keys)
        self.temperature = float(temperature)
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise ValueError(f"temperature must be a positive number, got {temperature!r}")

    def __call__(self, data: dict) -> dict:
        if self.temperature == 1.0:
            return data
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = d[key] / self.temperature
        return d


def malignant_given_lesion(probabilities: dict) -> float:
    """p(malignant | lesion) of a classifier's ``{class: p}``: p(malignant) / (p(malignant) + p(benign)) where it
    knows benign, else p(malignant)."""
    if "benign" not in probabilities:
        return float(probabilities["malignant"])
    return float(probabilities["malignant"]) / max(float(probabilities["malignant"] + probabilities["benign"]), 1e-12)


def lesion_probabilities(class_prob, classes: list[str]) -> tuple[float, float | None]:
    """p(malignant | lesion) and p(normal) (None where the classifier has no ``normal`` class) from softmax
    probabilities in ``classes`` order."""
    p = dict(zip(classes, torch.as_tensor(class_prob).detach().float().cpu().reshape(-1).tolist()))
    return malignant_given_lesion(p), p.get("normal")


class BiradsSuggestiond(MapTransform):
    """From the class probabilities at ``keys``, the BI-RADS ``model``'s (``breastlab.metrics.birads.fit_birads``)
    category probabilities as ``birads_prob`` (a tensor) and their names as ``birads_categories`` (BI-RADS 1 first
    where ``classes`` has ``normal``). Nothing is added when ``model`` is None (not calibrated yet)."""

    def __init__(self, keys: KeysCollection = "class_prob", classes: list[str] = (), model: dict | None = None):
        super().__init__(keys)
        self.classes, self.model = list(classes), model
        if model is not None and "malignant" not in self.classes:
            raise ValueError(f"a BI-RADS suggestion needs a 'malignant' class, got {self.classes}")

    def __call__(self, data: dict) -> dict:
        if self.model is None:
            return data
        from breastlab.metrics.birads import NORMAL_CATEGORY, birads_probabilities  # metrics import these transforms

        d = dict(data)
        for key in self.key_iterator(d):
            malignant, normal = lesion_probabilities(d[key], self.classes)
            probabilities = birads_probabilities(malignant, self.model, None if normal is None else [normal])[0]
            d["birads_prob"] = torch.as_tensor(probabilities, dtype=torch.float32)
            d["birads_categories"] = [NORMAL_CATEGORY] * (normal is not None) + list(self.model["categories"])
        return d
