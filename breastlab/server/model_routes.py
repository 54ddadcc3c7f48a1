"""Model weights over HTTP, an admin action: an upload replaces a bundle's fine-tuned weights only after it loads
strictly into the bundle's network; a delete removes fine-tuned weights only. The shipped ``models/model.pt`` of a
bundle is never touched by the server."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from fastapi import APIRouter, File, UploadFile
from monailabel.config import RBAC_ADMIN, settings
from monailabel.endpoints.user.auth import User
from monailabel.interfaces.utils.app import app_instance

from breastlab.bundle import load_weights
from breastlab.server import errors, inputs
from breastlab.server.auth import ADMIN

router = APIRouter(prefix=settings.MONAI_LABEL_API_STR)


def _bundle(model: str):
    bundles = app_instance().bundles
    if model not in bundles:
        raise errors.not_found(f"unknown model {model!r}; weights belong to a bundle: {', '.join(sorted(bundles))}")
    return bundles[model]


@router.put("/model/{model}", summary=f"{RBAC_ADMIN}Replace a bundle's fine-tuned weights (validated)")
def update_model(model: str, file: UploadFile = File(...), user: User = ADMIN):
    bundle, instance = _bundle(model), app_instance()
    target = instance.served_weights(model)
    with inputs.saved_upload(file, instance.datastore().root, ".pt") as path:
        try:
            load_weights(bundle.network(), path)
        except Exception as e:  # not a checkpoint, or one of another network: nothing is replaced
            raise errors.unprocessable(f"the file is not weights of {model}: {str(e)[:300]}") from e
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=target.parent, prefix=f".{target.name}.", delete=False) as tmp:
            tmp.write(path.read_bytes())
        os.replace(tmp.name, target)
    return {"checksum": "sha256:" + hashlib.sha256(target.read_bytes()).hexdigest(),
            "modified_time": int(target.stat().st_mtime)}


@router.delete("/model/{model}", summary=f"{RBAC_ADMIN}Delete a bundle's fine-tuned weights (the shipped stay)")
def delete_model(model: str, user: User = ADMIN):
    _bundle(model)
    target = Path(app_instance().served_weights(model))
    if not target.is_file():
        raise errors.not_found(f"{model} has no fine-tuned weights; its shipped weights are part of the bundle")
    target.unlink()
    return {}
