"""A bundle's inference pipeline as a MONAI Label infer task."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch
from monailabel.interfaces.tasks.infer_v2 import InferType
from monailabel.tasks.infer.basic_infer import BasicInferTask

from breastlab.bundle import Bundle, as_image_array
from breastlab.imageio import write_png


class BundleInferTask(BasicInferTask):
    """Serves ``bundle``: its transforms and inferer, and the last of ``weights`` that exists
    (the bundle's own weights, then the fine-tuned ones the app's train task writes).

    MONAI Label reloads the network whenever the weights file changes, so fine-tuned weights are used
    by the next request without a restart.
    """

    def __init__(self, bundle: Bundle, weights: list[Path]):
        super().__init__(
            path=[str(p) for p in weights],  # MONAI Label uses the last one that exists
            network=bundle.network(),
            type=InferType(bundle.task),
            labels=bundle.labels,
            dimension=2,
            description=bundle.description,
            load_strict=True,
            config={"device": "cuda" if torch.cuda.is_available() else "cpu"},
        )
        self.bundle = bundle

    def pre_transforms(self, data=None):
        return self.bundle.transforms("preprocessing")

    def inferer(self, data=None):
        return self.bundle.inferer()

    def inverse_transforms(self, data=None):
        return []

    def post_transforms(self, data=None):
        return self.bundle.transforms("postprocessing")

    def writer(self, data, extension=None, dtype=None):
        """The mask as a 0/1 PNG at the original image size, plus a JSON summary."""
        mask = as_image_array(data["pred"]).astype("uint8")
        probability = as_image_array(data["prob"])
        with tempfile.NamedTemporaryFile(suffix=".png", delete=False) as tmp:
            path = write_png(mask, tmp.name)
        summary = {
            "bundle": self.bundle.name,
            "height": int(mask.shape[0]),
            "width": int(mask.shape[1]),
            "lesion_pixels": int(mask.sum()),
            "lesion_probability": round(float(probability.max()), 4),
            "weights": self._weights_info(),
        }
        return str(path), summary

    def _weights_info(self) -> dict:
        """Which weights file answered, and when it was written (changes after each training run)."""
        path = Path(self.get_path())
        return {"file": path.name, "modified": os.stat(path).st_mtime}
