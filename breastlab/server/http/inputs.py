"""What a request may carry: bounded JSON objects, inference parameters that cannot redirect the request, and
uploads kept in a private folder of the datastore that nothing else reads and that no request outlives."""

from __future__ import annotations

import math
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fastapi import Request, UploadFile

from breastlab.data import BIRADS, CLASS_NAMES, NO_CANCER
from breastlab.engines.promptable import PROMPT_INPUTS
from breastlab.formats.png import check_id
from breastlab.server.http import bounded_json, errors

RESERVED_PARAMS = frozenset({
    "model", "image", "image_path", "label", "label_tag", "save_label", "session", "session_id", "device",
    "model_filename", "timeout", "logging", "cache_transforms", "description", "skip_writer",
})  # set by the server from the path, the datastore and its own config; a client's params never override them
PROMPT_OUTPUTS = frozenset(key for _, key in PROMPT_INPUTS)  # box, points, point_labels: computed from roi and clicks
UPLOADS = ".breastlab/uploads"
IMAGE_LABELS = {"class": CLASS_NAMES, "birads": BIRADS}  # image-level labels kept in the image info
SIDES = ("left", "right")  # an image info's ``laterality`` (a PACS sets it from DICOM)
MODEL_KEYS = ("bundle", "version", "weights_sha256", "breastlab")  # a result's ``model`` entry (ModelIdentity)
VERSION = re.compile(r"[0-9]{1,9}\.[0-9]{1,9}\.[0-9]{1,9}")
SHA256 = re.compile(r"[0-9a-f]{64}")


def json_object(text: str | None, what: str) -> dict:
    """``text`` as a JSON object read by ``bounded_json.read`` (size, depth, values, digits, surrogates); a 400 that
    says what is wrong."""
    if not text:
        return {}
    try:
        value = bounded_json.read(text, what)
    except bounded_json.JSONRefused as e:
        raise errors.bad_request(str(e)) from e
    if not isinstance(value, dict):
        raise errors.bad_request(f"{what} must be a JSON object, not {type(value).__name__}")
    return value


