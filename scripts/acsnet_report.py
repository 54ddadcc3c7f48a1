"""ACSNet report: ACSNet and its ablations next to the shipped T2KD and LA-Net bundles on BUSI val.

Usage: ``python scripts/acsnet_report.py RUNS DOCS`` where RUNS holds one folder per ACSNet run of ``MODELS`` below,
each with ``model.pt`` and ``train.log`` (runs not there yet are left out), as the commands in the bundle docs leave
them. Prints the comparison table; writes the validation curves and a figure of predicted masks to DOCS.
"""

from __future__ import annotations

import sys
from pathlib import Path

from breastlab.bundle import SHARED_DATA, get_bundle
from breastlab.evaluation.evaluate import cached_evaluation, example_lesion_cases
from breastlab.evaluation.plots import plot_map_overlays, plot_metric_curves
from breastlab.formats.png import read_gray_png
from breastlab.metrics import format_table

DATA = SHARED_DATA / "busi"
SCRATCH = {"network_def#backbone": "resnet18", "image_size": [192, 192]}  # configs/scratch.json
MODELS = {  # row -> (bundle, overrides, ACSNet run folder under RUNS or None for the bundle's shipped weights)
    "T2KD student (breast_us_t2kd)": ("breast_us_t2kd", {}, None),
    "LA-Net (breast_us_lanet; its map M)": ("breast_us_lanet", {}, None),
    "ACSNet 0.1 (ResNet-18 from scratch, 192²)": ("breast_us_acsnet", SCRATCH, "scratch"),
    "ACSNet without scanner augmentation": ("breast_us_acsnet", {}, "no_scanner"),
    "ACSNet": ("breast_us_acsnet", {}, "full"),
    "ACSNet without DSA": ("breast_us_acsnet", {"network_def#use_dsa": False}, "no_dsa"),
    "ACSNet without gates": ("breast_us_acsnet", {"network_def#use_gates": False}, "no_gates"),
}
COLUMNS = ["model", "params_M", "dice", "iou", "hd95", "asd", "accuracy", "macro_f1", "macro_auc",
           "auc_malignant_vs_benign", "normal_fp"]
FIGURE_MODELS = ("T2KD student (breast_us_t2kd)", "ACSNet")
FIGURE_CASES = 6


def available(runs: Path) -> dict:
    """``{row: (bundle, weights path)}`` for the shipped bundles and the ACSNet runs that have weights."""
    out = {}
    for row, (name, overrides, folder) in MODELS.items():
        bundle = get_bundle(name, **overrides)
        weights = runs / folder / "model.pt" if folder else bundle.model_path
        if weights.is_file():
            out[row] = (bundle, weights)
    return out


def table_row(row: str, bundle, report: dict) -> dict:
    lesions, normal = report["segmentation"]["overall"], report["segmentation"]["normal"]
    multiclass = report.get("multiclass") or {}
    malignant_vs_benign = report["classification"].get("malignant vs benign", {})
    return {"model": row, "params_M": sum(p.numel() for p in bundle.network().parameters()) / 1e6,
            **{k: lesions[f"{k}_mean"] for k in ("dice", "iou", "hd95", "asd")},
            **{k: multiclass.get(k) for k in ("accuracy", "macro_f1", "macro_auc")},
            "auc_malignant_vs_benign": malignant_vs_benign.get("auc"), "normal_fp": normal["mean_fp_fraction"]}


def figure_rows(models: dict, n: int) -> list:
    """Val lesion images, benign and malignant alternating, with each figure model's lesion probability."""
    predictors = {row: bundle.predictor(weights) for row, (bundle, weights) in models.items() if row in FIGURE_MODELS}
    return [(f"{c.case} ({c.label})", read_gray_png(c.image), read_gray_png(c.mask),
             {row.split(" (")[0]: predict(c.image)["probability"] for row, predict in predictors.items()})
            for c in example_lesion_cases(DATA, "val", n)]


def main(runs: Path, docs: Path) -> None:
    models = available(runs)
    rows = [table_row(row, bundle, cached_evaluation(bundle, DATA, "val", weights, runs / f"{row}_val.json"))
            for row, (bundle, weights) in models.items()]
    print(format_table(rows, COLUMNS, "BUSI val: lesion masks at the image size; classes normal/benign/malignant"))
    logs = {row: runs / folder / "train.log" for row, (_, _, folder) in MODELS.items()
            if folder and (runs / folder / "train.log").is_file()}
    plot_metric_curves(logs, "val_lesion_dice", docs / "val_dice_curves.png", "ACSNet runs: val lesion Dice")
    plot_metric_curves(logs, "val_auc", docs / "val_auc_curves.png", "ACSNet runs: val AUC (macro, 3 classes)")
    plot_map_overlays(figure_rows(models, FIGURE_CASES), docs / "lesion_masks.png")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
