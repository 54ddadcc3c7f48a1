"""MONAI Label's local datastore for 2D PNGs, with validated input, atomic writes and safe concurrency.

Uploads must be 8-bit grayscale PNGs with safe ids; labels must match their image's size and are stored as 0/1 PNGs
(MONAI Label's label-index convention). An index entry is checked as a start-up reads it (``index.entry_json``) before
any file is written; files are written to a temporary file and renamed, so a killed server never leaves half a label
behind; on start, MONAI Label's reconciliation re-adds any file whose index entry the kill prevented.

Requests run in a thread pool, so writers hold one lock (a thread lock plus the datastore's file lock) and replace the
index entries copy-on-write: a reader iterating the index never sees it change.
"""

from __future__ import annotations

import copy
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock
from monailabel.datastore.local import DataModel, ImageLabelModel, LocalDatastore
from monailabel.interfaces.datastore import DefaultLabelTag
from PIL import Image

from breastlab.data import Case
from breastlab.formats.png import remove_stale_temp_files, write_png
from breastlab.server.datastore import export, index, review_export
from breastlab.server.datastore.effort import EffortStore
from breastlab.server.datastore.review import Review, is_read
from breastlab.server.http import errors
from breastlab.server.http.inputs import checked_id, checked_image_labels

EXTENSION = ".png"


