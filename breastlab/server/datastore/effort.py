"""Annotation effort, measured where it happens: for each final label, which model proposed the first mask, the
prompts sent, the seconds from hand-out to save and how much of the first proposal was kept.

An open session per (image, annotator) is one SQLite row, updated in one transaction per request (hand-out,
inference); a final label's save writes the finished row (a second save replaces it, a new hand-out starts the
session over). The first proposal's mask is kept as its PNG bytes in the
session row, so it survives a restart; nothing per request stays in memory. WAL mode, one connection per call:
readers never wait for the writer and a crash never leaves a half-written row.
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import statistics
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import numpy as np
from PIL import Image

from breastlab.metrics import format_table
from breastlab.metrics.segmentation import dice as mask_dice
from breastlab.server.http import errors

KEPT_DICE = 0.98  # a saved label this close to the first proposal counts as "kept as proposed"
MAX_ANNOTATOR = 128
PROMPTS = ("roi", "foreground", "background")
SESSIONS = """CREATE TABLE IF NOT EXISTS sessions (
    image TEXT NOT NULL, annotator TEXT NOT NULL, started REAL NOT NULL, handed_out INTEGER NOT NULL,
    model TEXT, proposal BLOB, boxes INTEGER NOT NULL DEFAULT 0, clicks INTEGER NOT NULL DEFAULT 0,
    undos INTEGER NOT NULL DEFAULT 0, automatic INTEGER NOT NULL DEFAULT 0, prompt TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (image, annotator))"""
LABELS = """CREATE TABLE IF NOT EXISTS labels (
    image TEXT NOT NULL, annotator TEXT NOT NULL, saved REAL NOT NULL, model TEXT, seconds REAL,
    boxes INTEGER NOT NULL, clicks INTEGER NOT NULL, undos INTEGER NOT NULL, automatic INTEGER NOT NULL,
    dice REAL, handed_out INTEGER NOT NULL, PRIMARY KEY (image, annotator))"""
COLUMNS = ("image", "annotator", "model", "saved", "seconds", "boxes", "clicks", "undos", "automatic", "prompts",
           "dice", "kept_as_proposed", "handed_out")


def annotator_of(params: dict, username: str) -> str:
    """Who makes a request: ``client_id`` in its params when given (not null), else the authenticated user; 422 for
    a ``client_id`` that is not a short non-empty text."""
    client = params.get("client_id")
    return username if client is None else checked_annotator(client)


def checked_annotator(value) -> str:
    """``value`` as an annotator id; 422 unless a non-empty printable text of at most ``MAX_ANNOTATOR`` characters."""
    if not (isinstance(value, str) and 0 < len(value) <= MAX_ANNOTATOR and value.isprintable()):
        raise errors.unprocessable(f"client_id must be a non-empty printable text of at most {MAX_ANNOTATOR} "
                                   f"characters, not {str(value)[:MAX_ANNOTATOR]!r}")
    return value


class EffortStore:
    """``<datastore root>/.breastlab/effort.sqlite``: open sessions and the finished rows of saved final labels."""

    def __init__(self, path: str | Path, create: bool = True):
        self.path = Path(path)
        if not create and not self.path.is_file():
            raise FileNotFoundError(f"no effort records: {self.path} does not exist")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(SESSIONS)
            db.execute(LABELS)

    @classmethod
    def of(cls, root: str | Path, create: bool = True) -> "EffortStore":
        return cls(Path(root) / ".breastlab" / "effort.sqlite", create)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """A connection per call (requests come from several threads); FULL sync: effort cannot be recomputed."""
        with closing(sqlite3.connect(self.path, timeout=30, isolation_level=None)) as db:
            db.execute("PRAGMA synchronous=FULL")
            yield db

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction taken before reading, so read-modify-write requests of one session never interleave."""
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def handed_out(self, image: str, annotator: str) -> None:
        """The image was handed to ``annotator``: a new session starts now (an open one is replaced)."""
        with self._connect() as db:
            db.execute("INSERT OR REPLACE INTO sessions (image, annotator, started, handed_out) VALUES (?, ?, ?, 1)",
                       (image, annotator, time.time()))

    def inferred(self, image: str, annotator: str, model: str, request: dict, mask_png: str | None) -> None:
        """An inference for ``annotator`` on ``image``: its prompts are counted and, where ``mask_png`` (the mask it
        returned) is the session's first, the mask and its model are kept. Starts the session if none is open."""
        with self._transaction() as db:
            db.execute("INSERT OR IGNORE INTO sessions (image, annotator, started, handed_out) VALUES (?, ?, ?, 0)",
                       (image, annotator, time.time()))
            if mask_png is None:
                return
            first, before = db.execute("SELECT model IS NULL, prompt FROM sessions WHERE image = ? AND annotator = ?",
                                       (image, annotator)).fetchone()
            prompt = {key: request.get(key) for key in PROMPTS if request.get(key) is not None}
            undo, refined = request.get("undo") is True, request.get("mask") is not None  # mask: one to refine
            boxes, clicks = prompt_counts(prompt, json.loads(before))
            db.execute("UPDATE sessions SET boxes = boxes + ?, clicks = clicks + ?, undos = undos + ?, "
                       "automatic = automatic + ?, prompt = ? WHERE image = ? AND annotator = ?",
                       (boxes, clicks, int(undo), int(not (prompt or undo or refined)), json.dumps(prompt), image,
                        annotator))
            if first:
                db.execute("UPDATE sessions SET model = ?, proposal = ? WHERE image = ? AND annotator = ?",
                           (model, Path(mask_png).read_bytes(), image, annotator))

    def saved(self, image: str, annotator: str, mask: np.ndarray) -> dict:
        """``annotator`` saved ``mask`` as the image's final label: its finished row (replacing an earlier one)."""
        now = time.time()
        with self._transaction() as db:
            session = db.execute("SELECT started, handed_out, model, proposal, boxes, clicks, undos, automatic "
                                 "FROM sessions WHERE image = ? AND annotator = ?", (image, annotator)).fetchone()
            started, handed_out, model, proposal, *counts = session or (None, 0, None, None, 0, 0, 0, 0)
            seconds = None if started is None else round(max(now - started, 0.0), 3)  # wall clock: may step back
            row = (image, annotator, now, model, seconds, *counts, dice(proposal, mask), handed_out)
            db.execute("INSERT OR REPLACE INTO labels VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
        return as_record(row)

    def rows(self, images: Iterable[str] | None = None) -> list[dict]:
        """The finished rows (of ``images`` only, when given), ordered by image then annotator."""
        with self._connect() as db:
            rows = db.execute("SELECT image, annotator, saved, model, seconds, boxes, clicks, undos, automatic, dice, "
                              "handed_out FROM labels ORDER BY image, annotator").fetchall()
        wanted = None if images is None else set(images)
        return [as_record(row) for row in rows if wanted is None or row[0] in wanted]

    def remove(self, image: str) -> None:
        """Forget an image's sessions and rows (the image left the datastore, or another image took its id)."""
        with self._transaction() as db:
            db.execute("DELETE FROM sessions WHERE image = ?", (image,))
            db.execute("DELETE FROM labels WHERE image = ?", (image,))

    def csv(self, images: Iterable[str] | None = None) -> str:
        """The finished rows as CSV text (``effort.csv`` of a dataset export)."""
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows(images))
        return out.getvalue()


