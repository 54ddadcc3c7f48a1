"""Running a promptable network (``encode(image)`` once, ``decode(embedding, box, points, labels)`` per prompt) on
what :class:`breastlab.transforms.PromptsToNetworkd` left in a data dict; shared by the server and evaluation."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import torch

from breastlab.bundle import Predictor, get_bundle, prediction_outputs
from breastlab.explain.saliency import top_boxes
from breastlab.transforms.gates import lesion_present
from breastlab.transforms.prompts import mask_prompt

EMPTY_LOGIT = -20.0  # "no lesion here"
PROMPT_INPUTS = (("box", "box"), ("points", "points"), ("labels", "point_labels"),
                 ("mask", "previous_mask"))  # decode argument, data key


@torch.no_grad()
def encode_image(network, inferer, image: torch.Tensor) -> torch.Tensor:
    """The embedding of one preprocessed image (C, H, W), run by ``inferer`` (its precision), as float16: half the
    memory in a cache, and what the decoder is trained on (``EmbedImaged``)."""
    return inferer(image[None], network.encode).half()


@torch.no_grad()
def decode_prompts(network, inferer, embedding: torch.Tensor, data: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (1, 1, H, W) and predicted IoU (1, 1) for the prompts in ``data``."""
    prompts = {arg: None if data.get(key) is None else data[key][None].to(embedding.device)
               for arg, key in PROMPT_INPUTS}
    return inferer(embedding.float(), lambda e: network.decode(e, **prompts))


def empty_logits(image: torch.Tensor) -> torch.Tensor:
    """Logits of "no lesion anywhere" for one preprocessed image (C, H, W): what an automatic prompt without a box
    decodes to."""
    return torch.full((1, *image.shape[1:]), EMPTY_LOGIT)


def automatic_source(bundle) -> Predictor | None:
    """The predictor of the segmentation bundle a promptable bundle takes its automatic box from (its inference
    config's ``automatic_source``), if it names one."""
    name = bundle.inference.get("automatic_source")
    return get_bundle(name).predictor() if name else None


def automatic_box(source: Predictor, image_path: str | Path) -> list[float] | None:
    """``[x0, y0, x1, y1]`` around the largest lesion region of ``source``'s mask (after its own gate), None
    without one."""
    return region_box(source(image_path)["mask"].astype("float32"))


def region_box(probability, threshold: float = 0.5) -> list[float] | None:
    """``[x0, y0, x1, y1]`` (max inclusive) around the most confident region of a 2D map, None without one."""
    boxes = top_boxes(probability, threshold=threshold, k=1)
    if not boxes:
        return None
    x0, y0, x1, y1 = boxes[0]["box"]  # max exclusive
    return [x0, y0, max(x1 - 1, x0 + 1), max(y1 - 1, y0 + 1)]


@dataclass(frozen=True)
class Automatic:
    """How a promptable network's own automatic mask is made (a bundle's inference config, keys ``automatic_*`` and
    ``gate_*``): the unprompted decoder's mask, the mean with the horizontally flipped image's (``flip``); then
    (``refine``) a box around its most confident region decoded as if the annotator had drawn it; an image whose
    mask peaks below ``min_peak`` or covers less than ``min_fraction`` of the network input gets an empty mask."""

    flip: bool = False
    refine: bool = False
    min_peak: float = 0.0
    min_fraction: float = 0.0

    @classmethod
    def of(cls, bundle) -> Automatic:
        config = bundle.inference
        return cls(bool(config.get("automatic_flip", False)), bool(config.get("automatic_refine", False)),
                   float(config.get("gate_min_peak", 0.0)), float(config.get("gate_min_fraction", 0.0)))

    @torch.no_grad()
    def __call__(self, network, inferer, embedding: torch.Tensor,
                 flipped: torch.Tensor | None = None) -> tuple[torch.Tensor, list[float] | None]:
        """Logits (1, 1, H, W) of the automatic mask from an image's ``embedding`` (and, with ``flip``, the embedding
        of the flipped image), and the box it refined (network pixels), if any."""
        logits = self.unprompted(network, inferer, embedding, flipped)
        if not self.present(logits):
            return torch.full_like(logits, EMPTY_LOGIT), None
        return self.refined(network, inferer, embedding, flipped, logits)

    @torch.no_grad()
    def unprompted(self, network, inferer, embedding, flipped=None, box: torch.Tensor | None = None) -> torch.Tensor:
        """The decoder's logits without a prompt (or with ``box``), averaged with the flipped image's with ``flip``."""
        logits = inferer(embedding.float(), lambda e: network.decode(e, box=box)[0]).float()
        if self.flip:
            mirrored = None if box is None else torch.stack(
                [logits.shape[-1] - 1 - box[:, 2], box[:, 1], logits.shape[-1] - 1 - box[:, 0], box[:, 3]], 1)
            mirror = inferer(flipped.float(), lambda e: network.decode(e, box=mirrored)[0]).float()
            logits = (logits + mirror.flip(-1)) / 2
        return logits

    def present(self, logits: torch.Tensor) -> bool:
        """The gate: the unprompted mask peaks at ``min_peak`` or more and covers ``min_fraction`` of the input."""
        probability = torch.sigmoid(logits)
        return lesion_present(probability, probability > 0.5, self.min_peak, self.min_fraction)

    @torch.no_grad()
    def refined(self, network, inferer, embedding, flipped, logits) -> tuple[torch.Tensor, list[float] | None]:
        """With ``refine``, the box of the unprompted mask's most confident region decoded as a drawn box."""
        box = region_box(torch.sigmoid(logits)[0, 0].cpu().numpy()) if self.refine else None
        if box is None:
            return logits, None
        box_tensor = torch.tensor([box], dtype=torch.float32, device=logits.device)
        return self.unprompted(network, inferer, embedding, flipped, box_tensor), box


