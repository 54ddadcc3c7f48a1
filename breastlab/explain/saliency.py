"""Weak localisation: Grad-CAM of a classifier, and the top regions of any map as boxes."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from monai.visualize import GradCAM
from scipy import ndimage

from breastlab.data import NO_CANCER
from breastlab.networks.outputs import named_outputs
from breastlab.transforms.mammo import RestoreBreastd


class ClassLogits(torch.nn.Module):
    """A multi-output network (a dict, or packed) seen through its class logits (``cls``): what Grad-CAM needs."""

    def __init__(self, network: torch.nn.Module, key: str = "cls"):
        super().__init__()
        self.network, self.key = network, key

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        output = named_outputs(self.network, self.network(x))
        return output[self.key] if isinstance(output, dict) else output


def unit_range(cam: torch.Tensor) -> torch.Tensor:
    """Each map of a (B, 1, H, W) batch scaled from its (min, max) to (0, 1), the strongest evidence at 1 (MONAI's
    default Grad-CAM normaliser maps them to (1, 0), flipping the map); a constant map becomes zeros."""
    low = cam.amin(dim=(-2, -1), keepdim=True)
    span = cam.amax(dim=(-2, -1), keepdim=True) - low
    return torch.where(span > 0, (cam - low) / span.clamp_min(1e-12), torch.zeros_like(cam))


class GradCam:
    """MONAI's Grad-CAM of ``network`` at module ``layer`` (a name in ``network.named_modules()``), scaled to
    [0, 1] per image by :func:`unit_range`. Make one per network and reuse it: MONAI registers its hooks on the
    network for good. The network keeps its train/eval mode."""

    def __init__(self, network: torch.nn.Module, layer: str):
        if layer not in dict(network.named_modules()):
            raise ValueError(f"no module {layer!r} in {type(network).__name__} for Grad-CAM; its top-level modules: "
                             f"{', '.join(name for name, _ in network.named_children())}")
        self.cam = GradCAM(ClassLogits(network).train(network.training), target_layers=f"network.{layer}",
                           postprocessing=unit_range)

    def __call__(self, image: torch.Tensor, class_index: int | None = None) -> torch.Tensor:
        """The map of ``image`` (1, C, H, W) for ``class_index`` (default: the predicted class): (H, W) in [0, 1]."""
        with torch.enable_grad():
            return self.cam(image, class_idx=class_index)[0, 0].detach()


class GradCamPredictor:
    """A bundle ``Predictor`` seen through Grad-CAM of its classifier at ``layer``: the localisation reference
    for a classification-only model. Returns ``class_probabilities`` (softmax), ``probability`` (the map at
    the image size; put back into the breast box and side when the bundle crops and orients mammograms) and
    ``mask`` (the map ≥ ``threshold``); the bundle's postprocessing is not used. The map is of the predicted
    class, or with ``lesion_class`` of the most probable class other than ``normal`` and ``no_cancer`` (where is the
    finding)."""

    def __init__(self, predictor, layer: str, threshold: float = 0.5, lesion_class: bool = False):
        self.predictor, self.threshold, self.lesion_class = predictor, threshold, lesion_class
        self.cam = GradCam(predictor.network, layer)

    def __call__(self, image_path) -> dict:
        data = self.predictor.pre({"image": str(image_path)})
        batch = data["image"][None].to(self.predictor.device)
        with torch.no_grad():
            probabilities = torch.softmax(ClassLogits(self.predictor.network)(batch)[0], dim=0)
        classes = list(self.predictor.bundle.classes)
        target = None
        if self.lesion_class:
            findings = [i for i, name in enumerate(classes) if name not in ("normal", NO_CANCER)]
            target = findings[int(probabilities[findings].argmax())]
        cam = self.cam(batch, target)
        probability = np.ascontiguousarray(self._restore(data, cam).T)  # PILReader's (W, H) back to (H, W)
        return {"class_probabilities": dict(zip(classes, probabilities.tolist())),
                "probability": probability, "mask": (probability >= self.threshold).astype(np.uint8)}

    @staticmethod
    def _restore(data: dict, cam: torch.Tensor) -> np.ndarray:
        """The map at the original image size: through :class:`RestoreBreastd` for a cropped mammogram, else
        resized."""
        if "breast_box" in data:
            return RestoreBreastd("cam")({**data, "cam": cam[None].cpu()})["cam"][0].numpy()
        size = [int(n) for n in data["image"].meta["spatial_shape"]]
        return F.interpolate(cam[None, None], size=size, mode="bilinear", align_corners=False)[0, 0].cpu().numpy()


class UnitRangeMap:
    """A ``Predictor`` whose lesion map is scaled per image by :func:`unit_range` (its peak at 1) before the
    ``threshold``, as Grad-CAM's is: the map's localisation scored apart from its calibration, e.g. a GLAM map that
    ranks the lesion first but never reaches 0.5."""

    def __init__(self, predictor, threshold: float = 0.5):
        self.predictor, self.threshold = predictor, threshold

    def __call__(self, image_path) -> dict:
        output = self.predictor(image_path)
        probability = unit_range(torch.as_tensor(output["probability"], dtype=torch.float32)[None, None])[0, 0]
        mask = (probability >= self.threshold).numpy().astype(np.uint8)
        return {**output, "probability": probability.numpy(), "mask": mask}


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
    inside = labels > 0  # only the regions' pixels: ndimage.maximum sorts the whole map (25 ms at 761x572)
    peaks = np.zeros(n + 1, dtype=np.float32)
    np.maximum.at(peaks, labels[inside], values[inside])
    peaks, areas = peaks[1:], np.bincount(labels[inside], minlength=n + 1)[1:]
    slices = ndimage.find_objects(labels)
    order = sorted(range(n), key=lambda i: (-peaks[i], -areas[i]))[:k]
    return [{"box": [slices[i][1].start, slices[i][0].start, slices[i][1].stop, slices[i][0].stop],
             "score": round(float(peaks[i]), 4), "area": int(areas[i])} for i in order]
