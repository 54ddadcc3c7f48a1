"""``datastore_v2.json`` and its journal: a save appends one fsynced line (O(1) in the datastore's size) and the
snapshot is rewritten only every ``COMPACT_AFTER`` changes. Writes and start-ups check entries alike (``entry_model``),
so an acknowledged entry is always read back; one the server cannot take (a damaged file) is quarantined, and never
stops it starting."""

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
from breastlab.server.http import bounded_json

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


def entry_model(image_id: str, entry) -> ImageLabelModel:
    """An index entry (parsed JSON) as the index takes it, else ``ValueError``: valid for MONAI Label, no refused number
    or lone surrogate anywhere, the image info and each label's info within a request's bounds. Writes check with it
    before they acknowledge (``entry_json``), start-ups with it: every entry written is read back."""
    bounded_json.check([image_id, entry], f"index entry {image_id!r}", depth=None, items=None)
    model = ImageLabelModel.model_validate(entry)
    bounded_json.check(model.image.info, f"the image info of {image_id!r}")
    for tag, label in model.labels.items():
        bounded_json.check(label.info, f"the info of label {tag!r} of {image_id!r}")
    return model


class EntryRefused(HTTPException, ValueError):
    """An entry the index would not read back: a 422 for a client, a ``ValueError`` for a PACS sync (which skips
    that instance)."""

    def __init__(self, detail: str):
        super().__init__(status_code=422, detail=detail)


def entry_json(image_id: str, obj: ImageLabelModel) -> str:
    """``obj``'s JSON, which ``entry_model`` takes back; ``EntryRefused`` saying why not (nothing is stored then)."""
    try:
        text = obj.model_dump_json()
        entry_model(image_id, bounded_json.parse(text))
    except ValueError as e:  # PydanticSerializationError (e.g. text that is not UTF-8) and JSONRefused are ValueErrors
        raise EntryRefused(f"not stored: {str(e)[:300]}") from e
    return text


def quarantine_of(snapshot: Path) -> Path:
    return snapshot.with_name(snapshot.name + ".quarantine")


def read_index(path: Path, name: str, description: str) -> LocalDatastoreModel:
    """The snapshot at ``path`` with its journal replayed. An entry ``entry_model`` does not take, or a journal line
    that does not parse, is kept in ``<name>.quarantine`` and logged, never dropped: its image's files stay, and
    start-up reconciliation indexes them again. A snapshot that is not JSON at all is kept aside as
    ``<name>.unreadable-<time>`` and the index starts from the journal alone, to be completed from the files."""
    try:
        raw = bounded_json.parse(path.read_text(encoding="utf-8")) if path.exists() else {}
        objects = raw.pop("objects", {})
        model = LocalDatastoreModel.model_validate({"name": name, "description": description, **raw})
    except (ValueError, RecursionError, AttributeError, TypeError) as e:
        kept = path.with_name(f"{path.name}.unreadable-{int(time.time())}")
        shutil.move(path, kept)
        logger.error(f"datastore index {path} is unreadable ({str(e)[:200]}); kept as {kept}, rebuilt from files")
        objects, model = {}, LocalDatastoreModel(name=name, description=description)
    changes, refused = list(objects.items()) if isinstance(objects, dict) else [], []
    journal = journal_of(path)
    for line in journal.read_text(encoding="utf-8").splitlines() if journal.exists() else ():
        try:
            change = bounded_json.parse(line)
            if not isinstance(change["id"], str):
                raise TypeError(f"id {change['id']!r} is not a string")
            changes.append((change["id"], change["entry"]))
        except (ValueError, KeyError, TypeError) as e:
            refused.append({"id": None, "reason": f"journal line: {str(e)[:300]}", "line": line})
    for image_id, entry in changes:
        try:
            if entry is None:
                model.objects.pop(image_id, None)
            else:
                model.objects[image_id] = entry_model(image_id, entry)
        except (ValueError, RecursionError) as e:
            model.objects.pop(image_id, None)
            refused.append({"id": image_id, "reason": f"entry {image_id!r}: {str(e)[:300]}", "entry": entry})
    _quarantine(path, refused)
    return model


def _quarantine(snapshot: Path, refused: list[dict]) -> None:
    """Append each record of ``refused`` not kept yet to the quarantine file (fsynced) and log where it is."""
    if not refused:
        return
    kept = quarantine_of(snapshot)
    known = set(kept.read_text(encoding="utf-8").splitlines()) if kept.exists() else set()
    lines = [_record_line(record) for record in refused]
    with open(kept, "a", encoding="utf-8") as f:
        f.writelines(line + "\n" for line in dict.fromkeys(lines) if line not in known)
        f.flush()
        os.fsync(f.fileno())
    for record in refused:
        logger.error(f"datastore index: {record['reason']}; left out of the index (its image is indexed again from its "
                     f"files) and kept in {kept}")


def _record_line(record: dict) -> str:
    """One quarantine line; ASCII, with lone surrogates as escapes and refused numbers as their text."""
    try:
        return json.dumps(record)
    except RecursionError:  # an entry parsed at the edge of the recursion limit: its id and the reason at least
        return json.dumps({**record, "entry": None, "reason": record["reason"] + " (nested too deep to keep)"})


def listing(header: dict, objects: dict, json_of: Callable[[str, ImageLabelModel], str]) -> Iterator[str]:
    """The index as JSON text in chunks of ``LISTING_CHUNK`` entries (a send per entry cost more than the JSON)."""
    yield json.dumps(header)[:-1] + ', "objects": {'
    ids = list(objects)
    for start in range(0, len(ids), LISTING_CHUNK):
        part = ", ".join(f"{json.dumps(i)}: {json_of(i, objects[i])}" for i in ids[start:start + LISTING_CHUNK])
        yield (", " if start else "") + part
    yield "}}"
