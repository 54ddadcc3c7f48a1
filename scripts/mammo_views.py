"""Score one mammography bundle's weights in every view of ``mammo_cv.VIEWS`` on one dataset split (no
cross-validation).

Usage: ``python scripts/mammo_views.py BUNDLE WEIGHTS [--global-weights GLOBAL] --data DIR --split SPLIT --out JSON
[--figure PNG] [--set KEY=VALUE ...]``

For weights of one training on mammo_bcd (also scored on mini-MIAS dev as an external set): every view loads
``WEIGHTS`` (end2end's classifier, GLAM's last stage) but GLAM's global-module views, which load ``GLOBAL``
(default: ``WEIGHTS``); ``--set`` overrides the inference config. Prints the tables of ``mammo_cv.py``, writes every
view's summary and rows to ``--out``, and with ``--figure`` every view's map on one benign and one malignant image
with lesion circles.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from mammo_cv import VIEWS, print_summary

from breastlab.bundle import get_bundle
from breastlab.cli import _parse_overrides
from breastlab.data import read_dataset
from breastlab.data.mammo import lesion_circles, lesion_mask, read_mammogram
from breastlab.evaluation.evaluate import score_cases, summarize
from breastlab.evaluation.plots import plot_map_overlays


def view_predictors(bundle: str, weights: Path, global_weights: Path, overrides: dict):
    """(view, predictor) for every view of the bundle in ``mammo_cv.VIEWS``."""
    for view, (view_overrides, wrapper, stage) in VIEWS[bundle].items():
        predictor = get_bundle(bundle, **overrides, **view_overrides).predictor(
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
    parser.add_argument("bundle", choices=sorted(VIEWS))
    parser.add_argument("weights", type=Path)
    parser.add_argument("--global-weights", type=Path, help="GLAM's global-module views (default: WEIGHTS)")
    parser.add_argument("--data", required=True)
    parser.add_argument("--split")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--figure", type=Path)
    parser.add_argument("--set", dest="override", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    torch.set_num_threads(2)
    predictors = dict(view_predictors(args.bundle, args.weights, args.global_weights or args.weights,
                                      _parse_overrides(args.override)))
    cases = read_dataset(args.data, args.split)
    views = {}
    for view, predictor in predictors.items():
        rows = score_cases(predictor, cases, view)
        summary = summarize(rows)
        views[view] = {**summary, "fold_auc": {task: [] for task in summary["classification"]}, "cases": rows}
    args.out.write_text(json.dumps(views, indent=2))
    print_summary(args.bundle, views, f"{args.weights.name} on {Path(args.data).name} {args.split or 'all'}")
    print(f"wrote {args.out}")
    if args.figure:
        print(f"wrote {plot_examples(predictors, cases, args.figure)}")


if __name__ == "__main__":
    main()
