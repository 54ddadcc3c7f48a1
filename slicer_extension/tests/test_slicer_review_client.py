"""BreastLabLib's review calls against the real BreastLab server: two readers, a reviewer, a return (slow)."""

from __future__ import annotations

import numpy as np
import pytest
import requests
from BreastLabLib.images import encode_png

pytestmark = pytest.mark.slow
SHAPE = (64, 64)


def upload(server, image_id: str) -> None:
    image = (np.arange(SHAPE[0] * SHAPE[1]).reshape(SHAPE) % 251).astype(np.uint8)
    requests.put(f"{server.url}/datastore/image", params={"image": image_id},
                 files={"file": ("upload.png", encode_png(image), "image/png")}, timeout=30).raise_for_status()


def box(top: int, left: int, size: int = 24) -> np.ndarray:
    mask = np.zeros(SHAPE, np.uint8)
    mask[top:top + size, left:left + size] = 1
    return mask


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * float((a & b).sum()) / float(a.sum() + b.sum())


@pytest.fixture(scope="module")
def read_twice(server, client) -> dict[str, dict[str, np.ndarray]]:
    """ann and bob read two uploaded images (class and BI-RADS with each mask); their masks overlap in part."""
    masks = {"review_a": {"ann": box(10, 10), "bob": box(14, 16)}, "review_b": {"ann": box(30, 30), "bob": box(5, 5)}}
    for image_id, reads in masks.items():
        upload(server, image_id)
        first = client.save_label(image_id, reads["ann"], {"class": "malignant", "birads": "4a"}, reader="ann")
        assert (first["status"], first["readers"]) == ("labelled", ["ann"])
        second = client.save_label(image_id, reads["bob"], {"class": "malignant", "birads": "4c"}, reader="bob")
        assert second["readers"] == ["ann", "bob"]
    return masks


def test_each_reader_keeps_a_mask_and_the_reviewer_sees_both_with_their_agreement(client, read_twice):
    masks = read_twice["review_a"]
    for reader, mask in masks.items():
        np.testing.assert_array_equal(client.reader_label("review_a", reader), mask)
    state = client.review("review_a")
    assert state["status"] == "labelled" and set(state["readers"]) == {"ann", "bob"}
    assert {r: read["birads"] for r, read in state["readers"].items()} == {"ann": "4a", "bob": "4c"}
    assert all(0 <= read[key] <= 1 for read in state["readers"].values() for key in ("sensitivity", "specificity"))
    assert state["consensus"]["class"] == "malignant"
    pair = state["agreement"][0]
    assert pair["readers"] == ["ann", "bob"] and pair["dice"] == pytest.approx(dice(masks["ann"], masks["bob"]))
    assert client.agreement("review_a")["pairs"] == state["agreement"]
    consensus = client.consensus("review_a")
    assert consensus.shape == SHAPE and set(np.unique(consensus)) <= {0, 1}
    assert (consensus <= masks["ann"] | masks["bob"]).all() and consensus.any()


def test_the_reviewer_gets_the_least_agreed_image_and_approves_the_consensus(client, read_twice):
    handed = client.next_sample("review", reader="rev")
    assert handed["id"] == "review_b"  # its readers' masks do not overlap: the lowest Dice first
    assert client.review("review_b")["status"] == "in_review"
    consensus = client.consensus("review_b")
    approved = client.approve("review_b", "consensus", {"birads": "5"})
    assert approved["status"] == "approved"
    np.testing.assert_array_equal(client.label("review_b"), consensus)
    assert (client.image_info("review_b")["class"], client.image_info("review_b")["birads"]) == ("malignant", "5")


def test_a_returned_image_comes_back_to_its_reader_then_an_edited_mask_is_approved(client, read_twice):
    comment = "bob: the box misses the lesion's upper edge"
    returned = client.return_image("review_a", comment)
    assert (returned["status"], returned["comment"]) == ("returned", comment)
    handed = client.next_sample("second_read", reader="bob")
    assert (handed["id"], handed["status"], handed["comment"]) == ("review_a", "returned", comment)
    assert client.save_label("review_a", box(10, 12), {"class": "malignant"}, reader="bob")["status"] == "labelled"
    edited = box(10, 10, 26)
    assert client.approve("review_a", "edited", {"class": "benign"}, mask=edited)["status"] == "approved"
    np.testing.assert_array_equal(client.label("review_a"), edited)
    assert client.label_info("review_a")["class"] == "benign"
    assert client.approve("review_a", "reader:ann")["status"] == "approved"  # a later decision replaces it
    np.testing.assert_array_equal(client.label("review_a"), read_twice["review_a"]["ann"])


def test_the_study_agreement_covers_the_images_read_twice(client, read_twice):
    study = client.agreement()
    assert study["images_read_twice"] >= 2 and {"ann", "bob"} <= set(study["readers"])
    assert study["dice"]["ci_low"] <= study["dice"]["value"] <= study["dice"]["ci_high"]
