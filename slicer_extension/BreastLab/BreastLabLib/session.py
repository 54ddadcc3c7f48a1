"""One image at a time from the server in a MRML scene: the logic behind the module's buttons."""

from __future__ import annotations

import numpy as np

from . import mrml
from .client import BreastLabClient

FOREGROUND_COLOR = (0.2, 0.9, 0.3)
BACKGROUND_COLOR = (0.9, 0.2, 0.2)
BOX_COLOR = (0.3, 0.6, 1.0)


class AnnotationSession:
    """The current image's volume, lesion segment, box, click lists and saliency overlay, kept in ``scene``."""

    def __init__(self, client: BreastLabClient, scene):
        self.client = client
        self.scene = scene
        self.image_id: str | None = None
        self.volume = self.segmentation = self.segment_id = self.overlay = None
        self.foreground = mrml.add_point_list(scene, "BreastLab foreground", FOREGROUND_COLOR)
        self.background = mrml.add_point_list(scene, "BreastLab background", BACKGROUND_COLOR)
        self.box = mrml.add_box(scene, "BreastLab box", BOX_COLOR)

    def load(self, image_id: str):
        """Download the image, show it with an empty lesion segment; replaces the previous image's nodes."""
        image = self.client.image(image_id)
        self.close()
        self.volume = mrml.add_image_volume(self.scene, image, image_id)
        self.segmentation, self.segment_id = mrml.add_segmentation(self.scene, self.volume)
        self.image_id = image_id
        mrml.show_layers(self.scene, self.volume)
        return self.volume

    def load_next(self, strategy: str) -> str | None:
        """Load the strategy's next image; None (and nothing changes) when every image is labelled."""
        sample = self.client.next_sample(strategy)
        if sample is None:
            return None
        self.load(sample["id"])
        return sample["id"]

    def segment(self, model: str) -> dict:
        """Run a segmentation model on the image; the lesion segment becomes its mask. The model's JSON result:
        ``lesion_pixels``, and ``probabilities`` from a model that also classifies."""
        mask, result = self.client.segment_and_summarize(model, self._loaded())
        return {**result, "lesion_pixels": self._set_mask(mask)}

    def refine(self, model: str) -> int:
        """Run an interactive model with the box drawn around the lesion (promptable models) and the
        foreground/background points placed on the image. Lesion pixels."""
        image_id = self._loaded()
        foreground = mrml.pixel_points(self.foreground, self.volume)
        background = mrml.pixel_points(self.background, self.volume)
        box = mrml.pixel_box(self.box, self.volume)
        return self._set_mask(self.client.segment(model, image_id, foreground, background, box))

    def classify(self, model: str) -> dict[str, float]:
        return self.client.classify(model, self._loaded())

    def show_saliency(self, model: str, opacity: float):
        saliency = self.client.saliency(model, self._loaded())
        self.overlay = mrml.show_saliency(self.scene, self.volume, saliency, opacity, self.overlay)
        return self.overlay

    def set_overlay_opacity(self, opacity: float) -> None:
        mrml.set_overlay_opacity(self.scene, opacity)

    def mask(self) -> np.ndarray:
        """The lesion segment as a 0/1 (rows, columns) array."""
        self._loaded()
        return mrml.segment_mask(self.segmentation, self.segment_id, self.volume)

    def image_info(self) -> dict:
        return self.client.image_info(self._loaded())

    def save(self, image_class: str = "", birads: str = "") -> dict:
        """Save the lesion mask as the final label and the class / BI-RADS (those given) as image and label info."""
        info = {key: value for key, value in (("class", image_class), ("birads", birads)) if value}
        self.client.save_label(self._loaded(), self.mask(), info)
        if info:
            self.client.set_image_info(self.image_id, info)
        return info

    def clear_points(self) -> None:
        """Remove the clicks and the box."""
        self.foreground.RemoveAllControlPoints()
        self.background.RemoveAllControlPoints()
        self.box.RemoveAllControlPoints()

    def close(self) -> None:
        """Remove the current image's nodes (the point lists and the box stay, emptied)."""
        for node in (self.overlay, self.segmentation, self.volume):
            if node is not None:
                mrml.remove_node(node)
        self.volume = self.segmentation = self.segment_id = self.overlay = self.image_id = None
        self.clear_points()

    def end(self) -> None:
        """Close, and remove the point lists and the box too: the session leaves no node in the scene."""
        self.close()
        for node in (self.foreground, self.background, self.box):
            mrml.remove_node(node)

    def _set_mask(self, mask: np.ndarray) -> int:
        mrml.set_segment_mask(self.segmentation, self.segment_id, mask, self.volume)
        return int(np.count_nonzero(mask))

    def _loaded(self) -> str:
        if self.image_id is None:
            raise RuntimeError("load an image first (Next sample or an image id)")
        return self.image_id
