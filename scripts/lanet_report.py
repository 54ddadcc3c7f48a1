"""LA-Net experiment report: evaluate the three runs on BUSI val, print the table, draw the figures.

Usage: ``python scripts/lanet_report.py RUNS DOCS`` where RUNS holds one folder per run of ``RUNS`` below, each
with ``model.pt`` and the run's training log ``train.log`` (runs without a model are left out), as the commands
in the bundle docs leave them.
"""

from __future__ import annotations

import sys
from pathlib import Path

from breastlab.bundle import SHARED_DATA, get_bundle
from breastlab.evaluation.evaluate import cached_evaluation, example_lesion_cases
from breastlab.evaluation.plots import plot_map_overlays, plot_metric_curves
from breastlab.explain.saliency import GradCamPredictor
from breastlab.formats.png import read_gray_png
from breastlab.metrics import format_table

DATA = SHARED_DATA / "busi"
SCRATCH = {"network_def#backbone": "resnet18", "image_size": [192, 192]}  # the 0.1.x network (--with scratch runs)
BASELINE = {"network_def#lesion_attention": False}
GRAD_CAM_LAYER = "backbone.layer4"
RUNS = {  # setting -> (run folder, bundle overrides, Grad-CAM layer or None for the model's own map M)
    "100 % masks, M on 1/32": ("stage2_100", {}, None),
    "25 % masks, M on 1/32": ("stage2_25", {}, None),
    "100 % masks, M on 1/8": ("fine_stage2_100", {"map_stride": 8}, None),
    "25 % masks, M on 1/8": ("fine_stage2_25", {"map_stride": 8}, None),
    "0 % (baseline), Grad-CAM": ("baseline", BASELINE, GRAD_CAM_LAYER),
}
COLUMNS = ["setting", "auc", "accuracy", "sensitivity", "specificity", "dice", "iou", "box_iou", "normal_fp"]
FIGURE_CASES = 4


def table_row(setting: str, report: dict) -> dict:
    scores = report["classification"]["malignant vs benign"]
    lesions, normal = report["segmentation"]["overall"], report["segmentation"]["normal"]
    return {"setting": setting, **{k: scores[k] for k in ("auc", "accuracy", "sensitivity", "specificity")},
            "dice": lesions["dice_mean"], "iou": lesions["iou_mean"], "box_iou": lesions["box_iou_mean"],
            "normal_fp": normal["mean_fp_fraction"]}


def finished(runs: Path) -> dict:
    return {setting: run for setting, run in RUNS.items() if (runs / run[0] / "train.log").is_file()}


def evaluate_run(runs: Path, folder: str, overrides: dict, layer: str | None) -> dict:
    """The run's val report, cached in ``RUNS/<folder>_val.json`` until its weights change."""
    bundle = get_bundle("breast_us_lanet", **SCRATCH, **overrides)
    return cached_evaluation(bundle, DATA, "val", runs / folder / "model.pt", runs / f"{folder}_val.json", layer)


def figure_rows(runs: Path, n: int) -> list:
    """Val lesion images, benign and malignant alternating, with each setting's map."""
    predictors = {}
    for setting, (folder, overrides, layer) in finished(runs).items():
        predictor = get_bundle("breast_us_lanet", **SCRATCH, **overrides).predictor(runs / folder / "model.pt")
        predictors[setting] = GradCamPredictor(predictor, layer) if layer else predictor
    return [(f"{c.case} ({c.label})", read_gray_png(c.image), read_gray_png(c.mask),
             {setting: predict(c.image)["probability"] for setting, predict in predictors.items()})
            for c in example_lesion_cases(DATA, "val", n)]


def main(runs: Path, docs: Path) -> None:
    rows = []
    for setting, run in finished(runs).items():
        rows.append(table_row(setting, evaluate_run(runs, *run)))
    print(format_table(rows, COLUMNS, "LA-Net on BUSI val: malignant vs benign; lesion map vs mask"))
    plot_metric_curves({s: runs / folder / "train.log" for s, (folder, _, _) in finished(runs).items()}, "val_auc",
                       docs / "val_auc_curves.png", "LA-Net stage 2 / baseline: val AUC (malignant vs benign)")
    plot_map_overlays(figure_rows(runs, FIGURE_CASES), docs / "lesion_maps.png")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
