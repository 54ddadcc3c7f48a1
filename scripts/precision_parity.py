"""Inference parity of bfloat16 autocast: each bundle's shipped weights evaluated in float32 and in bfloat16.

Ultrasound bundles on BUSI val, mammography bundles on mini-MIAS dev (their docs' data). bfloat16 is the
inference default (``precision: auto`` in configs/inference.json) only where every lesion Dice moves by less than
0.5 points and every AUC by less than 0.005 (click Dice counted as Dice). Writes the rows into the JSON (replacing
those of the bundles measured, keeping the others) and prints a table:
``python scripts/precision_parity.py [--bundles NAME ...] [--out docs/precision_parity.json]``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from breastlab.bundle import SHARED_DATA, find_bundles, get_bundle
from breastlab.evaluation.evaluate import cached_evaluation
from breastlab.metrics import format_table

DICE_TOLERANCE, AUC_TOLERANCE = 0.005, 0.005


def data_of(bundle) -> tuple[Path, str]:
    if bundle.metadata["breastlab"].get("modality") == "MG":
        return SHARED_DATA / "mias", "dev"
    return SHARED_DATA / "busi", "val"


def metrics(report: dict) -> dict[str, float]:
    """The report's lesion Dice (overall), AUCs and click Dice, by name."""
    found = {}
    if report["segmentation"] and "dice_mean" in report["segmentation"]["overall"]:
        found["dice overall"] = report["segmentation"]["overall"]["dice_mean"]
    for task, scores in (report["classification"] or {}).items():
        found[f"AUC {task}"] = scores["auc"]["value"]
    if report.get("clicks"):
        found["dice 1 click"] = report["clicks"]["summary"]["dice_after_clicks"][0]
        found["dice 5 clicks"] = report["clicks"]["summary"]["dice_after_clicks"][4]
    return found


def parity_rows(name: str, cache: Path) -> list[dict]:
    data, split = data_of(get_bundle(name))
    fp32, bf16 = (metrics(cached_report(name, p, data, split, cache)) for p in ("fp32", "bf16"))
    rows = []
    for metric, value in fp32.items():
        tolerance = AUC_TOLERANCE if metric.startswith("AUC") else DICE_TOLERANCE
        change = bf16[metric] - value
        rows.append({"bundle": name, "data": f"{data.name} {split}", "metric": metric, "fp32": value,
                     "bf16": bf16[metric], "change": change, "holds": abs(change) < tolerance})
    return rows


def cached_report(name: str, precision: str, data: Path, split: str, cache: Path) -> dict:
    """``evaluate``'s report, kept in ``cache`` until the bundle's weights change."""
    bundle = get_bundle(name, precision=precision)
    return cached_evaluation(bundle, data, split, bundle.model_path, cache / f"{name}_{precision}.json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bundles", nargs="+", metavar="NAME", help="only these bundles (default: all)")
    parser.add_argument("--out", default="docs/precision_parity.json")
    parser.add_argument("--cache", default="runs/precision_parity", help="evaluation reports kept here")
    args = parser.parse_args()
    names = args.bundles or [b.name for b in find_bundles() if b.model_path.is_file()]
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    rows = [row for name in names for row in parity_rows(name, cache)]
    out = Path(args.out)
    kept = [r for r in json.loads(out.read_text()) if r["bundle"] not in names] if out.is_file() else []
    out.write_text(json.dumps(sorted(kept + rows, key=lambda r: r["bundle"]), indent=1))
    print(format_table(rows, list(rows[0]), "bfloat16 inference parity (shipped weights)"))
    for name in names:
        holds = all(r["holds"] for r in rows if r["bundle"] == name)
        print(f"{name}: parity {'holds -> precision auto (bf16)' if holds else 'fails -> precision fp32'}")


if __name__ == "__main__":
    main()
