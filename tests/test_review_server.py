"""Two readers and a reviewer over HTTP against a real server: labels under their readers, agreement, consensus,
the review queue, approval, return, and clear refusals of bad requests."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import requests
from PIL import Image

from breastlab.metrics.consensus import staple
from breastlab.metrics.segmentation import dice

from helpers import png_bytes, sample_server

IMAGES = ("case001", "case002", "case003")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with sample_server(tmp_path_factory.mktemp("review")) as srv:
        yield srv


def size(server, image: str) -> tuple[int, int]:
    info = requests.get(f"{server.url}/datastore/image/info", params={"image": image}, timeout=30).json()
    return info["height"], info["width"]


def box_mask(shape: tuple[int, int], top: float, left: float) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    h, w = shape
    mask[int(top * h):int(top * h) + h // 3, int(left * w):int(left * w) + w // 3] = 1
    return mask


def save(server, image: str, mask: np.ndarray, reader: str | None, tag: str = "final", **labels):
    params = {"image": image, "tag": tag, **({"reader": reader} if reader else {})}
    return requests.put(f"{server.url}/datastore/label", params=params, data={"params": json.dumps(labels)},
                        files={"label": ("label.png", png_bytes(mask), "image/png")}, timeout=30)


def get_label(server, image: str, tag: str) -> np.ndarray:
    response = requests.get(f"{server.url}/datastore/label", params={"label": image, "tag": tag}, timeout=30)
    assert response.status_code == 200, response.text
    return np.array(Image.open(io.BytesIO(response.content))) > 0


def post(server, path: str, **kwargs) -> requests.Response:
    return requests.post(f"{server.url}{path}", timeout=60, **kwargs)


@pytest.fixture(scope="module")
def two_readers(server) -> dict:
    """ann and bob read three images; their masks overlap least on case002."""
    masks = {}
    for image, shift in zip(IMAGES, (0.05, 0.3, 0.0)):
        shape = size(server, image)
        masks[image] = {"ann": box_mask(shape, 0.3, 0.3), "bob": box_mask(shape, 0.3, 0.3 + shift)}
        for reader, birads in (("ann", "4a"), ("bob", "4c")):
            response = save(server, image, masks[image][reader], reader, **{"class": "malignant", "birads": birads})
            assert response.status_code == 200, response.text
    return masks


def test_readers_keep_their_own_labels_and_the_image_waits_for_review(server, two_readers):
    state = save(server, "case001", two_readers["case001"]["ann"], "ann").json()
    assert state["status"] == "labelled" and state["readers"] == ["ann", "bob"]
    for reader in ("ann", "bob"):
        assert (get_label(server, "case001", f"reader-{reader}") == two_readers["case001"][reader]).all()
    listing = requests.get(f"{server.url}/datastore/", params={"output": "all"}, timeout=30).json()
    assert "final" not in listing["objects"]["case001"]["labels"]


def test_agreement_of_an_image_and_of_the_study(server, two_readers):
    one = requests.get(f"{server.url}/datastore/agreement", params={"image": "case002"}, timeout=30).json()
    masks = two_readers["case002"]
    assert one["pairs"][0]["readers"] == ["ann", "bob"]
    assert one["pairs"][0]["dice"] == pytest.approx(dice(masks["ann"], masks["bob"]))
    assert one["birads"] == {"ann": "4a", "bob": "4c"}
    study = requests.get(f"{server.url}/datastore/agreement", timeout=60).json()
    assert study["images_read_twice"] == 3 and study["readers"] == ["ann", "bob"]
    assert study["methods"] == {"class_kappa": "cohen", "birads_kappa": "weighted_cohen"}
    assert study["dice"]["ci_low"] <= study["dice"]["value"] <= study["dice"]["ci_high"]


def test_review_state_and_consensus_mask(server, two_readers):
    state = requests.get(f"{server.url}/datastore/review", params={"image": "case003"}, timeout=30).json()
    assert set(state["readers"]) == {"ann", "bob"} and state["readers"]["ann"]["birads"] == "4a"
    assert state["readers"]["ann"]["sensitivity"] == 1.0  # identical masks
    assert state["consensus"] == {"class": "malignant", "birads": "4c"}
    assert [e["event"] for e in state["events"]].count("label") == 2
    consensus = requests.get(f"{server.url}/datastore/consensus", params={"image": "case002"}, timeout=30)
    expected = staple(list(two_readers["case002"].values()))["mask"]
    assert (np.array(Image.open(io.BytesIO(consensus.content))) > 0).tolist() == expected.tolist()


def test_the_reviewer_gets_the_least_agreed_image_and_approves_the_consensus(server, two_readers):
    handed = post(server, "/activelearning/review", json={"client_id": "rev"}).json()
    assert handed["id"] == "case002" and handed["waiting"] == 3
    state = requests.get(f"{server.url}/datastore/review", params={"image": "case002"}, timeout=30).json()
    assert state["status"] == "in_review"
    approved = post(server, "/datastore/review/approve", params={"image": "case002", "source": "consensus"},
                    data={"params": json.dumps({"birads": "5"})})
    assert approved.status_code == 200 and approved.json()["status"] == "approved"
    expected = staple(list(two_readers["case002"].values()))["mask"]
    assert (get_label(server, "case002", "final") == expected).all()
    info = requests.get(f"{server.url}/datastore/image/info", params={"image": "case002"}, timeout=30).json()
    assert info["birads"] == "5"


def test_a_returned_image_comes_back_to_its_reader(server, two_readers):
    returned = post(server, "/datastore/review/return", params={"image": "case001"},
                    data={"comment": "bob's box misses the lesion"})
    assert returned.status_code == 200 and returned.json()["status"] == "returned"
    handed = post(server, "/activelearning/second_read", json={"reader": "bob"}).json()
    assert handed["id"] == "case001" and handed["comment"] == "bob's box misses the lesion"


@pytest.mark.parametrize("params, status", [
    ({"image": "case004", "reader": "../ann"}, 400),
    ({"image": "case004", "tag": "reader-ann"}, 400),
    ({"image": "nope", "reader": "ann"}, 404),
])
def test_bad_label_saves_are_refused(server, params, status):
    response = requests.put(f"{server.url}/datastore/label", params={"tag": "final", **params},
                            files={"label": ("label.png", png_bytes(np.zeros((8, 8), np.uint8)), "image/png")},
                            timeout=30)
    assert response.status_code == status, response.text


def test_bad_review_requests_are_refused(server, two_readers):
    approve = "/datastore/review/approve"
    assert post(server, approve, params={"image": "nope", "source": "consensus"}).status_code == 404
    assert post(server, approve, params={"image": "case003", "source": "reader:zed"}).status_code == 422
    assert post(server, approve, params={"image": "case003", "source": "edited"}).status_code == 422
    assert post(server, approve, params={"image": "case005", "source": "consensus"}).status_code == 409
    assert post(server, "/datastore/review/return", params={"image": "case003"}, data={"comment": ""}
                ).status_code == 422
    assert requests.get(f"{server.url}/datastore/consensus", params={"image": "case005"}, timeout=30
                        ).status_code == 404
    assert requests.get(f"{server.url}/datastore/agreement", params={"image": "../x"}, timeout=30).status_code == 404
