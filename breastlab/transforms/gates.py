"""An image-level lesion-presence gate from a segmentation's own output: a mask whose image shows no confident
lesion is emptied, so that normal images get no false-positive blob."""

from __future__ import annotations

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform


def lesion_present(probability: torch.Tensor, mask: torch.Tensor, min_peak: float, min_fraction: float) -> bool:
    """True when the highest lesion probability reaches ``min_peak`` and the mask covers at least ``min_fraction``
    of the image (both 0: always)."""
    return bool(probability.max() >= min_peak) and float((mask > 0).float().mean()) >= min_fraction


class LesionGated(MapTransform):
    """Empties ``keys`` (binary masks) unless ``lesion_present`` on the probability map at ``prob_key``."""

    def __init__(self, keys: KeysCollection = "pred", prob_key: str = "prob", min_peak: float = 0.0,
                 min_fraction: float = 0.0):
        super().__init__(keys)
        self.prob_key, self.min_peak, self.min_fraction = prob_key, min_peak, min_fraction

    def __call__(self, data: dict) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            if not lesion_present(torch.as_tensor(d[self.prob_key]), torch.as_tensor(d[key]), self.min_peak,
                                  self.min_fraction):
                d[key] = torch.zeros_like(d[key]) if torch.is_tensor(d[key]) else d[key] * 0
        return d
