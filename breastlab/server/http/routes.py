"""Endpoints BreastLab answers before MONAI Label's own: the same paths and parameters, but

- plain ``def`` handlers, which FastAPI runs in its thread pool: MONAI Label's handlers are ``async``
  and call blocking code, so one inference froze every other request (``/info/`` included);
- inference on ``BREASTLAB_INFER_WORKERS`` dedicated threads (default 1): waiting requests hold a pool
  thread, not the event loop, and torch keeps one set of OpenMP threads (switching calling threads
  left the previous set spinning and halved CPU throughput);
- clear 4xx errors for malformed JSON parameters, unknown models and strategies.

Jobs (training, scoring) and the stock routes not offered: ``stock_routes``; weights: ``model_routes``; the body
limit in front of every route: ``limits``.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional

from fastapi import APIRouter, Depends, FastAPI, File, Form, UploadFile
from fastapi.responses import JSONResponse, Response, StreamingResponse
from monailabel.config import RBAC_ADMIN, RBAC_ANNOTATOR, RBAC_USER, settings
from monailabel.endpoints import datastore, infer
from monailabel.endpoints.user.auth import User
from monailabel.interfaces.datastore import DefaultLabelTag
from monailabel.interfaces.utils.app import app_instance
from requests_toolbelt import MultipartEncoder

from breastlab.server.datastore import effort
from breastlab.server.datastore.review import READER_PREFIX, Review
from breastlab.server.http import errors, inputs, limits, model_routes, review_routes, stock_routes, viewer
from breastlab.server.http.auth import ADMIN, ANNOTATOR, REVIEWER_ROLES, USER

INFERENCE = ThreadPoolExecutor(int(os.environ.get("BREASTLAB_INFER_WORKERS", "1")), thread_name_prefix="inference")

router = APIRouter(prefix=settings.MONAI_LABEL_API_STR)
JSON_BODY = Depends(inputs.json_body)


def json_text(text: str | None, what: str) -> str:
    """A bounded JSON object (``inputs.json_object``) as text, for MONAI Label functions that parse it again."""
    return json.dumps(inputs.json_object(text, what))


@router.get("/info/", summary=f"{RBAC_USER}Get App Info")
def app_info(user: User = USER):
    return app_instance().info()


@router.post("/infer/{model}", summary=f"{RBAC_USER}Run Inference for supported model")
def run_inference(
    model: str,
    image: str = "",
    session_id: str = "",
    params: str = Form("{}"),
    file: UploadFile = File(None),
    label: UploadFile = File(None),
    output: Optional[infer.ResultType] = None,
    user: User = USER,
):
    """The model on a datastore image (``?image=`` id) or an uploaded file, never on a path a client names; the
    result is sent from memory and its file removed before the response leaves. ``label``: a mask (PNG of the
    image's size) that a promptable model's clicks refine. Answers are kept per ``client_id`` (params, else the
    user)."""
    request = {**inputs.inference_params(params), "model": model}
    request["client_id"] = effort.annotator_of(request, user.username)
    if session_id:
        raise errors.unprocessable("sessions are not used by BreastLab models: give ?image= (a datastore id) or "
                                   "upload the image as file=")
    instance = app_instance()
    if output == infer.ResultType.dicom_seg:
        raise errors.unprocessable("output=dicom_seg is not offered: a final label saved to a PACS datastore is "
                                   "stored as DICOM SEG")
    if label is not None:
        request["mask"] = refined_mask(instance, model, label)
    if file is None:
        if not image or not instance.datastore().get_image_uri(image):
            raise errors.not_found(f"image {image!r} is not in the datastore")  # never a server-side path
        return respond(INFERENCE.submit(instance.infer, {**request, "image": image}).result(), output)
    with inputs.saved_upload(file, instance.datastore().root) as path:
        result = INFERENCE.submit(instance.infer, {**request, "image": str(path)}).result()
    return respond(result, output)


def refined_mask(instance, model: str, label: UploadFile):
    """The uploaded mask a promptable model refines, as a boolean array (its size is checked against the image)."""
    bundle = instance.bundles.get(model)
    if bundle is None or not bundle.prompts:
        raise errors.unprocessable(f"label= (a mask to refine) is only taken by promptable models, not {model!r}")
    with inputs.saved_upload(label, instance.datastore().root) as path:
        return errors.read_upload(str(path), "label") > 0


def respond(result: dict, output: infer.ResultType | None) -> Response:
    """The JSON summary, the result image, or both (multipart, MONAI Label's default) from a task's result."""
    file, summary = result.get("file"), result.get("params") or {}
    try:
        content = Path(file).read_bytes() if file and output != infer.ResultType.json else None
    finally:
        if file:
            Path(file).unlink(missing_ok=True)
    if content is None:
        return JSONResponse(summary)
    if output == infer.ResultType.image:
        return Response(content, media_type="image/png",
                        headers={"Content-Disposition": 'attachment; filename="result.png"'})
    encoder = MultipartEncoder(fields={"params": (None, json.dumps(summary), "application/json"),
                                       "image": ("result.png", content, "image/png")})
    return Response(encoder.to_string(), media_type=encoder.content_type)


@router.post("/activelearning/{strategy}", summary=f"{RBAC_USER}Run Active Learning strategy to get next sample")
def next_sample(strategy: str, params: dict = JSON_BODY, user: User = USER):
    """The next image to label, with its info; ``{}`` when every image has a final label. The hand-out starts the
    annotator's effort session (``effort``)."""
    instance, annotator = app_instance(), effort.annotator_of(params or {}, user.username)
    if strategy == "review" and settings.MONAI_LABEL_AUTH_ENABLE and not set(REVIEWER_ROLES) & set(user.roles):
        raise errors.forbidden("the review strategy hands images to reviewers (MONAI Label's reviewer or admin role)")
    reader = review_routes.reader_of((params or {}).get("reader"), user)
    result = instance.next_sample({**(params or {}), "strategy": strategy, "client_id": annotator, "reader": reader})
    if not result:
        return {}
    result = {key: value for key, value in result.items() if key != "path"}  # clients fetch images by id
    instance.effort.handed_out(result["id"], annotator)
    instance.prefetch(result["id"])
    return {**instance.datastore().get_image_info(result["id"]), **result}


@router.get("/datastore/", summary=f"{RBAC_USER}Get All Images/Labels from datastore")
def list_datastore(output: Optional[datastore.ResultType] = None, user: User = USER):
    """``output=all`` is streamed entry by entry from a folder datastore (FastAPI's encoder took 3.5 s at 100k);
    ``output=train`` gives paths inside the studies folder, not the server's."""
    store = app_instance().datastore()
    if output == datastore.ResultType.all and hasattr(store, "listing"):
        return StreamingResponse(store.listing(), media_type="application/json")
    if output == datastore.ResultType.train:
        return store.datalist(full_path=False)
    return datastore.datastore(output)


@router.put("/datastore/image", summary=f"{RBAC_ANNOTATOR}Upload new Image")
@router.put("/datastore/", include_in_schema=False)  # MONAI Label's deprecated path for the same
def add_image(
    image: Optional[str] = None,
    params: str = Form("{}"),
    file: UploadFile = File(...),
    user: User = ANNOTATOR,
):
    """The upload is read from the private uploads folder and removed, accepted or not."""
    image = image or Path(file.filename or "").name.split(".")[0]
    info = {**inputs.json_object(params, "params"), "user": user.username}
    if info.get("model") is not None:
        raise errors.unprocessable("an image being uploaded has no result yet: send the probabilities of a model's "
                                   "result on it, with its model entry, by PUT /datastore/image/info")
    instance = app_instance()
    with inputs.saved_upload(file, instance.datastore().root) as path:
        image = instance.datastore().add_image(image, str(path), info)
    instance.predictions.remove(image)  # of the image this id named before
    instance.effort.remove(image)
    instance.prefetch(image)
    return {"image": image}


@router.delete("/datastore/image", summary=f"{RBAC_ADMIN}Remove Image and corresponding labels")
@router.delete("/datastore/", include_in_schema=False)  # MONAI Label's deprecated path for the same
def remove_image(id: str, user: User = ADMIN):
    removed = datastore.remove_image(id, user.username)
    app_instance().predictions.remove(id)
    app_instance().effort.remove(id)
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


@router.get("/datastore/effort", summary=f"{RBAC_USER}Annotation effort per model and annotator")
def annotation_effort(detail: bool = False, user: User = USER):
    """Per model and per annotator: images, median seconds and prompts per image, share kept as proposed, mean
    Dice of first proposal vs saved label; ``detail=true`` adds every saved label's row."""
    return effort.summary(app_instance().effort.rows(), detail)


@router.get("/datastore/image/info", summary=f"{RBAC_USER}Get Image Info")
def get_image_info(image: str, user: User = USER):
    store = app_instance().datastore()
    if not store.get_image_uri(image):
        raise errors.not_found(f"image {image!r} is not in the datastore")
    return store.get_image_info(image)


@router.put("/datastore/image/info", summary=f"{RBAC_ANNOTATOR}Update Image Info")
def update_image_info(image: str, info: str = Form("{}"), user: User = ANNOTATOR):
    """``model`` (with ``probabilities``) must be that of the latest result of its model on the image; a new
    ``patient`` moves the image's stored results to that woman."""
    checked = inputs.checked_image_labels(inputs.json_object(info, "info"))
    if "approved" in checked:
        raise errors.unprocessable("approved is set by a reviewer's approval (POST /datastore/review/approve)")
    inputs.check_served(checked.get("model"), app_instance().predictions.list(image), image)
    updated = datastore.update_image_info(image, json.dumps(checked), user.username)
    if "patient" in checked:
        app_instance().predictions.set_patient(image, checked["patient"])
    return updated


@router.delete("/datastore/label", summary=f"{RBAC_ADMIN}Remove Label")
def remove_label(id: str, tag: str, user: User = ADMIN):
    """A final or reader's label removed is an event of the image's review history."""
    removed = datastore.remove_label(id, tag, user.username)
    if tag == DefaultLabelTag.FINAL.value or tag.startswith(READER_PREFIX):
        Review.of(app_instance().datastore()).events.append(id, user.username, "label_removed", tag=tag)
    return removed


@router.head("/datastore/image", summary=f"{RBAC_USER}Check If Image Exists")
def check_image(image: str, check_sum: Optional[str] = None, user: User = USER):
    """200 when the image exists (and, with ``check_sum`` ``[algorithm:]hex``, has that digest), else 404."""
    path = app_instance().datastore().get_image_uri(image)
    if not path or not os.path.isfile(path):
        raise errors.not_found(f"image {image!r} is not in the datastore")
    if check_sum:
        algorithm, _, digest = check_sum.rpartition(":")
        algorithm = (algorithm or "sha256").lower()
        if algorithm not in hashlib.algorithms_guaranteed:
            raise errors.unprocessable(f"unknown checksum algorithm {algorithm!r}")
        if hashlib.new(algorithm, Path(path).read_bytes()).hexdigest() != digest.lower():
            raise errors.not_found(f"image {image!r} has another {algorithm} checksum")
    return Response(status_code=200)


@router.put("/datastore/updatelabelinfo", include_in_schema=False)  # MONAI Label's deprecated form of the next
def update_label_info_deprecated(label: str, tag: str, params: str = Form("{}"), user: User = ANNOTATOR):
    return datastore.update_label_info(label, tag, json_text(params, "params"), user.username)


@router.put("/datastore/label/info", summary=f"{RBAC_ANNOTATOR}Update Label Info")
def update_label_info(label: str, tag: str, info: str = Form("{}"), user: User = ANNOTATOR):
    return datastore.update_label_info(label, tag, json_text(info, "info"), user.username)


@router.get("/datastore/dataset", summary=f"{RBAC_ANNOTATOR}Download the datastore as a dataset folder (zip)")
def download_dataset(limit_cases: Optional[int] = None, user: User = ANNOTATOR):
    """The zip is unlinked as soon as it is open: nothing on disk outlives the request, even an aborted one."""
    if limit_cases is not None and limit_cases < 1:
        raise errors.unprocessable(f"limit_cases must be at least 1, got {limit_cases}")
    path = app_instance().datastore().get_dataset_archive(limit_cases)
    handle = open(path, "rb")
    os.unlink(path)

    def chunks():
        with handle:
            yield from iter(lambda: handle.read(1 << 20), b"")

    return StreamingResponse(chunks(), media_type="application/zip",
                             headers={"Content-Disposition": 'attachment; filename="dataset.zip"'})


def install(app: FastAPI) -> None:
    """Put BreastLab's routes in front of MONAI Label's (first match wins) and bound every request body; idempotent."""
    routers = (router, review_routes.router, viewer.router, model_routes.router, stock_routes.router)
    ours = [r for r in [route for r in routers for route in r.routes] if r not in app.router.routes]
    app.router.routes[:0] = ours
    limits.install(app)
