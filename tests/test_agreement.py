"""Reader agreement and consensus against hand-computed values, scikit-learn and a known truth."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score

from breastlab.data import BIRADS, CLASS_NAMES
from breastlab.metrics.agreement import (
    category_kappa,
    cohen_kappa,
    fleiss_kappa,
    image_agreement,
    mask_pairs,
    study_agreement,
)
from breastlab.metrics.consensus import consensus, majority_class, median_category, staple, staple_em
from breastlab.metrics.segmentation import dice

# Fleiss (1971) as worked on Wikipedia's "Fleiss' kappa" page: 10 items, 14 raters, 5 categories; kappa = 0.210
FLEISS_COUNTS = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
                 [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]


def square(size: int, top: int, left: int, side: int) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    mask[top:top + side, left:left + side] = 1
    return mask


def noisy_reader(truth: np.ndarray, rng: np.random.Generator, flip: float) -> np.ndarray:
    """The truth with a share ``flip`` of the pixels inside its bounding region flipped."""
    mask = truth.copy()
    region = np.zeros_like(truth, bool)
    region[20:100, 20:100] = True
    flips = region & (rng.random(truth.shape) < flip)
    mask[flips] = 1 - mask[flips]
    return mask


def test_fleiss_kappa_matches_the_worked_example():
    categories = list("abcde")
    ratings = [[c for c, n in zip(categories, row) for _ in range(n)] for row in FLEISS_COUNTS]
    assert fleiss_kappa(ratings, categories) == pytest.approx(0.2099, abs=5e-4)


def test_fleiss_kappa_is_one_for_full_agreement_and_undefined_for_one_category():
    assert fleiss_kappa([["benign"] * 3, ["malignant"] * 3], CLASS_NAMES) == pytest.approx(1.0)
    assert fleiss_kappa([["benign"] * 3, ["benign"] * 2], CLASS_NAMES) is None
    assert fleiss_kappa([["benign"]], CLASS_NAMES) is None  # no item read twice


def test_cohen_kappa_equals_scikit_learn_plain_and_weighted():
    rng = np.random.default_rng(0)
    first = list(rng.choice(BIRADS[2:9], 60))
    second = [c if rng.random() < 0.6 else str(rng.choice(BIRADS[2:9])) for c in first]
    rank = {c: i for i, c in enumerate(BIRADS)}
    for weighted in (False, True):
        expected = cohen_kappa_score([rank[c] for c in first], [rank[c] for c in second],
                                     weights="quadratic" if weighted else None)
        assert cohen_kappa(first, second, BIRADS, weighted) == pytest.approx(expected)
    assert cohen_kappa(["benign"] * 4, ["benign"] * 4, CLASS_NAMES) is None


def test_category_kappa_picks_cohen_fleiss_or_light():
    two = [{"a": "benign", "b": "benign"}, {"a": "malignant", "b": "benign"}, {"a": "malignant", "b": "malignant"}]
    kappa, method = category_kappa(two, CLASS_NAMES, ordered=False)
    assert method == "cohen"
    first, second = ["benign", "malignant", "malignant"], ["benign", "benign", "malignant"]
    assert kappa == pytest.approx(cohen_kappa_score(first, second))
    three = [{**item, "c": item["a"]} for item in two]
    assert category_kappa(three, CLASS_NAMES, ordered=False)[1] == "fleiss"
    birads = [{"a": "3", "b": "4a", "c": "3"}, {"a": "5", "b": "5", "c": "4c"}, {"a": "2", "b": "3", "c": "2"}]
    kappa, method = category_kappa(birads, BIRADS, ordered=True)
    pairs = [cohen_kappa([i[x] for i in birads], [i[y] for i in birads], BIRADS, True) for x, y in ("ab", "ac", "bc")]
    assert method == "weighted_light" and kappa == pytest.approx(np.mean(pairs))


def test_mask_pairs_give_hand_computed_dice_and_hd95():
    a, b = square(64, 10, 10, 20), square(64, 10, 20, 20)  # overlap 20 x 10 of 400 + 400 pixels
    pairs = mask_pairs({"bob": b, "ann": a, "cy": np.zeros((64, 64), np.uint8)})
    assert [p["readers"] for p in pairs] == [["ann", "bob"], ["ann", "cy"], ["bob", "cy"]]
    assert pairs[0]["dice"] == pytest.approx(2 * 200 / 800)
    assert pairs[0]["hd95"] == pytest.approx(10.0)
    assert pairs[1]["dice"] == 0.0 and pairs[1]["hd95"] is None


def test_staple_recovers_the_truth_better_than_any_noisy_reader():
    rng = np.random.default_rng(1)
    truth = square(128, 40, 40, 40)
    readers = [noisy_reader(truth, rng, flip) for flip in (0.05, 0.1, 0.2)]
    fit = staple(readers)
    assert dice(fit["mask"], truth) > max(dice(r, truth) for r in readers)
    assert fit["sensitivity"][0] > fit["sensitivity"][2] and fit["specificity"][0] > fit["specificity"][2]


@pytest.mark.slow  # ITK loads its segmentation module (seconds)
@pytest.mark.parametrize("case", ["noisy pixels", "shifted boxes", "a reader who misses the lesion"])
def test_staple_em_equals_itks_staple_image_filter(case):
    import itk

    rng = np.random.default_rng(2)
    truth = square(96, 30, 30, 36)
    readers = {"noisy pixels": [noisy_reader(truth, rng, flip) for flip in (0.05, 0.1, 0.2)],
               "shifted boxes": [square(96, 30 + s, 28 + 2 * s, 36) for s in range(4)],
               "a reader who misses the lesion": [truth, square(96, 34, 30, 30), square(96, 70, 70, 10)]}[case]
    image = itk.Image[itk.F, 2]
    fit = itk.STAPLEImageFilter[image, image].New()
    for i, mask in enumerate(readers):
        fit.SetInput(i, itk.image_from_array(mask.astype(np.float32)))
    fit.SetForegroundValue(1)
    fit.Update()
    probability, sensitivity, specificity = staple_em(np.stack(readers) > 0)
    np.testing.assert_allclose(probability, itk.array_from_image(fit.GetOutput()), atol=1e-4)
    np.testing.assert_allclose(sensitivity, [fit.GetSensitivity(i) for i in range(len(readers))], atol=1e-5)
    np.testing.assert_allclose(specificity, [fit.GetSpecificity(i) for i in range(len(readers))], atol=1e-5)


def test_staple_of_identical_or_empty_masks_needs_no_fit():
    mask = square(32, 4, 4, 8)
    assert staple([mask, mask])["mask"].sum() == mask.sum()
    empty = staple([np.zeros((8, 8)), np.zeros((8, 8))])
    assert not empty["mask"].any() and empty["sensitivity"] == [None, None]
    with pytest.raises(ValueError, match="differ in size"):
        staple([np.zeros((8, 8)), np.zeros((9, 8))])


def test_majority_and_median_lean_to_the_more_severe_call_on_ties():
    assert majority_class(["benign", "malignant", "benign"]) == "benign"
    assert majority_class(["benign", "malignant"]) == "malignant"
    assert majority_class([None, None]) is None
    assert median_category(["3", "5", "4a"]) == "4a"
    assert median_category(["3", "4b"]) == "4b"


def test_consensus_and_study_agreement_of_three_readers():
    truth = square(64, 16, 16, 24)
    reads = {"ann": {"mask": truth, "class": "malignant", "birads": "4c"},
             "bob": {"mask": square(64, 18, 16, 24), "class": "malignant", "birads": "5"},
             "cy": {"mask": square(64, 16, 18, 24), "class": "benign", "birads": "4a"}}
    proposal = consensus(reads)
    assert proposal["class"] == "malignant" and proposal["birads"] == "4c"
    assert set(proposal["readers"]) == {"ann", "bob", "cy"}
    study = study_agreement({"x": image_agreement(reads), "y": image_agreement({"ann": reads["ann"]})}, n_bootstrap=50)
    assert study["images"] == 2 and study["images_read_twice"] == 1 and study["readers"] == ["ann", "bob", "cy"]
    expected = np.mean([p["dice"] for p in mask_pairs({r: v["mask"] for r, v in reads.items()})])
    assert study["dice"]["value"] == pytest.approx(expected)
    assert study["methods"] == {"class_kappa": "fleiss", "birads_kappa": "weighted_light"}
    assert image_agreement(reads)["class"] == {"ann": "malignant", "bob": "malignant", "cy": "benign"}
