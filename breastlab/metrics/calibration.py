"""Post-hoc calibration of a classifier's softmax: temperature scaling (Guo et al., ICML 2017), fitted on a
validation split, and the expected calibration error that checks it."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import minimize_scalar

EPS = 1e-7


def apply_temperature(probabilities: ArrayLike, temperature: float) -> np.ndarray:
    """Softmax probabilities (N, C) as if the logits had been divided by ``temperature``. Exact: the log of a
    softmax differs from its logits by a constant per row, which the softmax removes again."""
    logits = np.log(np.clip(np.asarray(probabilities, dtype=float), EPS, 1.0)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    scaled = np.exp(logits)
    return scaled / scaled.sum(axis=1, keepdims=True)


def negative_log_likelihood(probabilities: ArrayLike, targets: ArrayLike) -> float:
    """Mean -log p(target) of probabilities (N, C) and N class indices."""
    p, y = np.asarray(probabilities, dtype=float), np.asarray(targets, dtype=int)
    return -float(np.mean(np.log(np.clip(p[np.arange(len(y)), y], EPS, 1.0))))


def fit_temperature(probabilities: ArrayLike, targets: ArrayLike) -> float:
    """The temperature in [0.05, 20] that minimises the negative log-likelihood of ``targets`` (class indices)."""
    p, y = np.asarray(probabilities, dtype=float), np.asarray(targets, dtype=int)
    if p.ndim != 2 or len(p) != len(y) or not len(y):
        raise ValueError(f"probabilities (N, C) and N targets expected, got {p.shape} and {y.shape}")

    def nll(log_t: float) -> float:
        return negative_log_likelihood(apply_temperature(p, np.exp(log_t)), y)

    return float(np.exp(minimize_scalar(nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded").x))


def reliability_bins(y_true: ArrayLike, y_score: ArrayLike, n_bins: int = 10) -> list[dict]:
    """Equal-width bins of the predicted probability of the positive class: per non-empty bin its ``n``, mean
    ``confidence`` (predicted probability) and observed ``frequency`` of positives."""
    y, s = np.asarray(y_true, dtype=float), np.asarray(y_score, dtype=float)
    index = np.minimum((s * n_bins).astype(int), n_bins - 1)
    return [{"low": b / n_bins, "high": (b + 1) / n_bins, "n": int(np.sum(index == b)),
             "confidence": float(s[index == b].mean()), "frequency": float(y[index == b].mean())}
            for b in range(n_bins) if np.any(index == b)]


def expected_calibration_error(y_true: ArrayLike, y_score: ArrayLike, n_bins: int = 10) -> float:
    """ECE of a binary probability: the case-weighted mean |observed frequency - mean probability| over
    equal-width bins."""
    bins = reliability_bins(y_true, y_score, n_bins)
    total = sum(b["n"] for b in bins)
    return float(sum(b["n"] * abs(b["frequency"] - b["confidence"]) for b in bins) / total)
