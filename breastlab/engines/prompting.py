"""Running a promptable network (``encode(image)`` once, ``decode(embedding, box, points, labels)`` per prompt) on
what :class:`breastlab.transforms.PromptsToNetworkd` left in a data dict; shared by the server and evaluation."""

from __future__ import annotations

from pathlib import Path

import torch

from breastlab.bundle import Predictor, get_bundle, prediction_outputs
from breastlab.explain.saliency import top_boxes

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


def empty_logits(image: torch.Tensor) -> torch.Tensor:
    """Logits of "no lesion anywhere" for one preprocessed image (C, H, W): what an automatic prompt without a box
    decodes to."""
    return torch.full((1, *image.shape[1:]), -20.0)


def automatic_source(bundle) -> Predictor | None:
    """The predictor of the segmentation bundle a promptable bundle takes its automatic box from (its inference
    config's ``automatic_source``), if it names one."""
    name = bundle.inference.get("automatic_source")
    return get_bundle(name).predictor() if name else None


def automatic_box(source: Predictor, image_path: str | Path) -> list[float] | None:
    """``[x0, y0, x1, y1]`` around the largest lesion region of ``source``'s mask (after its own gate), None
    without one."""
    boxes = top_boxes(source(image_path)["mask"].astype("float32"), threshold=0.5, k=1)
    if not boxes:
        return None
    x0, y0, x1, y1 = boxes[0]["box"]  # max exclusive
    return [x0, y0, max(x1 - 1, x0 + 1), max(y1 - 1, y0 + 1)]


class PromptedPredictor:
    """A promptable bundle's ``Predictor`` called with prompts; the last image's embedding is kept, so the prompts
    of one image (a box, then clicks) cost one decoder pass each. Called without a prompt, it takes the box from
    ``source`` (automatic mode; an empty mask when the source finds no lesion)."""

    def __init__(self, predictor: Predictor, source: Predictor | None = None):
        self.predictor, self.source, self._image, self._embedding = predictor, source, None, None

    def __call__(self, image_path: str | Path, foreground=(), background=(), roi=None) -> dict:
        p = self.predictor
        if roi is None and not foreground and not background and self.source is not None:
            roi = automatic_box(self.source, image_path)
            if roi is None:
                return self._empty(image_path)
        data = p.pre({"image": str(image_path), "roi": roi, "foreground": list(foreground),
                      "background": list(background)})
        if self._image != str(image_path):
            self._embedding = encode_image(p.network, p.inferer, data["image"].to(p.device))
            self._image = str(image_path)
        data["pred"] = decode_prompts(p.network, p.inferer, self._embedding, data)[0][0]
        return prediction_outputs(p.post(data), p.bundle.classes)

    def _empty(self, image_path: str | Path) -> dict:
        data = self.predictor.pre({"image": str(image_path)})
        data["pred"] = empty_logits(data["image"])
        return prediction_outputs(self.predictor.post(data), self.predictor.bundle.classes)
