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
    image TEXT NOT NULL, model TEXT NOT NULL, time REAL NOT NULL, result TEXT NOT NULL,
    PRIMARY KEY (image, model))"""


class PredictionStore:
    """``<datastore root>/.breastlab/predictions.sqlite``: ``{image, model, time, result}`` records."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(SCHEMA)

    @classmethod
    def of(cls, root: str | Path) -> "PredictionStore":
        return cls(Path(root) / ".breastlab" / "predictions.sqlite")

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """A connection per call (requests come from several threads; opening one costs microseconds)."""
        with closing(sqlite3.connect(self.path, timeout=30, isolation_level=None)) as db:
            db.execute("PRAGMA synchronous=NORMAL")  # WAL: consistent after any crash; predictions can be recomputed
            yield db

    def put(self, image: str, model: str, result: dict) -> dict:
        """Keep ``result`` (JSON-serialisable) as ``model``'s latest prediction for ``image``."""
        record = {"image": image, "model": model, "time": time.time(), "result": result}
        with self._connect() as db:
            db.execute("INSERT OR REPLACE INTO predictions VALUES (?, ?, ?, ?)",
                       (image, model, record["time"], json.dumps(result)))
        return record

    def list(self, image: str | None = None, model: str | None = None) -> list[dict]:
        """Records, optionally of one image and/or one model, ordered by image then model."""
        where = [(column, value) for column, value in (("image", image), ("model", model)) if value is not None]
        sql = "SELECT image, model, time, result FROM predictions"
        if where:
            sql += " WHERE " + " AND ".join(f"{column} = ?" for column, _ in where)
        with self._connect() as db:
            rows = db.execute(sql + " ORDER BY image, model", [value for _, value in where]).fetchall()
        return [{"image": i, "model": m, "time": t, "result": json.loads(r)} for i, m, t, r in rows]

    def remove(self, image: str) -> None:
        """Forget an image's predictions (the image left the datastore)."""
        with self._connect() as db:
            db.execute("DELETE FROM predictions WHERE image = ?", (image,))
