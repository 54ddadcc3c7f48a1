"""Model weights over HTTP, an admin action: an upload replaces a bundle's fine-tuned weights only after it loads
strictly into the bundle's network and holds only finite numbers; what is stored is the network's tensors alone
(nothing else the file carried). The swap is atomic for inferences (``weights.lock``); a delete removes fine-tuned
weights only. The shipped ``models/model.pt`` of a bundle is never touched by the server."""

from __future__ import annotations

import hashlib
import io
import os

import torch
from fastapi import APIRouter, File, UploadFile
from monailabel.config import RBAC_ADMIN, settings
from monailabel.endpoints.user.auth import User
from monailabel.interfaces.utils.app import app_instance

from breastlab.formats.checkpoints import read_state_dict
from breastlab.formats.png import write_atomic
from breastlab.server.http import errors, inputs
from breastlab.server.http.auth import ADMIN
from breastlab.server.tasks import weights

router = APIRouter(prefix=settings.MONAI_LABEL_API_STR)


def _bundle(model: str):
    bundles = app_instance().bundles
    if model not in bundles:
        raise errors.not_found(f"unknown model {model!r}; weights belong to a bundle: {', '.join(sorted(bundles))}")
    return bundles[model]


def checked_weights(bundle, path) -> bytes:
    """The checkpoint at ``path`` as the bytes to serve: its state dict after a strict load into the bundle's network,
    each tensor copied out of whatever larger storage it viewed; 422 for another network's weights or a value that
    is not finite (NaN weights would make every inference of the model fail)."""
    try:
        state = read_state_dict(path)
        bundle.network().load_state_dict(state)
    except Exception as e:  # not a checkpoint, or one of another network: nothing is replaced
        raise errors.unprocessable(f"the file is not weights of {bundle.name}: {str(e)[:300]}") from e
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise errors.unprocessable(f"weights of {bundle.name} must be finite; NaN or infinity in {', '.join(bad[:5])}")
    buffer = io.BytesIO()
    torch.save({k: v.clone() for k, v in state.items()}, buffer)
    return buffer.getvalue()


@router.put("/model/{model}", summary=f"{RBAC_ADMIN}Replace a bundle's fine-tuned weights (validated)")
def update_model(model: str, file: UploadFile = File(...), user: User = ADMIN):
    bundle, instance = _bundle(model), app_instance()
    with inputs.saved_upload(file, instance.datastore().root, ".pt") as path:
        data = checked_weights(bundle, path)
    target = instance.served_weights(model)
    with weights.lock(model).writing():
        target.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(target, lambda f: f.write(data))
        modified = os.stat(target).st_mtime
    return {"checksum": "sha256:" + hashlib.sha256(data).hexdigest(), "modified_time": int(modified)}


@router.delete("/model/{model}", summary=f"{RBAC_ADMIN}Delete a bundle's fine-tuned weights (the shipped stay)")
def delete_model(model: str, user: User = ADMIN):
    _bundle(model)
    target = app_instance().served_weights(model)
    with weights.lock(model).writing():
        if not target.is_file():
            raise errors.not_found(f"{model} has no fine-tuned weights; its shipped weights are part of the bundle")
        target.unlink()
    return {}