def prompt_counts(prompt: dict, before: dict) -> tuple[int, int]:
    """(boxes, clicks) that ``prompt`` adds to the previous request's: a box other than the previous one, and the
    foreground/background points not in the previous request."""
    box = int(prompt.get("roi") is not None and prompt.get("roi") != before.get("roi"))
    clicks = 0
    for key in ("foreground", "background"):
        added = Counter(json.dumps(p) for p in prompt.get(key) or []) - Counter(json.dumps(p) for p in before.get(key)
                                                                                 or [])
        clicks += sum(added.values())
    return box, clicks


def dice(proposal: bytes | None, mask: np.ndarray) -> float | None:
    """Dice of the first proposal (PNG bytes) and the saved mask; 1 when both are empty; None without a proposal
    or when the sizes differ."""
    if proposal is None:
        return None
    with Image.open(io.BytesIO(proposal)) as image:
        first = np.asarray(image) > 0
    if first.shape != np.shape(mask):
        return None
    return round(mask_dice(first, mask), 6)


def as_record(row: tuple) -> dict:
    """A ``labels`` row as a dict of ``COLUMNS``: ``prompts`` = boxes + clicks + undos."""
    image, annotator, saved, model, seconds, boxes, clicks, undos, automatic, dice_, handed_out = row
    return {"image": image, "annotator": annotator, "model": model, "saved": saved, "seconds": seconds,
            "boxes": boxes, "clicks": clicks, "undos": undos, "automatic": automatic,
            "prompts": boxes + clicks + undos, "dice": dice_,
            "kept_as_proposed": None if dice_ is None else dice_ >= KEPT_DICE, "handed_out": bool(handed_out)}


