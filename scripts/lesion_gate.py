"""Choose a segmentation bundle's lesion-presence gate (``gate_min_peak``, ``gate_min_fraction`` in its
configs/inference.json) on val: the bundle runs once with the gate off, then every gate on a grid is scored as
``breastlab evaluate`` scores it. The chosen gate has the least false-positive area on normal images among those
that keep the overall lesion Dice within ``--dice-tolerance`` of no gate.

``python scripts/lesion_gate.py breast_us_t2kd --data ../shared/data/busi --split val [--weights W] [--out F]``
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from breastlab.bundle import get_bundle
from breastlab.data import read_dataset
from breastlab.evaluation.evaluate import score_cases, summarize
from breastlab.evaluation.gate_choice import FRACTIONS, PEAKS, choose_gate
from breastlab.metrics import format_table
from breastlab.progress import progress
from breastlab.transforms import lesion_present

COLUMNS = ["min_peak", "min_fraction", "dice_all", "dice_benign", "dice_malignant", "missed", "normal_fp_area",
           "normals_clean"]


def gated(output: dict, min_peak: float, min_fraction: float) -> dict:
    keep = lesion_present(torch.from_numpy(output["probability"]), torch.from_numpy(output["mask"]), min_peak,
                          min_fraction)
    return {**output, "mask": output["mask"] if keep else np.zeros_like(output["mask"])}


def gate_row(cases, outputs: dict, min_peak: float, min_fraction: float) -> dict:
    rows = score_cases(lambda image: gated(outputs[image], min_peak, min_fraction), cases)
    seg = summarize(rows)["segmentation"]
    return {"min_peak": min_peak, "min_fraction": min_fraction, "dice_all": seg["overall"]["dice_mean"],
            "dice_benign": seg["benign"]["dice_mean"], "dice_malignant": seg["malignant"]["dice_mean"],
            "missed": seg["overall"]["n_missed"], "normal_fp_area": seg["normal"]["mean_fp_fraction"],
            "normals_clean": 1 - seg["normal"]["fp_rate"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle")
    parser.add_argument("--data", required=True)
    parser.add_argument("--split", default="val")
    parser.add_argument("--weights")
    parser.add_argument("--dice-tolerance", type=float, default=0.002)
    parser.add_argument("--out", help="JSON with every row and the choice")
    args = parser.parse_args()
    bundle = get_bundle(args.bundle, gate_min_peak=0.0, gate_min_fraction=0.0)
    predictor = bundle.predictor(args.weights)
    cases = read_dataset(args.data, args.split)
    outputs = {case.image: predictor(case.image) for case in progress(cases, "predict")}
    rows = [gate_row(cases, outputs, p, f) for p in PEAKS for f in FRACTIONS]
    best = choose_gate(rows, args.dice_tolerance)
    print(format_table(rows, COLUMNS, f"Lesion-presence gate, {bundle.name} on {args.split}"))
    print(f"chosen: gate_min_peak={best['min_peak']} gate_min_fraction={best['min_fraction']}")
    if args.out:
        Path(args.out).write_text(json.dumps({"rows": rows, "chosen": best}, indent=2))


if __name__ == "__main__":
    main()
