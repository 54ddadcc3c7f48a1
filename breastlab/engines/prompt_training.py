"""Fine-tuning a promptable network's prompt encoder and mask decoder with simulated annotation, on image embeddings
computed once (the image encoder stays frozen), so that it trains on a CPU.

Each training batch simulates one annotation (as RITM / SimpleClick train): it starts from a box (the lesion's box,
each side jittered by up to ``box_jitter`` of its size), from clicks alone (the first at the centre of the largest
lesion) or from the automatic mask; 0 to ``max_rounds`` clicks follow without gradient, each at the centre of the
largest error of the model's own previous answer, which is an input of the next step (the previous mask, SAM's dense
prompt); the step with gradient learns the next click. With ``automatic_share`` > 0, that share of the batches has
no prompt at all: the decoder learns the automatic mask, on every image (one without a lesion must decode to an
empty mask). Validation scores a fixed 5 %-jittered box, the box and two clicks, three clicks alone and, when
trained, the automatic mask.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import numpy as np
import torch
from monai.engines.utils import IterationEvents
from monai.transforms import MapTransform

from breastlab.engines.distributed import average_gradients
from breastlab.engines.promptable import encode_image
from breastlab.evaluation.clicks import jittered_box
from breastlab.transforms.clicks import next_click
from breastlab.transforms.prompts import mask_prompt

STARTS = ("box", "clicks", "automatic mask")  # where a simulated annotation starts
AUTOMATIC = "automatic"  # no prompt: the automatic mask is learnt


class EmbedImaged(MapTransform):
    """Replaces the image path at ``keys`` by its embedding from the bundle's (frozen) image encoder, kept as float16
    ``.npy`` in ``folder`` under a digest of the image file's bytes, the encoder's weights and its precision: computed
    once per image, reused by every later run (any datalist works: a dataset folder's or the server's). Use the
    precision the bundle serves with, so that the decoder trains on the embeddings it will see. ``flip``: the
    embedding of the horizontally flipped network input (test-time flips, ``breastlab.engines.promptable``)."""

    def __init__(self, keys, bundle_root: str, folder: str, precision: str = "fp32", flip: bool = False):
        super().__init__(keys)
        self.bundle_root, self.folder, self.precision, self.flip = bundle_root, Path(folder), precision, flip
        self._encoder: tuple | None = None
        self._lock = threading.Lock()

    def encoder(self) -> tuple:
        """(network, preprocessing, inferer, weights digest), loaded once."""
        with self._lock:
            if self._encoder is None:
                self._encoder = self._load_encoder()
            return self._encoder

    def encode(self, image_path: str) -> np.ndarray:
        """The embedding of one image, one image at a time: the encoder's threads use every core, and two encodings
        at once (``CacheDataset`` workers) each ran 4x slower."""
        network, pre, inferer, _ = self.encoder()
        image = pre({"image": image_path})["image"]
        with self._lock:
            return encode_image(network, inferer, image.flip(-1) if self.flip else image)[0].numpy()

    def _load_encoder(self) -> tuple:
        from monai.transforms import Compose

        from breastlab.bundle import Bundle
        from breastlab.engines.precision import MixedPrecisionInferer

        bundle = Bundle(self.bundle_root)
        network = bundle.network().eval()
        return (network, Compose(bundle.transforms("preprocessing")), MixedPrecisionInferer(self.precision),
                weights_digest(network.image_encoder))

    def path(self, image_path: str) -> Path:
        """Where the embedding of ``image_path`` is cached: its name digests what the embedding depends on."""
        content = hashlib.sha1(Path(image_path).read_bytes()).hexdigest()
        key = f"{content}:{self.encoder()[3]}:{self.precision}" + (":flipped" if self.flip else "")
        return self.folder / f"{hashlib.sha1(key.encode()).hexdigest()[:24]}.npy"

    def embedding(self, image_path: str) -> torch.Tensor:
        path = self.path(image_path)
        if not path.is_file():
            embedding = self.encode(image_path)
            self.folder.mkdir(parents=True, exist_ok=True)
            temporary = path.with_suffix(f".{os.getpid()}.tmp.npy")
            np.save(temporary, embedding)
            os.replace(temporary, path)
        return torch.from_numpy(np.load(path)).float()

    def __call__(self, data: dict) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.embedding(str(d[key]))
        return d


def weights_digest(module: torch.nn.Module) -> str:
    """A digest of a module's parameters and buffers (names, shapes and values)."""
    digest = hashlib.sha1()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(f"{name}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def unwrapped(network) -> torch.nn.Module:
    """The network inside a DDP wrapper (whose forward the decoder passes do not go through)."""
    return getattr(network, "module", network)


def prompt_parameters(network) -> list[torch.nn.Parameter]:
    """Freezes the image encoder (its embeddings are cached) and returns the parameters left to train: the prompt
    encoder's and the mask decoder's."""
    unwrapped(network).image_encoder.requires_grad_(False)
    return [p for p in network.parameters() if p.requires_grad]


def _centre_click(truth: np.ndarray) -> tuple[list[float], int]:
    return _error_click(truth, np.zeros_like(truth))


def _split(clicks: list[list]) -> tuple[list, list]:
    """Per image (point, label) pairs -> per image points, per image labels."""
    return [[p for p, _ in c] for c in clicks], [[label for _, label in c] for c in clicks]


def _error_click(truth: np.ndarray, mask: np.ndarray) -> tuple[list[float], int] | None:
    click = next_click(truth & ~mask, mask & ~truth)
    if click is None:
        return None
    (row, column), foreground = click
    return [float(column), float(row)], int(foreground)


class PromptSimulation:
    """``SupervisedTrainer`` / ``SupervisedEvaluator`` iteration for a network with ``decode(embedding, box, points,
    labels, mask)``: batch ``image`` holds embeddings (B, C, h, w), ``label`` the masks in the network's frame."""

    def __init__(self, loss=None, max_rounds: int = 10, box_jitter: float = 0.1, seed: int = 0,
                 automatic_share: float = 0.0):
        self.loss, self.max_rounds, self.box_jitter = loss, max_rounds, box_jitter
        self.automatic_share = automatic_share
        self.rng = np.random.default_rng(seed)

    def boxes(self, truths: list[np.ndarray], jitter: float, rng: np.random.Generator) -> torch.Tensor:
        return torch.tensor([jittered_box(t, rng, jitter) for t in truths], dtype=torch.float32)

    @torch.no_grad()
    def annotate(self, network, inferer, embeddings, truths, box, start: str, count: int):
        """An annotator's ``count`` clicks after the ``start`` (the box's mask, the automatic mask, or nothing for
        clicks alone), each at the centre of the largest error of the mask decoded with the clicks before it and its
        previous mask. Returns the prompts of the last step: points (B, n, 2), labels (B, n) and the previous mask
        (or None). An image left without errors repeats its last click, so that every image has as many."""
        if count == 0:
            return [[] for _ in truths], [[] for _ in truths], None
        previous, masks = None, [np.zeros_like(t) for t in truths]
        if start != "clicks":
            logits = self.decode(network, inferer, embeddings, box, [], [])
            masks, previous = list((logits[:, 0] > 0).cpu().numpy()), mask_prompt(logits > 0)
        clicks: list[list] = [[] for _ in truths]
        for n in range(count):
            for truth, mask, previous_clicks in zip(truths, masks, clicks):
                click = _error_click(truth, mask)
                previous_clicks.append(click or (previous_clicks[-1] if previous_clicks else _centre_click(truth)))
            if n < count - 1:
                logits = self.decode(network, inferer, embeddings, box, *_split(clicks), previous)
                masks, previous = list((logits[:, 0] > 0).cpu().numpy()), mask_prompt(logits > 0)
        return (*_split(clicks), previous)

    @staticmethod
    def decode(network, inferer, embeddings, box, points, labels, previous=None) -> torch.Tensor:
        prompts = {"box": box, "mask": previous}
        if points and points[0]:
            prompts["points"], prompts["labels"] = torch.tensor(points), torch.tensor(labels)
        return inferer(embeddings, lambda e: unwrapped(network).decode(e, **prompts)[0])

    def __call__(self, engine, batch: dict) -> dict:
        images, labels = batch["image"].to(engine.state.device).float(), batch["label"].to(engine.state.device).float()
        lesion = labels.flatten(1).amax(1) > 0  # prompts point at a lesion: images without one get no prompt
        if self.loss is None:
            output = self.validate(engine, images, labels, lesion)
        elif self.automatic_share > 0 and self.rng.random() < self.automatic_share:
            output = self.train_step(engine, images, labels, AUTOMATIC)
        elif lesion.any():
            output = self.train_step(engine, images[lesion], labels[lesion], STARTS[self.rng.integers(len(STARTS))])
        else:  # nothing to prompt in this batch: no step
            output = {"pred": torch.zeros_like(labels), "label": labels, "loss": 0.0}
        engine.state.output = output
        engine.fire_event(IterationEvents.MODEL_COMPLETED)
        return engine.state.output  # decollated and postprocessed by the event

    def validate(self, engine, embeddings: torch.Tensor, targets: torch.Tensor, lesion: torch.Tensor) -> dict:
        """A fixed jittered box, the box and two clicks, three clicks alone and (when trained) no prompt, as channels
        of one item per image (the engine pairs outputs with batch items). An image without a lesion has nothing to
        prompt: every channel is its unprompted mask (its Dice is undefined, so metrics leave it out)."""
        network, inferer = engine.network, engine.inferer
        network.eval()
        channels = 4 if self.automatic_share > 0 else 3
        unprompted = self.decode(network, inferer, embeddings, None, [], [])
        preds = unprompted.expand(-1, channels, -1, -1).clone()
        if lesion.any():
            inside, truths = embeddings[lesion], [t[0].cpu().numpy() > 0 for t in targets[lesion]]
            box = self.boxes(truths, 0.05, np.random.default_rng(0))
            steps = [(box, "box", 0), (box, "box", 2), (None, "clicks", 3)]
            with torch.no_grad():
                answers = [self.decode(network, inferer, inside, b, *self.annotate(
                    network, inferer, inside, truths, b, start, count)) for b, start, count in steps]
            preds[lesion, :3] = torch.cat(answers, 1).to(preds.dtype)
        return {"pred": preds, "label": targets.expand(-1, channels, -1, -1)}

    def train_step(self, engine, embeddings: torch.Tensor, targets: torch.Tensor, kind: str) -> dict:
        """One step of ``kind``: no prompt (``AUTOMATIC``), or an annotation from one of ``STARTS`` with 0 to
        ``max_rounds`` earlier clicks simulated without gradient, the step learning the next one (a box start may
        also be trained alone)."""
        network, inferer, truths = engine.network, engine.inferer, [t[0].cpu().numpy() > 0 for t in targets]
        box = self.boxes(truths, self.box_jitter, self.rng) if kind == "box" else None
        points, labels, previous = [], [], None
        if kind != AUTOMATIC:
            count = int(self.rng.integers(0 if kind == "box" else 1, self.max_rounds + 2))
            network.eval()
            points, labels, previous = self.annotate(network, inferer, embeddings, truths, box, kind, count)
        network.train()
        engine.optimizer.zero_grad(set_to_none=True)
        logits = self.decode(network, inferer, embeddings, box, points, labels, previous)
        loss = self.loss(logits.float(), targets)
        loss.backward()
        average_gradients([p for p in network.parameters() if p.requires_grad])  # under DDP (multi_gpu_train)
        engine.optimizer.step()
        return {"pred": logits.detach(), "label": targets, "loss": loss.item()}
