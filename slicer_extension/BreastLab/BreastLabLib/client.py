"""HTTP client for the BreastLab MONAI Label server: every call the Slicer module makes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from email.parser import BytesParser
from email.policy import HTTP

import numpy as np
import requests

from .images import decode_png, mask_png, unit_range

MODEL_TYPES = ("segmentation", "classification", "interactive", "saliency")
SERVER_TYPES = {"interactive": ("deepedit", "deepgrow")}  # MONAI Label's click-guided model types


class ServerError(RuntimeError):
    """The server answered with an error status (``status`` 0: no answer at all); ``detail`` says why."""

    def __init__(self, status: int, detail: str):
        super().__init__(f"server answered {status}: {detail}")
        self.status = status
        self.detail = detail


@dataclass(frozen=True)
class ServerInfo:
    """What ``/info/`` says: models (with their ``type``), trainers and active-learning strategies."""

    name: str
    models: dict
    trainers: dict
    strategies: tuple[str, ...]

    @classmethod
    def from_json(cls, info: dict) -> "ServerInfo":
        return cls(info.get("name", ""), info.get("models", {}), info.get("trainers", {}),
                   tuple(info.get("strategies", {})))

    def models_of_type(self, kind: str) -> list[str]:
        """Models of one panel ``kind`` (``MODEL_TYPES``); click models are MONAI Label's deepedit/deepgrow."""
        types = SERVER_TYPES.get(kind, (kind,))
        return sorted(name for name, model in self.models.items() if model.get("type") in types)

    def promptable_models(self) -> list[str]:
        """Models that take a box (``roi``) and refine a mask sent with their clicks: the prompts ``/info/`` lists."""
        return sorted(name for name, model in self.models.items() if "roi" in (model.get("prompts") or []))

    def default_epochs(self, model: str) -> int:
        return int(self.trainers.get(model, {}).get("config", {}).get("max_epochs", 1))


