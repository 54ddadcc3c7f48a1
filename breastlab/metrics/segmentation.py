"""Per-image segmentation scores for binary lesion masks, and their per-class summary.

Conventions (per image):

* ``truth`` empty (a normal image): ``dice``, ``iou``, ``hd95``, ``precision`` and ``recall`` are
  ``None``; the image is judged by ``fp_fraction`` only.
* ``truth`` non-empty, ``pred`` empty (a missed lesion): ``dice = iou = precision = recall = 0`` and
  ``hd95 = asd = None`` (undefined); ``summarize_segmentation`` counts such images as ``n_missed``.
* ``box_iou`` compares the boxes around the largest connected lesion of ``pred`` and of ``truth``
  (0 for a missed lesion): localisation as a detector would report it.
* ``hd95`` is the symmetric 95th-percentile Hausdorff distance between mask edges and ``asd`` the symmetric
  average surface distance (mean over the edge pixels of both masks of the distance to the other mask's edge),
  in the units of ``spacing`` (row spacing, column spacing); both ``None`` for a missed lesion.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch
from monai.data.box_utils import box_iou
from monai.metrics import (
    compute_average_surface_distance,
    compute_confusion_matrix_metric,
    compute_dice,
    compute_hausdorff_distance,
    compute_iou,
    get_confusion_matrix,
)
from numpy.typing import ArrayLike

from breastlab.explain.saliency import top_boxes

LESION_METRICS = ("dice", "iou", "box_iou", "hd95", "asd", "precision", "recall", "pointing_hit", "pixel_accuracy")


def dice(mask: ArrayLike, truth: ArrayLike) -> float:
    """Dice of two binary masks (nonzero = lesion); 1.0 when both are empty."""
    mask, truth = np.asarray(mask) > 0, np.asarray(truth) > 0
    total = int(mask.sum()) + int(truth.sum())
    return 1.0 if total == 0 else float(2 * (mask & truth).sum() / total)


def hd95(mask: ArrayLike, truth: ArrayLike, spacing: Sequence[float] = (1.0, 1.0)) -> float | None:
    """95th-percentile Hausdorff distance of two binary masks (in ``spacing`` units); 0.0 when both are empty,
    None when only one is."""
    mask, truth = _as_tensor(mask), _as_tensor(truth)
    if not mask.any() and not truth.any():
        return 0.0
    return _surface_distances(mask, truth, spacing, ("hd95",))["hd95"] if mask.any() and truth.any() else None


def _as_tensor(mask: ArrayLike) -> torch.Tensor:
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"expected a 2-D mask, got shape {mask.shape}")
    return torch.as_tensor(mask != 0, dtype=torch.float64)[None, None]


def _surface_distances(pred: torch.Tensor, truth: torch.Tensor, spacing: Sequence[float],
                       which: Sequence[str] = ("hd95", "asd")) -> dict:
    """MONAI's 95th-percentile Hausdorff and average symmetric surface distances (those in ``which``)."""
    metrics = {"hd95": lambda: compute_hausdorff_distance(pred, truth, include_background=True, percentile=95,
                                                          spacing=list(spacing)),
               "asd": lambda: compute_average_surface_distance(pred, truth, include_background=True, symmetric=True,
                                                               spacing=list(spacing))}
    with warnings.catch_warnings():  # MONAI 1.5+ warns about its own internal use of a deprecated argument
        warnings.simplefilter("ignore", FutureWarning)
        return {name: float(metrics[name]().item()) for name in which}


def _largest_box_iou(pred: torch.Tensor, truth: torch.Tensor) -> float:
    boxes = [top_boxes(m[0, 0].numpy(), threshold=0.5, k=1)[0]["box"] for m in (pred, truth)]
    return float(box_iou(np.array(boxes[:1], float), np.array(boxes[1:], float))[0, 0])


