"""Metrics against hand-computed values (expected numbers are worked out in the comments)."""

import json
import math

import numpy as np
import pytest

from breastlab.metrics import (
    classification_scores,
    format_ci,
    format_table,
    multiclass_scores,
    segmentation_scores,
    summarize_segmentation,
)


def square(r0: int, r1: int, c0: int, c1: int, shape=(10, 10)) -> np.ndarray:
    mask = np.zeros(shape, dtype=np.uint8)
    mask[r0:r1, c0:c1] = 1
    return mask


TRUTH = square(2, 6, 2, 6)  # 4x4 = 16 px lesion in a 10x10 image


def test_square_shifted_by_one_pixel():
    # pred: the truth square one column to the right -> overlap 4x3 = 12 px, FP = FN = 4, TN = 80.
    # Edges (12 px each): 6 pred edge pixels lie on the truth edge (distance 0), the other 6 are
    # 1 px from it, and vice versa -> 95th percentile of {0 x6, 1 x6} = 1; mean over both edges = 0.5.
    s = segmentation_scores(square(2, 6, 3, 7), TRUTH, probability=square(2, 6, 3, 7) * 0.9)
    assert s.pop("truth_empty") is False
    assert all(type(v) is float for v in s.values())  # plain JSON values
    assert s == pytest.approx({
        "dice": 2 * 12 / (16 + 16), "iou": 12 / 20, "box_iou": 12 / 20, "hd95": 1.0, "asd": 0.5, "precision": 12 / 16,
        "recall": 12 / 16, "pointing_hit": 1.0, "pixel_accuracy": 92 / 100, "fp_fraction": 4 / 100,
    })


def test_pointing_game_hits_when_the_maps_peak_is_on_the_lesion():
    probability = np.zeros((10, 10))
    probability[8, 8] = 1.0  # outside TRUTH (rows and columns 2..5)
    assert segmentation_scores(TRUTH, TRUTH, probability=probability)["pointing_hit"] == 0.0
    probability[3, 4] = 2.0
    assert segmentation_scores(TRUTH, TRUTH, probability=probability)["pointing_hit"] == 1.0
    assert segmentation_scores(TRUTH, TRUTH)["pointing_hit"] is None  # no map, no pointing game
    assert segmentation_scores(TRUTH, np.zeros((10, 10)), probability=probability)["pointing_hit"] is None


def test_box_iou_boxes_the_largest_predicted_region():
    pred = square(2, 6, 2, 6)
    pred[9, 9] = 1  # a stray pixel: another, smaller region, ignored by the box
    pred[5, 2:6] = 0  # the main region loses its bottom row: box 4 wide x 3 high inside the 4x4 truth box
    assert segmentation_scores(pred, TRUTH)["box_iou"] == pytest.approx(12 / 16)


def test_prediction_inside_truth():
    # pred: the left 4x3 = 12 px of the truth -> TP 12, FP 0, FN 4: dice 24/28, iou 12/16.
    s = segmentation_scores(square(2, 6, 2, 5), TRUTH)
    assert (s["dice"], s["iou"]) == pytest.approx((24 / 28, 12 / 16))
    assert (s["precision"], s["recall"], s["fp_fraction"]) == pytest.approx((1.0, 12 / 16, 0.0))


def test_hd95_single_pixels_and_spacing():
    a, b = square(2, 3, 2, 3), square(5, 6, 6, 7)  # single pixels 3 rows, 4 columns apart
    assert segmentation_scores(a, b)["hd95"] == segmentation_scores(a, b)["asd"] == pytest.approx(5.0)
    assert segmentation_scores(a, b, spacing=(2.0, 2.0))["hd95"] == pytest.approx(10.0)
    # spacing is (row, column): sqrt((3*2)^2 + (4*1)^2) = sqrt(52); swapped would be sqrt(73)
    assert segmentation_scores(a, b, spacing=(2.0, 1.0))["hd95"] == pytest.approx(math.sqrt(52), rel=1e-5)


def test_hd95_ignores_a_rare_outlier():
    # truth: a 20 px line (every pixel an edge); pred: the line plus 1 or 2 far pixels.
    truth = square(5, 6, 0, 20, shape=(30, 30))
    pred = truth.copy()
    pred[25, 0] = 1  # distances {0 x20, 20}: position 0.95*20 = 19 -> 0
    assert segmentation_scores(pred, truth)["hd95"] == pytest.approx(0.0)
    pred[26, 0] = 1  # {0 x20, 20, 21}: position 0.95*21 = 19.95 -> 0 + 0.95*(20 - 0) = 19
    assert segmentation_scores(pred, truth)["hd95"] == pytest.approx(19.0, rel=1e-5)


