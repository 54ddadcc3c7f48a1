"""``datastore_v2.json`` read entry by entry, so that one entry the server cannot take never stops it starting."""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

from fastapi import HTTPException
from monailabel.datastore.local import ImageLabelModel, LocalDatastoreModel

from breastlab.server.inputs import check_bounds

logger = logging.getLogger(__name__)


def read_index(path: Path, name: str, description: str) -> LocalDatastoreModel:
    """The index at ``path``; an entry that does not validate, or whose info nests or holds too much, is left out
    (its files stay, and start-up reconciliation indexes them again without that info). A file that is not JSON
    at all is kept aside as ``<name>.unreadable-<time>`` and the index starts empty, to be rebuilt from the files."""
    try:
        raw = json.loads(path.read_text())
        objects = raw.pop("objects", {})
        model = LocalDatastoreModel.model_validate({"name": name, "description": description, **raw})
    except (ValueError, RecursionError, AttributeError) as e:
        kept = path.with_name(f"{path.name}.unreadable-{int(time.time())}")
        shutil.move(path, kept)
        logger.error(f"datastore index {path} is unreadable ({str(e)[:200]}); kept as {kept}, rebuilt from files")
        return LocalDatastoreModel(name=name, description=description)
    for image_id, entry in (objects.items() if isinstance(objects, dict) else ()):
        try:
            check_bounds(entry, f"index entry {image_id!r}")
            model.objects[image_id] = ImageLabelModel.model_validate(entry)
        except (ValueError, RecursionError, HTTPException) as e:
            logger.error(f"datastore index entry {image_id!r} left out: {str(getattr(e, 'detail', e))[:200]}")
    return model
