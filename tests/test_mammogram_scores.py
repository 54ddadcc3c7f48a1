"""Mammograms scored per breast and per woman (groups, labels, pooled probabilities, the evaluate summaries) and
where their maps lie."""

import shutil

import numpy as np
import pytest

from breastlab.data import read_dataset
from breastlab.evaluation.evaluate import score_cases, summarize
from breastlab.evaluation.mammograms import grouped_rows, map_shares, map_summary


def row(patient, side, label, p):
    return {"patient": patient, "side": side, "label": label, "class_probabilities": {"no_cancer": 1 - p,
                                                                                      "malignant": p}}


ROWS = [row("1", "left", "malignant", 0.9), row("1", "left", "benign", 0.3), row("1", "right", "normal", 0.2),
        row("2", "left", "benign", 0.4), row("2", "right", "benign", 0.6),
        {"label": "malignant", "class_probabilities": {"no_cancer": 0.5, "malignant": 0.5}}]  # no woman: left out


def test_a_woman_is_her_most_severe_label_and_her_pooled_probabilities():
    women = {r["n_images"]: r for r in grouped_rows(ROWS, "woman", "max")}
    assert women[3]["label"] == "malignant" and women[3]["class_probabilities"]["malignant"] == pytest.approx(0.9)
    assert women[2]["label"] == "benign" and women[2]["class_probabilities"]["no_cancer"] == pytest.approx(0.6)
    means = sorted(r["class_probabilities"]["malignant"] for r in grouped_rows(ROWS, "woman", "mean"))
    assert means == pytest.approx(sorted([0.5, (0.9 + 0.3 + 0.2) / 3]))


def test_a_breast_groups_one_womans_images_of_one_side():
    breasts = grouped_rows(ROWS, "breast", "max")
    assert sorted((r["label"], r["n_images"]) for r in breasts) == [
        ("benign", 1), ("benign", 1), ("malignant", 2), ("normal", 1)]


def test_summaries_score_mammograms_per_image_breast_and_woman(mammograms, tmp_path):
    """The synthetic mammograms: 5 women, each with one image of each side, 3 of them with a malignant image; the
    sides come from the images."""
    data = tmp_path / "mammograms"
    shutil.copytree(mammograms, data)
    (data / "manifest.csv").write_text((data / "manifest.csv").read_text().replace(",pair\n", ",patient\n"))
    cases = read_dataset(data)
    malignant = {c.image: 0.2 + 0.7 * (c.label == "malignant") for c in cases}  # a classifier right on every image
    rows = score_cases(lambda image: {"class_probabilities": {"no_cancer": 1 - malignant[image],
                                                              "malignant": malignant[image]}}, cases, grouped=True)
    assert [r["side"] for r in rows] == ["left", "right"] * 5
    tasks = summarize(rows)["classification"]
    assert tasks["malignant vs no_cancer"]["n"] == 10
    for pooling in ("max", "mean"):
        woman, breast = (tasks[f"malignant vs no_cancer, per {level} ({pooling})"] for level in ("woman", "breast"))
        assert (woman["n"], woman["n_positive"], woman["auc"]["value"]) == (5, 3, 1.0)
        assert (breast["n"], breast["n_positive"], breast["auc"]["value"]) == (10, 3, 1.0)


def test_map_shares_say_how_much_of_a_map_lies_off_the_breast_and_on_its_skin_line():
    rows, cols = np.mgrid[:200, :160]
    image = np.where((rows - 100) ** 2 + cols ** 2 < 90 ** 2, 150, 0).astype(np.uint8)  # breast at the left edge
    image[10:20, 130:150] = 255  # a burned-in label
    assert map_shares(image, np.zeros(image.shape)) == {}
    label, skin, centre = np.zeros((3, *image.shape))
    label[10:20, 130:150] = 1
    skin[100, 88] = 1  # 2 px inside the edge (the skin line is 4 px wide here)
    centre[95:105, 20:40] = 1  # as much mass as the label
    assert map_shares(image, label) == {"map_outside_breast": 1.0, "map_on_skin_line": 0.0}
    assert map_shares(image, skin) == {"map_outside_breast": 0.0, "map_on_skin_line": 1.0}
    assert map_shares(image, centre + label) == {"map_outside_breast": 0.5, "map_on_skin_line": 0.0}
    summary = map_summary([{"map_outside_breast": 1.0, "map_on_skin_line": 0.0},
                           {"map_outside_breast": 0.0, "map_on_skin_line": 0.5}, {}])
    assert summary == {"n": 2, "map_outside_breast_mean": 0.5, "map_on_skin_line_mean": 0.25}
