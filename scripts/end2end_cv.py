"""Cross-validate breast_mammo_end2end on mini-MIAS dev and assemble the fold ensemble.

Usage: ``python scripts/end2end_cv.py OUT [--folds 0 1 2 3 4] [--parallel 2] [--set KEY=VALUE ...]``

For each fold (by woman): the patch stage (``configs/patch.json``), then the whole-image stage from its trunk
(``configs/train.json``), each a ``breastlab train`` process with one thread, ``--parallel`` folds at a time.
Then every fold's models predict its held-out images, the out-of-fold scores are pooled into AUCs with
bootstrap CIs (``OUT/cv_report.json``), and the fold models become the bundle's ensemble (``OUT/ensemble.pt``;
``breastlab publish breast_mammo_end2end OUT/ensemble.pt`` makes it the bundle's float16 weights).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from breastlab.bundle import get_bundle
from breastlab.metrics import classification_scores, format_table
from breastlab.networks.end2end import MammogramEnsemble

BUNDLE = "breast_mammo_end2end"


def train_fold(out: Path, fold: int, extra: list[str]) -> Path:
    """Both stages of one fold; returns the fold folder (``patch/model.pt``, ``classifier/model.pt``, logs)."""
    folder = out / f"fold{fold}"
    folder.mkdir(parents=True, exist_ok=True)
    stages = [("patch", ["--with", "patch"]),
              ("classifier", ["--set", f"patch_weights={folder / 'patch' / 'model.pt'}"])]
    for stage, options in stages:
        if (folder / stage / "model.pt").is_file():
            continue
        command = [sys.executable, "-m", "breastlab.cli", "train", BUNDLE, *options, "--set", f"fold={fold}",
                   "--out", str(folder / stage), "--set", f"output_dir={folder / f'eval_{stage}'}", *extra]
        with open(folder / f"{stage}.log", "w") as log:
            subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, check=True,
                           env={**os.environ, "OMP_NUM_THREADS": "1"})
    return folder


def member_state(folder: Path) -> dict:
    return MammogramEnsemble.state_dict_from([folder / "classifier" / "model.pt"], [folder / "patch" / "model.pt"])


def out_of_fold_rows(out: Path, fold: int) -> list[dict]:
    """The fold's single model (with flip averaging) on its held-out images."""
    bundle = get_bundle(BUNDLE, members=1)
    weights = out / f"fold{fold}" / "member.pt"
    torch.save(member_state(out / f"fold{fold}"), weights)
    predictor = bundle.predictor(weights)
    held_out = bundle.parser("train", fold=fold).get_parsed_content("cases")[1]
    rows = []
    for case in held_out:
        outputs = predictor(case.image)
        rows.append({"case": case.case, "fold": fold, "label": case.label, **outputs["class_probabilities"],
                     "heatmap_max": float(outputs["probability"].max())})
    return rows


def report(rows: list[dict]) -> dict:
    """Pooled out-of-fold AUCs (bootstrap 95 % CI) and the per-fold AUC spread."""
    label = np.array([r["label"] for r in rows])
    tasks = {
        "malignant vs rest (whole image)": (label == "malignant", np.array([r["malignant"] for r in rows])),
        "abnormal vs normal (whole image)": (label != "normal", 1 - np.array([r["normal"] for r in rows])),
        "abnormal vs normal (heat-map max)": (label != "normal", np.array([r["heatmap_max"] for r in rows])),
    }
    folds = np.array([r["fold"] for r in rows])
    result = {}
    for name, (truth, score) in tasks.items():
        per_fold = [classification_scores(truth[folds == f], score[folds == f])["auc"]["value"]
                    for f in sorted(set(folds)) if len(set(truth[folds == f])) == 2]
        result[name] = {**classification_scores(truth, score), "fold_auc": per_fold,
                        "fold_auc_mean": float(np.mean(per_fold)), "fold_auc_std": float(np.std(per_fold))}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--folds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--set", dest="extra", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    extra = [item for kv in args.extra for item in ("--set", kv)]
    with ThreadPoolExecutor(args.parallel) as pool:
        folders = list(pool.map(lambda f: train_fold(args.out, f, extra), args.folds))
    torch.set_num_threads(2)
    rows = [row for fold in args.folds for row in out_of_fold_rows(args.out, fold)]
    summary = report(rows)
    (args.out / "cv_report.json").write_text(json.dumps({"summary": summary, "cases": rows}, indent=2))
    print(format_table([{"task": k, **v} for k, v in summary.items()],
                       ["task", "n", "n_positive", "auc", "fold_auc_mean", "fold_auc_std", "sensitivity",
                        "specificity"], "breast_mammo_end2end, out-of-fold on mini-MIAS dev"))
    ensemble = MammogramEnsemble.state_dict_from([f / "classifier" / "model.pt" for f in folders],
                                                 [f / "patch" / "model.pt" for f in folders])
    torch.save(ensemble, args.out / "ensemble.pt")
    print(f"wrote {args.out / 'cv_report.json'} and {args.out / 'ensemble.pt'} ({len(folders)} members)")


if __name__ == "__main__":
    main()
