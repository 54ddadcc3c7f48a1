"""Endpoints BreastLab answers before MONAI Label's own: the same paths, with clear 4xx errors."""

from __future__ import annotations

from typing import Optional

from fastapi import APIRouter, Depends, FastAPI
from monailabel.config import RBAC_ADMIN, settings
from monailabel.endpoints import train
from monailabel.endpoints.user.auth import RBAC, User
from monailabel.interfaces.utils.app import app_instance

from breastlab.server import errors

router = APIRouter(prefix=settings.MONAI_LABEL_API_STR)


@router.post("/train/{model}", summary=f"{RBAC_ADMIN}Run Training Task for specific model")
async def train_model(
    model: str,
    params: Optional[dict] = None,
    run_sync: Optional[bool] = False,
    enqueue: Optional[bool] = False,
    user: User = Depends(RBAC(settings.MONAI_LABEL_AUTH_ROLE_ADMIN)),
):
    trainers = app_instance().info()["trainers"]
    if model not in trainers:
        raise errors.not_found(f"unknown model {model!r}; available: {', '.join(sorted(trainers))}")
    return train.run_model(model, params, run_sync, enqueue)


def install(app: FastAPI) -> None:
    """Put BreastLab's routes in front of MONAI Label's (first match wins); idempotent."""
    ours = [r for r in router.routes if r not in app.router.routes]
    app.router.routes[:0] = ours
