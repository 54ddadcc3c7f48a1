"""Binary classification metrics with percentile-bootstrap confidence intervals."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from monai.metrics import compute_roc_auc
from numpy.typing import ArrayLike

Metric = Callable[[np.ndarray, np.ndarray, float], float | None]


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def _counts(y: np.ndarray, s: np.ndarray, threshold: float) -> tuple[int, int, int, int]:
    pred = s >= threshold
    tp = int(np.sum(pred & (y == 1)))
    fp = int(np.sum(pred & (y == 0)))
    tn = int(np.sum(~pred & (y == 0)))
    return tp, fp, tn, len(y) - tp - fp - tn


def _auc(y: np.ndarray, s: np.ndarray, threshold: float) -> float | None:
    if len(np.unique(y)) < 2:
        return None
    return float(compute_roc_auc(torch.as_tensor(s), torch.as_tensor(y)))


def _accuracy(y: np.ndarray, s: np.ndarray, threshold: float) -> float | None:
    tp, _, tn, _ = _counts(y, s, threshold)
    return (tp + tn) / len(y)


def _sensitivity(y: np.ndarray, s: np.ndarray, threshold: float) -> float | None:
    tp, _, _, fn = _counts(y, s, threshold)
    return _ratio(tp, tp + fn)


def _specificity(y: np.ndarray, s: np.ndarray, threshold: float) -> float | None:
    _, fp, tn, _ = _counts(y, s, threshold)
    return _ratio(tn, tn + fp)


def _f1(y: np.ndarray, s: np.ndarray, threshold: float) -> float | None:
    tp, fp, _, fn = _counts(y, s, threshold)
    return _ratio(2 * tp, 2 * tp + fp + fn)


METRICS: dict[str, Metric] = {
    "auc": _auc,
    "accuracy": _accuracy,
    "sensitivity": _sensitivity,
    "specificity": _specificity,
    "f1": _f1,
}


def _validate(y_true: ArrayLike, y_score: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    y, s = np.asarray(y_true), np.asarray(y_score, dtype=float)
    if y.ndim != 1 or s.ndim != 1 or len(y) != len(s):
        raise ValueError(f"y_true and y_score must be 1-D of equal length, got shapes {y.shape} and {s.shape}")
    if len(y) == 0:
        raise ValueError("no cases to score")
    if not np.isin(y, (0, 1)).all():
        raise ValueError(f"y_true must be binary 0/1, got values {sorted(set(np.unique(y).tolist()))}")
    if not np.isfinite(s).all():
        raise ValueError("y_score contains NaN or infinite values")
    return y.astype(int), s


def classification_scores(
    y_true: ArrayLike,
    y_score: ArrayLike,
    threshold: float = 0.5,
    n_bootstrap: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
) -> dict:
    """Score binary predictions; ``y_score`` is the probability of class 1, positive if ``>= threshold``.

    Returns ``n``, ``n_positive`` and, for ``auc, accuracy, sensitivity, specificity, f1``, a dict
    ``{"value", "ci_low", "ci_high"}``. The CI is a percentile bootstrap over ``n_bootstrap`` case
    resamples drawn with ``numpy.random.default_rng(seed)``; resamples on which a metric is undefined
    (e.g. one class only, for AUC) are skipped for that metric. A metric undefined on the full data
    (AUC or specificity when ``y_true`` has no negatives, AUC or sensitivity when it has no positives,
    f1 with neither positive labels nor positive predictions) has value and CI ``None``; it does not
    raise.
    Raises ``ValueError`` for unequal lengths, no cases, labels other than 0/1 or non-finite scores.
    """
    if not 0 < ci < 1:
        raise ValueError(f"ci must be in (0, 1), got {ci}")
    y, s = _validate(y_true, y_score)
    rng = np.random.default_rng(seed)
    resamples = [rng.integers(0, len(y), len(y)) for _ in range(n_bootstrap)]
    tails = (100 * (1 - ci) / 2, 100 * (1 + ci) / 2)
    out: dict = {"n": len(y), "n_positive": int(y.sum())}
    for name, metric in METRICS.items():
        value, low, high = metric(y, s, threshold), None, None
        boot = [v for idx in resamples if (v := metric(y[idx], s[idx], threshold)) is not None]
        if value is not None and boot:
            low, high = (float(q) for q in np.percentile(boot, tails))
        out[name] = {"value": value, "ci_low": low, "ci_high": high}
    return out
