"""Several readers per image on a datastore of its own (no server): no reader overwrites another, the final label
is decided as documented, every decision is in the event log, and the strategies hand out the right images."""

from __future__ import annotations

import csv
import json
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
from fastapi import HTTPException

from breastlab.cli import main
from breastlab.data import DatasetError
from breastlab.formats.png import read_gray_png, write_png
from breastlab.metrics.consensus import staple
from breastlab.metrics.segmentation import dice
from breastlab.server.datastore.local import BreastLabDatastore
from breastlab.server.datastore.review import Review, reader_tag
from breastlab.server.datastore.studies import import_dataset
from breastlab.server.tasks.strategies import HandOuts, ReviewQueue, SecondRead

from tests.synthetic_readers import reading_study

SIZE = 48


def box(top: int, left: int, side: int = 16) -> np.ndarray:
    mask = np.zeros((SIZE, SIZE), np.uint8)
    mask[top:top + side, left:left + side] = 1
    return mask


@pytest.fixture
def store(tmp_path):
    (tmp_path / "studies").mkdir()
    for name in ("a", "b", "c"):
        write_png(np.full((SIZE, SIZE), 100, np.uint8), tmp_path / "studies" / f"{name}.png")
    return BreastLabDatastore(str(tmp_path / "studies"))


def save(review: Review, image: str, reader: str, mask: np.ndarray, **labels) -> dict:
    folder = review.store.root.parent / "uploads"
    folder.mkdir(exist_ok=True)
    path = write_png(mask, folder / f"{image}-{reader}.png")
    try:
        return review.save_read(image, reader, str(path), labels, user=reader)
    finally:
        path.unlink()


def unpack(archive: str, folder) -> None:
    with zipfile.ZipFile(archive) as zipped:
        zipped.extractall(folder)
    Path(archive).unlink()


def final_mask(store, image: str) -> np.ndarray | None:
    uri = store.get_label_uri(image, "final")
    return read_gray_png(uri) if uri else None


def test_one_reader_makes_the_final_label_as_before(store):
    review = Review.of(store)
    state = save(review, "a", "ann", box(4, 4), **{"class": "Malignant", "birads": "4C"})
    assert state == {"image": "a", "status": "labelled", "readers": ["ann"]}
    assert (final_mask(store, "a") == box(4, 4)).all()
    assert store.get_image_info("a")["class"] == "malignant" and store.get_image_info("a")["birads"] == "4c"
    assert store.get_label_info("a", "final")["source"] == "reader:ann"
    save(review, "a", "ann", box(8, 8))  # the same reader again: their label, and the final, replaced
    assert (final_mask(store, "a") == box(8, 8)).all() and review.readers("a") == ["ann"]


def test_a_second_reader_never_overwrites_the_first_and_waits_for_review(store):
    review = Review.of(store)
    save(review, "a", "ann", box(4, 4), **{"class": "benign"})
    save(review, "a", "bob", box(6, 6), **{"class": "malignant"})
    assert review.readers("a") == ["ann", "bob"] and final_mask(store, "a") is None
    reads = review.reads("a")
    assert (reads["ann"]["mask"] == box(4, 4)).all() and (reads["bob"]["mask"] == box(6, 6)).all()
    assert (reads["ann"]["class"], reads["bob"]["class"]) == ("benign", "malignant")
    assert store.status()["completed"] == 0 and store.random_unlabeled(exclude={"b", "c"}) is None


