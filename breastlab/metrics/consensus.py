"""A consensus of several readers, as a proposal for the reviewer: STAPLE over their masks (Warfield et al. 2004),
which also estimates each reader's sensitivity and specificity; a majority vote for the class; the median of the
BI-RADS categories.

STAPLE is the EM algorithm of ITK's ``STAPLEImageFilter`` (same prior, start and outputs; tested equal to it within
1e-4), run on the distinct patterns of the readers' votes rather than on every pixel: a few milliseconds an image,
where ITK's filter first loads its segmentation module for about 6 s in every process.

Ties lean to the more severe call (the class later in ``CLASS_NAMES``, the upper median), as double reading recalls
a woman when either reader would.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

from breastlab.data import BIRADS, CLASS_NAMES

MARGIN = 8


def staple(masks: Sequence[ArrayLike], threshold: float = 0.5) -> dict:
    """``{"probability", "mask", "sensitivity", "specificity"}``: STAPLE's per-pixel probability of the true
    mask, the mask where it is at least ``threshold``, and each reader's estimated sensitivity and specificity (in
    the order of ``masks``; None where a reader or all readers marked nothing, which STAPLE cannot weigh).

    STAPLE runs on the region around the readers' marks (the box of their union, grown by a tenth of its size and at
    least ``MARGIN`` pixels), not the whole image: background every reader left far from the lesion would push every
    specificity towards 1 and only cost time. Outside it the probability is 0."""
    binary = [np.asarray(m) > 0 for m in masks]
    if len({m.shape for m in binary}) != 1:
        raise ValueError(f"masks differ in size: {sorted({m.shape for m in binary})}")
    if not any(m.any() for m in binary) or all((m == binary[0]).all() for m in binary):
        probability = binary[0].astype(np.float32)
        rates = [1.0 if binary[0].any() else None] * len(binary)
        return {"probability": probability, "mask": binary[0].copy(), "sensitivity": rates,
                "specificity": [1.0] * len(binary)}
    region = marked_region(binary)
    probability = np.zeros(binary[0].shape, np.float32)
    probability[region], sensitivity, specificity = staple_em(np.stack([m[region] for m in binary]))
    marked = [m.any() for m in binary]
    return {"probability": probability, "mask": probability >= threshold,
            "sensitivity": [float(s) if marked[i] else None for i, s in enumerate(sensitivity)],
            "specificity": [float(s) for s in specificity]}


def staple_em(votes: np.ndarray, tolerance: float = 1e-8, max_iterations: int = 10_000):
    """STAPLE on ``votes`` (readers, *pixels) of booleans: the probability that each pixel is foreground, and each
    reader's sensitivity and specificity. Starts as ITK does (prior = the share of foreground votes, sensitivity
    and specificity 0.99999) and stops when no estimate moves by ``tolerance``."""
    readers = len(votes)
    bits = 1 << np.arange(readers)
    codes, where, counts = np.unique(bits @ votes.reshape(readers, -1), return_inverse=True, return_counts=True)
    patterns = (codes[:, None] & bits) > 0  # (distinct patterns, readers)
    prior = float(counts @ patterns.sum(1)) / (counts.sum() * readers)
    sensitivity = specificity = np.full(readers, 0.99999)
    for _ in range(max_iterations):
        foreground = prior * np.prod(np.where(patterns, sensitivity, 1 - sensitivity), 1)
        background = (1 - prior) * np.prod(np.where(patterns, 1 - specificity, specificity), 1)
        total = foreground + background
        weight = np.divide(foreground, total, out=np.zeros_like(total), where=total > 0)
        new = ((counts * weight) @ patterns / (counts @ weight),
               (counts * (1 - weight)) @ ~patterns / (counts @ (1 - weight)))
        moved = max(np.abs(new[0] - sensitivity).max(), np.abs(new[1] - specificity).max())
        sensitivity, specificity = new
        if moved < tolerance:
            break
    return weight[where.ravel()].reshape(votes.shape[1:]).astype(np.float32), sensitivity, specificity


def marked_region(masks: Sequence[np.ndarray]) -> tuple[slice, slice]:
    """The box of the masks' union, grown by a tenth of its size and at least ``MARGIN`` pixels, inside the image."""
    rows, cols = np.nonzero(np.any(masks, axis=0))
    region = []
    for low, high, size in ((rows.min(), rows.max() + 1, masks[0].shape[0]), (cols.min(), cols.max() + 1,
                                                                             masks[0].shape[1])):
        grow = max(MARGIN, (high - low) // 10)
        region.append(slice(max(0, low - grow), min(size, high + grow)))
    return tuple(region)


def majority_class(classes: Sequence[str], order: Sequence[str] = CLASS_NAMES) -> str | None:
    """The most frequent class; a tie goes to the class later in ``order`` (the more severe)."""
    counts = Counter(c for c in classes if c is not None)
    if not counts:
        return None
    return max(counts, key=lambda c: (counts[c], order.index(c)))


def median_category(categories: Sequence[str], order: Sequence[str] = BIRADS) -> str | None:
    """The median of ordered categories; the upper one of the two middle values for an even count."""
    ranks = sorted(order.index(c) for c in categories if c is not None)
    return order[ranks[len(ranks) // 2]] if ranks else None


def consensus(reads: dict[str, dict]) -> dict:
    """The proposal for one image's reads ``{reader: {"mask", "class", "birads"}}``: the STAPLE mask and each
    reader's sensitivity and specificity, the majority class and the median BI-RADS."""
    readers = sorted(r for r, read in reads.items() if read.get("mask") is not None)
    fit = staple([reads[r]["mask"] for r in readers]) if readers else None
    return {"mask": fit["mask"] if fit else None,
            "readers": {r: {"sensitivity": fit["sensitivity"][i], "specificity": fit["specificity"][i]}
                        for i, r in enumerate(readers)},
            "class": majority_class([read.get("class") for read in reads.values()]),
            "birads": median_category([read.get("birads") for read in reads.values()])}
