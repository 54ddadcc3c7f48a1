"""One image at a time from the server in a MRML scene: the logic behind the module's buttons."""

from __future__ import annotations

from collections import deque

import numpy as np

from . import mrml
from .client import BreastLabClient
from .history import MAX_STEPS, AIStep, Prompts, keeps_history, mask_to_send, undo_mask
from .results import BiradsSuggestion
from .review import given_labels

FOREGROUND_COLOR = (0.2, 0.9, 0.3)
BACKGROUND_COLOR = (0.9, 0.2, 0.2)
BOX_COLOR = (0.3, 0.6, 1.0)


class AnnotationSession:
    """The current image's volume, lesion segment, box, click lists and saliency overlay, kept in ``scene``, the
    AI steps on it (``steps``, the latest last) for ``undo``, the promptable model's last answer that its server
    keeps (``server_answer``: model and mask; None: the next request starts the server's history afresh), and the
    BI-RADS suggestion of the last model that classified the image (``suggestion``; ``save`` never reads it) and the
    reviewer's ``comment`` on an image returned to this reader."""

    def __init__(self, client: BreastLabClient, scene):
        self.client = client
        self.scene = scene
        self.image_id: str | None = None
        self.volume = self.segmentation = self.segment_id = self.overlay = None
        self.foreground = mrml.add_point_list(scene, "BreastLab foreground", FOREGROUND_COLOR)
        self.background = mrml.add_point_list(scene, "BreastLab background", BACKGROUND_COLOR)
        self.box = mrml.add_box(scene, "BreastLab box", BOX_COLOR)
        self.steps: deque[AIStep] = deque(maxlen=MAX_STEPS)
        self.server_answer: tuple[str, np.ndarray] | None = None
        self.suggestion: BiradsSuggestion | None = None
        self.comment: str | None = None
        self._promptable: set[str] | None = None  # models that refine a mask sent with the clicks (from /info/)

    def load(self, image_id: str):
        """Download the image, show it with an empty lesion segment; replaces the previous image's nodes."""
        image = self.client.image(image_id)
        self.close()
        self.volume = mrml.add_image_volume(self.scene, image, image_id)
        self.segmentation, self.segment_id = mrml.add_segmentation(self.scene, self.volume)
        self.image_id = image_id
        mrml.show_layers(self.scene, self.volume)
        return self.volume

    def load_next(self, strategy: str, reader: str = "") -> str | None:
        """Load the strategy's next image for ``reader`` (sent when given); None (and nothing changes) when none is
        left. An image the reviewer returned to this reader comes with its ``comment`` and the reader's own mask."""
        sample = self.client.next_sample(strategy, **({"reader": reader} if reader else {}))
        if sample is None:
            return None
        self.load(sample["id"])
        if sample.get("status") == "returned" and reader in sample.get("readers", ()):
            self._set_mask(self.client.reader_label(sample["id"], reader))
        self.comment = sample.get("comment")
        return sample["id"]

    def segment(self, model: str) -> dict:
        """Run a segmentation model on the image; the lesion segment becomes its mask (an AI step). The model's JSON
        result: ``lesion_pixels``, and ``probabilities`` from a model that also classifies (whose BI-RADS suggestion,
        or None, replaces the last)."""
        mask, result = self.client.segment_and_summarize(model, self._loaded())
        if "probabilities" in result:
            self.suggestion = BiradsSuggestion.from_result(result)
        prompts = self._prompts(mrml.pixel_box(self.box, self.volume))
        return {**result, "lesion_pixels": self._apply(model, mask, result, prompts, prompts)}

    def refine(self, model: str) -> int:
        """Run an interactive model with the box drawn around the lesion (promptable models) and the
        foreground/background points placed on the image; its mask replaces the segment (an AI step). Clicks refine
        the segment as it is: where it is not the server's last answer (edited by hand, or another model's) it goes
        with them. Lesion pixels."""
        image_id = self._loaded()
        points = mrml.pixel_points(self.foreground, self.volume), mrml.pixel_points(self.background, self.volume)
        box = mrml.pixel_box(self.box, self.volume)
        current = self.mask() > 0
        answer = self.server_answer[1] if self.server_answer and self.server_answer[0] == model else None
        sent = mask_to_send(current, answer) if any(points) and self.promptable(model) else None
        reset = sent is None and (answer is None or not np.array_equal(current, answer))
        mask, result = self.client.segment_and_summarize(model, image_id, *points, box, reset, sent)
        before = self.steps[-1].prompts if self.steps else Prompts()
        return self._apply(model, mask, result, before, self._prompts(box))

    def promptable(self, model: str) -> bool:
        """Whether ``model`` takes a box and a mask to refine (the server's ``/info/``, read once)."""
        if self._promptable is None:
            self._promptable = set(self.client.info().promptable_models())
        return model in self._promptable

    def undo(self) -> int | None:
        """Undo the last AI step: the segment goes back to what it was before the step, except the pixels edited by
        hand since, which keep their value; the click or box the step added is removed and a promptable model's
        server drops its answer too. Lesion pixels; None (nothing changes) when there is no AI step to undo."""
        if self.image_id is None or not self.steps:
            return None
        step = self.steps.pop()
        pixels = self._set_mask(undo_mask(step, self.mask()))
        foreground, background, box = step.added_prompts()
        for points, count in ((self.foreground, foreground), (self.background, background)):
            for _ in range(min(count, points.GetNumberOfControlPoints())):
                points.RemoveNthControlPoint(points.GetNumberOfControlPoints() - 1)
        if box:
            self.box.RemoveAllControlPoints()
        if step.synced:
            self.server_answer = None  # unless the server gives the answer before back: the next click starts afresh
            answer = self.client.undo(step.model, self.image_id)
            if answer is not None and answer[1].get("history"):
                self.server_answer = step.model, answer[0] > 0
        return pixels

    def classify(self, model: str) -> dict[str, float]:
        """The model's class probabilities; its BI-RADS suggestion (None from a model without one) replaces the last."""
        probabilities, result = self.client.classify_and_summarize(model, self._loaded())
        self.suggestion = BiradsSuggestion.from_result(result)
        return probabilities

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

    def save(self, image_class: str = "", birads: str = "", reader: str = "") -> dict:
        """Save the lesion mask as ``reader``'s label (default: the server's user) with the class / BI-RADS (those
        given) as its info; the server decides the final label and the image's class (one reader's, or a review's)."""
        info = given_labels(image_class, birads)
        self.client.save_label(self._loaded(), self.mask(), info, reader=reader or None)
        return info

    def clear_points(self) -> None:
        """Remove the clicks and the box, and forget the AI steps (nothing left to undo)."""
        self.foreground.RemoveAllControlPoints()
        self.background.RemoveAllControlPoints()
        self.box.RemoveAllControlPoints()
        self.steps.clear()
        self.server_answer = None

    def close(self) -> None:
        """Remove the current image's nodes (the point lists and the box stay, emptied)."""
        for node in (self.overlay, self.segmentation, self.volume):
            if node is not None:
                mrml.remove_node(node)
        self.volume = self.segmentation = self.segment_id = self.overlay = self.image_id = self.suggestion = None
        self.comment = None
        self.clear_points()

    def end(self) -> None:
        """Close, and remove the point lists and the box too: the session leaves no node in the scene."""
        self.close()
        for node in (self.foreground, self.background, self.box):
            mrml.remove_node(node)

    def _apply(self, model: str, mask: np.ndarray, result: dict, prompts_before: Prompts, prompts: Prompts) -> int:
        """Replace the segment with an AI result's ``mask`` and keep the step for undo."""
        before, synced = self.mask() > 0, keeps_history(result)
        pixels = self._set_mask(mask)
        self.steps.append(AIStep(model, before, mask > 0, prompts_before, prompts, synced))
        if synced:
            self.server_answer = model, mask > 0
        return pixels

    def _prompts(self, box: list[int] | None) -> Prompts:
        return Prompts(self.foreground.GetNumberOfControlPoints(), self.background.GetNumberOfControlPoints(),
                       None if box is None else tuple(box))

    def _set_mask(self, mask: np.ndarray) -> int:
        mrml.set_segment_mask(self.segmentation, self.segment_id, mask, self.volume)
        return int(np.count_nonzero(mask))

    def _loaded(self) -> str:
        if self.image_id is None:
            raise RuntimeError("load an image first (Next sample or an image id)")
        return self.image_id
