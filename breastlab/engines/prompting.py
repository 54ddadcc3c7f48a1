"""Running a promptable network (``encode(image)`` once, ``decode(embedding, box, points, labels)`` per prompt) on
what :class:`breastlab.transforms.PromptsToNetworkd` left in a data dict; shared by the server and evaluation."""

from __future__ import annotations

from pathlib import Path

import torch

from breastlab.bundle import Predictor, prediction_outputs

PROMPT_INPUTS = (("box", "box"), ("points", "points"), ("labels", "point_labels"))  # decode argument, data key


@torch.no_grad()
def encode_image(network, inferer, image: torch.Tensor) -> torch.Tensor:
    """The embedding of one preprocessed image (C, H, W), run by ``inferer`` (its precision)."""
    return inferer(image[None], network.encode)


@torch.no_grad()
def decode_prompts(network, inferer, embedding: torch.Tensor, data: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (1, 1, H, W) and predicted IoU (1, 1) for the prompts in ``data``."""
    prompts = {arg: data[key][None].to(embedding.device) if key in data else None for arg, key in PROMPT_INPUTS}
    return inferer(embedding, lambda e: network.decode(e, **prompts))


class PromptedPredictor:
    """A promptable bundle's ``Predictor`` called with prompts; the last image's embedding is kept, so the prompts
    of one image (a box, then clicks) cost one decoder pass each."""

    def __init__(self, predictor: Predictor):
        self.predictor, self._image, self._embedding = predictor, None, None

    def __call__(self, image_path: str | Path, foreground=(), background=(), roi=None) -> dict:
        p = self.predictor
        data = p.pre({"image": str(image_path), "roi": roi, "foreground": list(foreground),
                      "background": list(background)})
        if self._image != str(image_path):
            self._embedding = encode_image(p.network, p.inferer, data["image"].to(p.device))
            self._image = str(image_path)
        data["pred"] = decode_prompts(p.network, p.inferer, self._embedding, data)[0][0]
        return prediction_outputs(p.post(data), p.bundle.classes)
