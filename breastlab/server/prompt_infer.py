"""A promptable bundle (LiteMedSAM) as a MONAI Label infer task: the image is encoded once and kept
(``EmbeddingCache``), each box or click request is one decoder pass."""

from __future__ import annotations

import torch
from monai.transforms import Compose

from breastlab.engines.prompting import (
    Automatic,
    automatic_box,
    automatic_source,
    decode_prompts,
    empty_logits,
    encode_image,
)
from breastlab.server.embeddings import EmbeddingCache, file_key
from breastlab.server.infer import BundleInferTask
from breastlab.transforms.prompts import has_prompt


class PromptInferTask(BundleInferTask):
    """Serves a bundle whose network has ``encode(image)`` and ``decode(embedding, box, points, labels)``.

    Requests carry ``roi`` and/or ``foreground``/``background`` points (``breastlab.transforms.prompts``); one without
    any prompt gets the automatic mask: the bundle's own (``Automatic``), or a box from its ``automatic_source``
    (another bundle's largest lesion region) where it names one. ``cache_size`` embeddings are kept."""

    def __init__(self, bundle, weights, cache_size: int = 50):
        super().__init__(bundle, weights)
        self.embeddings = EmbeddingCache(cache_size)
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
        if not has_prompt(data) and self.bundle.inference.get("automatic_source") is None:
            return self.own_automatic(data, device)
        if not has_prompt(data) and not self.automatic_prompt(data):
            data[self.output_label_key] = empty_logits(data["image"])  # the automatic source found no lesion
            data["predicted_iou"], data["embedding"] = None, "not needed"
            return data
        network = self._get_network(device, data)
        embedding = self.cached_embedding(network, data, data["image"])
        logits, iou = decode_prompts(network, self.inferer(), embedding, data)
        data[self.output_label_key] = logits[0]
        data["predicted_iou"] = float(iou)
        return data

    def cached_embedding(self, network, data: dict, image: torch.Tensor, variant: str = "") -> torch.Tensor:
        key = self.embedding_key(data["image_path"], variant)
        data["embedding"] = "cached" if key in self.embeddings else "computed"
        return self.embeddings.get(key, lambda: self.encode(network, image))

    def own_automatic(self, data: dict, device: str) -> dict:
        """The bundle's own automatic mask; with ``automatic_flip`` the flipped image's embedding is kept too."""
        network, automatic = self._get_network(device, data), Automatic.of(self.bundle)
        flipped = self.cached_embedding(network, data, data["image"].flip(-1), "flipped") if automatic.flip else None
        embedding = self.cached_embedding(network, data, data["image"])
        logits, box = automatic(network, self.inferer(), embedding, flipped)
        data[self.output_label_key], data["predicted_iou"] = logits[0], None
        if box is not None:
            scale = data["image"].shape[-1] / max(data["image"].meta["spatial_shape"])
            data["automatic_roi"] = [int(round(v / scale)) for v in box]
        return data

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
        """The mask, and in the JSON result the decoder's predicted IoU, whether the embedding was cached and, in the
        automatic mode, the box it took (``automatic_roi``, image pixels)."""
        path, summary = super().writer(data, extension, dtype)
        automatic = {"automatic_roi": data["automatic_roi"]} if "automatic_roi" in data else {}
        iou = data["predicted_iou"]
        return path, {**summary, "predicted_iou": None if iou is None else round(iou, 4),
                      "embedding": data["embedding"], **automatic}

    def _device(self) -> str:
        return self._config.get("device", "cpu")