def segmentation_scores(pred: ArrayLike, truth: ArrayLike, spacing: Sequence[float] = (1.0, 1.0),
                        probability: ArrayLike | None = None) -> dict:
    """Score one 2-D prediction against its ground truth (nonzero = lesion).

    Returns ``dice, iou, box_iou, hd95, asd, precision, recall, pointing_hit, pixel_accuracy, fp_fraction`` (plain
    floats or ``None``, see the module docstring) and ``truth_empty`` (bool). ``fp_fraction`` is the number
    of predicted pixels outside the truth divided by the number of pixels in the image. ``pointing_hit`` (pointing
    game, with the lesion ``probability`` map): 1.0 when the map's highest pixel lies in the truth, else 0.0.
    """
    p, t = _as_tensor(pred), _as_tensor(truth)
    if p.shape != t.shape:
        raise ValueError(f"pred shape {tuple(p.shape[2:])} != truth shape {tuple(t.shape[2:])}")
    cm = get_confusion_matrix(p, t, include_background=True).double()  # (1, 1, 4): tp, fp, tn, fn
    truth_empty, pred_empty = not bool(t.any()), not bool(p.any())
    scores: dict = dict.fromkeys(LESION_METRICS[:-1])
    if not truth_empty:
        scores.update(
            dice=float(compute_dice(p, t, include_background=True).item()),
            iou=float(compute_iou(p, t, include_background=True).item()),
            box_iou=0.0 if pred_empty else _largest_box_iou(p, t),
            **(dict(hd95=None, asd=None) if pred_empty else _surface_distances(p, t, spacing)),
            precision=0.0 if pred_empty else float(compute_confusion_matrix_metric("precision", cm).item()),
            recall=float(compute_confusion_matrix_metric("recall", cm).item()),
            pointing_hit=None if probability is None else _pointing_hit(np.asarray(probability), t[0, 0].numpy()),
        )
    scores["pixel_accuracy"] = float(compute_confusion_matrix_metric("accuracy", cm).item())
    scores["fp_fraction"] = float(cm[0, 0, 1]) / t.numel()
    scores["truth_empty"] = truth_empty
    return scores


def _pointing_hit(probability: np.ndarray, truth: np.ndarray) -> float:
    if probability.shape != truth.shape:
        raise ValueError(f"probability shape {probability.shape} != truth shape {truth.shape}")
    return float(truth.flat[int(probability.argmax())] > 0)


def _mean_std(values: list[float | None]) -> tuple[float | None, float | None]:
    defined = [v for v in values if v is not None]
    if not defined:
        return None, None
    return float(np.mean(defined)), float(np.std(defined))


def _lesion_stats(rows: list[dict]) -> dict:
    out: dict = {"n": len(rows)}
    for key in LESION_METRICS:
        out[f"{key}_mean"], out[f"{key}_std"] = _mean_std([r.get(key) for r in rows])
    out["n_missed"] = sum(r["hd95"] is None for r in rows)
    return out


def _empty_truth_stats(rows: list[dict]) -> dict:
    fp = [r["fp_fraction"] for r in rows]
    return {"n": len(rows), "mean_fp_fraction": float(np.mean(fp)), "fp_rate": float(np.mean([f > 0 for f in fp]))}


def _group_stats(rows: list[dict]) -> dict:
    lesion = [r for r in rows if not r["truth_empty"]]
    empty = [r for r in rows if r["truth_empty"]]
    out = _lesion_stats(lesion) if lesion else {}
    if empty:
        stats = _empty_truth_stats(empty)
        if lesion:
            stats["n_empty_truth"] = stats.pop("n")
        out.update(stats)
    return out


def summarize_segmentation(rows: list[dict]) -> dict:
    """Summarize ``segmentation_scores`` rows (each with a ``label``) per class and ``"overall"``.

    Lesion images (truth non-empty) give ``n``, ``<metric>_mean`` and ``<metric>_std`` (population
    std, over images where the metric is defined) for dice, iou, box_iou, hd95, asd, precision, recall and
    pixel_accuracy, and ``n_missed`` (empty prediction). Images with empty truth give ``n``,
    ``mean_fp_fraction`` and ``fp_rate`` (share with any false-positive pixel); a class holding both
    kinds reports the lesion keys and names the empty-truth count ``n_empty_truth``.
    ``"overall"`` covers all lesion images; rows whose ``label`` is ``None`` only count there.
    """
    labels = sorted({r["label"] for r in rows if r.get("label") is not None})
    summary = {label: _group_stats([r for r in rows if r.get("label") == label]) for label in labels}
    summary["overall"] = _lesion_stats([r for r in rows if not r["truth_empty"]])
    return summary
