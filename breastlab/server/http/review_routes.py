"""Several readers per image over HTTP: label saves under their reader, agreement, the consensus proposal and the
reviewer's decisions (``breastlab.server.datastore.review``).

The reader (or reviewer) is the authenticated user where auth is on (a ``reader`` or ``reviewer`` naming someone else
is refused), else the query parameter ``reader`` (``reviewer``), else MONAI Label's default user. Reviewing needs
MONAI Label's reviewer (or admin) role.
"""

from __future__ import annotations

import hashlib
import re
from typing import Optional

from fastapi import APIRouter, File, Form, Response, UploadFile
from monailabel.config import RBAC_ANNOTATOR, RBAC_REVIEWER, RBAC_USER, settings
from monailabel.endpoints.user.auth import User
from monailabel.interfaces.datastore import DefaultLabelTag
from monailabel.interfaces.utils.app import app_instance

from breastlab.formats.png import SAFE_ID, encode_png
from breastlab.metrics.consensus import consensus
from breastlab.server.datastore import effort
from breastlab.server.datastore.review import READER_PREFIX, Review
from breastlab.server.http import errors, inputs
from breastlab.server.http.auth import ANNOTATOR, REVIEWER, USER

router = APIRouter()
FINAL = DefaultLabelTag.FINAL.value


def reader_of(name: str | None, user: User, role: str = "reader") -> str:
    """Who reads or reviews: see the module docstring."""
    if settings.MONAI_LABEL_AUTH_ENABLE:
        if name not in (None, user.username):
            raise errors.forbidden(f"a {role} acts under their own name ({user.username!r}), not {name!r}")
        return safe_reader(user.username)
    return inputs.checked_id(name, role) if name is not None else safe_reader(user.username)


def safe_reader(name: str) -> str:
    """A user name as a reader id; one that is no safe id (an e-mail address) gets its odd characters replaced and
    a short hash of the whole name appended, so two names never share a reader."""
    if SAFE_ID.fullmatch(name) and ".." not in name:
        return name
    cleaned = re.sub(r"^[^A-Za-z0-9]+", "", re.sub(r"[^A-Za-z0-9_.-]", "_", name))[:100] or "user"
    return f"{cleaned.replace('..', '_')}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


def review_of() -> Review:
    return Review.of(app_instance().datastore())


@router.put("/datastore/label", summary=f"{RBAC_ANNOTATOR}Save Finished Label")
def save_label(
    image: str,
    params: str = Form("{}"),
    tag: str = FINAL,
    reader: Optional[str] = None,
    label: UploadFile = File(...),
    user: User = ANNOTATOR,
):
    """A final label is stored under its reader (``class`` and ``birads`` in ``params`` are the reader's) and writes
    the annotator's effort row; other tags are stored as they are. The upload is removed, saved or not."""
    info, tag = inputs.json_object(params, "params"), tag or FINAL
    if tag.startswith(READER_PREFIX):
        raise errors.bad_request(f"tag {tag!r}: a reader's label is saved with tag=final&reader=NAME")
    instance = app_instance()
    with inputs.saved_upload(label, instance.datastore().root) as path:
        if tag != FINAL:
            instance.datastore().save_label(image, str(path), tag, info)
            return {**(instance.on_save_label(image, image) or {}), "image": image, "label": image}
        name = reader_of(reader, user)
        state = review_of().save_read(image, name, str(path), info, user.username)
        instance.effort.saved(image, effort.annotator_of({"client_id": name, **info}, user.username),
                              errors.read_upload(str(path), "label"))
    return {**(instance.on_save_label(image, image) or {}), "image": image, "label": image, **state}


@router.get("/datastore/agreement", summary=f"{RBAC_USER}Agreement between readers")
def agreement(image: Optional[str] = None, user: User = USER):
    """One image: each pair of readers with its Dice and HD95, each reader's class and BI-RADS. Without ``image``:
    the study's mean pairwise Dice, HD95 and kappas (class, BI-RADS) with 95 % bootstrap intervals."""
    review = review_of()
    if image is None:
        return review.study()
    _require_image(image)
    return {"image": image, **review.agreement(image)}


@router.get("/datastore/review", summary=f"{RBAC_USER}An image's readers, agreement, consensus and history")
def review_state(image: str, user: User = USER):
    """Status, each reader's class and BI-RADS with STAPLE's sensitivity and specificity of their mask, the
    consensus proposal's class and BI-RADS, the pairwise agreement and every event of the image."""
    review = review_of()
    _require_image(image)
    reads = review.reads(image)
    proposal = consensus(reads) if reads else {"readers": {}, "class": None, "birads": None}
    readers = {r: {"class": read["class"], "birads": read["birads"], **proposal["readers"].get(r, {})}
               for r, read in reads.items()}
    return {**review.status(image), "readers": readers,
            "consensus": {"class": proposal["class"], "birads": proposal["birads"]},
            "agreement": review.agreement(image)["pairs"], "events": review.history(image)}


@router.get("/datastore/consensus", summary=f"{RBAC_USER}The readers' consensus mask (STAPLE) as a PNG")
def consensus_mask(image: str, user: User = USER):
    _require_image(image)
    reads = review_of().reads(image)
    if not reads:
        raise errors.not_found(f"image {image!r} has no reader's label")
    return Response(encode_png(consensus(reads)["mask"].astype("uint8")), media_type="image/png")


@router.post("/datastore/review/start", summary=f"{RBAC_REVIEWER}Put an image in review")
def start_review(image: str, reviewer: Optional[str] = None, user: User = REVIEWER):
    return review_of().start(image, reader_of(reviewer, user, "reviewer"))


@router.post("/datastore/review/approve", summary=f"{RBAC_REVIEWER}Approve a label as the image's final label")
def approve(image: str, source: str, reviewer: Optional[str] = None, params: str = Form("{}"),
            label: UploadFile = File(None), user: User = REVIEWER):
    """``source``: ``consensus``, ``reader:<name>`` or ``edited`` (the uploaded ``label``); ``params`` may set the
    final ``class`` and ``birads`` (else the source's own)."""
    labels, review, name = inputs.json_object(params, "params"), review_of(), reader_of(reviewer, user, "reviewer")
    if label is None:
        return review.approve(image, name, source, labels=labels)
    with inputs.saved_upload(label, app_instance().datastore().root) as path:
        return review.approve(image, name, source, str(path), labels)


@router.post("/datastore/review/return", summary=f"{RBAC_REVIEWER}Return an image to its readers with a comment")
def return_image(image: str, comment: str = Form(...), reviewer: Optional[str] = None, user: User = REVIEWER):
    return review_of().return_to_readers(image, reader_of(reviewer, user, "reviewer"), comment)


def _require_image(image: str) -> None:
    if not app_instance().datastore().get_image_uri(image):
        raise errors.not_found(f"image {image!r} is not in the datastore")
