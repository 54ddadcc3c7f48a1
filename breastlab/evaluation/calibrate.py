"""``breastlab calibrate``: a classifier's temperature fitted on a validation split, and the BI-RADS suggestion
fitted on its calibrated p(malignant | lesion) where the manifests hold BI-RADS, reported with cross-fitted scores;
both can be stored in the bundle's ``configs/inference.json``."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
from sklearn.model_selection import StratifiedKFold

from breastlab.bundle import Bundle
from breastlab.data import Case, class_index, read_dataset
from breastlab.evaluation.calibration_report import malignancy_table
from breastlab.metrics import (
    apply_temperature,
    birads_probabilities,
    expected_calibration_error,
    fit_birads,
    fit_temperature,
    format_table,
    malignancy_by_category,
    negative_log_likelihood,
    suggested_categories,
    weighted_kappa,
)
from breastlab.metrics.birads import NORMAL_CATEGORY
from breastlab.progress import progress
from breastlab.transforms.calibration import malignant_given_lesion

LESION_BIRADS = ("2", "3", "4", "5")  # the categories a lesion's suggestion is fitted on
KEYS = ("temperature", "birads")  # what --write stores in configs/inference.json


def calibrate(bundle: Bundle, data_dirs: list[str | Path], split: str | None = "val",
              weights: str | Path | None = None, write: bool = False, folds: int = 5, seed: int = 0) -> dict:
    """Run ``bundle`` uncalibrated (temperature 1, no BI-RADS model) on the pooled cases of ``data_dirs`` labelled
    with one of its classes (not conflicting between frames) and fit both (``calibration_report``); with ``write``,
    store them in its inference config (checked to hold both keys before the run)."""
    classes = bundle.classes
    if not {"benign", "malignant"} <= set(classes):
        raise ValueError(f"{bundle.name} serves {classes or 'no class probabilities'}: calibrate needs a benign and "
                         "a malignant class")
    if write:
        _inference_config(bundle)
    cases = [c for d in data_dirs for c in read_dataset(d, split)
             if class_index(c.label, classes) is not None and c.meta.get("label_conflict") != "1"]
    if not cases:
        raise ValueError(f"no case of split {split!r} in {', '.join(map(str, data_dirs))} is labelled "
                         f"{'/'.join(classes)}")
    predictor = Bundle(bundle.root, bundle.recipe, **{**bundle.overrides, "temperature": 1.0, "birads": None}
                       ).predictor(weights)
    outputs = [predictor(c.image)["class_probabilities"] for c in progress(cases, f"calibrate {bundle.name}")]
    report = {"bundle": bundle.name, "weights": str(weights or bundle.model_path),
              "data": [str(Path(d).resolve()) for d in data_dirs], "split": split,
              **calibration_report(cases, classes, np.array([[o[k] for k in classes] for o in outputs]), folds, seed)}
    report["written"] = str(write_calibration(bundle, report)) if write else None
    return report


def calibration_report(cases: list[Case], classes: list[str], probabilities: np.ndarray, folds: int = 5,
                       seed: int = 0) -> dict:
    """The temperature minimising the multi-class NLL of the cases' labels, NLL and ECE (malignant vs benign, from
    p(malignant | lesion)) before and after it, and ``birads_fit`` on the calibrated p(malignant | lesion) of the
    lesion cases with a manifest BI-RADS of 2 to 5."""
    targets = np.array([class_index(c.label, classes) for c in cases])
    temperature = round(fit_temperature(probabilities, targets), 4)
    calibrated = apply_temperature(probabilities, temperature)
    lesion = np.array([c.label in ("benign", "malignant") for c in cases])
    malignant = np.array([c.label == "malignant" for c in cases])
    scores = {}
    for name, p in (("uncalibrated", probabilities), ("calibrated", calibrated)):
        given_lesion = _malignant_given_lesion(p, classes)[lesion]
        ece = expected_calibration_error(malignant[lesion], given_lesion) if lesion.any() else None
        scores[name] = {"nll": negative_log_likelihood(p, targets), "ece": ece}
    given_lesion = _malignant_given_lesion(calibrated, classes)
    chosen = [i for i, c in enumerate(cases) if lesion[i] and c.meta.get("birads") in LESION_BIRADS]
    return {"classes": classes, "n": len(cases), "n_lesion": int(lesion.sum()), "temperature": temperature, **scores,
            "birads": birads_fit(given_lesion[chosen], [cases[i].meta["birads"] for i in chosen], malignant[chosen],
                                 "normal" in classes, folds, seed)}


def birads_fit(p_malignant: np.ndarray, categories: list[str], malignant: np.ndarray, normal: bool = False,
               folds: int = 5, seed: int = 0) -> dict | None:
    """``fit_birads`` on all cases (the served ``model``; ``served_categories`` puts BI-RADS 1 first for a
    classifier that knows ``normal``), its in-sample kappa, and the kappa and malignancy per category of
    suggestions cross-fitted over stratified, seeded folds (as many as the rarest category allows, at most
    ``folds``). ``None`` with fewer than two categories."""
    if len(set(categories)) < 2:
        return None
    model = fit_birads(p_malignant, categories)
    order = model["categories"]
    in_sample = suggested_categories(birads_probabilities(p_malignant, model), order)
    k = min(folds, *(categories.count(c) for c in order))
    cross = None
    if k >= 2:
        suggested = _cross_fitted(p_malignant, np.array(categories), order, k, seed)
        cross = {"folds": k, "weighted_kappa": weighted_kappa(categories, suggested, order),
                 "malignancy_by_category": malignancy_by_category(suggested, malignant, order)}
    return {"n": len(categories), "model": model, "served_categories": ([NORMAL_CATEGORY] if normal else []) + order,
            "in_sample_kappa": weighted_kappa(categories, in_sample, order), "cross_fitted": cross}


def _cross_fitted(p: np.ndarray, categories: np.ndarray, order: list[str], k: int, seed: int) -> list[str]:
    """Each case's suggestion from the model fitted on the other folds."""
    suggested = np.empty(len(p), dtype=object)
    for train, test in StratifiedKFold(k, shuffle=True, random_state=seed).split(p, categories):
        model = fit_birads(p[train], categories[train], order)
        suggested[test] = suggested_categories(birads_probabilities(p[test], model), order)
    return suggested.tolist()


