"""The click simulator every click model is scored with: where each click goes, the Dice after it, NoC, failures
and the largest fall of the mean Dice."""

from __future__ import annotations

import numpy as np
import pytest

from breastlab.evaluation.clicks import clicks_to_reach, largest_drop, simulate_clicks
from breastlab.metrics.segmentation import dice


def test_simulate_clicks_with_a_predictor_that_needs_one_click_inside():
    truth = np.zeros((40, 60), np.uint8)
    truth[10:30, 20:50] = 1
    calls = []

    def predict(image, foreground, background):
        calls.append((list(foreground), list(background)))
        inside = any(truth[y, x] for x, y in foreground)
        return truth.copy() if inside else np.zeros_like(truth)

    dices = simulate_clicks(predict, "image", truth, max_clicks=5)
    assert dices == [1.0] * 5
    assert calls == [([[34, 19]], [])]  # one call: the centre of the lesion as [x, y]; no error left after it
    assert clicks_to_reach(dices, 0.85) == clicks_to_reach(dices, 0.90) == 1


def test_simulate_clicks_background_then_foreground():
    """First answer: half the lesion plus a larger false positive; a background click removes the false positive,
    a second foreground click completes the lesion."""
    truth = np.zeros((40, 60), bool)
    truth[10:30, 10:30] = True
    half = truth.copy()
    half[10:30, 20:30] = False
    false_positive = np.zeros_like(truth)
    false_positive[5:35, 40:58] = True
    calls = []

    def predict(image, foreground, background):
        calls.append((foreground, background))
        mask = truth.copy() if len(foreground) >= 2 else half.copy()
        return mask if background else mask | false_positive

    dices = simulate_clicks(predict, None, truth, max_clicks=4)
    assert dices == pytest.approx([dice(half | false_positive, truth), dice(half, truth), 1.0, 1.0])
    assert len(calls) == 3 and calls[-1] == ([[19, 19], [24, 19]], [[48, 19]])  # [x, y]: column, row
    assert clicks_to_reach(dices, 0.85) == 3 and clicks_to_reach(dices, 0.6) == 2


def _lesion(rows=slice(10, 30), columns=slice(10, 50)):
    truth = np.zeros((40, 60), bool)
    truth[rows, columns] = True
    return truth


def _grows(truth, width=10, after=1):
    """A predictor that segments the first ``width`` columns of the lesion per click from click ``after`` on."""
    def predict(image, foreground, background):
        mask, n = np.zeros_like(truth), len(foreground) + len(background) - after + 1
        mask[10:30, 10:10 + width * max(n, 0)] = truth[10:30, 10:10 + width * max(n, 0)]
        return mask
    return predict


def test_monotone_clicks_reach_the_targets():
    dices = simulate_clicks(_grows(_lesion()), "image", _lesion())
    assert dices[:4] == pytest.approx([0.4, 2 / 3, 6 / 7, 1.0]) and dices[4:] == [1.0] * 16
    assert clicks_to_reach(dices, 0.85) == 3 and clicks_to_reach(dices, 0.90) == 4 and largest_drop(dices) is None


def test_never_reaching_counts_20_and_a_failure_but_reaching_at_click_20_does_not():
    never = simulate_clicks(lambda image, fg, bg: _lesion(columns=slice(10, 30)), "image", _lesion())
    late = simulate_clicks(_grows(_lesion(), width=40, after=20), "image", _lesion())
    assert never == pytest.approx([2 / 3] * 20) and late == [0.0] * 19 + [1.0]
    assert [clicks_to_reach(d, t) for d in (never, late) for t in (0.85, 0.90)] == [20] * 4
    assert max(never) < 0.85 and max(late) >= 0.90  # what the summary's fail85 / fail90 count (test_evaluate.py)
    assert clicks_to_reach([], 0.9) == 20 and clicks_to_reach([0.2, 0.5, 0.86, 0.95], 0.90) == 4


def test_largest_drop_of_the_mean_dice_names_its_click():
    assert largest_drop([0.5, 0.7, 0.65, 0.8, 0.6, 0.9]) == {"click": 5, "drop": pytest.approx(0.2)}
    assert largest_drop([0.9, 0.85, 0.95], first=0) == {"click": 1, "drop": pytest.approx(0.05)}  # the box, then +1
    assert largest_drop([0.5, 0.5, 0.7]) is None and largest_drop([0.3]) is None


def test_dice():
    a = np.zeros((4, 4))
    assert dice(a, a) == 1.0
    b = a.copy()
    b[0, :2] = 1
    assert dice(b, a) == 0.0 and dice(b, b) == 1.0