def test_asd_averages_every_edge_pixel_of_both_masks():
    truth = square(5, 6, 0, 20, shape=(30, 30))
    pred = truth.copy()
    pred[25, 0] = 1  # truth -> pred: 0 x20; pred -> truth: 0 x20 and 20, so the mean of 41 distances is 20/41
    assert segmentation_scores(pred, truth)["asd"] == pytest.approx(20 / 41, rel=1e-5)
    pred[26, 0] = 1  # one more pred edge pixel, 21 away: (20 + 21) / 42
    assert segmentation_scores(pred, truth)["asd"] == pytest.approx(41 / 42, rel=1e-5)


def test_empty_truth_scored_by_false_positives_only():
    pred = np.zeros((10, 10), dtype=np.uint8)
    pred[0, :3] = 255  # any nonzero value is lesion
    s = segmentation_scores(pred, np.zeros((10, 10)))
    assert s["truth_empty"] is True
    assert all(s[k] is None for k in ("dice", "iou", "hd95", "asd", "precision", "recall"))
    assert s["fp_fraction"] == pytest.approx(3 / 100)
    assert s["pixel_accuracy"] == pytest.approx(97 / 100)


def test_empty_prediction_on_lesion_is_a_miss():
    s = segmentation_scores(np.zeros((10, 10)), TRUTH)
    assert (s["dice"], s["iou"], s["box_iou"], s["precision"], s["recall"]) == (0.0, 0.0, 0.0, 0.0, 0.0)
    assert s["hd95"] is None and s["asd"] is None
    assert s["fp_fraction"] == 0.0
    assert s["pixel_accuracy"] == pytest.approx(84 / 100)


@pytest.mark.parametrize("shapes", [((10, 10), (10, 12)), ((1, 10, 10), (1, 10, 10))])
def test_bad_shapes_raise(shapes):
    with pytest.raises(ValueError):
        segmentation_scores(np.zeros(shapes[0]), np.zeros(shapes[1]))


def row(label, dice, iou, hd95, precision, recall, acc, fp, truth_empty=False):
    return dict(label=label, dice=dice, iou=iou, box_iou=iou, hd95=hd95, asd=hd95 and hd95 / 2, precision=precision,
                recall=recall, pointing_hit=None if truth_empty else float(dice > 0),
                pixel_accuracy=acc, fp_fraction=fp, truth_empty=truth_empty)


def test_summarize_segmentation():
    rows = [
        row("benign", 0.8, 0.6, 2.0, 0.9, 0.7, 0.95, 0.01),
        row("malignant", 0.0, 0.0, None, 0.0, 0.0, 0.90, 0.0),  # missed lesion
        row("normal", None, None, None, None, None, 0.98, 0.02, truth_empty=True),
        row("normal", None, None, None, None, None, 1.00, 0.0, truth_empty=True),
    ]
    summary = summarize_segmentation(rows)
    assert set(summary) == {"benign", "malignant", "normal", "overall"}
    # overall = the two lesion images: means of (benign, malignant), population std = |a - b| / 2;
    # hd95 is defined for the benign image only.
    assert summary["overall"] == pytest.approx({
        "n": 2, "n_missed": 1, "dice_mean": 0.4, "dice_std": 0.4, "iou_mean": 0.3, "iou_std": 0.3,
        "box_iou_mean": 0.3, "box_iou_std": 0.3,
        "hd95_mean": 2.0, "hd95_std": 0.0, "asd_mean": 1.0, "asd_std": 0.0,
        "precision_mean": 0.45, "precision_std": 0.45,
        "recall_mean": 0.35, "recall_std": 0.35, "pointing_hit_mean": 0.5, "pointing_hit_std": 0.5,
        "pixel_accuracy_mean": 0.925, "pixel_accuracy_std": 0.025,
    })
    assert summary["malignant"]["hd95_mean"] is None and summary["malignant"]["n_missed"] == 1
    assert summary["benign"]["dice_mean"] == pytest.approx(0.8) and summary["benign"]["n_missed"] == 0
    assert summary["normal"] == pytest.approx({"n": 2, "mean_fp_fraction": 0.01, "fp_rate": 0.5})


