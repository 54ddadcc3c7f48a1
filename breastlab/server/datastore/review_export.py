"""Every reader's work in a dataset folder, and back into a datastore (``breastlab import``).

Beside the dataset's own ``images/``, ``masks/`` (the final, approved labels) and ``manifest.csv``: the readers'
masks in ``readers/<reader>/<case>.png`` (lesion = 255, as ``masks/``), ``readers.csv`` (each reader's class and
BI-RADS), the STAPLE consensus of images with two or more readers in ``consensus/<case>.png``, ``agreement.csv`` (each
pair of readers of each image), ``review.csv`` (status, where the final label came from and who decided it) and
``review_events.jsonl`` (the whole history).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from breastlab.formats.png import write_png
from breastlab.metrics.consensus import consensus
from breastlab.server.datastore.review import FINAL, Review, reader_tag
from breastlab.server.http import errors
from breastlab.server.http.inputs import checked_id

READS = ("case", "reader", "class", "birads")
AGREEMENT = ("case", "reader_a", "reader_b", "dice", "hd95", "class_a", "class_b", "birads_a", "birads_b")
REVIEW = ("case", "status", "readers", "final_source", "decided", "decided_by")


def agreement_rows(image: str, agreement: dict) -> list[dict]:
    """One row per pair of readers of an image (its :func:`~breastlab.metrics.agreement.image_agreement`)."""
    rows = []
    for pair in agreement["pairs"]:
        a, b = pair["readers"]
        rows.append({"case": image, "reader_a": a, "reader_b": b, "dice": round(pair["dice"], 4),
                     "hd95": "" if pair["hd95"] is None else round(pair["hd95"], 2),
                     "class_a": agreement["class"][a] or "", "class_b": agreement["class"][b] or "",
                     "birads_a": agreement["birads"][a] or "", "birads_b": agreement["birads"][b] or ""})
    return rows


def csv_text(rows: list[dict], columns: tuple[str, ...]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def write_reviews(review: Review, ids: list[str], folder: Path) -> None:
    """The readers' part of a dataset export of ``ids`` into ``folder`` (see the module docstring)."""
    reads_rows, agreement, status_rows, events = [], [], [], []
    for image in ids:
        reads = review.reads(image)
        for reader, read in reads.items():
            (folder / "readers" / reader).mkdir(parents=True, exist_ok=True)
            write_png(read["mask"].astype("uint8") * 255, folder / "readers" / reader / f"{image}.png", durable=False)
            reads_rows.append({"case": image, "reader": reader, "class": read["class"] or "",
                               "birads": read["birads"] or ""})
        if len(reads) >= 2:
            (folder / "consensus").mkdir(exist_ok=True)
            mask = consensus(reads)["mask"].astype("uint8") * 255
            write_png(mask, folder / "consensus" / f"{image}.png", durable=False)
        agreement += agreement_rows(image, review.agreement(image)) if reads else []
        status_rows.append(_review_row(review, image))
        events += review.history(image)
    files = {"readers.csv": csv_text(reads_rows, READS), "agreement.csv": csv_text(agreement, AGREEMENT),
             "review.csv": csv_text(status_rows, REVIEW),
             "review_events.jsonl": "".join(json.dumps(e) + "\n" for e in events)}
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")


def _review_row(review: Review, image: str) -> dict:
    status = review.status(image)
    obj = review.store.objects.get(image)
    final = obj.labels[FINAL].info if obj and obj.labels.get(FINAL) else {}
    return {"case": image, "status": status["status"], "readers": " ".join(status["readers"]),
            "final_source": final.get("source", "imported" if final else ""), "decided": final.get("decided", ""),
            "decided_by": final.get("by", "")}


def read_reviews(folder: Path, store) -> int:
    """Put the readers' labels and the review history of a dataset folder into ``store`` (after its cases were
    imported: their masks are the final labels, as decided); returns the number of readers' labels."""
    table = folder / "readers.csv"
    if not table.is_file():
        return 0
    review = Review.of(store)
    with table.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        tag, case = reader_tag(row.get("reader")), checked_id(row.get("case"))  # 400 before any path is made
        labels = {key: row[key] for key in ("class", "birads") if row.get(key)}
        mask = folder / "readers" / row["reader"] / f"{case}.png"
        store.save_label(case, str(mask), tag, {**labels, "reader": row["reader"]})
    events = folder / "review_events.jsonl"
    for line in events.read_text(encoding="utf-8").splitlines() if events.is_file() else ():
        event = json.loads(line)
        if not all(isinstance(event.get(key), str) for key in ("image", "user", "event")):
            raise errors.unprocessable(f"review_events.jsonl: an event without image, user and event: {line[:200]}")
        review.events.append(event.pop("image"), event.pop("user"), event.pop("event"), **event)
    return len(rows)
