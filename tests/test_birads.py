"""The BI-RADS suggestion: the proportional-odds fit, its probabilities, weighted kappa and malignancy per category."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit
from sklearn.metrics import cohen_kappa_score

from breastlab.metrics import (
    birads_probabilities,
    fit_birads,
    malignancy_by_category,
    suggested_categories,
    weighted_kappa,
)

ORDER = ["2", "3", "4", "5"]


def _simulated(slope: float, cuts: list[float], n: int = 4000, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """p(malignant) and categories drawn from the model itself: latent slope * logit p + logistic noise, cut."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 2, n)
    latent = slope * x + rng.logistic(size=n)
    return expit(x), [ORDER[k] for k in np.searchsorted(cuts, latent)]


def test_fit_recovers_the_slope_and_ordered_cuts():
    p, categories = _simulated(1.5, [-2.0, 0.0, 2.5])
    model = fit_birads(p, categories)
    assert model["categories"] == ORDER
    assert model["slope"] == pytest.approx(1.5, rel=0.1)
    assert model["cuts"] == pytest.approx([-2.0, 0.0, 2.5], abs=0.25)
    assert np.all(np.diff(model["cuts"]) > 0)


def test_probabilities_sum_to_one_and_share_what_normal_leaves():
    model = {"categories": ORDER, "slope": 1.5, "cuts": [-2.0, 0.0, 2.5]}
    p = np.array([0.01, 0.3, 0.6, 0.99])
    lesion = birads_probabilities(p, model)
    assert lesion.shape == (4, 4) and lesion.sum(axis=1) == pytest.approx(1.0)
    assert suggested_categories(lesion, ORDER) == ["2", "3", "4", "5"]  # more malignant, more suspicious
    with_normal = birads_probabilities(p, model, p_normal=[0.9, 0.0, 0.5, 0.1])
    assert with_normal[:, 0] == pytest.approx([0.9, 0.0, 0.5, 0.1])
    assert with_normal[:, 1:] == pytest.approx(lesion * np.array([[0.1], [1.0], [0.5], [0.9]]))


def test_unknown_categories_are_refused():
    with pytest.raises(ValueError, match=r"\['6'\] outside"):
        fit_birads([0.2, 0.8], ["2", "6"], order=["2", "3"])


def test_weighted_kappa_matches_sklearn():
    reference, suggested = ["2", "3", "4", "5", "4", "3"], ["2", "4", "4", "5", "5", "2"]
    ranks = {c: i for i, c in enumerate(ORDER)}
    expected = cohen_kappa_score([ranks[c] for c in reference], [ranks[c] for c in suggested], weights="quadratic")
    assert weighted_kappa(reference, suggested, ORDER) == pytest.approx(expected)
    assert weighted_kappa(reference, reference, ORDER) == 1.0


def test_malignancy_by_category_counts_and_acr_verdicts():
    # 3: 0 of 2 malignant (0 % within 0-2 %); 4: 1 of 2 (50 %, within 2-95 %); 5: 1 of 2 (50 %, below 95 %)
    suggested = ["2", "3", "3", "4", "4", "5", "5"]
    malignant = [False, False, False, True, False, True, False]
    rows = {r["category"]: r for r in malignancy_by_category(suggested, malignant, ORDER + ["6"])}
    assert [(rows[c]["n"], rows[c]["malignant"]) for c in ORDER] == [(1, 0), (2, 0), (2, 1), (2, 1)]
    assert [rows[c]["acr_range"] for c in ORDER] == [None, True, True, False]
    assert rows["4"]["rate"] == 0.5 and rows["6"] == {"category": "6", "n": 0, "malignant": 0, "rate": None,
                                                      "acr_range": None}
    all_benign = {r["category"]: r["acr_range"] for r in malignancy_by_category(["4", "5"], [False, True], ORDER)}
    assert all_benign == {"2": None, "3": None, "4": False, "5": True}  # 0 % in 4 is outside its open range