def test_approving_the_consensus_a_reader_or_an_edit_sets_the_final_label(store, tmp_path):
    review = Review.of(store)
    masks = {"ann": box(4, 4), "bob": box(6, 6), "cy": box(5, 4)}
    for reader, mask in masks.items():
        save(review, "a", reader, mask, birads={"ann": "3", "bob": "4b", "cy": "4a"}[reader])
    assert review.start("a", "rev")["status"] == "in_review"
    state = review.approve("a", "rev", "consensus")
    assert state["status"] == "approved"
    assert (final_mask(store, "a") == staple(list(masks.values()))["mask"]).all()
    assert store.get_image_info("a")["birads"] == "4a"  # the median
    review.approve("a", "rev", "reader:bob", labels={"class": "benign"})
    assert (final_mask(store, "a") == box(6, 6)).all() and store.get_image_info("a")["class"] == "benign"
    edited = write_png(box(20, 20), tmp_path / "edited.png")
    review.approve("a", "rev", "edited", str(edited))
    assert (final_mask(store, "a") == box(20, 20)).all()
    with pytest.raises(HTTPException) as refused:
        review.approve("a", "rev", "reader:nobody")
    assert refused.value.status_code == 422
    save(review, "a", "dan", box(0, 0))  # a later reader: the approved label stands
    assert (final_mask(store, "a") == box(20, 20)).all() and review.status("a")["status"] == "labelled"


def test_the_event_log_tells_who_decided_every_final_label(store):
    review = Review.of(store)
    save(review, "a", "ann", box(4, 4))
    save(review, "a", "bob", box(6, 6))
    review.approve("a", "rev", "reader:ann")
    decisions = [(e["event"], e["user"], e.get("source")) for e in Review(store).history("a")]  # read back from disk
    assert decisions == [("label", "ann", None), ("final", "ann", "reader:ann"), ("label", "bob", None),
                         ("final_withdrawn", "bob", None), ("final", "rev", "reader:ann"),
                         ("approve", "rev", "reader:ann")]


def test_a_returned_image_goes_back_to_its_readers_first(store):
    review = Review.of(store)
    save(review, "a", "ann", box(4, 4))
    with pytest.raises(HTTPException):
        review.return_to_readers("a", "rev", " ")
    state = review.return_to_readers("a", "rev", "the lesion's lower edge is missing")
    assert state["status"] == "returned" and state["comment"] == "the lesion's lower edge is missing"
    assert final_mask(store, "a") is None
    hand_outs = HandOuts()
    hand_outs.add("a")  # the reviewer had it a moment ago
    second_read = SecondRead(hand_outs)
    assert second_read({"reader": "ann"}, store)["id"] == "a"
    assert second_read({"reader": "bob"}, store)["id"] in {"b", "c"}  # not returned to bob: a new image
    save(review, "a", "ann", box(4, 4))
    assert review.status("a")["status"] == "labelled" and final_mask(store, "a") is not None


def test_second_read_completes_pairs_and_skips_the_readers_own_images(store):
    review = Review.of(store)
    save(review, "b", "ann", box(4, 4))
    hand_outs = HandOuts()
    assert SecondRead(hand_outs)({"reader": "bob"}, store)["id"] == "b"  # one reader: completed first
    picked = {SecondRead(HandOuts())({"reader": "ann"}, store)["id"] for _ in range(10)}
    assert picked <= {"a", "c"}
    save(review, "b", "bob", box(4, 4))
    assert SecondRead(HandOuts())({"reader": "cy", "readers": 2}, store)["id"] in {"a", "c"}


def test_the_review_queue_hands_out_the_lowest_agreement_first(store):
    review = Review.of(store)
    for image, shift in (("a", 1), ("b", 10), ("c", 0)):
        save(review, image, "ann", box(4, 4))
        save(review, image, "bob", box(4, 4 + shift))
    queue = ReviewQueue(HandOuts())
    first = queue({"reader": "rev"}, store)
    assert first["id"] == "b" and review.status("b")["status"] == "in_review"
    assert [queue({"reader": "rev"}, store)["id"] for _ in range(2)] == ["a", "c"]
    assert queue({"reader": "rev"}, store) is None