def _malignant_given_lesion(probabilities: np.ndarray, classes: list[str]) -> np.ndarray:
    return np.array([malignant_given_lesion(dict(zip(classes, row))) for row in probabilities])


def write_calibration(bundle: Bundle, report: dict) -> Path:
    """Store the report's ``temperature`` and BI-RADS ``model`` (``null`` when none was fitted) in the bundle's
    ``configs/inference.json``, changing only those two values."""
    path, config = _inference_config(bundle)
    values = {"temperature": report["temperature"], "birads": (report["birads"] or {}).get("model")}
    text = path.read_text()
    for key, value in values.items():
        text = re.sub(rf'^(    "{key}": ).*?(,?)$', lambda m, v=value: m[1] + json.dumps(v) + m[2], text,
                      count=1, flags=re.M)
    if json.loads(text) != config | values:  # a value spread over several lines: rewrite the whole file
        text = json.dumps(config | values, indent=4) + "\n"
    path.write_text(text)
    return path


def _inference_config(bundle: Bundle) -> tuple[Path, dict]:
    path = bundle.root / "configs" / "inference.json"
    config = json.loads(path.read_text())
    if not set(KEYS) <= set(config):
        raise ValueError(f"{path} has no top-level {' and '.join(repr(k) for k in KEYS if k not in config)}: its "
                         "inference does not apply a temperature and a BI-RADS model, nothing to write")
    return path, config


def print_calibration(report: dict) -> None:
    """Print the tables of a ``calibrate`` report."""
    rows = [{"probabilities": f"{name} (T = {t:g})", **report[name]}
            for name, t in (("uncalibrated", 1), ("calibrated", report["temperature"]))]
    title = (f"{report['bundle']} on {', '.join(report['data'])} (split: {report['split'] or 'all'}, {report['n']} "
             f"cases, {report['n_lesion']} lesions): NLL over {'/'.join(report['classes'])}, ECE malignant vs benign")
    print(format_table(rows, ["probabilities", "nll", "ece"], title), end="\n\n")
    fit = report["birads"]
    if fit is None:
        print("BI-RADS: fewer than two categories 2-5 in the manifests' birads column; no suggestion fitted\n")
        return
    cross = fit["cross_fitted"]
    kappas = [{"suggestion": "in-sample (optimistic)", "n": fit["n"], "weighted_kappa": fit["in_sample_kappa"]}]
    if cross:
        kappas.insert(0, {"suggestion": f"cross-fitted ({cross['folds']} folds)", "n": fit["n"],
                          "weighted_kappa": cross["weighted_kappa"]})
        print(malignancy_table(cross["malignancy_by_category"], "Malignancy per cross-fitted suggestion"),
              end="\n\n")
    print(format_table(kappas, ["suggestion", "n", "weighted_kappa"],
                       f"BI-RADS {'/'.join(fit['model']['categories'])} vs the manifests' (quadratic-weighted kappa); "
                       f"served: {'/'.join(fit['served_categories'])}"), end="\n\n")