def test_summarize_mixed_class_and_unlabelled_rows():
    rows = [
        row("benign", 0.5, 0.5, 1.0, 0.5, 0.5, 0.9, 0.1),
        row("benign", None, None, None, None, None, 1.0, 0.0, truth_empty=True),
        row(None, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 0.0),
    ]
    summary = summarize_segmentation(rows)
    assert set(summary) == {"benign", "overall"}
    assert summary["benign"]["n"] == 1 and summary["benign"]["n_empty_truth"] == 1
    assert summary["benign"]["fp_rate"] == 0.0
    assert summary["overall"]["n"] == 2 and summary["overall"]["dice_mean"] == pytest.approx(0.75)


def test_perfect_classifier():
    y = [0, 0, 0, 0, 1, 1, 1, 1]
    r = classification_scores(y, [0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.8, 0.9], n_bootstrap=200)
    assert (r["n"], r["n_positive"]) == (8, 4)
    for name in ("auc", "sensitivity_at_90_specificity", "sensitivity_at_95_specificity",
                 "specificity_at_95_sensitivity", "accuracy", "sensitivity", "specificity", "f1"):
        assert r[name]["value"] == 1.0
        assert 0.0 <= r[name]["ci_low"] <= r[name]["ci_high"] <= 1.0


def test_six_case_example():
    # negatives 0.1, 0.2, 0.3, 0.6; positives 0.3, 0.8 -> 2 x 4 = 8 pairs.
    # pos 0.3 beats 0.1 and 0.2, ties 0.3 (counts 1/2), loses to 0.6 -> 2.5
    # pos 0.8 beats all four -> 4.   AUC = 6.5 / 8 = 13/16
    # At 0.5: TP = 1 (0.8), FN = 1 (0.3), FP = 1 (0.6), TN = 3.
    y = [0, 0, 0, 0, 1, 1]
    s = [0.1, 0.2, 0.3, 0.6, 0.3, 0.8]
    r = classification_scores(y, s, n_bootstrap=200)
    assert r["auc"]["value"] == pytest.approx(13 / 16)
    assert r["sensitivity"]["value"] == pytest.approx(1 / 2)
    assert r["specificity"]["value"] == pytest.approx(3 / 4)
    assert r["accuracy"]["value"] == pytest.approx(4 / 6)
    assert r["f1"]["value"] == pytest.approx(2 / (2 + 1 + 1))  # 2TP / (2TP + FP + FN)
    # score >= threshold is positive: at 0.3 both 0.3s are called positive -> TP 2, FP 2, TN 2
    r = classification_scores(y, s, threshold=0.3, n_bootstrap=0)
    assert r["sensitivity"]["value"] == 1.0 and r["specificity"]["value"] == pytest.approx(2 / 4)
    assert r["auc"]["ci_low"] is None  # no resamples, no interval
    # negatives 0.1 0.2 0.3 0.6: specificity >= 0.9 needs all four at or below the cut (0.6); only 0.8 is above
    assert r["sensitivity_at_90_specificity"]["value"] == pytest.approx(1 / 2)


def test_sensitivity_at_90_specificity_keeps_a_tenth_of_negatives_above_the_cut():
    negatives, positives = np.arange(20) / 20, np.array([0.5, 0.8, 0.9, 0.96])  # negatives 0, 0.05, ..., 0.95
    r = classification_scores([0] * 20 + [1] * 4, np.concatenate([negatives, positives]), n_bootstrap=0)
    assert r["sensitivity_at_90_specificity"]["value"] == pytest.approx(2 / 4)  # the cut is 0.85: 18 of 20 below


def test_operating_points_at_95_percent():
    negatives, positives = np.arange(20) / 20, np.array([0.5, 0.8, 0.9, 0.96])
    r = classification_scores([0] * 20 + [1] * 4, np.concatenate([negatives, positives]), n_bootstrap=0)
    assert r["sensitivity_at_95_specificity"]["value"] == pytest.approx(1 / 4)  # the cut is 0.90: 19 of 20 below
    positives, negatives = np.arange(1, 21) / 20, np.array([0.04, 0.1, 0.2, 0.5])
    r = classification_scores([1] * 20 + [0] * 4, np.concatenate([positives, negatives]), n_bootstrap=0)
    assert r["specificity_at_95_sensitivity"]["value"] == pytest.approx(1 / 4)  # 19 of 20 positives at 0.10 or above