@dataclass
class Answer:
    """One answer of an annotation: the decoder's logits (1, H, W) in the network's frame (float16) and the clicks
    of the request, so that undo gives back exactly what was answered."""

    logits: torch.Tensor
    foreground: list = field(default_factory=list)
    background: list = field(default_factory=list)


class AnnotationHistory:
    """The answers of one annotation (one image, one annotator), newest last, at most ``depth``: the last is the
    previous-mask input of the next click; ``undo`` goes back one. A request without clicks (a box alone, the
    automatic mask), with another box, or with a mask of its own starts a new annotation."""

    def __init__(self, depth: int = 8):
        self.answers: deque[Answer] = deque(maxlen=depth)
        self.roi: tuple | None = None

    def __len__(self) -> int:
        return len(self.answers)

    def previous(self, roi, clicked: bool, sent: torch.Tensor | None = None) -> torch.Tensor | None:
        """The previous-mask input (1, H, W) of a request with the box ``roi`` (as the client sent it) and clicks
        (``clicked``): ``sent`` (a client's own mask, already a mask prompt) or the last answer of this annotation."""
        roi = None if roi is None else tuple(float(v) for v in roi)
        if sent is not None or not clicked or roi != self.roi:
            self.clear()
        self.roi = roi
        if sent is not None or not self.answers:
            return sent
        return mask_prompt(self.answers[-1].logits[None] > 0)[0]

    def push(self, logits: torch.Tensor, foreground=(), background=()) -> None:
        self.answers.append(Answer(logits.detach().half().cpu(), list(foreground), list(background)))

    def clear(self) -> None:
        self.answers.clear()

    def undo(self) -> Answer | None:
        """Forget the last answer and return the one before it (None: the annotation is back to its start);
        ``LookupError`` when there is nothing to undo."""
        if not self.answers:
            raise LookupError("nothing to undo: no AI answer kept for this image")
        self.answers.pop()
        return self.answers[-1] if self.answers else None


class PromptedPredictor:
    """A promptable bundle's ``Predictor`` called with prompts; the last image's embedding and its annotation
    (``AnnotationHistory``) are kept, so the prompts of one image (a box, then clicks) cost one decoder pass each and
    each click refines the previous answer. Called without a prompt, it gives the automatic mask: a box from
    ``source`` where the bundle names one (an empty mask when the source finds no lesion), else its own
    (``Automatic``). ``mask`` (the image's size, rows x columns) starts the clicks from a mask of the caller's."""

    def __init__(self, predictor: Predictor, source: Predictor | None = None):
        self.predictor, self.source, self._image, self._embedding = predictor, source, None, None
        self.automatic = Automatic.of(predictor.bundle)
        self.history = AnnotationHistory()

    def reset(self) -> None:
        """Start a new annotation of the current image (the next click has no previous mask)."""
        self.history = AnnotationHistory()

    def __call__(self, image_path: str | Path, foreground=(), background=(), roi=None, mask=None) -> dict:
        p = self.predictor
        prompted = roi is not None or foreground or background
        box = roi
        if not prompted and mask is None and self.source is not None:
            box = automatic_box(self.source, image_path)
            if box is None:
                self.reset()
                return self._empty(image_path)
        data = p.pre({"image": str(image_path), "roi": box, "foreground": list(foreground),
                      "background": list(background), "mask": mask})
        if self._image != str(image_path):
            self._embedding = encode_image(p.network, p.inferer, data["image"].to(p.device))
            self._image, self.history = str(image_path), AnnotationHistory()
        data["previous_mask"] = self.history.previous(roi, bool(foreground or background), data.get("previous_mask"))
        if box is not None or foreground or background or data["previous_mask"] is not None:
            data["pred"] = decode_prompts(p.network, p.inferer, self._embedding, data)[0][0]
        else:
            flipped = (encode_image(p.network, p.inferer, data["image"].flip(-1).to(p.device))
                       if self.automatic.flip else None)
            data["pred"] = self.automatic(p.network, p.inferer, self._embedding, flipped)[0][0]
        self.history.push(data["pred"], foreground, background)
        return prediction_outputs(p.post(data), p.bundle.classes)

    def _empty(self, image_path: str | Path) -> dict:
        data = self.predictor.pre({"image": str(image_path)})
        data["pred"] = empty_logits(data["image"])
        return prediction_outputs(self.predictor.post(data), self.predictor.bundle.classes)
