"""Evaluate a bundle on any dataset folder: per-image scores, per-class summaries, bootstrap CIs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from breastlab.bundle import Bundle
from breastlab.data import Case, DatasetError, class_index, read_dataset, select_cases
from breastlab.data.mammo import lesion_circles, lesion_mask
from breastlab.engines.promptable import PromptedPredictor, automatic_source
from breastlab.evaluation.calibration_report import birads_summary, print_birads, reliability
from breastlab.evaluation.clicks import click_tables, evaluate_clicks
from breastlab.evaluation.mammograms import LEVELS, MAP_COLUMNS, POOLING, grouped_rows, mammogram_scores, map_summary
from breastlab.explain.saliency import GradCamPredictor
from breastlab.formats.png import ImageError, read_gray_png, write_png
from breastlab.metrics import (
    classification_scores,
    format_table,
    multiclass_scores,
    segmentation_scores,
    summarize_segmentation,
)
from breastlab.progress import progress
from breastlab.transforms.calibration import malignant_given_lesion

SEGMENTATION_COLUMNS = ["group", "n", "dice_mean", "iou_mean", "box_iou_mean", "hd95_mean", "asd_mean",
                        "precision_mean", "recall_mean", "pointing_hit_mean", "pixel_accuracy_mean", "n_missed",
                        "mean_fp_fraction", "fp_rate"]
CLASSIFICATION_COLUMNS = ["task", "n", "n_positive", "auc", "sensitivity_at_95_specificity",
                          "specificity_at_95_sensitivity", "ece", "accuracy", "sensitivity", "specificity", "f1"]
MULTICLASS_COLUMNS = ["classes", "n", "accuracy", "macro_f1", "macro_auc"]


def evaluate(bundle: Bundle, data_dir: str | Path, split: str | None = None, weights: str | Path | None = None,
             save_masks: str | Path | None = None, grad_cam_layer: str | None = None, only: dict | None = None) -> dict:
    """Run ``bundle`` on every case of ``data_dir`` (one ``split`` or all rows; with ``only``, the cases whose manifest
    columns match it, e.g. one scanner: ``select_cases``) and score it; with
    ``grad_cam_layer``, score Grad-CAM of the classifier at that layer (of its most probable finding class, not
    normal or no_cancer) as its lesion map. A click model (``deepedit``) is scored without clicks and with
    simulated clicks (``evaluate_clicks``); a promptable one on simulated boxes and clicks, and on its automatic
    mode (no prompt)."""
    base = predictor = bundle.predictor(weights)
    cases = select_cases(read_dataset(data_dir, split), only)
    if grad_cam_layer:
        predictor = GradCamPredictor(base, grad_cam_layer, lesion_class=True)
    if bundle.prompts:  # scored on its automatic mode
        predictor = PromptedPredictor(base, automatic_source(bundle))
    mammograms = bundle.metadata["breastlab"]["modality"] == "MG"
    rows = score_cases(predictor, cases, bundle.name, save_masks, grouped=mammograms)
    return {
        "bundle": bundle.name,
        "weights": str(weights or bundle.model_path),
        "map": f"Grad-CAM at {grad_cam_layer}" if grad_cam_layer else "the bundle's own",
        "data": str(Path(data_dir).resolve()),
        "split": split,
        "only": only,
        "n_images": len(rows),
        **summarize(rows),
        "clicks": evaluate_clicks(base, data_dir, split) if bundle.task == "deepedit" else None,
        "cases": rows,
    }


def score_cases(predictor, cases: list[Case], name: str = "", save_masks: str | Path | None = None,
                grouped: bool = False) -> list[dict]:
    """One row of scores per case: the predictor's probabilities and, where the case has lesion truth, its map's
    segmentation scores (masks saved as PNGs into ``save_masks``); ``grouped`` (mammograms): the woman and side
    and where its map lies (``mammogram_scores``)."""
    if save_masks:
        Path(save_masks).mkdir(parents=True, exist_ok=True)
    rows = []
    for case in progress(cases, f"evaluate {name}".strip()):
        output = predictor(case.image)
        if save_masks:
            write_png(output["mask"] * 255, Path(save_masks) / f"{case.case}.png")
        rows.append({**_score_case(case, output), **(mammogram_scores(case, output) if grouped else {})})
    return rows


def summarize(rows: list[dict]) -> dict:
    """Segmentation summaries (per class, overall, and per scanner where the manifest names the ``device``),
    binary classification tasks, their reliability bins, all-class scores and the BI-RADS suggestion's agreement
    (``birads_summary``) of ``score_cases`` rows."""
    return {"segmentation": _segmentation(rows) if _has_masks(rows) else None,
            "classification": {**_classification(rows), **_grouped_classification(rows)},
            "reliability": reliability(_tasks(rows)),
            "multiclass": _multiclass(rows), "birads": birads_summary(rows), "maps": map_summary(rows)}


def _segmentation(rows: list[dict]) -> dict:
    scored = [r for r in rows if "dice" in r]
    summary = summarize_segmentation(scored)
    for device in sorted({r["device"] for r in scored if r.get("device")}):
        summary[f"device: {device}"] = summarize_segmentation([r for r in scored if r.get("device") == device])[
            "overall"]
    return summary


def cached_evaluation(bundle: Bundle, data_dir: str | Path, split: str | None, weights: str | Path, cache: Path,
                      grad_cam_layer: str | None = None) -> dict:
    """``evaluate`` once per set of weights: the report is kept in ``cache`` (JSON) until ``weights`` change."""
    if cache.is_file() and cache.stat().st_mtime > Path(weights).stat().st_mtime:
        return json.loads(cache.read_text())
    report = evaluate(bundle, data_dir, split, weights, grad_cam_layer=grad_cam_layer)
    cache.write_text(json.dumps(report, indent=2))
    return report


def example_lesion_cases(data_dir: str | Path, split: str, n: int) -> list[Case]:
    """The first ``n`` lesion cases of a split, benign and malignant alternating (for figures)."""
    cases = read_dataset(data_dir, split)
    by_class = [[c for c in cases if c.label == k] for k in ("benign", "malignant")]
    return [c for pair in zip(*by_class) for c in pair][:n]


def print_report(report: dict) -> None:
    """Print the summary tables of an ``evaluate`` report."""
    title = f"{report['bundle']} on {report['data']} (split: {report['split'] or 'all'}, {report['n_images']} images)"
    if report["segmentation"]:
        rows = [{"group": group, **stats} for group, stats in report["segmentation"].items()]
        print(format_table(rows, SEGMENTATION_COLUMNS, f"Segmentation: {title}"), end="\n\n")
    if report["classification"]:
        rows = [{"task": task, **scores} for task, scores in report["classification"].items()]
        print(format_table(rows, CLASSIFICATION_COLUMNS, "Classification (bootstrap 95% CI)"), end="\n\n")
    if report.get("maps"):
        print(format_table([report["maps"]], MAP_COLUMNS, "Where the maps lie (share of their mass)"), end="\n\n")
    if report.get("multiclass"):
        print(format_table([report["multiclass"]], MULTICLASS_COLUMNS, "All classes (bootstrap 95% CI)"), end="\n\n")
    if report.get("birads"):
        print_birads(report["birads"])
    if report.get("clicks"):
        print(click_tables({report["bundle"]: report["clicks"]["summary"]}), end="\n\n")


def _score_case(case: Case, output: dict) -> dict:
    row = {"case": case.case, "label": case.label}
    for key in ("device", "birads"):
        if case.meta.get(key):
            row[key] = case.meta[key]
    if "probability" in output:
        row["lesion_probability"] = float(output["probability"].max())
    if "class_probabilities" in output:
        row["class_probabilities"] = output["class_probabilities"]
    if "birads_probabilities" in output:
        row["birads_probabilities"] = output["birads_probabilities"]
        row["suggested_birads"] = max(output["birads_probabilities"], key=output["birads_probabilities"].get)
    if case.meta.get("label_conflict") == "1":
        row["label_conflict"] = True
    if "mask" in output:
        truth = case_truth(case, output["mask"].shape)
        if truth is not None:
            row.update(segmentation_scores(output["mask"], truth, probability=output.get("probability")))
    return row


def case_truth(case: Case, shape: tuple[int, int]) -> np.ndarray | None:
    """The lesion truth of a case whose image is ``shape`` (rows, columns): its mask file, else the lesion circles
    of a mammography manifest (column ``lesions``) drawn at that size; ``None`` when neither says where the lesion
    is (e.g. a calcification case without a centre)."""
    if case.mask is not None:
        try:
            truth = read_gray_png(case.mask) > 0
        except ImageError as e:
            raise DatasetError(f"{case.mask}: {e}") from e
        if truth.shape != tuple(shape):
            raise DatasetError(f"{case.mask}: mask size {truth.shape[::-1]} differs from its image "
                               f"{tuple(shape)[::-1]}")
        return truth
    if "lesions" not in case.meta:
        return None
    circles = lesion_circles(case)
    return lesion_mask(circles, shape) if circles or case.label == "normal" else None


def _has_masks(rows: list[dict]) -> bool:
    return any("dice" in r for r in rows)


def _scored(rows: list[dict]) -> list[dict]:
    """Cases with a label that does not conflict between frames."""
    return [r for r in rows if r["label"] and not r.get("label_conflict")]


def _classification(rows: list[dict]) -> dict:
    """The binary tasks of ``_tasks`` scored with bootstrap CIs."""
    return {name: classification_scores(*map(np.array, zip(*pairs))) for name, pairs in _tasks(rows).items()}


def _grouped_classification(rows: list[dict]) -> dict:
    """The binary tasks per breast and per woman (``grouping``), each pooled by max and by mean, where rows have a
    woman and a side."""
    return {f"{task}, per {level} ({pooling})": scores for level in LEVELS for pooling in POOLING
            for task, scores in _classification(grouped_rows(rows, level, pooling)).items()}


def _tasks(rows: list[dict]) -> dict[str, list[tuple[bool, float]]]:
    """Binary tasks as (is positive, score) pairs, those with both classes; cases whose class conflicts between
    frames are left out.

    Lesion detection (abnormal vs normal) from the highest lesion probability in the image; for a
    classifier, malignant vs its other classes from p(malignant) and, if it knows ``normal``, abnormal
    vs normal from 1 - p(normal), both on the cases labelled with one of its classes (``no_cancer`` stands for
    every label but malignant: a classifier trained on mammo_bcd's labels). A classifier
    that knows more classes than benign and malignant is also scored on malignant vs benign, on the
    cases labelled so, from p(malignant) / (p(malignant) + p(benign)).
    """
    scored = _scored(rows)
    tasks = {}
    if all("lesion_probability" in r for r in scored):
        tasks["lesion detection (abnormal vs normal)"] = [(r["label"] != "normal", r["lesion_probability"])
                                                          for r in scored]
    classes = list(scored[0].get("class_probabilities", {})) if scored else []
    known = [r for r in scored if class_index(r["label"], classes) is not None]
    if "malignant" in classes:
        others = "/".join(c for c in classes if c != "malignant")
        tasks[f"malignant vs {others}"] = [(r["label"] == "malignant", r["class_probabilities"]["malignant"])
                                           for r in known]
    if len(classes) > 2 and {"benign", "malignant"} <= set(classes):
        tasks["malignant vs benign"] = [(r["label"] == "malignant", malignant_given_lesion(r["class_probabilities"]))
                                        for r in known if r["label"] in ("benign", "malignant")]
    if "normal" in classes:
        tasks["abnormal vs normal (classifier)"] = [(r["label"] != "normal", 1 - r["class_probabilities"]["normal"])
                                                    for r in known]
    return {name: pairs for name, pairs in tasks.items() if pairs and len({y for y, _ in pairs}) == 2}


def _multiclass(rows: list[dict]) -> dict | None:
    """Accuracy, macro F1 and macro AUC over all of a classifier's classes (more than two), on the cases labelled
    with one of them; ``None`` otherwise."""
    scored = [r for r in _scored(rows) if "class_probabilities" in r]
    classes = list(scored[0]["class_probabilities"]) if scored else []
    known = [r for r in scored if r["label"] in classes]
    if len(classes) < 3 or not known:
        return None
    y = [classes.index(r["label"]) for r in known]
    p = [[r["class_probabilities"][c] for c in classes] for r in known]
    return {"classes": "/".join(classes), **multiclass_scores(y, p)}
