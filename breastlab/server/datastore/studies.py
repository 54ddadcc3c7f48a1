"""Turn a BreastLab dataset folder into a MONAI Label studies folder (images, final labels, classes)."""

from __future__ import annotations

from pathlib import Path

from fastapi import HTTPException
from monailabel.interfaces.datastore import DefaultLabelTag

from breastlab.data import DatasetError, read_dataset
from breastlab.progress import progress
from breastlab.server.datastore.local import BreastLabDatastore
from breastlab.server.datastore.review_export import read_reviews


def import_dataset(data_dir: str | Path, studies_dir: str | Path, split: str | None = None) -> int:
    """Copy every case into ``studies_dir``; masks become final labels, the class goes in image info.

    The image-level class (``normal``/``benign``/``malignant``) is stored as ``class`` in the image
    info, so it is listed by ``/datastore`` whether or not the image has a mask; the manifest's ``patient``
    (a safe id) too, where it has one. A BreastLab export's readers' labels and review history come along
    (``review_export``). Returns the count.
    """
    cases = read_dataset(data_dir, split)
    store = BreastLabDatastore(str(studies_dir))
    for case in progress(cases, f"import {Path(data_dir).name}"):
        source = f"{Path(data_dir).name}/{case.image.name}"  # the dataset's name, not a server path
        info = {"source": source} | ({"class": case.label} if case.label else {})
        info |= {"patient": case.meta["patient"]} if case.meta.get("patient") else {}
        try:
            store.add_image(case.case, str(case.image), info)
            if case.mask is not None:
                mask_source = {"source": f"{Path(data_dir).name}/masks/{case.mask.name}"}
                store.save_label(case.case, str(case.mask), DefaultLabelTag.FINAL.value, mask_source)
        except HTTPException as e:
            raise DatasetError(f"case {case.case!r} ({case.image}): {e.detail}") from e
    try:
        read_reviews(Path(data_dir), store)
    except (HTTPException, ValueError, KeyError) as e:
        raise DatasetError(f"{data_dir}: readers' labels: {getattr(e, 'detail', e)}") from e
    store.compact()
    return len(cases)
