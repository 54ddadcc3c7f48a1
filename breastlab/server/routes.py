"""Endpoints BreastLab answers before MONAI Label's own: the same paths and parameters, but

- plain ``def`` handlers, which FastAPI runs in its thread pool: MONAI Label's handlers are ``async``
  and call blocking code, so one inference froze every other request (``/info/`` included);
- inference on ``BREASTLAB_INFER_WORKERS`` dedicated threads (default 1): waiting requests hold a pool
  thread, not the event loop, and torch keeps one set of OpenMP threads (switching calling threads
  left the previous set spinning and halved CPU throughput);
- clear 4xx errors for malformed JSON parameters, unknown models and strategies.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional

from fastapi import APIRouter, BackgroundTasks, Depends, FastAPI, File, Form, UploadFile
from monailabel.config import RBAC_ADMIN, RBAC_ANNOTATOR, RBAC_USER, settings
from monailabel.endpoints import datastore, infer, scoring, train
from monailabel.endpoints.user.auth import RBAC, User
from monailabel.interfaces.datastore import DefaultLabelTag
from monailabel.interfaces.utils.app import app_instance

from breastlab.server import errors

INFERENCE = ThreadPoolExecutor(int(os.environ.get("BREASTLAB_INFER_WORKERS", "1")), thread_name_prefix="inference")
USER = Depends(RBAC(settings.MONAI_LABEL_AUTH_ROLE_USER))
ANNOTATOR = Depends(RBAC(settings.MONAI_LABEL_AUTH_ROLE_ANNOTATOR))
ADMIN = Depends(RBAC(settings.MONAI_LABEL_AUTH_ROLE_ADMIN))

router = APIRouter(prefix=settings.MONAI_LABEL_API_STR)


def json_object(text: str | None, what: str) -> str:
    """``text`` if it is empty or a JSON object; otherwise a 400 that says what is wrong."""
    try:
        value = json.loads(text) if text else {}
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise errors.bad_request(f"{what} is not valid JSON: {e}") from e
    if not isinstance(value, dict):
        raise errors.bad_request(f"{what} must be a JSON object, not {type(value).__name__}")
    return text or "{}"


def neutral_filename(upload: UploadFile | None) -> None:
    """Forget the client's file name: MONAI Label builds temp paths from it (NUL bytes, 300-char suffixes)."""
    if upload is not None:
        upload.filename = "upload.png"


@router.get("/info/", summary=f"{RBAC_USER}Get App Info")
def app_info(user: User = USER):
    return app_instance().info()


@router.post("/infer/{model}", summary=f"{RBAC_USER}Run Inference for supported model")
def run_inference(
    background_tasks: BackgroundTasks,
    model: str,
    image: str = "",
    session_id: str = "",
    params: str = Form("{}"),
    file: UploadFile = File(None),
    label: UploadFile = File(None),
    output: Optional[infer.ResultType] = None,
    user: User = USER,
):
    params = json_object(params, "params")
    if not (file or image or session_id):
        raise errors.bad_request("give an image id, an uploaded file or a session id")
    if image and not file and not app_instance().datastore().get_image_uri(image):
        raise errors.not_found(f"image {image!r} is not in the datastore")  # never a server-side path
    for upload in (file, label):
        neutral_filename(upload)
    return INFERENCE.submit(infer.run_inference, background_tasks, model, image, session_id, params, file, label,
                            output).result()


@router.post("/train/{model}", summary=f"{RBAC_ADMIN}Run Training Task for specific model")
def train_model(
    model: str,
    params: Optional[dict] = None,
    run_sync: Optional[bool] = False,
    enqueue: Optional[bool] = False,
    user: User = ADMIN,
):
    trainers = app_instance().info()["trainers"]
    if model not in trainers:
        raise errors.not_found(f"unknown model {model!r}; available: {', '.join(sorted(trainers))}")
    return train.run_model(model, params, run_sync, enqueue)


