"""Weak localisation: Grad-CAM of a classifier, and the top regions of any map as boxes."""

from __future__ import annotations

import numpy as np
import torch
from monai.visualize import GradCAM
from scipy import ndimage


class ClassLogits(torch.nn.Module):
    """A network whose output is a dict, seen through its class logits (``cls``): what Grad-CAM needs."""

    def __init__(self, network: torch.nn.Module, key: str = "cls"):
        super().__init__()
        self.network, self.key = network, key

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        output = self.network(x)
        return output[self.key] if isinstance(output, dict) else output


def grad_cam(network: torch.nn.Module, image: torch.Tensor, layer: str, class_index: int | None = None) -> torch.Tensor:
    """MONAI's Grad-CAM of ``network`` at module ``layer`` (a name in ``network.named_modules()``) for
    ``class_index`` (default: the predicted class) on ``image`` (1, C, H, W): a (H, W) map in [0, 1]."""
    cam = GradCAM(ClassLogits(network), target_layers=f"network.{layer}")
    with torch.enable_grad():
        return cam(image, class_idx=class_index)[0, 0].detach()


def top_boxes(saliency: np.ndarray, threshold: float = 0.5, k: int = 3) -> list[dict]:
    """The ``k`` strongest regions of a 2D map (rows, columns) where it reaches ``threshold``.

    Regions are 8-connected components, ranked by their peak value; each is
    ``{"box": [x_min, y_min, x_max, y_max], "score": peak, "area": pixels}`` in pixels, max exclusive
    (MONAI's ``xyxy`` convention).
    """
    values = np.asarray(saliency, dtype=np.float32)
    if values.ndim != 2:
        raise ValueError(f"expected a 2D map, got shape {values.shape}")
    labels, n = ndimage.label(values >= threshold, structure=np.ones((3, 3), dtype=bool))
    if n == 0:
        return []
    index = np.arange(1, n + 1)
    peaks = ndimage.maximum(values, labels, index)
    areas = ndimage.sum_labels(np.ones_like(values), labels, index)
    slices = ndimage.find_objects(labels)
    order = sorted(range(n), key=lambda i: (-peaks[i], -areas[i]))[:k]
    return [{"box": [slices[i][1].start, slices[i][0].start, slices[i][1].stop, slices[i][0].stop],
             "score": round(float(peaks[i]), 4), "area": int(areas[i])} for i in order]