def test_concurrent_saves_by_readers_lose_nothing(store):
    review = Review.of(store)
    readers = [f"r{i}" for i in range(6)]
    threads = [threading.Thread(target=save, args=(review, image, r, box(2 + i, 2 + i)))
               for i, r in enumerate(readers) for image in ("a", "b", "c")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    reopened = BreastLabDatastore(str(store.root))
    for image in ("a", "b", "c"):
        assert Review(reopened).readers(image) == readers
        for i, r in enumerate(readers):
            assert (read_gray_png(reopened.get_label_uri(image, reader_tag(r))) == box(2 + i, 2 + i)).all()
    assert sum(e["event"] == "label" for image in "abc" for e in Review(reopened).history(image)) == 18


def test_the_dataset_export_carries_every_reader_and_import_reads_it_back(store, tmp_path):
    review = Review.of(store)
    save(review, "a", "ann", box(4, 4), **{"class": "benign", "birads": "3"})
    save(review, "a", "bob", box(6, 6), **{"class": "malignant", "birads": "4b"})
    review.approve("a", "rev", "reader:bob")
    save(review, "b", "ann", box(10, 10))
    unpack(store.get_dataset_archive(), tmp_path / "export")
    folder = tmp_path / "export"
    assert (read_gray_png(folder / "readers" / "ann" / "a.png") > 0).tolist() == box(4, 4).astype(bool).tolist()
    assert (folder / "consensus" / "a.png").is_file() and not (folder / "consensus" / "b.png").exists()
    with (folder / "agreement.csv").open() as f:
        pairs = list(csv.DictReader(f))
    assert [(p["case"], p["reader_a"], p["reader_b"], p["birads_b"]) for p in pairs] == [("a", "ann", "bob", "4b")]
    with (folder / "review.csv").open() as f:
        decided = {row["case"]: row for row in csv.DictReader(f)}
    assert (decided["a"]["final_source"], decided["a"]["decided_by"]) == ("reader:bob", "rev")
    assert decided["b"]["decided"] == "single reader" and decided["c"]["status"] == "unlabelled"

    import_dataset(folder, tmp_path / "again")
    again = BreastLabDatastore(str(tmp_path / "again"))
    copy = Review.of(again)
    assert copy.readers("a") == ["ann", "bob"] and copy.status("a")["status"] == "approved"
    assert (final_mask(again, "a") > 0).tolist() == box(6, 6).astype(bool).tolist()
    assert copy.reads("a")["ann"]["birads"] == "3"
    assert [e["event"] for e in copy.history("a")] == [e["event"] for e in review.history("a")]


def test_an_export_naming_a_path_as_reader_is_refused_on_import(store, tmp_path):
    review = Review.of(store)
    save(review, "a", "ann", box(4, 4))
    unpack(store.get_dataset_archive(), tmp_path / "export")
    table = tmp_path / "export" / "readers.csv"
    table.write_text(table.read_text().replace(",ann,", ",../../ann,"))
    with pytest.raises(DatasetError, match="reader"):
        import_dataset(tmp_path / "export", tmp_path / "again")


def test_breastlab_agreement_prints_and_writes_the_study(tmp_path, capsys):
    truth = reading_study(tmp_path / "studies", images=6, readers=3, size=64)
    main(["agreement", str(tmp_path / "studies"), "--out", str(tmp_path / "report"), "--bootstrap", "50"])
    printed = capsys.readouterr().out
    assert "6 images with a reader's label, 6 read by two or more; readers: reader1, reader2, reader3" in printed
    with (tmp_path / "report" / "agreement.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6 * 3 and {row["case"] for row in rows} == set(truth)
    study = json.loads((tmp_path / "report" / "agreement.json").read_text())
    assert study["methods"] == {"class_kappa": "fleiss", "birads_kappa": "weighted_light"}
    assert (tmp_path / "report" / "agreement.png").stat().st_size > 0


def test_staple_beats_a_typical_reader_of_a_synthetic_study(tmp_path):
    """Readers who outline with growing jitter: the consensus is closer to the truth than the readers' average (the
    stronger claim, better than every reader, holds for independent pixel noise: tests/test_agreement.py)."""
    truth = reading_study(tmp_path / "studies", images=8, readers=3, size=64, seed=3)
    review = Review.of(BreastLabDatastore(str(tmp_path / "studies")))
    consensus_dice, reader_dice = [], []
    for image, known in truth.items():
        masks = [read["mask"] for read in review.reads(image).values()]
        consensus_dice.append(dice(staple(masks)["mask"], known["mask"]))
        reader_dice.append(np.mean([dice(mask, known["mask"]) for mask in masks]))
    assert np.mean(consensus_dice) > np.mean(reader_dice)