@router.post("/scoring/{method}", summary=f"{RBAC_ANNOTATOR}Run Scoring Task for specific method")
def run_scoring(method: str, params: Optional[dict] = None, run_sync: Optional[bool] = False, user: User = ANNOTATOR):
    """Score the unlabelled images (in a background process unless ``run_sync``); scores go to an index."""
    info = app_instance().info()
    if method not in info["scoring"]:
        raise errors.not_found(f"unknown scoring method {method!r}; available: {', '.join(sorted(info['scoring']))}")
    model = (params or {}).get("model")
    if model is not None and model not in info["models"]:
        raise errors.not_found(f"unknown model {model!r}; available: {', '.join(sorted(info['models']))}")
    return scoring.run_method(method, params, run_sync)


@router.post("/activelearning/{strategy}", summary=f"{RBAC_USER}Run Active Learning strategy to get next sample")
def next_sample(strategy: str, params: Optional[dict] = None, user: User = USER):
    """The next image to label, with its info; ``{}`` when every image has a final label."""
    instance = app_instance()
    result = instance.next_sample({**(params or {}), "strategy": strategy, "client_id": user.username})
    return {**instance.datastore().get_image_info(result["id"]), **result} if result else {}


@router.get("/datastore/", summary=f"{RBAC_USER}Get All Images/Labels from datastore")
def list_datastore(output: Optional[datastore.ResultType] = None, user: User = USER):
    return datastore.datastore(output)


@router.put("/datastore/image", summary=f"{RBAC_ANNOTATOR}Upload new Image")
def add_image(
    background_tasks: BackgroundTasks,
    image: Optional[str] = None,
    params: str = Form("{}"),
    file: UploadFile = File(...),
    user: User = ANNOTATOR,
):
    image = image or Path(file.filename or "").name.split(".")[0]
    neutral_filename(file)
    return datastore.add_image(background_tasks, image, json_object(params, "params"), file, user.username)


@router.delete("/datastore/image", summary=f"{RBAC_ADMIN}Remove Image and corresponding labels")
def remove_image(id: str, user: User = ADMIN):
    removed = datastore.remove_image(id, user.username)
    app_instance().predictions.remove(id)
    return removed


@router.get("/datastore/predictions", summary=f"{RBAC_USER}Latest prediction of each model on each image")
def list_predictions(image: Optional[str] = None, model: Optional[str] = None, user: User = USER):
    """``[{image, model, time, result}]``: what every model last returned for each datastore image."""
    instance = app_instance()
    if image is not None and not instance.datastore().get_image_uri(image):
        raise errors.not_found(f"image {image!r} is not in the datastore")
    models = instance.info()["models"]
    if model is not None and model not in models:
        raise errors.not_found(f"unknown model {model!r}; available: {', '.join(sorted(models))}")
    return instance.predictions.list(image, model)


@router.put("/datastore/image/info", summary=f"{RBAC_ANNOTATOR}Update Image Info")
def update_image_info(image: str, info: str = Form("{}"), user: User = ANNOTATOR):
    return datastore.update_image_info(image, json_object(info, "info"), user.username)


@router.put("/datastore/label", summary=f"{RBAC_ANNOTATOR}Save Finished Label")
def save_label(
    background_tasks: BackgroundTasks,
    image: str,
    params: str = Form("{}"),
    tag: str = DefaultLabelTag.FINAL.value,
    label: UploadFile = File(...),
    user: User = ANNOTATOR,
):
    neutral_filename(label)
    return datastore.save_label(background_tasks, image, json_object(params, "params"), tag, label, user.username)


@router.delete("/datastore/label", summary=f"{RBAC_ADMIN}Remove Label")
def remove_label(id: str, tag: str, user: User = ADMIN):
    return datastore.remove_label(id, tag, user.username)


@router.put("/datastore/label/info", summary=f"{RBAC_ANNOTATOR}Update Label Info")
def update_label_info(label: str, tag: str, info: str = Form("{}"), user: User = ANNOTATOR):
    return datastore.update_label_info(label, tag, json_object(info, "info"), user.username)


@router.get("/datastore/dataset", summary=f"{RBAC_ANNOTATOR}Download the datastore as a dataset folder (zip)")
def download_dataset(limit_cases: Optional[int] = None, user: User = ANNOTATOR):
    return datastore.download_dataset(limit_cases)


def install(app: FastAPI) -> None:
    """Put BreastLab's routes in front of MONAI Label's (first match wins); idempotent."""
    ours = [r for r in router.routes if r not in app.router.routes]
    app.router.routes[:0] = ours
