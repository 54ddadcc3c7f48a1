"""The latest result of every model on every datastore image, kept in SQLite next to the datastore.

A prediction is written on every inference, so it must not rewrite an index the size of the
datastore (as a label save does): one SQLite row per (image, model), replaced in place, in WAL mode
so that readers never wait for the writer and a crash never leaves a half-written record.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

SCHEMA = """CREATE TABLE IF NOT EXISTS predictions (
    image TEXT NOT NULL, model TEXT NOT NULL, time REAL NOT NULL, result TEXT NOT NULL, patient TEXT,
    PRIMARY KEY (image, model))"""
INSERT = "INSERT OR REPLACE INTO predictions (image, model, time, result, patient) VALUES (?, ?, ?, ?, ?)"
PATIENT_INDEX = "CREATE INDEX IF NOT EXISTS predictions_patient ON predictions (model, patient)"


class PredictionStore:
    """``<datastore root>/.breastlab/predictions.sqlite``: ``{image, model, time, result}`` records, each kept with
    its image's patient (looked up by model and patient)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("BEGIN IMMEDIATE")  # one process at a time adds the patient column to an older store
            db.execute(SCHEMA)
            if "patient" not in {row[1] for row in db.execute("PRAGMA table_info(predictions)")}:
                db.execute("ALTER TABLE predictions ADD COLUMN patient TEXT")
            db.execute(PATIENT_INDEX)
            db.execute("COMMIT")

    @classmethod
    def of(cls, root: str | Path) -> "PredictionStore":
        return cls(Path(root) / ".breastlab" / "predictions.sqlite")

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """A connection per call (requests come from several threads; opening one costs microseconds)."""
        with closing(sqlite3.connect(self.path, timeout=30, isolation_level=None)) as db:
            db.execute("PRAGMA synchronous=NORMAL")  # WAL: consistent after any crash; predictions can be recomputed
            yield db

    def put(self, image: str, model: str, result: dict, patient: str | None = None) -> dict:
        """Keep ``result`` (JSON-serialisable) as ``model``'s latest prediction for ``image``, of ``patient``."""
        record = {"image": image, "model": model, "time": time.time(), "result": result}
        with self._connect() as db:
            db.execute(INSERT, (image, model, record["time"], json.dumps(result), patient))
        return record

    def list(self, image: str | None = None, model: str | None = None, patient: str | None = None) -> list[dict]:
        """Records, optionally of one image, one model and/or one patient (indexed with the model), ordered by image
        then model."""
        filters = (("image", image), ("model", model), ("patient", patient))
        where = [(column, value) for column, value in filters if value is not None]
        sql = "SELECT image, model, time, result FROM predictions"
        if where:
            sql += " WHERE " + " AND ".join(f"{column} = ?" for column, _ in where)
        with self._connect() as db:
            rows = db.execute(sql + " ORDER BY image, model", [value for _, value in where]).fetchall()
        return [{"image": i, "model": m, "time": t, "result": json.loads(r)} for i, m, t, r in rows]

    def set_patient(self, image: str, patient: str | None) -> None:
        """The image's predictions are now of ``patient`` (its image info changed)."""
        with self._connect() as db:
            db.execute("UPDATE predictions SET patient = ? WHERE image = ?", (patient, image))

    def remove(self, image: str) -> None:
        """Forget an image's predictions (the image left the datastore)."""
        with self._connect() as db:
            db.execute("DELETE FROM predictions WHERE image = ?", (image,))
