"""Mammograms scored per breast and per woman, as screening is read: a woman's images (the manifest's ``patient``)
and the side each image shows (from the image) grouped, their class probabilities pooled by max or mean."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from breastlab.data import Case
from breastlab.data.mammo import read_mammogram
from breastlab.transforms.mammo import breast_side, uninvert

LEVELS = {"breast": ("patient", "side"), "woman": ("patient",)}
POOLING = {"max": np.max, "mean": np.mean}
SEVERITY = ("malignant", "benign", "normal")  # a group's label: its most severe image label


def case_group(case: Case) -> dict:
    """``patient`` (from the manifest) and ``side`` (``left``/``right``, the side the breast lies on in the image
    the right way round) of a mammography case with a patient; empty otherwise."""
    if not case.meta.get("patient"):
        return {}
    return {"patient": case.meta["patient"], "side": breast_side(uninvert(read_mammogram(case.image))[0])}


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
