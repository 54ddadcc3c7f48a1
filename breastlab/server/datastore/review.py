"""Several readers per image, and the decision that becomes its ``final`` label.

Every final-label save is kept under its reader: label tag ``reader-<name>`` holds the mask, its info the reader's
class and BI-RADS; a reader never overwrites another reader. ``final`` (what training, export and active learning
read, MONAI Label's convention) is decided: while an image has one reader, that reader's label (one annotator works
as before); once a second reader saves, no final label until a reviewer approves the consensus, one reader's label or
an edited mask; an approved label stands until the next decision. A returned image loses its final label and goes
back to its readers with the reviewer's comment.

Every change is a JSON line appended (and fsynced) to ``labels/review_events.jsonl`` beside the labels: who, when,
what. An image's status (``unlabelled → labelled → in_review → approved | returned``) and the origin of every final
label are replays of it.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from fastapi import HTTPException
from monailabel.interfaces.datastore import DefaultLabelTag

from breastlab.formats.png import read_gray_png, write_png
from breastlab.metrics.agreement import image_agreement, study_agreement
from breastlab.metrics.consensus import consensus
from breastlab.server.http import errors
from breastlab.server.http.inputs import checked_id, checked_image_labels, uploads_folder

FINAL = DefaultLabelTag.FINAL.value
READER_PREFIX = "reader-"
EVENTS = "review_events.jsonl"
READ_LABELS = ("class", "birads")


def reader_tag(reader: str) -> str:
    return READER_PREFIX + checked_id(reader, "reader")


def readers_of(labels: dict) -> list[str]:
    """The readers of an index entry's labels, sorted."""
    return sorted(tag[len(READER_PREFIX):] for tag in labels if tag.startswith(READER_PREFIX))


def is_read(labels: dict) -> bool:
    """Whether an image has a final label or any reader's label (strategies hand out the others)."""
    return bool(labels.get(FINAL)) or any(tag.startswith(READER_PREFIX) for tag in labels)


def checked_read(info: dict) -> dict:
    """The reader's ``class`` and ``birads`` from a label's info, normalised (422 for unknown values)."""
    checked = checked_image_labels({key: info.get(key) for key in READ_LABELS})
    return {key: checked[key] for key in READ_LABELS if checked.get(key) is not None}


class EventLog:
    """Append-only JSON lines, each fsynced before it counts; read back whole at start (a line torn by a crash is
    skipped) and kept in memory per image."""

    def __init__(self, path: Path):
        self.path = path
        self._by_image: dict[str, list[dict]] = {}
        if path.is_file():
            for line in path.read_text().splitlines():
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                self._by_image.setdefault(event.get("image"), []).append(event)

    def append(self, image: str, user: str, event: str, **details) -> dict:
        record = {"time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"), "image": image,
                  "user": user, "event": event, **details}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self._by_image.setdefault(image, []).append(record)
        return record

    def of(self, image: str) -> list[dict]:
        return list(self._by_image.get(image, ()))


