"""MONAI Label's local datastore for 2D PNGs, with validated input and atomic writes.

Uploads must be 8-bit grayscale PNGs with safe ids; labels must match their image's size and are
stored as 0/1 PNGs (MONAI Label's label-index convention). Files and ``datastore_v2.json`` are
written to a temporary file and renamed, so a killed server never leaves half a label behind.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from filelock import FileLock
from monailabel.datastore.local import DataModel, ImageLabelModel, LocalDatastore
from monailabel.interfaces.datastore import DefaultLabelTag
from PIL import Image

from breastlab.imageio import check_id, write_png, write_text_atomic
from breastlab.server import errors

EXTENSION = ".png"


class BreastLabDatastore(LocalDatastore):
    """A folder of PNG images (and ``labels/<tag>/`` PNG masks) served by MONAI Label."""

    def __init__(self, path: str, **kwargs):
        super().__init__(path, extensions=(f"*{EXTENSION}",), **kwargs)

    def add_image(self, image_id: str, image_filename: str, image_info: dict) -> str:
        image_id = _checked_id(image_id or Path(image_filename).name.removesuffix(EXTENSION))
        array = errors.read_upload(image_filename, "image")
        name = image_id + EXTENSION
        with FileLock(self._lock_file):
            write_png(array, Path(self._datastore.image_path()) / name)
            info = {**(image_info or {}), "ts": int(time.time()), "name": name, "height": array.shape[0],
                    "width": array.shape[1]}
            self._datastore.objects[image_id] = ImageLabelModel(image=DataModel(info=info, ext=EXTENSION))
            self._update_datastore_file(lock=False)
        return image_id

    def save_label(self, image_id: str, label_filename: str, label_tag: str, label_info: dict) -> str:
        image_id = _checked_id(image_id)
        tag = check_id(label_tag or DefaultLabelTag.FINAL.value, "label tag")
        self._require_image(image_id)
        mask = errors.read_upload(label_filename, "label")
        with Image.open(self.get_image_uri(image_id)) as image:  # header only, no decode
            image_shape = image.size[::-1]
        if mask.shape != image_shape:
            raise errors.unprocessable(
                f"label size {mask.shape[1]}x{mask.shape[0]} does not match image {image_id!r} "
                f"({image_shape[1]}x{image_shape[0]})"
            )
        name = image_id + EXTENSION
        label_dir = Path(self._datastore.label_path(tag))
        with FileLock(self._lock_file):
            label_dir.mkdir(parents=True, exist_ok=True)
            write_png((mask > 0).astype("uint8"), label_dir / name)
            info = {**(label_info or {}), "ts": int(time.time()), "name": name}
            self._datastore.objects[image_id].labels[tag] = DataModel(info=info, ext=EXTENSION)
            self._update_datastore_file(lock=False)
        return image_id

    def remove_image(self, image_id: str) -> None:
        self._require_image(image_id)
        super().remove_image(image_id)

    def remove_label(self, label_id: str, label_tag: str) -> None:
        if not self._datastore.label(label_id, label_tag):
            raise errors.not_found(f"no {label_tag!r} label for image {label_id!r}")
        super().remove_label(label_id, label_tag)

    def update_image_info(self, image_id: str, info: dict) -> None:
        self._require_image(image_id)
        with FileLock(self._lock_file):
            self._datastore.objects[image_id].image.info.update(info)
            self._update_datastore_file(lock=False)

    def _require_image(self, image_id: str) -> None:
        if image_id not in self._datastore.objects:
            raise errors.not_found(f"image {image_id!r} is not in the datastore")

    def _update_datastore_file(self, lock: bool = True) -> None:
        """Write ``datastore_v2.json`` atomically (temp file + rename)."""
        if lock:
            with FileLock(self._lock_file):
                return self._update_datastore_file(lock=False)
        self._ignore_event_config = True
        text = json.dumps(self._datastore.model_dump(exclude={"base_path"}), indent=2, default=str)
        write_text_atomic(self._datastore_config_path, text)
        self._config_ts = os.stat(self._datastore_config_path).st_mtime


def _checked_id(image_id: str) -> str:
    try:
        return check_id(image_id)
    except ValueError as e:
        raise errors.bad_request(str(e)) from e

