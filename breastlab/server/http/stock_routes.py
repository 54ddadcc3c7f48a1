"""MONAI Label's job routes, answered by BreastLab: every training or scoring goes through the queue cap
(``tasks``) and the parameter checks, ``run_sync`` runs in the thread pool and one at a time in the server
(``in_process``: a run_sync scoring holds the server's memory as a training does); the stock routes BreastLab does not
offer (run-everything job routes, whole slides, batch, sessions, MONAI Label's DICOM proxy) answer 404."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Optional

from fastapi import APIRouter, Depends, Request
from monailabel.config import RBAC_ADMIN, RBAC_ANNOTATOR, settings
from monailabel.endpoints import logs, scoring, train
from monailabel.endpoints.user.auth import User
from monailabel.interfaces.utils.app import app_instance

from breastlab.server.http import errors, inputs
from breastlab.server.http.auth import ADMIN, ANNOTATOR
from breastlab.server.tasks import background as tasks
from breastlab.server.tasks.scoring import MAX_BUDGET

router = APIRouter(prefix=settings.MONAI_LABEL_API_STR)
JSON_BODY = Depends(inputs.json_body)
_IN_PROCESS = threading.Lock()


@contextmanager
def in_process() -> Iterator[None]:
    """Hold while a ``run_sync`` training or scoring runs in the server; 409 when one already does."""
    if not _IN_PROCESS.acquire(blocking=False):
        raise errors.conflict("a training or scoring started with run_sync is running in the server: wait for it")
    try:
        yield
    finally:
        _IN_PROCESS.release()


@router.post("/train/{model}", summary=f"{RBAC_ADMIN}Run Training Task for specific model")
def train_model(model: str, params: dict = JSON_BODY, run_sync: Optional[bool] = False,
                enqueue: Optional[bool] = False, user: User = ADMIN):
    trainers = app_instance().info()["trainers"]
    if model not in trainers:
        raise errors.not_found(f"unknown model {model!r}; available: {', '.join(sorted(trainers))}")
    params = inputs.training_params(params)
    if run_sync:
        with in_process():
            return train.run_model(model, params, run_sync, enqueue)
    with tasks.submitting("train"):
        return train.run_model(model, params, run_sync, enqueue)


@router.post("/scoring/{method}", summary=f"{RBAC_ANNOTATOR}Run Scoring Task for specific method")
def run_scoring(method: str, params: dict = JSON_BODY, run_sync: Optional[bool] = False, user: User = ANNOTATOR):
    """Score the unlabelled images (in a background process unless ``run_sync``); scores go to an index."""
    instance = app_instance()
    methods = instance.info()["scoring"]
    if method not in methods:
        raise errors.not_found(f"unknown scoring method {method!r}; available: {', '.join(sorted(methods))}")
    params = dict(params or {})
    if "method" in params:  # MONAI Label merges params into the request, where it would replace the path's
        raise errors.unprocessable("params may not set method: the method comes from the path")
    models = sorted(getattr(instance.scoring_method(method), "bundles", None) or instance.info()["models"])
    if params.get("model") is not None and (not isinstance(params["model"], str) or params["model"] not in models):
        raise errors.not_found(f"unknown model {params['model']!r}; available: {', '.join(models)}")
    if "budget" in params:  # checked here too: a background job's error would not reach the client
        errors.integer_param(params["budget"], "budget", MAX_BUDGET)
    if run_sync:
        with in_process():
            return scoring.run_method(method, params, run_sync)
    with tasks.submitting("scoring"):
        return scoring.run_method(method, params, run_sync)


@router.get("/logs/", summary=f"{RBAC_ADMIN}Get Logs")
def server_logs(lines: Optional[int] = 300, html: Optional[bool] = True, text: Optional[bool] = False,
                refresh: Optional[int] = 0, user: User = ADMIN):
    """MONAI Label's log view, off the event loop; a missing log is a 404 that names no server path."""
    path = os.path.join(settings.MONAI_LABEL_APP_DIR, "logs", "app.log")
    if not os.path.isfile(path):
        raise errors.not_found("the server has no log file (logs/app.log in its app folder)")
    return logs.get_logs(path, lines, html, text, refresh)


NOT_OFFERED = [("POST", "/scoring/"), ("POST", "/train/"),  # every method / trainer at once, past the queue cap
               ("POST", "/infer/wsi_v2/{model}"), ("POST", "/infer/wsi/{model}"), ("POST", "/batch/infer/{model}"),
               ("GET", "/batch/infer"), ("DELETE", "/batch/infer"), ("PUT", "/session/"),
               ("GET", "/session/{session_id}"), ("DELETE", "/session/{session_id}"), ("GET", "/logs/gpu"),
               ("GET", "/proxy/dicom/{path:path}"), ("POST", "/proxy/dicom/{path:path}")]  # MONAI Label's
# pass-through to any PACS path, stores included; BreastLab's read-only one for the web viewer is ``viewer``


def not_offered(request: Request):
    """MONAI Label routes for what BreastLab does not do (whole slides, batch jobs, sessions, GPU logs, a DICOMweb
    pass-through for web viewers that would let clients store into the PACS unchecked)."""
    raise errors.not_found(f"{request.method} {request.url.path} is not offered by BreastLab")


for method, path in NOT_OFFERED:
    router.add_api_route(path, not_offered, methods=[method], include_in_schema=False)
