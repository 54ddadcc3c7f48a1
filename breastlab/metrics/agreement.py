"""Agreement between readers of the same images.

Masks: Dice and HD95 (pixels) of every pair of readers of an image. Categories: Cohen's kappa when a study has two
readers, Fleiss' kappa when it has more (items may have different numbers of readers, Fleiss 1971); for ordered
categories (BI-RADS) quadratic-weighted Cohen's kappa, and with more than two readers the mean of the pairwise
weighted kappas (Light's kappa). Study figures carry percentile bootstrap confidence intervals over images.

A read is ``{"mask": array | None, "class": str | None, "birads": str | None}``; an image's reads are
``{reader: read}``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import combinations

import numpy as np
from numpy.typing import ArrayLike

from breastlab.data import BIRADS, CLASS_NAMES
from breastlab.metrics.classification import bootstrap
from breastlab.metrics.segmentation import dice, hd95

Reads = dict[str, dict]


def mask_pairs(masks: dict[str, ArrayLike]) -> list[dict]:
    """Each pair of readers (names sorted) with the Dice and HD95 of their masks."""
    return [{"readers": [a, b], "dice": dice(masks[a], masks[b]), "hd95": hd95(masks[a], masks[b])}
            for a, b in combinations(sorted(masks), 2)]


def cohen_kappa(first: Sequence[str], second: Sequence[str], categories: Sequence[str],
                weighted: bool = False) -> float | None:
    """Cohen's kappa of two readers' categories of the same items (quadratic weights when ``weighted``); None when
    it is undefined (chance agreement 1: both readers gave one and the same category throughout). The formula of
    scikit-learn's ``cohen_kappa_score`` (tested equal) on a confusion matrix counted in numpy: the bootstrap calls
    it thousands of times."""
    if not len(first):
        return None
    rank = {c: i for i, c in enumerate(categories)}
    confusion = np.zeros((len(categories),) * 2)
    np.add.at(confusion, ([rank[c] for c in first], [rank[c] for c in second]), 1)
    expected = np.outer(confusion.sum(1), confusion.sum(0)) / confusion.sum()
    steps = np.subtract.outer(np.arange(len(categories)), np.arange(len(categories)))
    weights = steps ** 2 if weighted else (steps != 0).astype(float)
    chance = (weights * expected).sum()
    return None if chance == 0 else float(1 - (weights * confusion).sum() / chance)


def fleiss_kappa(ratings: Sequence[Sequence[str]], categories: Sequence[str]) -> float | None:
    """Fleiss' kappa of items each rated by two or more readers (items with fewer are left out); None when
    undefined (every rating in one category)."""
    counts = np.array([[list(r).count(c) for c in categories] for r in ratings if len(r) >= 2], float)
    if not len(counts):
        return None
    raters = counts.sum(1)
    observed = (((counts ** 2).sum(1) - raters) / (raters * (raters - 1))).mean()
    expected = ((counts.sum(0) / raters.sum()) ** 2).sum()
    return None if expected >= 1 else float((observed - expected) / (1 - expected))


def category_kappa(items: Sequence[dict[str, str]], categories: Sequence[str],
                   ordered: bool) -> tuple[float | None, str]:
    """Kappa over items ``{reader: category}`` and the method used (see the module docstring)."""
    readers = sorted({r for item in items for r in item})
    if len(readers) < 2:
        return None, "none"
    if len(readers) > 2 and not ordered:
        return fleiss_kappa([list(item.values()) for item in items], categories), "fleiss"
    kappas = []
    for a, b in combinations(readers, 2):
        both = [item for item in items if a in item and b in item]
        kappas.append(cohen_kappa([i[a] for i in both], [i[b] for i in both], categories, weighted=ordered))
    kappas = [k for k in kappas if k is not None]
    method = ("weighted_cohen" if ordered else "cohen") if len(readers) == 2 else "weighted_light"
    return (float(np.mean(kappas)) if kappas else None), method


def image_agreement(reads: Reads) -> dict:
    """One image: its readers, each pair's Dice and HD95, the mean pairwise Dice, each reader's class and BI-RADS."""
    pairs = mask_pairs({r: read["mask"] for r, read in reads.items() if read.get("mask") is not None})
    return {"readers": sorted(reads), "pairs": pairs,
            "mean_dice": float(np.mean([p["dice"] for p in pairs])) if pairs else None,
            "class": {r: read.get("class") for r, read in sorted(reads.items())},
            "birads": {r: read.get("birads") for r, read in sorted(reads.items())}}


def study_agreement(per_image: dict[str, dict], n_bootstrap: int = 1000, seed: int = 0, ci: float = 0.95) -> dict:
    """A study from its images' :func:`image_agreement`: the mean pairwise Dice and HD95 and the kappas on class and
    on BI-RADS, each ``{"value", "ci_low", "ci_high"}`` over the images two or more readers read."""
    shared = [image for image in per_image if len(per_image[image]["readers"]) >= 2]
    dices = np.array([_or_nan(per_image[i]["mean_dice"]) for i in shared])
    hd = np.array([_or_nan(_mean([p["hd95"] for p in per_image[i]["pairs"]])) for i in shared])
    classes = [_given(per_image[i]["class"]) for i in shared]
    birads = [_given(per_image[i]["birads"]) for i in shared]
    methods = {"class_kappa": category_kappa(classes, CLASS_NAMES, False)[1],
               "birads_kappa": category_kappa(birads, BIRADS, True)[1]}
    metrics: dict[str, Callable[[np.ndarray], float | None]] = {
        "dice": lambda idx: _nanmean(dices[idx]),
        "hd95": lambda idx: _nanmean(hd[idx]),
        "class_kappa": lambda idx: category_kappa([classes[i] for i in idx], CLASS_NAMES, False)[0],
        "birads_kappa": lambda idx: category_kappa([birads[i] for i in idx], BIRADS, True)[0],
    }
    summary = bootstrap(metrics, len(shared), n_bootstrap, seed, ci) if shared else dict.fromkeys(metrics)
    return {"images": len(per_image), "images_read_twice": len(shared),
            "readers": sorted({r for image in per_image.values() for r in image["readers"]}),
            **summary, "methods": methods}


def _given(categories: dict[str, str | None]) -> dict[str, str]:
    return {r: c for r, c in categories.items() if c is not None}


def _mean(values: list[float | None]) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def _or_nan(value: float | None) -> float:
    return np.nan if value is None else value


def _nanmean(values: np.ndarray) -> float | None:
    values = values[~np.isnan(values)]
    return float(values.mean()) if len(values) else None
