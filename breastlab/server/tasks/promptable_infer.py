"""A promptable bundle (LiteMedSAM) as a MONAI Label infer task: the image is encoded once and kept
(``EmbeddingCache``), each box or click request is one decoder pass, and each annotator's answers on an image are
kept (``AnnotationHistory``): the last is the previous mask the next click refines, ``undo`` steps back."""

from __future__ import annotations

import threading
from collections import OrderedDict

import torch
from monai.transforms import Compose

from breastlab.engines.promptable import (
    AnnotationHistory,
    Automatic,
    automatic_box,
    automatic_source,
    decode_prompts,
    empty_logits,
    encode_image,
)
from breastlab.server.http import errors
from breastlab.server.tasks.embeddings import EmbeddingCache, file_key
from breastlab.server.tasks.infer import BundleInferTask
from breastlab.transforms.prompts import has_prompt


class PromptInferTask(BundleInferTask):
    """Serves a bundle whose network has ``encode(image)`` and ``decode(embedding, box, points, labels, mask)``.

    Requests carry ``roi`` and/or ``foreground``/``background`` points (``breastlab.transforms.prompts``); one without
    any prompt gets the automatic mask: the bundle's own (``Automatic``), or a box from its ``automatic_source``
    (another bundle's largest lesion region) where it names one. A click refines the last answer to the same client
    on the same image and box (or the ``mask`` the client sent); ``reset: true`` starts afresh, ``undo: true`` gives
    back the answer before the last. ``cache_size`` embeddings and ``annotations`` histories are kept."""

    def __init__(self, bundle, weights, cache_size: int = 50, annotations: int = 64):
        super().__init__(bundle, weights)
        self.embeddings = EmbeddingCache(cache_size)
        self.annotations: OrderedDict[tuple, AnnotationHistory] = OrderedDict()
        self.max_annotations, self._annotations_lock = annotations, threading.Lock()
        self._source = None

    def embedding_key(self, image_path: str, variant: str = "") -> tuple:
        """The image file, the weights and the variant of the input (``flipped`` for test-time flips)."""
        weights = self.get_path()
        return file_key(image_path), file_key(weights) if weights else None, variant

    def encode(self, network, image: torch.Tensor) -> torch.Tensor:
        return encode_image(network, self.inferer(), image.to(self._device()))

    def prefetch(self, image_path: str) -> None:
        """Start computing ``image_path``'s embedding in the background (a later request waits for it)."""
        network = self._get_network(self._device(), None)
        pre = Compose(self.pre_transforms())
        self.embeddings.prefetch(self.embedding_key(image_path),
                                 lambda: self.encode(network, pre({"image": image_path})["image"]))

    def run_inferer(self, data, convert_to_batch=True, device="cpu"):
        annotation = self.annotation(data)
        if flag(data, "undo"):
            return self.undone(data, annotation)
        if flag(data, "reset"):
            annotation.clear()
        clicked = bool(data.get("foreground") or data.get("background"))
        data["previous_mask"] = annotation.previous(data.get("roi"), clicked, data.get("previous_mask"))
        if has_prompt(data) or data["previous_mask"] is not None:
            self.decoded(data, device)
        elif self.bundle.inference.get("automatic_source") is None:
            self.own_automatic(data, device)
        elif not self.automatic_prompt(data):
            data[self.output_label_key] = empty_logits(data["image"])  # the automatic source found no lesion
            data["predicted_iou"], data["embedding"] = None, "not needed"
        else:
            self.decoded(data, device)
        annotation.push(data[self.output_label_key], data.get("foreground") or [], data.get("background") or [])
        data["history"] = len(annotation)
        return data

    def decoded(self, data: dict, device: str) -> None:
        network = self._get_network(device, data)
        embedding = self.cached_embedding(network, data, data["image"])
        logits, iou = decode_prompts(network, self.inferer(), embedding, data)
        data[self.output_label_key], data["predicted_iou"] = logits[0], float(iou)

    def annotation(self, data: dict) -> AnnotationHistory:
        """The history of this image (file) and client; the least recently used is forgotten beyond the limit."""
        key = file_key(data["image_path"]), str(data.get("client_id") or "")
        with self._annotations_lock:
            history = self.annotations.pop(key, None) or AnnotationHistory()
            self.annotations[key] = history
            while len(self.annotations) > self.max_annotations:
                self.annotations.popitem(last=False)
            return history

    def undone(self, data: dict, annotation: AnnotationHistory) -> dict:
        """The answer before the last (its clicks too, so that post-processing honours them as it did), or an empty
        mask when the annotation is back at its start; 409 when no answer is kept."""
        try:
            answer = annotation.undo()
        except LookupError as e:
            raise errors.conflict(str(e)) from e
        logits = empty_logits(data["image"]) if answer is None else answer.logits.float()
        data["foreground"], data["background"] = ([], []) if answer is None else (answer.foreground,
                                                                                  answer.background)
        data[self.output_label_key], data["predicted_iou"], data["embedding"] = logits, None, "not needed"
        data["history"], data["undone"] = len(annotation), True
        return data

    def cached_embedding(self, network, data: dict, image: torch.Tensor, variant: str = "") -> torch.Tensor:
        key = self.embedding_key(data["image_path"], variant)
        data["embedding"] = "cached" if key in self.embeddings else "computed"
        return self.embeddings.get(key, lambda: self.encode(network, image))

    def own_automatic(self, data: dict, device: str) -> None:
        """The bundle's own automatic mask; with ``automatic_flip`` the flipped image's embedding is kept too."""
        network, automatic = self._get_network(device, data), Automatic.of(self.bundle)
        flipped = self.cached_embedding(network, data, data["image"].flip(-1), "flipped") if automatic.flip else None
        embedding = self.cached_embedding(network, data, data["image"])
        logits, box = automatic(network, self.inferer(), embedding, flipped)
        data[self.output_label_key], data["predicted_iou"] = logits[0], None
        if box is not None:
            scale = data["image"].shape[-1] / max(data["image"].meta["spatial_shape"])
            data["automatic_roi"] = [int(round(v / scale)) for v in box]

    def automatic_prompt(self, data: dict) -> bool:
        """Put the automatic box from ``automatic_source`` into ``data`` (network pixels); False when the source
        finds no lesion."""
        self._source = self._source or automatic_source(self.bundle)
        roi = automatic_box(self._source, data["image_path"])
        if roi is None:
            return False
        scale = data["image"].shape[-1] / max(data["image"].meta["spatial_shape"])
        data["box"] = torch.tensor(roi, dtype=torch.float32) * scale
        data["automatic_roi"] = [int(v) for v in roi]
        return True

    def writer(self, data, extension=None, dtype=None):
        """The mask, and in the JSON result the decoder's predicted IoU, whether the embedding was cached, how many
        answers are kept for undo (``history``), ``undone`` after an undo and, in the automatic mode, the box it took
        (``automatic_roi``, image pixels)."""
        path, summary = super().writer(data, extension, dtype)
        extra = {key: data[key] for key in ("automatic_roi", "undone") if key in data}
        iou = data["predicted_iou"]
        return path, {**summary, "predicted_iou": None if iou is None else round(iou, 4),
                      "embedding": data["embedding"], "history": data["history"], **extra}

    def _device(self) -> str:
        return self._config.get("device", "cpu")


def flag(data: dict, name: str) -> bool:
    """A true/false request parameter (absent: false); 422 for anything else."""
    value = data.get(name)
    if value is not None and not isinstance(value, bool):
        raise errors.unprocessable(f"{name} must be true or false, not {value!r}")
    return bool(value)
