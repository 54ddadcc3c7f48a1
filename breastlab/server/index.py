"""``datastore_v2.json`` and its journal: a save appends one fsynced line (O(1) in the datastore's size) and the
snapshot is rewritten only every ``COMPACT_AFTER`` changes; entries are read one by one, so that one entry the
server cannot take never stops it starting."""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from fastapi import HTTPException
from monailabel.datastore.local import ImageLabelModel, LocalDatastoreModel

from breastlab.formats.png import write_text_atomic
from breastlab.server.inputs import check_bounds

logger = logging.getLogger(__name__)
COMPACT_AFTER = 2000  # journal lines before the snapshot is rewritten
LISTING_CHUNK = 2000  # index entries per chunk of a streamed listing


def journal_of(snapshot: Path) -> Path:
    return snapshot.with_name(snapshot.name + ".journal")


def version(snapshot: Path) -> tuple[float, int]:
    """Changes when the snapshot is rewritten or the journal grows (what another process must reload)."""
    journal = journal_of(snapshot)
    return (snapshot.stat().st_mtime if snapshot.exists() else 0.0,
            journal.stat().st_size if journal.exists() else 0)


def append(snapshot: Path, image_id: str, entry: str | None) -> None:
    """Record that ``image_id`` now has ``entry`` (its JSON) or, with ``None``, is gone; fsynced before return."""
    line = json.dumps({"id": image_id, "entry": None}) if entry is None else \
        f'{{"id": {json.dumps(image_id)}, "entry": {entry}}}'
    with open(journal_of(snapshot), "a", encoding="utf-8") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


def write_snapshot(snapshot: Path, header: dict, entries: dict[str, str]) -> None:
    """Rewrite the snapshot (atomically) from ``header`` and each entry's JSON, then empty the journal."""
    body = ", ".join(f"{json.dumps(i)}: {e}" for i, e in entries.items())
    write_text_atomic(snapshot, json.dumps(header)[:-1] + f', "objects": {{{body}}}}}')
    journal_of(snapshot).unlink(missing_ok=True)  # a crash before this replays changes the snapshot already has


def read_index(path: Path, name: str, description: str) -> LocalDatastoreModel:
    """The snapshot at ``path`` with its journal replayed. An entry that does not validate, or whose info nests or
    holds too much, is left out (its files stay, and start-up reconciliation indexes them again without that
    info). A snapshot that is not JSON at all is kept aside as ``<name>.unreadable-<time>`` and the index starts
    from the journal alone, to be completed from the files; a torn last journal line is ignored."""
    try:
        raw = json.loads(path.read_text()) if path.exists() else {}
        objects = raw.pop("objects", {})
        model = LocalDatastoreModel.model_validate({"name": name, "description": description, **raw})
    except (ValueError, RecursionError, AttributeError) as e:
        kept = path.with_name(f"{path.name}.unreadable-{int(time.time())}")
        shutil.move(path, kept)
        logger.error(f"datastore index {path} is unreadable ({str(e)[:200]}); kept as {kept}, rebuilt from files")
        objects, model = {}, LocalDatastoreModel(name=name, description=description)
    changes = list(objects.items()) if isinstance(objects, dict) else []
    journal = journal_of(path)
    for line in journal.read_text(encoding="utf-8").splitlines() if journal.exists() else ():
        try:
            change = json.loads(line)
            changes.append((change["id"], change["entry"]))
        except (ValueError, RecursionError, KeyError, TypeError):
            logger.error(f"datastore journal {journal}: a line that does not parse is skipped")
    for image_id, entry in changes:
        if entry is None:
            model.objects.pop(image_id, None)
            continue
        try:
            check_bounds(entry, f"index entry {image_id!r}")
            model.objects[image_id] = ImageLabelModel.model_validate(entry)
        except (ValueError, RecursionError, HTTPException) as e:
            model.objects.pop(image_id, None)
            logger.error(f"datastore index entry {image_id!r} left out: {str(getattr(e, 'detail', e))[:200]}")
    return model


def listing(header: dict, objects: dict, json_of: Callable[[str, ImageLabelModel], str]) -> Iterator[str]:
    """The index as JSON text in chunks of ``LISTING_CHUNK`` entries (a send per entry cost more than the JSON)."""
    yield json.dumps(header)[:-1] + ', "objects": {'
    ids = list(objects)
    for start in range(0, len(ids), LISTING_CHUNK):
        part = ", ".join(f"{json.dumps(i)}: {json_of(i, objects[i])}" for i in ids[start:start + LISTING_CHUNK])
        yield (", " if start else "") + part
    yield "}}"
