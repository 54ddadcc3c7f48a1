"""BreastLabDatastore on its own (no server): reconciliation with the files on disk, temp-file cleanup."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from fastapi import HTTPException
from PIL import Image

from breastlab.data import read_dataset
from breastlab.formats.png import TEMP_MARK, write_png
from breastlab.server.datastore.index import read_index
from breastlab.server.datastore.local import BreastLabDatastore

IMAGE = np.zeros((32, 40), np.uint8)


def index(root) -> dict:
    """The index on disk as another process reads it: the snapshot with its journal replayed."""
    return read_index(root / "datastore_v2.json", "", "").model_dump()["objects"]


def test_reconciliation_adds_new_files_and_drops_missing_ones(tmp_path):
    for name in ("a", "b", "c"):
        write_png(IMAGE, tmp_path / f"{name}.png")
    (tmp_path / "labels" / "final").mkdir(parents=True)
    write_png(IMAGE, tmp_path / "labels" / "final" / "a.png")
    write_png(IMAGE, tmp_path / "labels" / "final" / "orphan.png")  # no image: ignored
    BreastLabDatastore(str(tmp_path))
    assert sorted(index(tmp_path)) == ["a", "b", "c"]
    assert list(index(tmp_path)["a"]["labels"]) == ["final"]

    (tmp_path / "b.png").unlink()
    (tmp_path / "labels" / "final" / "a.png").unlink()
    write_png(IMAGE, tmp_path / "d.png")
    write_png(IMAGE, tmp_path / "labels" / "final" / "c.png")
    store = BreastLabDatastore(str(tmp_path))
    assert sorted(index(tmp_path)) == ["a", "c", "d"]
    assert index(tmp_path)["a"]["labels"] == {} and list(index(tmp_path)["c"]["labels"]) == ["final"]
    assert store.get_unlabeled_images() == ["a", "d"]


def test_reconciliation_keeps_image_info_of_known_images(tmp_path):
    write_png(IMAGE, tmp_path / "a.png")
    BreastLabDatastore(str(tmp_path)).update_image_info("a", {"class": "benign"})
    assert BreastLabDatastore(str(tmp_path)).get_image_info("a")["class"] == "benign"


def test_temp_files_of_killed_writes_are_removed_and_never_listed(tmp_path):
    write_png(IMAGE, tmp_path / "a.png")
    (tmp_path / "labels" / "final").mkdir(parents=True)
    stale = [tmp_path / f".b.png{TEMP_MARK}x1y2", tmp_path / "labels" / "final" / f".a.png{TEMP_MARK}z"]
    for path in stale:
        path.write_bytes(b"half a png")
    store = BreastLabDatastore(str(tmp_path))
    assert store.list_images() == ["a"] and not any(p.exists() for p in stale)


def test_random_unlabeled_skips_labelled_and_excluded_images(tmp_path):
    for name in ("a", "b", "c"):
        write_png(IMAGE, tmp_path / f"{name}.png")
    (tmp_path / "labels" / "final").mkdir(parents=True)
    write_png(IMAGE, tmp_path / "labels" / "final" / "a.png")
    store = BreastLabDatastore(str(tmp_path))
    assert {store.random_unlabeled(exclude={"b"}) for _ in range(20)} == {"c"}
    assert store.random_unlabeled(exclude={"b", "c"}) is None


def test_unknown_ids_raise_404(tmp_path):
    store = BreastLabDatastore(str(tmp_path))
    for call in (lambda: store.update_image_info("x", {}), lambda: store.remove_image("x"),
                 lambda: store.remove_label("x", "final"), lambda: store.update_label_info("x", "final", {})):
        with pytest.raises(HTTPException) as error:
            call()
        assert error.value.status_code == 404


def test_status_follows_every_write(tmp_path):
    for name in ("a", "b"):
        write_png(IMAGE, tmp_path / f"{name}.png")
    store = BreastLabDatastore(str(tmp_path))
    assert store.status() == {"total": 2, "completed": 0, "label_tags": {}}
    store.save_label("a", str(write_png(IMAGE, tmp_path / "mask.tmp")), "final", {})
    assert store.status() == {"total": 2, "completed": 1, "label_tags": {"final": 1}}
    store.remove_image("a")
    assert store.status() == {"total": 1, "completed": 0, "label_tags": {}}


def test_image_level_labels_are_normalised_and_unknown_values_rejected(tmp_path):
    write_png(IMAGE, tmp_path / "a.png")
    store = BreastLabDatastore(str(tmp_path))
    store.update_image_info("a", {"class": " Benign ", "birads": "4A", "note": "kept as is"})
    info = store.get_image_info("a")
    assert (info["class"], info["birads"], info["note"]) == ("benign", "4a", "kept as is")
    store.update_image_info("a", {"probabilities": {"benign": "0.7", "malignant": 0.3}})
    assert store.get_image_info("a")["probabilities"] == {"benign": 0.7, "malignant": 0.3}
    store.update_image_info("a", {"probabilities": {"no_cancer": 0.6, "malignant": 0.4}})  # GLAM's outputs
    assert store.get_image_info("a")["probabilities"] == {"no_cancer": 0.6, "malignant": 0.4}
    for bad in ({"class": "cyst"}, {"birads": "7"}, {"class": 3}, {"probabilities": {"cyst": 1}},
                {"probabilities": {"benign": 1.5}}, {"probabilities": [0.2]}):
        with pytest.raises(HTTPException) as error:
            store.update_image_info("a", bad)
        detail = error.value.detail
        assert error.value.status_code == 422 and ("expected one of" in detail or "probabilities" in detail)
    assert store.get_image_info("a")["class"] == "benign"


def test_dataset_archive_round_trips_through_the_reader(tmp_path):
    studies = tmp_path / "studies"
    studies.mkdir()
    for name in ("a", "b"):
        write_png(IMAGE + (name == "b"), studies / f"{name}.png")
    store = BreastLabDatastore(str(studies))
    mask = IMAGE.copy()
    mask[4:9, 5:20] = 1
    store.save_label("a", str(write_png(mask, tmp_path / "mask.png")), "final", {})
    store.update_image_info("a", {"class": "malignant", "birads": "5"})
    store.update_image_info("b", {"class": "normal"})
    archive_path = Path(store.get_dataset_archive())  # the caller owns the zip (the route streams, then drops it)
    with zipfile.ZipFile(archive_path) as archive:
        archive.extractall(tmp_path / "export")
    archive_path.unlink()
    cases = {c.case: c for c in read_dataset(tmp_path / "export")}
    assert (cases["a"].label, cases["a"].meta["birads"], cases["b"].label) == ("malignant", "5", "normal")
    assert cases["b"].mask is None
    np.testing.assert_array_equal(np.asarray(Image.open(cases["a"].mask)) > 0, mask > 0)
    np.testing.assert_array_equal(np.asarray(Image.open(cases["b"].image)), IMAGE + 1)
    with pytest.raises(HTTPException) as error:
        BreastLabDatastore(str(tmp_path / "empty")).get_dataset_archive()
    assert error.value.status_code == 404


def test_saves_are_journaled_read_back_by_another_process_and_folded_into_the_snapshot(tmp_path, monkeypatch):
    from breastlab.server.datastore import index as index_module

    monkeypatch.setattr(index_module, "COMPACT_AFTER", 4)
    for name in ("a", "b"):
        write_png(IMAGE, tmp_path / f"{name}.png")
    store = BreastLabDatastore(str(tmp_path))
    snapshot = (tmp_path / "datastore_v2.json").read_bytes()
    store.update_image_info("a", {"class": "benign"})
    store.update_image_info("b", {"class": "malignant"})
    assert (tmp_path / "datastore_v2.json").read_bytes() == snapshot  # a save writes one journal line, not the index
    journal = tmp_path / "datastore_v2.json.journal"
    assert len(journal.read_text().splitlines()) == 2
    with journal.open("a") as f:
        f.write('{"id": "a", "entry": {"ima')  # a line torn by a crash: ignored
    other = BreastLabDatastore(str(tmp_path))  # another process folds the journal in at start
    assert other.get_image_info("a")["class"] == "benign" and other.get_image_info("b")["class"] == "malignant"
    assert not journal.exists() and index(tmp_path)["b"]["image"]["info"]["class"] == "malignant"
    for n in range(4):
        other.update_image_info("a", {"reviewer": str(n)})
    assert not journal.exists()  # compacted after COMPACT_AFTER changes
    assert index(tmp_path)["a"]["image"]["info"]["reviewer"] == "3"
    other.remove_image("b")
    assert "b" not in index(tmp_path) and "b" not in json.loads(''.join(other.listing()))["objects"]
