"""Binary and multi-class classification metrics with percentile-bootstrap confidence intervals."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np
import torch
from monai.metrics import compute_roc_auc
from numpy.typing import ArrayLike

from breastlab.metrics.calibration import expected_calibration_error

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


def _sensitivity_at_specificity(y: np.ndarray, s: np.ndarray, threshold: float, level: float) -> float | None:
    """The sensitivity at the lowest score threshold whose specificity is at least ``level`` (the operating point a
    screening reader would be held to; ``threshold`` is not used)."""
    negatives, positives = np.sort(s[y == 0]), s[y == 1]
    if not len(negatives) or not len(positives):
        return None
    cut = negatives[int(np.ceil(level * len(negatives) - 1e-9)) - 1]  # at most 1 - level of negatives above it
    return float(np.mean(positives > cut))


def _specificity_at_sensitivity(y: np.ndarray, s: np.ndarray, threshold: float, level: float) -> float | None:
    """The specificity at the highest score threshold whose sensitivity is at least ``level``: the same operating
    point with the classes and the score's direction swapped."""
    return _sensitivity_at_specificity(1 - y, -s, threshold, level)


def _ece(y: np.ndarray, s: np.ndarray, threshold: float) -> float | None:
    return expected_calibration_error(y, s) if 0 <= s.min() and s.max() <= 1 else None


METRICS: dict[str, Metric] = {
    "auc": _auc,
    "sensitivity_at_90_specificity": partial(_sensitivity_at_specificity, level=0.90),
    "sensitivity_at_95_specificity": partial(_sensitivity_at_specificity, level=0.95),
    "specificity_at_95_sensitivity": partial(_specificity_at_sensitivity, level=0.95),
    "ece": _ece,
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

    Returns ``n``, ``n_positive`` and, for each of ``METRICS`` (AUC, sensitivity at 90 % and 95 % specificity,
    specificity at 95 % sensitivity, expected calibration error of the score, and accuracy, sensitivity,
    specificity and F1 at ``threshold``), a dict ``{"value", "ci_low", "ci_high"}``. The CI is a percentile
    bootstrap over ``n_bootstrap`` case resamples drawn with ``numpy.random.default_rng(seed)``; resamples on which
    a metric is undefined (e.g. one class only, for AUC) are skipped for that metric. A metric undefined on the full
    data (AUC or specificity when ``y_true`` has no negatives, AUC or sensitivity when it has no positives, f1 with
    neither positive labels nor positive predictions, ECE of a score outside [0, 1]) has value and CI ``None``; it
    does not raise.
    Raises ``ValueError`` for unequal lengths, no cases, labels other than 0/1 or non-finite scores.
    """
    y, s = _validate(y_true, y_score)
    out: dict = {"n": len(y), "n_positive": int(y.sum())}
    metrics = {name: (lambda idx, m=metric: m(y[idx], s[idx], threshold)) for name, metric in METRICS.items()}
    return out | bootstrap(metrics, len(y), n_bootstrap, seed, ci)


def bootstrap(metrics: dict[str, Callable[[np.ndarray], float | None]], n: int, n_bootstrap: int, seed: int,
               ci: float) -> dict:
    """``{name: {"value", "ci_low", "ci_high"}}`` for metrics of case indices; percentile bootstrap CIs that skip
    resamples where a metric is undefined (``None``)."""
    if not 0 < ci < 1:
        raise ValueError(f"ci must be in (0, 1), got {ci}")
    rng = np.random.default_rng(seed)
    resamples = [rng.integers(0, n, n) for _ in range(n_bootstrap)]
    tails = (100 * (1 - ci) / 2, 100 * (1 + ci) / 2)
    out = {}
    for name, metric in metrics.items():
        value, low, high = metric(np.arange(n)), None, None
        boot = [v for idx in resamples if (v := metric(idx)) is not None]
        if value is not None and boot:
            low, high = (float(q) for q in np.percentile(boot, tails))
        out[name] = {"value": value, "ci_low": low, "ci_high": high}
    return out


def _macro_f1(y: np.ndarray, p: np.ndarray) -> float:
    pred = p.argmax(axis=1)
    scores = [_f1((y == k).astype(int), (pred == k).astype(float), 0.5) for k in range(p.shape[1])]
    return float(np.mean([f for f in scores if f is not None]))


def _macro_auc(y: np.ndarray, p: np.ndarray) -> float | None:
    aucs = [_auc((y == k).astype(int), p[:, k], 0.5) for k in range(p.shape[1])]
    return None if None in aucs else float(np.mean(aucs))


def multiclass_scores(y_true: ArrayLike, probabilities: ArrayLike, n_bootstrap: int = 1000, seed: int = 0,
                      ci: float = 0.95) -> dict:
    """Score K-class predictions: ``y_true`` class indices (N,), ``probabilities`` (N, K).

    Returns ``n`` and, with bootstrap CIs as in ``classification_scores``: ``accuracy`` of the most probable class,
    ``macro_f1`` (mean over classes of one-vs-rest F1 of that decision, over classes present or predicted)
    and ``macro_auc`` (mean one-vs-rest ROC AUC; undefined when a class is absent).
    """
    y, p = np.asarray(y_true), np.asarray(probabilities, dtype=float)
    if p.ndim != 2 or y.shape != (len(p),) or len(y) == 0:
        raise ValueError(f"expected class indices (N,) and probabilities (N, K), got {y.shape} and {p.shape}")
    if not np.isin(y, np.arange(p.shape[1])).all() or not np.isfinite(p).all():
        raise ValueError("class indices must lie in [0, K) and probabilities must be finite")
    metrics = {"accuracy": lambda idx: float(np.mean(p[idx].argmax(axis=1) == y[idx])),
               "macro_f1": lambda idx: _macro_f1(y[idx], p[idx]),
               "macro_auc": lambda idx: _macro_auc(y[idx], p[idx])}
    return {"n": len(y)} | bootstrap(metrics, len(y), n_bootstrap, seed, ci)
