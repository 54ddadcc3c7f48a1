"""A BI-RADS suggestion from a calibrated malignancy probability: a proportional-odds (cumulative logit) model of
the radiologists' categories on logit p(malignant | lesion), fitted where BI-RADS is known (BUS-BRA); its scores."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import minimize
from scipy.special import expit, logit
from sklearn.metrics import cohen_kappa_score

EPS = 1e-6
NORMAL_CATEGORY = "1"  # BI-RADS 1, negative: the suggestion where a classifier that knows "normal" sees no lesion
ACR_MALIGNANCY = {"3": (0.0, 0.02), "4": (0.02, 0.95), "5": (0.95, 1.0)}  # ACR likelihood ranges


def _features(p_malignant: ArrayLike) -> np.ndarray:
    return logit(np.clip(np.asarray(p_malignant, dtype=float), EPS, 1 - EPS))


def _cuts(free: np.ndarray) -> np.ndarray:
    return np.concatenate([free[:1], free[0] + np.cumsum(np.exp(free[1:]))])


def fit_birads(p_malignant: ArrayLike, categories: ArrayLike, order: list[str] | None = None,
               l2: float = 1e-3) -> dict:
    """The model ``{"categories", "slope", "cuts"}``: P(category <= k) = sigmoid(cut_k - slope * logit p). ``order``
    lists the categories from least to most suspicious (default: those present, sorted)."""
    x = _features(p_malignant)
    labels = np.asarray([str(c) for c in categories])
    order = list(order or sorted(set(labels.tolist())))
    unknown = sorted(set(labels.tolist()) - set(order))
    if unknown or len(order) < 2 or len(x) != len(labels):
        raise ValueError(f"categories {unknown} outside {order}, or fewer than two, or lengths differ")
    y = np.array([order.index(c) for c in labels])

    def nll(theta: np.ndarray) -> float:
        model = {"categories": order, "slope": float(theta[0]), "cuts": _cuts(theta[1:]).tolist()}
        p = birads_probabilities(expit(x), model)[np.arange(len(y)), y]
        return -float(np.mean(np.log(np.clip(p, 1e-12, 1)))) + l2 * float(theta @ theta)

    start = np.concatenate([[1.0, -1.0], np.zeros(len(order) - 2)])
    theta = minimize(nll, start, method="L-BFGS-B").x
    return {"categories": order, "slope": round(float(theta[0]), 6), "cuts": [round(c, 6) for c in _cuts(theta[1:])]}


def birads_probabilities(p_malignant: ArrayLike, model: dict, p_normal: ArrayLike | None = None) -> np.ndarray:
    """(N, K) probabilities of the model's categories; with ``p_normal`` (a classifier's p(normal)), (N, K + 1)
    with BI-RADS 1 first, the lesion categories sharing 1 - p(normal)."""
    x = _features(np.atleast_1d(p_malignant))
    cumulative = expit(np.asarray(model["cuts"])[None, :] - model["slope"] * x[:, None])
    edges = np.concatenate([np.zeros((len(x), 1)), cumulative, np.ones((len(x), 1))], axis=1)
    probabilities = np.clip(np.diff(edges, axis=1), 0.0, 1.0)
    if p_normal is None:
        return probabilities
    normal = np.atleast_1d(np.asarray(p_normal, dtype=float))[:, None]
    return np.concatenate([normal, (1 - normal) * probabilities], axis=1)


def suggested_categories(probabilities: np.ndarray, categories: list[str]) -> list[str]:
    """The most probable category of each row."""
    return [categories[i] for i in np.argmax(probabilities, axis=1)]


def weighted_kappa(reference: ArrayLike, suggested: ArrayLike, order: list[str]) -> float:
    """Quadratic-weighted Cohen's kappa between two ordered category lists."""
    rank = {c: i for i, c in enumerate(order)}
    return float(cohen_kappa_score([rank[str(c)] for c in reference], [rank[str(c)] for c in suggested],
                                   weights="quadratic", labels=list(range(len(order)))))


def malignancy_by_category(suggested: ArrayLike, malignant: ArrayLike, order: list[str]) -> list[dict]:
    """Per suggested category: ``n``, ``malignant`` count, ``rate`` and whether it lies in the ACR range."""
    suggested, malignant = np.asarray([str(c) for c in suggested]), np.asarray(malignant, dtype=bool)
    rows = []
    for category in order:
        chosen = suggested == category
        n, k = int(chosen.sum()), int(malignant[chosen].sum())
        low, high = ACR_MALIGNANCY.get(category, (None, None))
        rate = k / n if n else None
        within = None if rate is None or low is None else bool(low <= rate <= high) if category != "4" \
            else bool(low < rate < high)
        rows.append({"category": category, "n": n, "malignant": k, "rate": rate, "acr_range": within})
    return rows
