"""Does averaging two classifiers' calibrated p(malignant | lesion) beat each of them? Reads ``breastlab evaluate``
reports of the same cases (one per classifier, each with its own calibration) and prints malignant vs benign scores
of each and of their mean, per report pair (e.g. BUSI val, BUS-BRA val), and per woman (her images' mean) where the
cases name their woman (mammograms).

    python scripts/classifier_ensemble.py --reports runs/acsnet_busi_val.json runs/lanet_busi_val.json \\
        --reports runs/acsnet_busbra_val.json runs/lanet_busbra_val.json [--out runs/ensemble.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from breastlab.evaluation.mammograms import grouped_rows
from breastlab.metrics import classification_scores, format_table
from breastlab.transforms.calibration import malignant_given_lesion

COLUMNS = ["data", "classifier", "n", "auc", "sensitivity_at_95_specificity", "specificity_at_95_sensitivity", "ece"]


def lesion_scores(report: dict) -> dict[str, tuple[bool, float]]:
    """Per lesion case (benign or malignant, no label conflict): (is malignant, p(malignant | lesion))."""
    return {r["case"]: (r["label"] == "malignant", malignant_given_lesion(r["class_probabilities"]))
            for r in report["cases"] if r.get("label") in ("benign", "malignant") and not r.get("label_conflict")
            and "class_probabilities" in r}


def compare(reports: list[dict]) -> list[dict]:
    """Scores of each report's classifier and of the mean, on the cases every report scored."""
    scores = [lesion_scores(r) for r in reports]
    cases = sorted(set.intersection(*(set(s) for s in scores)))
    truth = np.array([scores[0][c][0] for c in cases])
    members = {r["bundle"]: np.array([s[c][1] for c in cases]) for r, s in zip(reports, scores)}
    members["mean of " + " + ".join(members)] = np.mean(list(members.values()), axis=0)
    data = f"{Path(reports[0]['data']).name} {reports[0]['split'] or 'all'}"
    rows = [{"data": data, "classifier": name, **classification_scores(truth, p)} for name, p in members.items()]
    women = {r["case"]: r.get("patient") for r in reports[0]["cases"]}
    if all(women.get(c) for c in cases):
        for name, p in members.items():
            pooled = grouped_rows([{"label": "malignant" if y else "benign", "patient": women[c],
                                    "class_probabilities": {"malignant": q}} for c, y, q in zip(cases, truth, p)],
                                  "woman", "mean")
            y, q = zip(*[(r["label"] == "malignant", r["class_probabilities"]["malignant"]) for r in pooled])
            rows.append({"data": f"{data}, per woman (mean)", "classifier": name,
                         **classification_scores(np.array(y), np.array(q))})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", nargs="+", action="append", required=True, help="evaluate reports of one dataset")
    parser.add_argument("--out", help="also write the rows as JSON")
    args = parser.parse_args()
    rows = [row for group in args.reports for row in compare([json.loads(Path(p).read_text()) for p in group])]
    print(format_table(rows, COLUMNS, "Malignant vs benign: each classifier and their mean (bootstrap 95% CI)"))
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