def summary(rows: list[dict], detail: bool = False) -> dict:
    """Per model (``None``: no AI proposal) and per annotator: images, median seconds and prompts per image, share
    kept as proposed and mean Dice of first proposal vs saved label (``None`` where nothing to average)."""
    out = {"kept_dice": KEPT_DICE, "models": grouped(rows, "model"), "annotators": grouped(rows, "annotator")}
    return {**out, "rows": rows} if detail else out


def grouped(rows: list[dict], key: str) -> list[dict]:
    """``statistics_of`` the rows of each value of ``key``, ordered by value (``None`` last)."""
    values = sorted({row[key] for row in rows}, key=lambda v: (v is None, v or ""))
    return [{key: value, **statistics_of([row for row in rows if row[key] == value])} for value in values]


def statistics_of(rows: list[dict]) -> dict:
    seconds = [row["seconds"] for row in rows if row["seconds"] is not None]
    dices = [row["dice"] for row in rows if row["dice"] is not None]
    return {"images": len(rows),
            "median_seconds": round(statistics.median(seconds), 1) if seconds else None,
            "median_prompts": statistics.median(row["prompts"] for row in rows),
            "kept_as_proposed": round(sum(d >= KEPT_DICE for d in dices) / len(dices), 4) if dices else None,
            "mean_dice": round(statistics.fmean(dices), 4) if dices else None}


def table(report: dict) -> str:
    """``summary`` as two tables, per model and per annotator."""
    columns = ["images", "median s", "median prompts", "kept", "mean Dice"]
    tables = []
    for key, title in (("models", "model"), ("annotators", "annotator")):
        rows = [{title: "(no AI proposal)" if group[title] is None else group[title], "images": group["images"],
                 "median s": group["median_seconds"], "median prompts": group["median_prompts"],
                 "kept": None if group["kept_as_proposed"] is None else f"{group['kept_as_proposed']:.0%}",
                 "mean Dice": group["mean_dice"]} for group in report[key]]
        tables.append(format_table(rows, [title, *columns]))
    return "\n\n".join(tables)


def plot(report: dict, out: str | Path) -> Path:
    """Median seconds per image and share kept as proposed, one bar per model."""
    from breastlab.evaluation.plots import pyplot, save_figure

    models = [group for group in report["models"] if group["model"] is not None]
    names = [group["model"] for group in models]
    fig, axes = pyplot().subplots(1, 2, sharey=True, figsize=(10, 0.5 * len(names) + 2))
    for ax, key, label in ((axes[0], "median_seconds", "median seconds per image"),
                           (axes[1], "kept_as_proposed", f"share kept as proposed (Dice >= {KEPT_DICE})")):
        ax.barh(names, [group[key] or 0 for group in models])
        ax.set_xlabel(label)
    axes[0].invert_yaxis()
    axes[1].set_xlim(0, 1)
    return save_figure(fig, out)
