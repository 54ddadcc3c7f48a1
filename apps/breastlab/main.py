"""BreastLab MONAI Label app: every bundle under ``bundles/`` (or ``BREASTLAB_BUNDLES``) becomes an infer and a train
task."""

import logging
import os
from pathlib import Path

from monailabel.interfaces.app import MONAILabelApp
from PIL import Image

from breastlab import __version__
from breastlab.bundle import BUNDLES_DIR, find_bundles
from breastlab.formats.png import write_png
from breastlab.server import scratch
from breastlab.server.datastore import dicomweb, screening
from breastlab.server.datastore.effort import EffortStore
from breastlab.server.datastore.local import BreastLabDatastore
from breastlab.server.datastore.predictions import PredictionStore
from breastlab.server.http import auth, errors, image_kind, inputs, routes
from breastlab.server.tasks import weights
from breastlab.server.tasks.infer import BundleInferTask
from breastlab.server.tasks.promptable_infer import PromptInferTask
from breastlab.server.tasks.scoring import DiversityScoring, UncertaintyScoring
from breastlab.server.tasks.strategies import HandOuts, RandomUnlabeled, ReviewQueue, SecondRead, TopScored
from breastlab.server.tasks.train import BundleTrainTask
from breastlab.transforms import check_points, check_roi
from breastlab.transforms.prompts import check_mask

logger = logging.getLogger(__name__)


