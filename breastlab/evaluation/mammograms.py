"""Mammograms scored as screening reads them and where their maps look: per breast and per woman (a woman's images,
the manifest's ``patient``, and the side each image shows grouped, their class probabilities pooled by max or mean),
and the share of a map's mass outside the breast and on its skin line."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from scipy import ndimage

from breastlab.data import Case
from breastlab.data.mammo import read_mammogram
from breastlab.transforms.mammo import breast_mask, breast_side, uninvert

LEVELS = {"breast": ("patient", "side"), "woman": ("patient",)}
POOLING = {"max": np.max, "mean": np.mean}
SEVERITY = ("malignant", "benign", "normal")  # a group's label: its most severe image label
SKIN_LINE = 0.02  # the skin line: the breast's outer band, this fraction of the image's longer side wide
MAP_COLUMNS = ["n", "map_outside_breast_mean", "map_on_skin_line_mean"]


def mammogram_scores(case: Case, output: dict) -> dict:
    """A mammography case's ``patient`` (from the manifest) and ``side`` (``left``/``right``: where the breast lies
    in the image the right way round), where it has a patient, and ``map_shares`` of the ``output``'s map."""
    image = uninvert(read_mammogram(case.image))[0]
    scores = {"patient": case.meta["patient"], "side": breast_side(image)} if case.meta.get("patient") else {}
    return {**scores, **(map_shares(image, output["probability"]) if "probability" in output else {})}


def map_shares(image: np.ndarray, probability: np.ndarray) -> dict:
    """``map_outside_breast`` and ``map_on_skin_line``: the shares of a map's mass (``probability``, at the image's
    size) outside the breast (background, labels, markers) and on its skin line; empty for an empty map."""
    breast = breast_mask(image)
    mass = float(probability.sum())
    if mass <= 0 or breast.shape != probability.shape:
        return {}
    inner = ndimage.binary_erosion(breast, iterations=max(1, round(SKIN_LINE * max(breast.shape))))
    return {"map_outside_breast": float(probability[~breast].sum()) / mass,
            "map_on_skin_line": float(probability[breast & ~inner].sum()) / mass}


def map_summary(rows: list[dict]) -> dict | None:
    """Mean shares of ``map_shares`` over the rows that have them; None where none has."""
    scored = [r for r in rows if "map_outside_breast" in r]
    if not scored:
        return None
    return {"n": len(scored), **{f"{k}_mean": float(np.mean([r[k] for r in scored]))
                                 for k in ("map_outside_breast", "map_on_skin_line")}}


def grouped_rows(rows: list[dict], level: str, pooling: str) -> list[dict]:
    """One row per breast or woman (``level``) of the ``rows`` with class probabilities and a group, its label the
    most severe of its images' and its class probabilities pooled by ``pooling`` (``max`` or ``mean``)."""
    groups = defaultdict(list)
    for row in rows:
        if "class_probabilities" in row and all(row.get(k) for k in LEVELS[level]):
            groups[tuple(row[k] for k in LEVELS[level])].append(row)
    return [_pooled(members, POOLING[pooling]) for members in groups.values()]


def _pooled(members: list[dict], pool) -> dict:
    labels = {m["label"] for m in members}
    label = next((s for s in SEVERITY if s in labels), labels.pop() if len(labels) == 1 else None)
    classes = members[0]["class_probabilities"]
    pooled = {c: float(pool([m["class_probabilities"][c] for m in members])) for c in classes}
    return {"label": label, "n_images": len(members), "class_probabilities": pooled,
            **({"label_conflict": True} if any(m.get("label_conflict") for m in members) else {})}
