"""Diversity selection (TypiClust order, hybrid), the ImageNet image encoder and the incremental embedding index."""

from __future__ import annotations

import os

import numpy as np
import pytest

from breastlab.activelearning.diversity import ImageEncoder, selection_order, typicality
from breastlab.formats.png import write_png
from breastlab.server.datastore.score_index import EmbeddingIndex

CENTRES = np.array([[10.0, 0.0], [0.0, 10.0], [-10.0, -10.0]])


@pytest.fixture
def blobs():
    """Three clusters of 40, 25 and 15 points, then one far outlier beside the first cluster (row 80)."""
    rng = np.random.default_rng(0)
    points = [centre + rng.normal(0, 1, (n, 2)) for centre, n in zip(CENTRES, (40, 25, 15))]
    features = np.concatenate(points + [CENTRES[:1] + [4.0, 4.0]])
    return features, np.repeat([0, 1, 2, 0], [40, 25, 15, 1])


def nearest_centre(features: np.ndarray, rows) -> list[int]:
    return [int(np.argmin(((CENTRES - features[r]) ** 2).sum(1))) for r in rows]


def test_diverse_takes_a_typical_image_of_every_cluster_first(blobs):
    features, blob = blobs
    order = selection_order(features, np.zeros(len(features), bool), budget=3)
    assert sorted(order) == list(range(len(features)))  # every image, once
    assert nearest_centre(features, order[:3]) == [0, 1, 2]  # largest cluster first
    for row in order[:3]:
        centre = CENTRES[nearest_centre(features, [row])[0]]
        assert np.linalg.norm(features[row] - centre) < 1.0  # typical: near the middle, not the outlier
    assert order.index(80) > 60


def test_clusters_with_the_fewest_labelled_images_come_first(blobs):
    features, blob = blobs
    labelled = np.zeros(len(features), bool)
    labelled[[0, 40]] = True  # one image of the first two clusters: the smallest, unlabelled one comes first
    order = selection_order(features, labelled, budget=1)
    assert nearest_centre(features, order[:3]) == [2, 0, 1] and not {0, 40} & set(order)


def test_hybrid_takes_the_most_uncertain_of_each_clusters_typical_half(blobs):
    features, blob = blobs
    uncertainty = np.zeros(len(features))
    uncertainty[80] = 1.0  # an uncertain outlier is not handed out first
    typical = typicality(features, blob)
    in_first = np.flatnonzero(blob[:80] == 0)
    typical_half = in_first[np.argsort(-typical[in_first])][:20]
    uncertainty[typical_half[-1]] = 0.5  # the least typical of the typical half, but the most uncertain there
    order = selection_order(features, np.zeros(len(features), bool), budget=3, uncertainty=uncertainty)
    assert order[0] == typical_half[-1] and order.index(80) > 2


def test_image_encoder_gives_one_unit_vector_per_image(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        write_png(rng.integers(0, 256, (60, 80), dtype=np.uint8), tmp_path / f"{name}.png")
    encoder = ImageEncoder()
    a, b = encoder(str(tmp_path / "a.png")), encoder(str(tmp_path / "b.png"))
    assert a.shape == (320,) and np.linalg.norm(a) == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(encoder(str(tmp_path / "a.png")), a)
    assert not np.allclose(a, b)


def test_embedding_index_encodes_only_new_or_changed_images(tmp_path):
    images = {}
    for name in ("a", "b", "c"):
        images[name] = str(write_png(np.full((8, 8), ord(name), np.uint8), tmp_path / f"{name}.png"))
    encoded = []

    def encode(path):
        encoded.append(os.path.basename(path))
        return np.full(4, len(encoded), np.float32)

    index = EmbeddingIndex.of(tmp_path)
    ids, vectors, count = index.update(images, encode, "enc")
    assert ids == ["a", "b", "c"] and count == 3 and vectors.shape == (3, 4)
    assert index.update(images, encode, "enc")[2] == 0
    write_png(np.zeros((8, 8), np.uint8), images["b"])
    os.utime(images["b"], ns=(1, 1))  # a new modification time even on coarse clocks
    del images["c"]
    ids, vectors, count = index.update(images, encode, "enc")
    assert (ids, count, encoded[-1]) == (["a", "b"], 1, "b.png")
    np.testing.assert_array_equal(vectors[:, 0], [1, 4])
    assert EmbeddingIndex.of(tmp_path).load()[0] == "enc"
    assert index.update(images, encode, "another")[2] == 2  # another encoder: everything again