class MyApp(MONAILabelApp):
    """Serves the BreastLab bundles on a folder of PNG images or on a PACS (DICOMweb)."""

    def __init__(self, app_dir, studies, conf):
        self.model_dir = Path(app_dir) / "model"
        bundles_dir = os.environ.get("BREASTLAB_BUNDLES") or BUNDLES_DIR
        self.bundles = {b.name: b for b in find_bundles(bundles_dir) if self.has_weights(b)}
        super().__init__(
            app_dir=app_dir,
            studies=studies,
            conf=conf,
            name="BreastLab",
            description="Breast ultrasound and mammography models (MONAI bundles)",
            version=__version__,
        )
        self._auto_update_scoring = False  # scoring runs when asked (POST /scoring/...), not after every request
        self.predictions = PredictionStore.of(self.datastore().root)
        self.effort = EffortStore.of(self.datastore().root)

    def on_init_complete(self):
        """In the server (not its job processes): remove what a killed server left (temp files, uploads), keep temp
        files in the studies folder's private area, and put BreastLab's endpoints in front of MONAI Label's own
        (``BREASTLAB_STOCK_ROUTES=1``: benchmarks only)."""
        super().on_init_complete()
        import monailabel.app

        scratch.use_private_temp(self.datastore().root)
        inputs.clear_uploads(self.datastore().root)
        scratch.clear_model_folder(self.model_dir)

        auth.install(monailabel.app.app)
        if os.environ.get("BREASTLAB_STOCK_ROUTES") != "1":
            routes.install(monailabel.app.app)

    def init_datastore(self):
        """A folder of PNGs, or a PACS when ``studies`` is a DICOMweb URL (``breastlab.server.datastore.dicomweb``)."""
        if self.studies.startswith(("http://", "https://")):
            return dicomweb.from_environment(self.studies)
        return BreastLabDatastore(self.studies)

    def has_weights(self, bundle) -> bool:
        """Bundles without weights yet (being trained) are not served."""
        if bundle.has_weights or self.served_weights(bundle.name).is_file():
            return True
        logger.warning(f"bundle {bundle.name}: no weights in {bundle.model_path}; not served")
        return False

    def served_weights(self, name: str) -> Path:
        return self.model_dir / f"{name}.pt"

    def weights(self, name: str) -> list[Path]:
        """Candidate weights of a bundle; MONAI Label serves the last one that exists."""
        return [self.bundles[name].model_path, self.served_weights(name)]

    def init_infers(self):
        """One task per bundle (promptable ones cache image embeddings), plus ``<name>_saliency`` (the map as an
        image) for every classifier."""
        infers = {name: (PromptInferTask if b.prompts else BundleInferTask)(b, self.weights(name))
                  for name, b in self.bundles.items()}
        for name, b in self.bundles.items():
            if b.task == "classification":
                infers[f"{name}_saliency"] = BundleInferTask(b, self.weights(name), saliency=True)
        return infers

    def init_trainers(self):
        return {name: BundleTrainTask(b, self.served_weights(name)) for name, b in self.bundles.items() if b.trainable}

    def init_strategies(self):
        hand_outs = HandOuts()
        return {
            "random": RandomUnlabeled(hand_outs),
            "uncertainty": TopScored(UncertaintyScoring.name, hand_outs, "Most uncertain (POST /scoring/uncertainty)"),
            "diverse": TopScored("diverse", hand_outs, "Typical images spread over clusters (POST /scoring/diversity)"),
            "hybrid": TopScored("hybrid", hand_outs, "Most uncertain of each cluster's typical half, diverse before "
                                                     "an uncertainty scoring (POST /scoring/diversity)"),
            "second_read": SecondRead(hand_outs),
            "review": ReviewQueue(hand_outs),
        }

    def init_scoring_methods(self):
        automatic = {name: b for name, b in self.bundles.items() if not b.prompts}  # a prompt model needs a person
        scoring = UncertaintyScoring(automatic, {name: self.weights(name) for name in automatic})
        return {scoring.name: scoring, DiversityScoring.name: DiversityScoring()}

    def scoring_method(self, name: str):
        return self._scoring_methods.get(name)

    def next_sample(self, request):
        strategy = request.get("strategy") or "random"
        if strategy not in self._strategies:
            raise errors.not_found(f"unknown strategy {strategy!r}; available: {', '.join(sorted(self._strategies))}")
        return super().next_sample(request)

    def prefetch(self, image_id: str) -> None:
        """Start the image embeddings of the promptable models for an image an annotator is about to open."""
        path = self.datastore().get_image_uri(image_id)
        for task in self._infers.values():
            if path and isinstance(task, PromptInferTask):
                with weights.lock(task.bundle.name).reading():
                    task.prefetch(path)

    def infer(self, request, datastore=None):
        """A datastore image by id, or a file the route saved from the request (``inputs.saved_upload``); with the
        model's weights file held from start to end (``weights.lock``)."""
        model = request.get("model")
        if model not in self._infers:
            raise errors.not_found(f"unknown model {model!r}; available: {', '.join(sorted(self._infers))}")
        with weights.lock(self._infers[model].bundle.name).reading():
            return self._infer(request, datastore or self.datastore())

    def _infer(self, request, datastore):
        """The image's kind is checked against the bundle's first (``image_kind``: 422, or a warning in the result);
        an uploaded file reaches the model as the gray PNG the datastore would store (the reader of uploads). A
        mammography result names its breast's side and, on a datastore image of a known patient, pools the woman's
        stored results per breast and per woman (``screening``)."""
        model, image = request.get("model"), request.get("image")
        bundle = self._infers[model].bundle
        if not (isinstance(image, str) and inputs.is_upload(image, datastore.root)):
            path = datastore.get_image_uri(image) if isinstance(image, str) else None
            if not path:
                raise errors.not_found(f"image {image!r} is not in the datastore")
            info = datastore.get_image_info(image)
            note = image_kind.checked_kind(bundle, path, (info.get("dicom") or {}).get("modality"))
            if any(request.get(key) is not None for key in ("roi", "foreground", "background", "mask")):
                check_prompts(request, *read_size(path))
            note = {**note, **screening.side_entry(bundle, path, info.get("laterality"))}
            result = with_note(super().infer(request, datastore), note)
            if datastore.get_image_uri(image):  # not deleted while the model ran
                self.predictions.put(image, model, result["params"], info.get("patient"))
                self.record_effort(request.get("client_id"), request, result)
                woman = screening.woman_entries(self.predictions, datastore, model, result["params"],
                                                info.get("patient"))
                result = with_note(result, woman)
            return result
        array, dicom = errors.read_image_upload(image)
        note = {**image_kind.checked_kind(bundle, array, dicom.modality if dicom else None),
                **screening.side_entry(bundle, array)}
        check_prompts(request, array.shape[1], array.shape[0])
        converted = write_png(array, f"{image}.png", durable=False)
        try:
            return with_note(super().infer({**request, "image": str(converted)}, datastore), note)
        finally:
            converted.unlink(missing_ok=True)

    def record_effort(self, annotator: str | None, request: dict, result: dict) -> None:
        """A datastore image's inference in its annotator's effort session (none without a client id); the mask of a
        segmentation model (not a classifier's map) may be the session's first proposal."""
        if annotator is None:
            return
        model = request["model"]
        mask = self._infers[model].bundle.task != "classification" and "lesion_pixels" in result["params"]
        self.effort.inferred(request["image"], annotator, model, request, result.get("file") if mask else None)


def with_note(result: dict, note: dict) -> dict:
    """``result`` with ``note`` (the image kind check's warning) in its JSON part."""
    return {**result, "params": {**(result.get("params") or {}), **note}} if note else result


def read_size(path: str) -> tuple[int, int]:
    """(width, height) from the image header."""
    with Image.open(path) as image:
        return image.size


def check_prompts(request: dict, width: int, height: int) -> None:
    """Foreground/background points must be ``[x, y]`` and a ``roi`` box ``[x0, y0, x1, y1]`` inside the image: 422
    otherwise."""
    try:
        check_roi(request.get("roi"), width, height)
        if request.get("mask") is not None:
            check_mask(request["mask"], width, height)
        for key in ("foreground", "background"):
            check_points(request.get(key), width, height, key)
    except ValueError as e:
        raise errors.unprocessable(str(e)) from e
