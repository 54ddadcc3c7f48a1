"""A folder datastore as dataset cases: the training list of its final labels, and the zip export that
``breastlab import`` reads back."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from monailabel.datastore.local import ImageLabelModel, LocalDatastoreModel
from monailabel.interfaces.datastore import DefaultLabelTag

from breastlab.data import Case, write_dataset
from breastlab.server.http import errors


def dataset_archive(index: LocalDatastoreModel, limit_cases: int | None = None,
                    extra: Callable[[list[str], Path], None] | None = None) -> str:
    """A zip of the index's images, final masks and classes, from one snapshot of it (writes replace the index, so
    a delete meanwhile cannot pull an entry; a case whose files are gone since is left out); ``extra(ids, folder)``
    writes further files of the exported ids into the dataset folder."""
    objects = index.objects
    ids = sorted(objects)[: limit_cases or None]
    if not ids:
        raise errors.not_found("the datastore is empty: nothing to export")
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_dataset(Path(tmp) / "dataset", [as_case(index, i, objects[i]) for i in ids])
        if extra:
            extra(ids, folder)
        with tempfile.NamedTemporaryFile(suffix=".zip", delete=False) as archive:
            base = archive.name.removesuffix(".zip")
        return shutil.make_archive(base, "zip", folder)


def final_cases(index: LocalDatastoreModel) -> list[Case]:
    """The images with a final label, as dataset cases (mask, class), sorted by id."""
    objects, final = index.objects, DefaultLabelTag.FINAL.value
    return [as_case(index, i, objects[i]) for i in sorted(objects) if final in objects[i].labels]


def as_case(index: LocalDatastoreModel, image_id: str, obj: ImageLabelModel) -> Case:
    """A dataset case from an index entry."""
    info, final = obj.image.info, obj.labels.get(DefaultLabelTag.FINAL.value)
    label = Path(index.label_path(DefaultLabelTag.FINAL.value), image_id + final.ext) if final else None
    return Case(image_id, Path(index.image_path(), image_id + obj.image.ext), label, info.get("class"), None,
                {"birads": info.get("birads") or ""})
