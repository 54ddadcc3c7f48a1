"""Interactive report: simulated clicks on BUSI val for the shipped ``breast_us_interactive`` weights.

Usage: ``python scripts/interactive_report.py TRAIN_LOG DOCS [CACHE]``. Evaluates the bundle on val once per set
of weights (``breastlab evaluate``'s report, kept in CACHE, default ``runs/interactive/evaluation_val.json``),
prints the click table and writes ``dice_per_click.png`` and ``training_curve.png`` (from TRAIN_LOG) to DOCS.
"""

from __future__ import annotations

import sys
from pathlib import Path

from breastlab.bundle import PROJECT_ROOT, SHARED_DATA, get_bundle
from breastlab.evaluation.evaluate import cached_evaluation, print_report
from breastlab.evaluation.plots import plot_click_curves, plot_training_log

DATA = SHARED_DATA / "busi"
BUNDLE = "breast_us_interactive"


def main(train_log: Path, docs: Path, cache: Path) -> None:
    bundle = get_bundle(BUNDLE)
    report = cached_evaluation(bundle, DATA, "val", bundle.model_path, cache)
    print_report(report)
    plot_click_curves({f"{BUNDLE} (BUSI val, {report['clicks']['summary']['n']} lesions)":
                       report["clicks"]["summary"]}, docs / "dice_per_click.png")
    plot_training_log(train_log, docs / "training_curve.png", f"{BUNDLE}: training (192², 20 epochs)",
                      loss_name="Dice + CE")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]),
         Path(sys.argv[3]) if len(sys.argv) > 3 else PROJECT_ROOT / "runs" / "interactive" / "evaluation_val.json")