class BreastLabDatastore(LocalDatastore):
    """A folder of PNG images (and ``labels/<tag>/`` PNG masks) served by MONAI Label."""

    def __init__(self, path: str, **kwargs):
        self._mutex = threading.RLock()
        self._status: tuple[dict | None, dict] = (None, {})
        self._entry_json: dict[str, tuple[ImageLabelModel, str]] = {}  # id -> (entry, its JSON), for writes
        self._journal_lines = 0
        super().__init__(path, extensions=(f"*{EXTENSION}",), **kwargs)
        with self._writing():  # every write holds this lock: no other process is mid-write now
            remove_stale_temp_files(Path(path))
            if index.journal_of(self._snapshot).exists():
                self._update_datastore_file(lock=False)  # fold the last run's journal into the snapshot

    @property
    def _snapshot(self) -> Path:
        return Path(self._datastore_config_path)

    def _init_from_datastore_file(self, throw_exception: bool = False) -> None:
        """MONAI Label's reload of an index another process changed, with its journal, entry by entry
        (``index.read_index``): a bad entry cannot stop a start-up or a training."""
        with FileLock(self._lock_file):
            if self._config_ts != index.version(self._snapshot):
                self._datastore = index.read_index(self._snapshot, self._datastore.name, self._datastore.description)
                self._datastore.base_path = self._datastore_path
                self._config_ts = index.version(self._snapshot)

    @property
    def root(self) -> Path:
        """The studies folder."""
        return Path(self._datastore_path)

    @property
    def objects(self) -> dict[str, ImageLabelModel]:
        """The current index (image id → image and labels); replaced, never changed, by writes."""
        return self._datastore.objects

    def get_image_info(self, image_id: str) -> dict:
        """The image's info, without MONAI Label's absolute server ``path`` (clients address images by id)."""
        info = super().get_image_info(image_id)
        info.pop("path", None)
        return info

    def add_image(self, image_id: str, image_filename: str, image_info: dict) -> str:
        image_id = checked_id(image_id)
        array, dicom = errors.read_image_upload(image_filename)
        source = {"dicom": dicom.description()} if dicom else {}
        return self._store_image(image_id, array, {**checked_image_labels(image_info or {}), **source})

    def _store_image(self, image_id: str, array, info: dict) -> str:
        """Write the (checked) image and its index entry. An image uploaded again under its id is a new image: its
        old labels are deleted from disk as from the index (they were drawn on the old one)."""
        name = image_id + EXTENSION
        with self._writing():
            info = {**info, "ts": int(time.time()), "name": name, "height": array.shape[0], "width": array.shape[1]}
            obj = ImageLabelModel(image=DataModel(info=info, ext=EXTENSION))
            text, old = index.entry_json(image_id, obj), self._datastore.objects.get(image_id)  # 422: nothing written
            for tag in old.labels if old else ():
                Path(self.get_label_uri(image_id, tag)).unlink(missing_ok=True)
            write_png(array, Path(self._datastore.image_path()) / name)
            self._put(image_id, obj, text)
        return image_id

    def save_label(self, image_id: str, label_filename: str, label_tag: str, label_info: dict) -> str:
        image_id = checked_id(image_id)
        tag = checked_id(label_tag or DefaultLabelTag.FINAL.value, "label tag")
        return self._store_label(image_id, tag, self._checked_mask(image_id, label_filename), label_info)

    def _checked_mask(self, image_id: str, label_filename: str):
        """The uploaded label as an (H, W) array; 404 for an unknown image, 422 for a size mismatch."""
        self._require_image(image_id)
        mask = errors.read_upload(label_filename, "label")
        try:
            with Image.open(self.get_image_uri(image_id)) as image:  # header only, no decode
                image_shape = image.size[::-1]
        except FileNotFoundError as e:  # deleted since the check above
            raise errors.not_found(f"image {image_id!r} is not in the datastore") from e
        if mask.shape != image_shape:
            raise errors.unprocessable(f"label size {mask.shape[1]}x{mask.shape[0]} does not match image "
                                       f"{image_id!r} ({image_shape[1]}x{image_shape[0]})")
        return mask

    def _store_label(self, image_id: str, tag: str, mask, label_info: dict | None) -> str:
        """Write the (checked) mask as a 0/1 PNG and its index entry."""
        name = image_id + EXTENSION
        label_dir = Path(self._datastore.label_path(tag))
        with self._writing():
            obj = self._require_image(image_id)
            label = DataModel(info={**(label_info or {}), "ts": int(time.time()), "name": name}, ext=EXTENSION)
            obj = obj.model_copy(update={"labels": {**obj.labels, tag: label}})
            text = index.entry_json(image_id, obj)  # 422: nothing written
            label_dir.mkdir(parents=True, exist_ok=True)
            write_png((mask > 0).astype("uint8"), label_dir / name)
            self._put(image_id, obj, text)
        return image_id

    def remove_image(self, image_id: str) -> None:
        with self._writing():
            obj = self._require_image(image_id)
            for tag in obj.labels:
                Path(self.get_label_uri(image_id, tag)).unlink(missing_ok=True)
            Path(self.get_image_uri(image_id)).unlink(missing_ok=True)
            self._put(image_id, None)

    def remove_label(self, label_id: str, label_tag: str) -> None:
        with self._writing():
            obj = self._require_label(label_id, label_tag)
            Path(self.get_label_uri(label_id, label_tag)).unlink(missing_ok=True)
            labels = {tag: label for tag, label in obj.labels.items() if tag != label_tag}
            self._put(label_id, obj.model_copy(update={"labels": labels}))

    def update_image_info(self, image_id: str, info: dict) -> None:
        info = checked_image_labels(info)
        with self._writing():
            obj = self._require_image(image_id)
            image = obj.image.model_copy(update={"info": {**obj.image.info, **info}})
            self._put(image_id, obj.model_copy(update={"image": image}))

    def update_label_info(self, label_id: str, label_tag: str, info: dict) -> None:
        with self._writing():
            obj = self._require_label(label_id, label_tag)
            label = obj.labels[label_tag]
            label = label.model_copy(update={"info": {**label.info, **info}})
            self._put(label_id, obj.model_copy(update={"labels": {**obj.labels, label_tag: label}}))

    def get_dataset_archive(self, limit_cases: int | None = None) -> str:
        """A zip of the datastore as a dataset folder (images, final masks, classes) ``breastlab import`` reads, with
        the annotation effort of its labels (``effort.csv``) and every reader's labels and review
        (``review_export``)."""
        effort = EffortStore.of(self.root)

        def extra(ids: list[str], folder: Path) -> None:
            (folder / "effort.csv").write_text(effort.csv(ids), encoding="utf-8")
            review_export.write_reviews(Review.of(self), ids, folder)

        return export.dataset_archive(self._datastore, limit_cases, extra)

    def final_cases(self) -> list[Case]:
        """The images with a final label, as dataset cases (mask, class), sorted by id: what trainers use."""
        return export.final_cases(self._datastore)

    def status(self) -> dict:
        """Image and label counts, recomputed only after a write (each write replaces the index dict)."""
        objects = self._datastore.objects
        if self._status[0] is not objects:
            tags = Counter(tag for obj in objects.values() for tag in obj.labels)
            status = {"total": len(objects), "completed": tags[DefaultLabelTag.FINAL.value], "label_tags": dict(tags)}
            self._status = (objects, status)
        return copy.deepcopy(self._status[1])

    def random_unlabeled(self, exclude: set[str] = frozenset(), tries: int = 64) -> str | None:
        """A random image without a final or reader's label and not in ``exclude``; O(1) expected while many are
        left."""
        objects = self._datastore.objects
        ids = list(objects)
        for image_id in random.choices(ids, k=min(tries, len(ids))):
            if image_id not in exclude and not is_read(objects[image_id].labels):
                return image_id
        left = [i for i, obj in objects.items() if i not in exclude and not is_read(obj.labels)]
        return random.choice(left) if left else None

    def _reconcile_datastore(self) -> None:
        """Match the index to the files on disk in O(n): drop entries whose file is gone, add new files.

        Replaces MONAI Label's version, which tests list membership once per file (O(n^2): hours at 100k).
        """
        self._init_from_datastore_file()
        images = _png_ids(Path(self._datastore.image_path()))
        labels_root = Path(self._datastore.label_path(None))
        labels = {d.name: _png_ids(d) for d in labels_root.iterdir() if d.is_dir()} if labels_root.is_dir() else {}
        now = int(time.time())
        objects, changed = {}, False
        for image_id in sorted(images):
            old = self._datastore.objects.get(image_id)
            obj = old or ImageLabelModel(image=DataModel(info={"ts": now, "name": image_id + EXTENSION}, ext=EXTENSION))
            kept = {tag: label for tag, label in obj.labels.items() if image_id in labels.get(tag, ())}
            found = {tag: DataModel(info={"ts": now, "name": image_id + EXTENSION}, ext=EXTENSION)
                     for tag, ids in labels.items() if image_id in ids and tag not in kept}
            if old is None or found or len(kept) != len(obj.labels):
                obj, changed = obj.model_copy(update={"labels": {**kept, **found}}), True
            objects[image_id] = obj
        if changed or len(objects) != len(self._datastore.objects):
            with self._writing():
                self._datastore.objects = objects
                self._update_datastore_file(lock=False)

    @contextmanager
    def _writing(self):
        """One writer at a time: threads of this server (lock) and other processes (file lock)."""
        with self._mutex, FileLock(self._lock_file):
            yield

    def _put(self, image_id: str, obj: ImageLabelModel | None, text: str | None = None) -> None:
        """Journal one entry's change (``text``: its ``index.entry_json``, a 422 before anything is stored), then
        replace (``None``: drop) it copy-on-write. O(1) on disk; the snapshot is rewritten every ``COMPACT_AFTER``."""
        text = text or (None if obj is None else index.entry_json(image_id, obj))
        index.append(self._snapshot, image_id, text)
        objects = dict(self._datastore.objects)
        if obj is None:
            objects.pop(image_id, None)
        else:
            objects[image_id], self._entry_json[image_id] = obj, (obj, text)
        self._datastore.objects = objects
        self._journal_lines += 1
        if self._journal_lines >= index.COMPACT_AFTER:
            self._update_datastore_file(lock=False)
        self._config_ts = index.version(self._snapshot)

    def _json_of(self, image_id: str, obj: ImageLabelModel) -> str:
        """An entry's JSON, made once per entry (entries are replaced, never changed)."""
        cached = self._entry_json.get(image_id)
        if cached is None or cached[0] is not obj:
            cached = self._entry_json[image_id] = (obj, obj.model_dump_json())
        return cached[1]

    def listing(self) -> Iterator[str]:
        """``/datastore/?output=all`` as JSON text chunks, entry by entry (no whole-index copy or encoder pass)."""
        header = self._datastore.model_dump(exclude={"base_path", "objects"})
        return index.listing(header, self._datastore.objects, self._json_of)

    def datalist(self, full_path: bool = True) -> list[dict]:
        """(image, label) file pairs of the final labels; ``full_path=False``: relative to the studies folder
        (what a client may see; MONAI Label's own version leaves server paths in)."""
        pairs, root = super().datalist(), self.root.resolve()
        return pairs if full_path else [{k: Path(v).relative_to(root).as_posix() for k, v in p.items()} for p in pairs]

    def _require_image(self, image_id: str) -> ImageLabelModel:
        obj = self._datastore.objects.get(image_id)
        if obj is None:
            raise errors.not_found(f"image {image_id!r} is not in the datastore")
        return obj

    def _require_label(self, image_id: str, tag: str) -> ImageLabelModel:
        obj = self._datastore.objects.get(image_id)
        if obj is None or tag not in obj.labels:
            raise errors.not_found(f"no {tag!r} label for image {image_id!r}")
        return obj

    def compact(self) -> None:
        """Fold the journal into the ``datastore_v2.json`` snapshot now (e.g. after an import)."""
        self._update_datastore_file()

    def _update_datastore_file(self, lock: bool = True) -> None:
        """Rewrite the ``datastore_v2.json`` snapshot atomically and empty the journal."""
        if lock:
            with self._writing():
                return self._update_datastore_file(lock=False)
        self._ignore_event_config = True
        header = self._datastore.model_dump(exclude={"base_path", "objects"})
        entries = {i: self._json_of(i, obj) for i, obj in self._datastore.objects.items()}
        index.write_snapshot(self._snapshot, header, entries)
        self._journal_lines = 0
        self._config_ts = index.version(self._snapshot)


def _png_ids(folder: Path) -> set[str]:
    """Ids of the PNG files directly in ``folder`` (temp files, which start with a dot, excluded)."""
    with os.scandir(folder) as entries:
        return {e.name.removesuffix(EXTENSION) for e in entries
                if e.name.endswith(EXTENSION) and not e.name.startswith(".") and e.is_file()}