class BreastLabClient:
    """Calls one server (``url`` like ``http://127.0.0.1:8000``); ``headers`` may carry a bearer token."""

    def __init__(self, url: str, timeout: float = 120, headers: dict | None = None):
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.headers = headers or {}

    def auth_enabled(self) -> bool:
        """Whether the server checks tokens (MONAI Label's ``/auth/``)."""
        return bool(self._call("GET", "/auth/").json().get("enabled"))

    def login(self, username: str, password: str) -> None:
        """Get a token from the server's realm (MONAI Label's ``/auth/token``, as its Slicer plugin does) and send
        it with every later call."""
        if not username:
            raise ServerError(401, "this server asks for a user name and password")
        token = self._call("POST", "/auth/token", data={"username": username, "password": password}).json()
        self.headers = {**self.headers, "Authorization": f"Bearer {token['access_token']}"}

    def info(self) -> ServerInfo:
        return ServerInfo.from_json(self._call("GET", "/info/").json())

    def next_sample(self, strategy: str, **params) -> dict | None:
        """The strategy's next image (its id under ``"id"``, plus its info); None when none is left. ``params`` go in
        the request: ``reader`` for ``second_read`` (the reader asking) and ``review`` (the reviewer)."""
        return self._call("POST", f"/activelearning/{strategy}", json=params).json() or None

    def start_scoring(self, model: str | None = None, wait: bool = False) -> list[str]:
        """Start the ``diversity`` scoring job and, given a segmentation ``model``, the ``uncertainty`` one, that the
        ordered strategies read (``wait``: until they finish); the methods started."""
        jobs = {"diversity": {}, **({"uncertainty": {"model": model}} if model else {})}
        for method, params in jobs.items():
            self._call("POST", f"/scoring/{method}", params={"run_sync": wait}, json=params)
        return list(jobs)

    def image(self, image_id: str) -> np.ndarray:
        return decode_png(self._call("GET", "/datastore/image", params={"image": image_id}).content)

    def segment(self, model: str, image_id: str, foreground=(), background=(), box=None, reset: bool = False,
                mask: np.ndarray | None = None) -> np.ndarray:
        """The model's 0/1 mask at image size; points ``[x, y]`` (column, row) go to click models, a ``box``
        ``[x0, y0, x1, y1]`` (MONAI Label's ``roi``) to promptable ones; ``reset`` starts a promptable model's
        history of answers for the image afresh (its last answer is the previous mask of the next click); ``mask``
        (image size, non-zero = lesion), uploaded as ``label``, is the one a promptable model's clicks refine
        instead, and its history restarts from it."""
        return self.segment_and_summarize(model, image_id, foreground, background, box, reset, mask)[0]

    def segment_and_summarize(self, model: str, image_id: str, foreground=(), background=(), box=None,
                              reset: bool = False, mask: np.ndarray | None = None) -> tuple[np.ndarray, dict]:
        """The mask and the model's JSON result (``probabilities`` from models that also classify) in one call."""
        points = {"foreground": [list(p) for p in foreground], "background": [list(p) for p in background]}
        params = points if foreground or background else {}
        if box is not None:
            params = {**params, "roi": [int(v) for v in box]}
        return self._mask_and_result(model, image_id, {**params, "reset": True} if reset else params, mask)

    def undo(self, model: str, image_id: str) -> tuple[np.ndarray, dict] | None:
        """Have a promptable model drop its last answer for the image (and this user) and return the one before: its
        mask and JSON result (``history``: the answers still kept); None when there is nothing to undo (409)."""
        try:
            return self._mask_and_result(model, image_id, {"undo": True})
        except ServerError as e:
            if e.status == 409:
                return None
            raise

    def summary(self, model: str, image_id: str) -> dict:
        """The model's JSON result for the image (sizes, scores, ``probabilities`` for classifiers)."""
        return self._infer(model, image_id, "json", {}).json()

    def classify(self, model: str, image_id: str) -> dict[str, float]:
        """Per-class probabilities ``{class: p}`` from a classification model's JSON result."""
        return self.classify_and_summarize(model, image_id)[0]

    def classify_and_summarize(self, model: str, image_id: str) -> tuple[dict[str, float], dict]:
        """The class probabilities and the model's JSON result (``birads`` from a calibrated model) in one call."""
        result = self.summary(model, image_id)
        if not isinstance(result.get("probabilities"), dict):
            raise ServerError(200, f"model {model!r} returned no 'probabilities' (keys: {sorted(result)})")
        return {str(k): float(v) for k, v in result["probabilities"].items()}, result

    def saliency(self, model: str, image_id: str) -> np.ndarray:
        """The model's map for the image as float32 in [0, 1], shape (rows, columns)."""
        return unit_range(decode_png(self._infer(model, image_id, "image", {}).content))

    def image_info(self, image_id: str) -> dict:
        return self._call("GET", "/datastore/image/info", params={"image": image_id}).json()

    def set_image_info(self, image_id: str, info: dict) -> None:
        """Merge ``info`` (e.g. ``{"class": "benign", "birads": "4a"}``) into the image's info."""
        self._call("PUT", "/datastore/image/info", params={"image": image_id}, data={"info": json.dumps(info)})

    def label(self, image_id: str, tag: str = "final") -> np.ndarray:
        return decode_png(self._call("GET", "/datastore/label", params={"label": image_id, "tag": tag}).content)

    def label_info(self, image_id: str, tag: str = "final") -> dict:
        return self._call("GET", "/datastore/label/info", params={"label": image_id, "tag": tag}).json()

    def save_label(self, image_id: str, mask: np.ndarray, info: dict | None = None, tag: str = "final",
                   reader: str | None = None) -> dict:
        """Store ``mask`` (non-zero = lesion, image size) as the image's label, with ``info`` (``class``, ``birads``)
        as label info; a final label is stored as ``reader``'s (default: the server's user). The server's answer
        (``status`` and ``readers`` for a final label)."""
        params = {"image": image_id, "tag": tag, **({"reader": reader} if reader else {})}
        return self._call("PUT", "/datastore/label", params=params, data={"params": json.dumps(info or {})},
                          files={"label": ("label.png", mask_png(mask), "image/png")}).json()

    def reader_label(self, image_id: str, reader: str) -> np.ndarray:
        """One reader's mask of the image (label tag ``reader-<name>``)."""
        return self.label(image_id, f"reader-{reader}")

    def review(self, image_id: str) -> dict:
        """The image's review state: ``status``, ``readers`` (each one's class, BI-RADS, sensitivity and specificity),
        ``consensus`` (class, BI-RADS), pairwise ``agreement`` (Dice, HD95), ``events`` and a return's ``comment``."""
        return self._call("GET", "/datastore/review", params={"image": image_id}).json()

    def consensus(self, image_id: str) -> np.ndarray:
        """The readers' STAPLE consensus mask (0/1, image size)."""
        return decode_png(self._call("GET", "/datastore/consensus", params={"image": image_id}).content)

    def agreement(self, image_id: str | None = None) -> dict:
        """One image's reader pairs (Dice, HD95); without ``image_id`` the study's agreement with 95 % intervals."""
        params = {"image": image_id} if image_id else {}
        return self._call("GET", "/datastore/agreement", params=params).json()

    def approve(self, image_id: str, source: str, labels: dict | None = None, mask: np.ndarray | None = None) -> dict:
        """Make ``source`` (``consensus``, ``reader:<name>``, or ``edited`` with its ``mask``) the final label, with
        ``labels`` (``class``, ``birads``) over the source's own; the image's status after."""
        files = None if mask is None else {"label": ("label.png", mask_png(mask), "image/png")}
        return self._call("POST", "/datastore/review/approve", params={"image": image_id, "source": source},
                          data={"params": json.dumps(labels or {})}, files=files).json()

    def return_image(self, image_id: str, comment: str) -> dict:
        """Send the image back to its readers with the reviewer's ``comment``; its status after."""
        return self._call("POST", "/datastore/review/return", params={"image": image_id},
                          data={"comment": comment}).json()

    def start_training(self, model: str, **options) -> dict:
        """Start fine-tuning ``model`` (options such as ``max_epochs``); the server's task record."""
        return self._call("POST", f"/train/{model}", json=options).json()

    def training_status(self) -> dict | None:
        """The latest training task (status, request, last log lines); None before any training."""
        try:
            return self._call("GET", "/train/", params={"check_if_running": "false"}).json()
        except ServerError as e:
            if e.status == 404:
                return None
            raise

    def _mask_and_result(self, model: str, image_id: str, params: dict,
                         mask: np.ndarray | None = None) -> tuple[np.ndarray, dict]:
        parts = multipart_fields(self._infer(model, image_id, "all", params, mask))
        if "image" not in parts:
            raise ServerError(200, f"model {model!r} returned no mask")
        return decode_png(parts["image"]), json.loads(parts.get("params") or "{}")

    def _infer(self, model: str, image_id: str, output: str, params: dict,
               mask: np.ndarray | None = None) -> requests.Response:
        files = None if mask is None else {"label": ("label.png", mask_png(mask), "image/png")}
        return self._call("POST", f"/infer/{model}", params={"image": image_id, "output": output},
                          data={"params": json.dumps(params)}, files=files)

    def _call(self, method: str, path: str, **kwargs) -> requests.Response:
        try:
            response = requests.request(method, self.url + path, headers=self.headers, timeout=self.timeout, **kwargs)
        except requests.RequestException as e:
            raise ServerError(0, f"no answer from {self.url}: {e}") from e
        if response.status_code >= 400:
            raise ServerError(response.status_code, _detail(response))
        return response


def multipart_fields(response: requests.Response) -> dict[str, bytes]:
    """``{field name: content}`` of a multipart/form-data answer (MONAI Label's ``output=all``); a JSON answer
    (the server had no image to send) is the one field ``params``."""
    if not response.headers.get("Content-Type", "").startswith("multipart/"):
        return {"params": response.content}
    head = f"Content-Type: {response.headers['Content-Type']}\r\n\r\n".encode()
    message = BytesParser(policy=HTTP).parsebytes(head + response.content)
    return {part.get_param("name", header="content-disposition"): part.get_payload(decode=True)
            for part in message.iter_parts()}


def _detail(response: requests.Response) -> str:
    try:
        return str(response.json().get("detail", response.text))
    except (ValueError, AttributeError):
        return response.text
