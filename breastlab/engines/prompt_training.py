"""Fine-tuning a promptable network's prompt encoder and mask decoder with simulated prompts, on image embeddings
computed once (the image encoder stays frozen), so that it trains on a CPU.

Each training batch draws one prompt kind: a box (the lesion's box, each side jittered by up to ``box_jitter`` of
its size), a box and clicks, or clicks alone (the first at the centre of the largest lesion); every further click
goes to the centre of the largest error of the model's own prediction with the prompts so far (as the evaluation
simulates an annotator). Validation scores a fixed 5 %-jittered box and three simulated clicks alone.
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
from breastlab.engines.prompting import encode_image
from breastlab.evaluation.clicks import jittered_box
from breastlab.transforms.clicks import next_click

KINDS = ("box", "box+clicks", "clicks")


class EmbedImaged(MapTransform):
    """Replaces the image path at ``keys`` by its embedding from the bundle's (frozen, pretrained) image encoder, kept
    as float16 ``.npy`` in ``folder`` under a digest of the file's path, size and time and the encoder's precision:
    computed once per image file, reused by later runs (any datalist works: a dataset folder's or the server's). Use
    the precision the bundle serves with, so that the decoder trains on the embeddings it will see."""

    def __init__(self, keys, bundle_root: str, folder: str, precision: str = "fp32"):
        super().__init__(keys)
        self.bundle_root, self.folder, self.precision = bundle_root, Path(folder), precision
        self._encoder: tuple | None = None
        self._lock = threading.Lock()

    def encode(self, image_path: str) -> np.ndarray:
        """The embedding of one image, one image at a time: the encoder's threads use every core, and two encodings
        at once (``CacheDataset`` workers) each ran 4x slower."""
        with self._lock:
            if self._encoder is None:
                self._encoder = self._load_encoder()
            network, pre, inferer = self._encoder
            return encode_image(network, inferer, pre({"image": image_path})["image"])[0].half().numpy()

    def _load_encoder(self) -> tuple:
        from monai.transforms import Compose

        from breastlab.bundle import Bundle
        from breastlab.engines.precision import MixedPrecisionInferer

        bundle = Bundle(self.bundle_root)
        return (bundle.network().eval(), Compose(bundle.transforms("preprocessing")),
                MixedPrecisionInferer(self.precision))

    def embedding(self, image_path: str) -> torch.Tensor:
        stat = os.stat(image_path)
        key = f"{Path(image_path).resolve()}:{stat.st_size}:{stat.st_mtime_ns}:{self.precision}"
        path = self.folder / f"{hashlib.sha1(key.encode()).hexdigest()[:20]}.npy"
        if not path.is_file():
            embedding = self.encode(image_path)
            self.folder.mkdir(parents=True, exist_ok=True)
            np.save(path.with_suffix(".tmp.npy"), embedding)
            os.replace(path.with_suffix(".tmp.npy"), path)
        return torch.from_numpy(np.load(path)).float()

    def __call__(self, data: dict) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.embedding(str(d[key]))
        return d


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
    labels)``: batch ``image`` holds embeddings (B, C, h, w), ``label`` the masks in the network's frame."""

    def __init__(self, loss=None, max_clicks: int = 4, box_jitter: float = 0.1, seed: int = 0):
        self.loss, self.max_clicks, self.box_jitter = loss, max_clicks, box_jitter
        self.rng = np.random.default_rng(seed)

    def boxes(self, truths: list[np.ndarray], jitter: float, rng: np.random.Generator) -> torch.Tensor:
        return torch.tensor([jittered_box(t, rng, jitter) for t in truths], dtype=torch.float32)

    def clicks(self, network, inferer, embeddings, truths, box, count: int):
        """``count`` simulated clicks per image on top of ``box`` (or alone): points (B, n, 2), labels (B, n). An
        image left without errors repeats its last click, so that every image has as many."""
        clicks: list[list] = [[] for _ in truths]
        for _ in range(count):
            masks = [np.zeros_like(t) for t in truths]
            if box is not None or clicks[0]:
                with torch.no_grad():
                    logits = self.decode(network, inferer, embeddings, box, *_split(clicks))
                masks = list((logits[:, 0] > 0).cpu().numpy())
            for truth, mask, previous in zip(truths, masks, clicks):
                previous.append(_error_click(truth, mask) or (previous[-1] if previous else _centre_click(truth)))
        return _split(clicks)

    @staticmethod
    def decode(network, inferer, embeddings, box, points, labels) -> torch.Tensor:
        prompts = {"box": box}
        if points and points[0]:
            prompts["points"], prompts["labels"] = torch.tensor(points), torch.tensor(labels)
        return inferer(embeddings, lambda e: unwrapped(network).decode(e, **prompts)[0])

    def __call__(self, engine, batch: dict) -> dict:
        device = engine.state.device
        lesion = batch["label"].flatten(1).amax(1) > 0  # prompts point at a lesion: images without one are left out
        embeddings = batch["image"][lesion].to(device).float()
        targets = batch["label"][lesion].to(device).float()
        truths = [t[0].cpu().numpy() > 0 for t in targets]
        if not truths:
            engine.state.output = {"pred": targets, "label": targets, "loss": 0.0}
            return engine.state.output
        network, inferer = engine.network, engine.inferer
        if self.loss is None:  # validation: a fixed jittered box, and three clicks alone
            network.eval()
            with torch.no_grad():
                seeded = np.random.default_rng(0)
                by_box = self.decode(network, inferer, embeddings, self.boxes(truths, 0.05, seeded), [], [])
                points, labels = self.clicks(network, inferer, embeddings, truths, None, 3)
                by_clicks = self.decode(network, inferer, embeddings, None, points, labels)
            # one item per image (the engine pairs outputs with batch items): box and clicks as two channels
            engine.state.output = {"pred": torch.cat([by_box, by_clicks], 1), "label": torch.cat([targets, targets], 1)}
        else:
            kind = KINDS[self.rng.integers(len(KINDS))]
            box = self.boxes(truths, self.box_jitter, self.rng) if kind != "clicks" else None
            count = 0 if kind == "box" else int(self.rng.integers(1, self.max_clicks + 1))
            network.eval()
            points, labels = self.clicks(network, inferer, embeddings, truths, box, count)
            network.train()
            engine.optimizer.zero_grad(set_to_none=True)
            logits = self.decode(network, inferer, embeddings, box, points, labels)
            loss = self.loss(logits.float(), targets)
            loss.backward()
            average_gradients([p for p in network.parameters() if p.requires_grad])  # under DDP (multi_gpu_train)
            engine.optimizer.step()
            engine.state.output = {"pred": logits.detach(), "label": targets, "loss": loss.item()}
        engine.fire_event(IterationEvents.MODEL_COMPLETED)
        return engine.state.output
