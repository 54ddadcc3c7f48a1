"""Weak localisation: Grad-CAM of a classifier, and the top regions of any map as boxes."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
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


class GradCam:
    """MONAI's Grad-CAM of ``network`` at module ``layer`` (a name in ``network.named_modules()``). Make one per
    network and reuse it: MONAI registers its hooks on the network for good. The network keeps its train/eval
    mode."""

    def __init__(self, network: torch.nn.Module, layer: str):
        if layer not in dict(network.named_modules()):
            raise ValueError(f"no module {layer!r} in {type(network).__name__} for Grad-CAM; its top-level modules: "
                             f"{', '.join(name for name, _ in network.named_children())}")
        self.cam = GradCAM(ClassLogits(network).train(network.training), target_layers=f"network.{layer}")

    def __call__(self, image: torch.Tensor, class_index: int | None = None) -> torch.Tensor:
        """The map of ``image`` (1, C, H, W) for ``class_index`` (default: the predicted class): (H, W) in [0, 1]."""
        with torch.enable_grad():
            return self.cam(image, class_idx=class_index)[0, 0].detach()


class GradCamPredictor:
    """A bundle ``Predictor`` seen through Grad-CAM of its classifier at ``layer``: the localisation reference
    for a classification-only model. Returns ``class_probabilities`` (softmax), ``probability`` (the map at
    the image size) and ``mask`` (the map ≥ ``threshold``); the bundle's postprocessing is not used."""

    def __init__(self, predictor, layer: str, threshold: float = 0.5):
        self.predictor, self.threshold = predictor, threshold
        self.cam = GradCam(predictor.network, layer)

    def __call__(self, image_path) -> dict:
        image = self.predictor.pre({"image": str(image_path)})["image"]
        batch = image[None].to(self.predictor.device)
        with torch.no_grad():
            probabilities = torch.softmax(ClassLogits(self.predictor.network)(batch)[0], dim=0)
        cam = self.cam(batch)
        size = [int(n) for n in image.meta["spatial_shape"]]
        cam = F.interpolate(cam[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]
        probability = np.ascontiguousarray(cam.cpu().numpy().T)  # PILReader's (W, H) back to (H, W)
        return {"class_probabilities": dict(zip(self.predictor.bundle.classes, probabilities.tolist())),
                "probability": probability, "mask": (probability >= self.threshold).astype(np.uint8)}


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