def test_bootstrap_is_seeded():
    rng = np.random.default_rng(42)
    y = rng.integers(0, 2, 40)
    s = np.clip(0.3 * y + 0.7 * rng.random(40), 0, 1)
    a = classification_scores(y, s, n_bootstrap=200, seed=1)
    assert a == classification_scores(y, s, n_bootstrap=200, seed=1)
    assert a["auc"] != classification_scores(y, s, n_bootstrap=200, seed=2)["auc"]
    assert a["auc"]["ci_low"] <= a["auc"]["value"] <= a["auc"]["ci_high"]
    json.dumps(a)


def test_single_class_leaves_auc_undefined():
    r = classification_scores([1, 1, 1], [0.9, 0.2, 0.7], n_bootstrap=50)
    assert r["auc"] == {"value": None, "ci_low": None, "ci_high": None}
    assert r["specificity"]["value"] is None
    assert r["sensitivity"]["value"] == pytest.approx(2 / 3)


BAD_INPUTS = [([0, 1, 1], [0.2, 0.8]), ([0, 2, 1], [0.1, 0.5, 0.9]), ([], []), ([0, 1], [0.1, float("nan")])]


@pytest.mark.parametrize("y, s", BAD_INPUTS)  # lengths differ, label 2, no cases, NaN score
def test_invalid_inputs_raise(y, s):
    with pytest.raises(ValueError):
        classification_scores(y, s, n_bootstrap=10)


def test_format_ci():
    assert format_ci({"value": 0.912, "ci_low": 0.8714, "ci_high": 0.95}) == "0.912 [0.871, 0.950]"
    assert format_ci({"value": 0.5, "ci_low": None, "ci_high": None}) == "0.500"
    assert format_ci({"value": None, "ci_low": None, "ci_high": None}) == "–"


def test_format_table():
    rows = [
        {"model": "unet", "dice": 0.8123, "hd95": None, "n": 12},
        {"model": "segresnet-long", "dice": 0.5, "hd95": 12.3456, "n": 3},
    ]
    table = format_table(rows, ["model", "dice", "hd95", "n"], title="Segmentation")
    assert table.splitlines() == [
        "Segmentation",
        "model            dice    hd95   n",
        "--------------  -----  ------  --",
        "unet            0.812       –  12",
        "segresnet-long  0.500  12.346   3",
    ]


def test_multiclass_scores_by_hand():
    # 6 cases, 3 classes; the argmax is right for 4 (accuracy 4/6).
    y = [0, 0, 1, 1, 2, 2]
    p = [[0.8, 0.1, 0.1], [0.3, 0.6, 0.1], [0.2, 0.7, 0.1], [0.1, 0.3, 0.6], [0.1, 0.2, 0.7], [0.1, 0.1, 0.8]]
    r = multiclass_scores(y, p, n_bootstrap=200)
    assert r["n"] == 6
    assert r["accuracy"]["value"] == pytest.approx(4 / 6)
    # one-vs-rest F1: class 0 tp1 fn1 -> 2/3; class 1 tp1 fp1 fn1 -> 1/2; class 2 tp2 fp1 -> 4/5
    assert r["macro_f1"]["value"] == pytest.approx((2 / 3 + 1 / 2 + 4 / 5) / 3)
    # one-vs-rest AUC: classes 0 and 2 rank perfectly; class 1: positives 0.7, 0.3 vs 0.1 0.6 0.2 0.1 -> 7/8
    assert r["macro_auc"]["value"] == pytest.approx((1 + 7 / 8 + 1) / 3)
    assert r["accuracy"]["ci_low"] <= r["accuracy"]["value"] <= r["accuracy"]["ci_high"]


def test_multiclass_auc_undefined_without_every_class():
    r = multiclass_scores([0, 1, 1], [[0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.3, 0.6, 0.1]], n_bootstrap=20)
    assert r["accuracy"]["value"] == 1.0 and r["macro_f1"]["value"] == 1.0
    assert r["macro_auc"] == {"value": None, "ci_low": None, "ci_high": None}


@pytest.mark.parametrize("y, p", [([0, 3], [[0.5, 0.5], [0.5, 0.5]]), ([0], [0.5, 0.5]), ([], np.zeros((0, 2))),
                                  ([0, 1], [[0.5, np.nan], [0.5, 0.5]])])
def test_multiclass_scores_bad_input_raises(y, p):
    with pytest.raises(ValueError):
        multiclass_scores(y, p, n_bootstrap=5)
