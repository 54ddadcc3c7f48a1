"""Uncertainty scores, the score index and the strategies on a real datastore (no server)."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch
from fastapi import HTTPException

from breastlab.activelearning.uncertainty import lesion_uncertainty, predictive_entropy, tta_probabilities
from breastlab.formats.png import write_png
from breastlab.server.datastore.local import BreastLabDatastore
from breastlab.server.datastore.score_index import ScoreIndex
from breastlab.server.tasks.strategies import HandOuts, RandomUnlabeled, TopScored

IMAGE = np.zeros((32, 40), np.uint8)


class Shift(torch.nn.Module):
    """Logits = the image shifted one pixel right: flipped predictions disagree at the lesion's left and right edge."""

    def forward(self, x):
        return x.roll(1, -1)


class Ramp(torch.nn.Module):
    """Logits = image + a left-to-right ramp: not flip-equivariant, so flipped predictions disagree."""

    def forward(self, x):
        return x + torch.linspace(-3, 3, x.shape[-1])


def test_flip_equivariant_networks_are_certain():
    image = torch.randn(1, 1, 8, 8)
    assert lesion_uncertainty(torch.nn.Identity(), image) == 0.0
    assert lesion_uncertainty(torch.nn.Identity(), torch.full((1, 1, 8, 8), -5.0)) == 0.0  # no lesion anywhere
    probabilities = tta_probabilities(torch.nn.Identity(), image)
    assert probabilities.shape == (4, 1, 8, 8)
    torch.testing.assert_close(probabilities[3], image[0].sigmoid())


def test_lesion_uncertainty_is_relative_to_the_lesion_and_penalises_scattered_maps():
    # ramp over 4 columns: the right half is lesion, left-right flips put it on the left; the masks share nothing
    assert lesion_uncertainty(Ramp(), torch.zeros(1, 1, 4, 4)) == pytest.approx(1.0)
    lesion = torch.full((1, 1, 32, 32), -5.0)
    lesion[..., 8:24, 8:24] = 5.0
    small, large = lesion.clone(), lesion.clone()
    small[..., 8:24, 23] = 0.5  # one column that only some flips would keep: the same for both sizes
    large[..., 4:28, 4:28] = 5.0
    large[..., 4:28, 27] = 0.5
    assert 0 < lesion_uncertainty(Shift(), large) < lesion_uncertainty(Shift(), small)
    scattered = torch.full((1, 1, 32, 32), -5.0)
    scattered[..., 8:24:4, 8:24:4] = 5.0  # 16 separate one-pixel "lesions"
    scattered[..., 8, 8:10] = 5.0
    assert lesion_uncertainty(Shift(), scattered) < lesion_uncertainty(Shift(), small)


def test_predictive_entropy():
    probabilities = torch.tensor([[1 / 3, 1 / 3, 1 / 3], [1.0, 0.0, 0.0], [0.5, 0.5, 0.0]])
    torch.testing.assert_close(predictive_entropy(probabilities), torch.tensor([math.log(3), 0.0, math.log(2)]))


def test_score_index_orders_skips_and_reloads_when_the_file_changes(tmp_path):
    writer, reader = ScoreIndex.of(tmp_path, "m"), ScoreIndex.of(tmp_path, "m")
    assert reader.load().top(3, skip=lambda i: False) == []
    writer.save({"a": 0.1, "b": 0.9, "c": 0.5}, model="x")
    assert reader.load().top(2, skip=lambda i: False) == [("b", 0.9), ("c", 0.5)]
    assert reader.top(5, skip=lambda i: i == "b") == [("c", 0.5), ("a", 0.1)]
    assert reader.meta == {"model": "x"}
    writer.save({"a": 1.0})
    os.utime(writer.path, (1, 1))  # a new modification time even on coarse clocks
    assert reader.load().top(1, skip=lambda i: False) == [("a", 1.0)]


@pytest.fixture
def store(tmp_path):
    for name in ("a", "b", "c", "d"):
        write_png(IMAGE, tmp_path / f"{name}.png")
    (tmp_path / "labels" / "final").mkdir(parents=True)
    write_png(IMAGE, tmp_path / "labels" / "final" / "b.png")
    return BreastLabDatastore(str(tmp_path))


def test_uncertainty_hands_out_the_most_uncertain_unlabelled_images_once(store):
    ScoreIndex.of(store.root, "tta").save({"a": 0.2, "b": 0.9, "c": 0.5, "gone": 1.0})
    strategy = TopScored("tta", HandOuts())
    first = strategy({"top_k": 3}, store)
    assert first["id"] == "c" and [t["id"] for t in first["top"]] == ["c", "a"]  # b labelled, gone not an image
    assert strategy({}, store)["id"] == "a"  # c was just handed out
    assert strategy({}, store) == {"id": "d", "fallback": "random"}  # every scored image handed out
    for bad in (0, 101, "x", None):
        with pytest.raises(HTTPException) as error:
            strategy({"top_k": bad}, store)
        assert error.value.status_code == 400


def test_random_and_uncertainty_share_hand_outs(store):
    hand_outs = HandOuts()
    ScoreIndex.of(store.root, "tta").save({"a": 0.2, "c": 0.5, "d": 0.1})
    randomly = {RandomUnlabeled(hand_outs)({}, store)["id"] for _ in range(2)}
    assert len(randomly) == 2
    left = ({"a", "c", "d"} - randomly).pop()
    assert TopScored("tta", hand_outs)({}, store)["id"] == left
