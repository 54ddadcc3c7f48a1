"""Score one set of GLAM weights in every view of ``mammo_cv.VIEWS`` on one dataset split (no cross-validation).

Usage: ``python scripts/mammo_views.py WEIGHTS GLOBAL_WEIGHTS --data DIR --split SPLIT --out JSON [--figure PNG]
[--set KEY=VALUE ...]``

For weights of one training (GLAM on mammo_bcd, also scored on mini-MIAS dev as an external set): the GLAM views
load ``WEIGHTS`` (the last stage), the global-module views ``GLOBAL_WEIGHTS``; ``--set`` overrides the inference
config (and ``served_classes``) for weights of another recipe. Prints the tables of ``mammo_cv.py``, writes every
view's summary and rows to ``--out``, and with ``--figure`` every view's map on one benign and one malignant image
with lesion circles.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from mammo_cv import GLAM, VIEWS, print_summary

from breastlab.bundle import get_bundle
from breastlab.cli import _parse_overrides
from breastlab.data import read_dataset
from breastlab.data.mammo import lesion_circles, lesion_mask, read_mammogram
from breastlab.evaluation.evaluate import score_cases, summarize
from breastlab.evaluation.plots import plot_map_overlays


def view_predictors(weights: Path, global_weights: Path, overrides: dict):
    """(view, predictor) for every GLAM view of ``mammo_cv.VIEWS``."""
    for view, (view_overrides, wrapper, stage) in VIEWS[GLAM].items():
        predictor = get_bundle(GLAM, **overrides, **view_overrides).predictor(
            global_weights if stage == "global" else weights)
        yield view, wrapper(predictor) if wrapper else predictor


def plot_examples(predictors: dict, cases: list, path: Path) -> Path:
    """Every view's map on the first benign and the first malignant case with lesion circles."""
    rows = []
    for label in ("benign", "malignant"):
        case = next(c for c in cases if c.label == label and lesion_circles(c))
        image = read_mammogram(case.image)
        rows.append((f"{case.case} ({case.label})", image, lesion_mask(lesion_circles(case), image.shape),
                     {view: predictor(case.image)["probability"] for view, predictor in predictors.items()}))
    return plot_map_overlays(rows, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights", type=Path)
    parser.add_argument("global_weights", type=Path)
    parser.add_argument("--data", required=True)
    parser.add_argument("--split")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--figure", type=Path)
    parser.add_argument("--set", dest="override", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    torch.set_num_threads(2)
    predictors = dict(view_predictors(args.weights, args.global_weights, _parse_overrides(args.override)))
    cases = read_dataset(args.data, args.split)
    views = {}
    for view, predictor in predictors.items():
        rows = score_cases(predictor, cases, view)
        summary = summarize(rows)
        views[view] = {**summary, "fold_auc": {task: [] for task in summary["classification"]}, "cases": rows}
    args.out.write_text(json.dumps(views, indent=2))
    print_summary(GLAM, views, f"{args.weights.name} on {Path(args.data).name} {args.split or 'all'}")
    print(f"wrote {args.out}")
    if args.figure:
        print(f"wrote {plot_examples(predictors, cases, args.figure)}")


if __name__ == "__main__":
    main()