class Review:
    """Readers' labels, their review and the final label of one datastore (one instance per studies folder)."""

    _open: dict[str, Review] = {}

    def __init__(self, store):
        self.store = store
        self.events = EventLog(Path(store.root) / "labels" / EVENTS)
        self.lock = threading.RLock()
        self._agreement: dict[str, tuple[tuple, dict]] = {}

    @classmethod
    def of(cls, store) -> Review:
        key = str(Path(store.root).resolve())
        if key not in cls._open or cls._open[key].store is not store:
            cls._open[key] = cls(store)
        return cls._open[key]

    def readers(self, image: str) -> list[str]:
        obj = self.store.objects.get(image)
        return readers_of(obj.labels) if obj else []

    def reads(self, image: str) -> dict[str, dict]:
        """``{reader: {"mask", "class", "birads", "time"}}`` of an image."""
        reads = {}
        for reader in self.readers(image):
            tag = reader_tag(reader)
            info = self.store.get_label_info(image, tag)
            mask = read_gray_png(self.store.get_label_uri(image, tag)) > 0
            reads[reader] = {"mask": mask, **{k: info.get(k) for k in READ_LABELS}, "ts": info.get("ts")}
        return reads

    def agreement(self, image: str) -> dict:
        """The image's :func:`image_agreement`, computed again only when one of its readers' label files changes."""
        uris = {r: self.store.get_label_uri(image, reader_tag(r)) for r in self.readers(image)}
        key = tuple((r, os.stat(uri).st_mtime_ns) for r, uri in uris.items())
        cached = self._agreement.get(image)
        if cached is None or cached[0] != key:
            cached = self._agreement[image] = (key, image_agreement(self.reads(image)))
        return cached[1]

    def study(self, n_bootstrap: int = 1000) -> dict:
        """:func:`study_agreement` of every image with a reader's label (one image's masks in memory at a time)."""
        read = [image for image, obj in self.store.objects.items() if readers_of(obj.labels)]
        return study_agreement({image: self.agreement(image) for image in read}, n_bootstrap)

    def status(self, image: str) -> dict:
        """The image's status, its readers and, for a returned image, the reviewer's comment. Without events (a
        PACS read into a new cache) it follows the labels: approved where an approval is recorded, else labelled
        where there are readers."""
        readers, state, comment = self.readers(image), None, None
        for event in self.events.of(image):
            if event["event"] in ("label", "review", "approve", "return"):
                state = {"label": "labelled", "review": "in_review", "approve": "approved"}.get(event["event"],
                                                                                               "returned")
                comment = event.get("comment")
        obj = self.store.objects.get(image)
        if state is None:
            state = "approved" if obj and obj.image.info.get("approved") else "labelled" if readers else "unlabelled"
        state = state if readers or state == "approved" else "unlabelled"
        return {"image": image, "status": state, "readers": readers, **({"comment": comment} if comment else {})}

    def save_read(self, image: str, reader: str, label_path: str, info: dict, user: str) -> dict:
        """Store a reader's label (mask file, info with class and BI-RADS), then decide the final label."""
        read = checked_read(info)
        with self.lock:
            self.store.save_label(image, label_path, reader_tag(reader), {**info, **read, "reader": reader})
            self.events.append(image, user, "label", reader=reader, **read)
            readers, final = self.readers(image), self._final_info(image)
            if final and final.get("decided") == "review":
                pass  # an approved label stands until the next decision
            elif len(readers) == 1:
                self._set_final(image, user, f"reader:{reader}", self.store.get_label_uri(image, reader_tag(reader)),
                                read, "single reader", info)
            elif final:
                self._withdraw(image, user, f"{len(readers)} readers: awaiting review")
        return self.status(image)

    def start(self, image: str, reviewer: str) -> dict:
        with self.lock:
            self._require_readers(image)
            self.events.append(image, reviewer, "review")
        return self.status(image)

    def approve(self, image: str, reviewer: str, source: str, edited: str | None = None,
                labels: dict | None = None) -> dict:
        """Make ``source`` (``consensus``, ``reader:<name>`` or ``edited``: the uploaded mask file ``edited``) the
        final label, with ``labels`` (class, BI-RADS) over the source's own."""
        labels = checked_read(labels or {})
        with self.lock:
            reads = self._require_readers(image)
            if source == "consensus":
                proposal = consensus(reads)
                mask, own = proposal["mask"], {k: proposal[k] for k in READ_LABELS}
            elif source.startswith("reader:") and source[len("reader:"):] in reads:
                read = reads[source[len("reader:"):]]
                mask, own = read["mask"], {k: read[k] for k in READ_LABELS}
            elif source == "edited" and edited is not None:
                mask, own = None, {k: v for k, v in consensus(reads).items() if k in READ_LABELS}
            else:
                raise errors.unprocessable(f"source must be consensus, reader:<one of {', '.join(reads)}> or edited "
                                           f"(with a mask upload), got {source!r}")
            chosen = {**{k: v for k, v in own.items() if v is not None}, **labels}
            with self._mask_file(mask, edited) as path:
                self._set_final(image, reviewer, source, path, chosen, "review")
            self.events.append(image, reviewer, "approve", source=source, **chosen)
        return self.status(image)

    def return_to_readers(self, image: str, reviewer: str, comment: str) -> dict:
        if not isinstance(comment, str) or not comment.strip() or len(comment) > 2000:
            raise errors.unprocessable("a returned image needs a comment for its readers (1-2000 characters)")
        with self.lock:
            readers = list(self._require_readers(image))
            if self._final_info(image):
                self._withdraw(image, reviewer, "returned to its readers")
            self.events.append(image, reviewer, "return", comment=comment.strip(), readers=readers)
        return self.status(image)

    def history(self, image: str) -> list[dict]:
        return self.events.of(image)

    def _require_readers(self, image: str) -> dict[str, dict]:
        if self.store.objects.get(image) is None:
            raise errors.not_found(f"image {image!r} is not in the datastore")
        reads = self.reads(image)
        if not reads:
            raise errors.conflict(f"image {image!r} has no reader's label to review")
        return reads

    def _final_info(self, image: str) -> dict | None:
        obj = self.store.objects.get(image)
        return obj.labels[FINAL].info if obj and obj.labels.get(FINAL) else None

    def _set_final(self, image: str, user: str, source: str, mask_path: str, labels: dict, decided: str,
                   info: dict | None = None) -> None:
        """Write the final label (with the reader's label ``info`` where one reader's save made it) and its event."""
        record = {**(info or {}), "source": source, "decided": decided, "by": user, **labels}
        self.store.save_label(image, mask_path, FINAL, record)
        approved = {"by": user, "source": source} if decided == "review" else None
        if labels or approved or self._approved(image):
            self.store.update_image_info(image, {**labels, "approved": approved})
        self.events.append(image, user, "final", source=source, decided=decided, **labels)

    def _approved(self, image: str) -> bool:
        return bool(self.store.objects[image].image.info.get("approved"))

    def _withdraw(self, image: str, user: str, reason: str) -> None:
        """Remove the final label; a PACS keeps its SEG (409: deleted in the PACS only) until the next decision."""
        try:
            self.store.remove_label(image, FINAL)
        except HTTPException as e:
            if e.status_code != 409:
                raise
            self.events.append(image, user, "final_kept", reason=f"{reason}; {e.detail}")
            return
        if self._approved(image):
            self.store.update_image_info(image, {"approved": None})
        self.events.append(image, user, "final_withdrawn", reason=reason)

    @contextmanager
    def _mask_file(self, mask: np.ndarray | None, edited: str | None):
        """``edited`` as it is, or ``mask`` as a PNG in the datastore's private uploads folder, removed after use."""
        if mask is None:
            yield edited
            return
        path = uploads_folder(self.store.root) / f"review-{uuid.uuid4().hex}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            yield str(write_png(mask.astype(np.uint8), path, durable=False))
        finally:
            path.unlink(missing_ok=True)