async def json_body(request: Request) -> dict:
    """A route's JSON object body (``{}`` when empty), read no further than ``bounded_json.MAX_BYTES`` (413 beyond)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > bounded_json.MAX_BYTES:
        raise errors.too_large(f"the body is {declared} bytes; at most {bounded_json.MAX_BYTES} are accepted")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > bounded_json.MAX_BYTES:
            raise errors.too_large(f"the body is over {bounded_json.MAX_BYTES} bytes, the most accepted")
    try:
        return json_object(body.decode("utf-8"), "body")
    except UnicodeDecodeError as e:
        raise errors.bad_request(f"the body is not UTF-8 JSON: {e}") from e


def inference_params(text: str | None) -> dict:
    """The ``params`` of an inference request; 422 for keys that only the server sets."""
    params = json_object(text, "params")
    reserved = sorted(RESERVED_PARAMS & set(params))
    if reserved:
        raise errors.unprocessable(f"params may not set {', '.join(reserved)}: the model comes from the path, the "
                                   "image from ?image= (a datastore id) or the uploaded file")
    computed = sorted(PROMPT_OUTPUTS & set(params))
    if computed:
        raise errors.unprocessable(f"params may not set {', '.join(computed)}: the server computes box, points and "
                                   "point_labels (network pixels) from roi [x0, y0, x1, y1] and foreground/background "
                                   "[[x, y], ...] (image pixels)")
    if "mask" in params:
        raise errors.unprocessable("params may not carry a mask: send the mask the clicks refine as the label= file "
                                   "(a PNG of the image's size, nonzero = lesion)")
    return params


TRAINING_LIMITS = {"max_epochs": (int, 1, 1000), "batch_size": (int, 1, 256), "learning_rate": (float, 1e-8, 1.0),
                   "val_fraction": (float, 0.01, 0.9)}


def training_params(params: dict | None) -> dict:
    """The ``params`` of a training request, checked now (422) rather than failing in the training process later."""
    params = dict(params or {})
    try:
        bounded_json.check(params, "params")
    except bounded_json.JSONRefused as e:
        raise errors.bad_request(str(e)) from e
    if "model" in params:
        raise errors.unprocessable("params may not set model: the model comes from the path")
    for key, (kind, low, high) in TRAINING_LIMITS.items():
        value = params.get(key, low)
        number = isinstance(value, (int, float)) and not isinstance(value, bool) and (
            isinstance(value, int) or math.isfinite(value))  # ints of any size are finite (and overflow a float)
        if not (number and low <= value <= high and (kind is float or float(value).is_integer())):
            raise errors.unprocessable(f"{key} must be {'an integer' if kind is int else 'a number'} from {low} "
                                       f"to {high}, got {value!r}")
    return params


def uploads_folder(datastore_root: str | Path) -> Path:
    return Path(datastore_root) / UPLOADS


def is_upload(path: str, datastore_root: str | Path) -> bool:
    """Whether ``path`` is a file this server saved from a request (the only server paths a request may name)."""
    candidate = Path(path)
    return candidate.parent == uploads_folder(datastore_root) and candidate.is_file()


@contextmanager
def saved_upload(upload: UploadFile, datastore_root: str | Path, suffix: str = "") -> Iterator[Path]:
    """The uploaded body in the private uploads folder for the ``with`` block, then removed, error or not."""
    folder = uploads_folder(datastore_root)
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=folder, suffix=suffix, delete=False) as f:
        path = Path(f.name)
        try:
            shutil.copyfileobj(upload.file, f)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


def clear_uploads(datastore_root: str | Path) -> None:
    """Remove what a killed server left in the uploads folder (at start-up)."""
    shutil.rmtree(uploads_folder(datastore_root), ignore_errors=True)


def checked_image_labels(info: dict) -> dict:
    """``info`` with its image-level labels (``class``, ``birads``, ``probabilities`` and the ``model`` they are
    from) normalised and its ``patient`` and ``laterality`` checked; 422 for unknown values."""
    checked = dict(info)
    for key, allowed in IMAGE_LABELS.items():
        if checked.get(key) is not None:
            value = str(checked[key]).strip().lower()
            if value not in allowed:
                raise errors.unprocessable(f"unknown {key} {checked[key]!r}; expected one of {', '.join(allowed)}")
            checked[key] = value
    _check_identity(info)
    return {**checked, **_checked_probabilities(info), **_checked_model(info)}


def checked_id(image_id: str, what: str = "image id") -> str:
    try:
        return check_id(image_id, what)
    except ValueError as e:
        raise errors.bad_request(str(e)) from e


def _check_identity(info: dict) -> None:
    """422 unless ``patient`` is a safe id and ``laterality`` is left or right (either may be None: unknown)."""
    if info.get("patient") is not None:
        try:
            check_id(info["patient"], "patient")
        except ValueError as e:
            raise errors.unprocessable(str(e)) from e
    if info.get("laterality") not in (None, *SIDES):
        raise errors.unprocessable(f"laterality must be one of {', '.join(SIDES)} or null, got {info['laterality']!r}")


def _checked_probabilities(info: dict) -> dict:
    """``{"probabilities": {class: 0..1}}`` from ``info`` when given; 422 for unknown classes or values."""
    probabilities = info.get("probabilities")
    if probabilities is None:
        return {}
    if not isinstance(probabilities, dict) or not set(probabilities) <= {*CLASS_NAMES, NO_CANCER}:
        raise errors.unprocessable(f"probabilities must map classes ({', '.join(CLASS_NAMES)}, {NO_CANCER}) to numbers")
    try:
        checked = {name: float(p) for name, p in probabilities.items()}
    except (TypeError, ValueError, OverflowError) as e:
        raise errors.unprocessable(f"probabilities must be numbers: {e}") from e
    if not all(0.0 <= p <= 1.0 for p in checked.values()):
        raise errors.unprocessable("probabilities must lie between 0 and 1")
    return {"probabilities": checked}


def _checked_model(info: dict) -> dict:
    """``{"model": ...}``, the ``model`` entry of the result whose ``probabilities`` these are (None, also when
    ``probabilities`` come without one: the annotator's own), when ``probabilities`` are given; 422 for a model
    without probabilities or of another shape than a result's entry."""
    if "probabilities" not in info:
        if "model" in info:
            raise errors.unprocessable("model names the model whose result the probabilities are: send it with them")
        return {}
    model = info.get("model")
    if model is None:
        return {"model": None}
    if info["probabilities"] is None:
        raise errors.unprocessable("model names the model whose result the probabilities are: send it with them")
    if not isinstance(model, dict) or set(model) != set(MODEL_KEYS):
        raise errors.unprocessable(f"model must be a result's model entry, an object of {', '.join(MODEL_KEYS)}")
    try:
        check_id(model["bundle"], "model bundle")
    except ValueError as e:
        raise errors.unprocessable(str(e)) from e
    for key in ("version", "breastlab"):
        if not (isinstance(model[key], str) and VERSION.fullmatch(model[key])):
            raise errors.unprocessable(f"model {key} must be a version like 1.2.3, got {model[key]!r}")
    digest = model["weights_sha256"]
    if not (digest is None or isinstance(digest, str) and SHA256.fullmatch(digest)):
        raise errors.unprocessable(f"model weights_sha256 must be 64 lowercase hex digits or null, got {digest!r}")
    return {"model": {key: model[key] for key in MODEL_KEYS}}


def check_served(model: dict | None, predictions: list[dict], image: str) -> None:
    """422 unless ``model`` (a checked ``model`` entry; None passes) is the one of a stored latest result on
    ``image`` (``predictions``: its records): the server served those weights for that image."""
    if model is not None and not any(record["result"].get("model") == model for record in predictions):
        raise errors.unprocessable(f"the server has no result of {model['bundle']} {model['version']} with these "
                                   f"weights on image {image!r}: model must be the model entry of the latest result "
                                   "whose probabilities are sent")
