"""Cross-validate a mammography bundle by woman on mini-MIAS dev, score every held-out image, pool the folds.

Usage: ``python scripts/mammo_cv.py BUNDLE OUT [--folds 0 1 2 3 4] [--parallel 2] [--checkpoint last.pt]
[--pretrain] [--joint] [--figure PNG] [--set KEY=VALUE ...]``

Each fold trains the bundle's stages (``STAGES``; each a ``breastlab train`` process with one thread, ``--parallel``
folds at a time; a stage whose run finished, ``last.pt``, is not trained again: a second call only re-scores).
Then each fold's models score its held-out images in every view of ``VIEWS`` (probabilities and, against the
manifest's lesion circles, the lesion map's Dice and pointing game); the out-of-fold rows are pooled into bootstrap
CIs and per-fold AUC spreads: ``OUT/cv_<checkpoint>.json`` (``cv_joint_<checkpoint>.json`` with ``--joint``).
``--checkpoint``: each fold's last stage at the epoch chosen on its held-out fold (``model.pt``, an optimistic
estimate) or at the end of its fixed schedule (``last.pt``).

The served weights: ``OUT/ensemble_<checkpoint>.pt`` (end2end: all folds as one ``MammogramEnsemble``) or
``OUT/best_[joint_]<checkpoint>.pt`` (GLAM: the fold with the best held-out malignant AUC); ``breastlab publish
BUNDLE FILE`` makes them the bundle's weights.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from breastlab.bundle import get_bundle
from breastlab.data.mammo import lesion_circles, lesion_mask, read_mammogram
from breastlab.evaluation.evaluate import CLASSIFICATION_COLUMNS, SEGMENTATION_COLUMNS, score_cases, summarize
from breastlab.evaluation.plots import plot_map_overlays
from breastlab.explain.saliency import GradCamPredictor, UnitRangeMap
from breastlab.formats.checkpoints import read_state_dict
from breastlab.metrics import classification_scores, format_table
from breastlab.networks.end2end import MammogramEnsemble, PatchClassifier

END2END, GLAM = "breast_mammo_end2end", "breast_mammo_glam"
STAGES = {  # (stage folder, options); "{fold_dir}" is the fold's folder
    END2END: [("patch", ["--with", "patch"]),
              ("classifier", ["--set", "patch_weights={fold_dir}/patch/model.pt"])],
    GLAM: [("global", ["--set", "stage=global"]),
           ("local", ["--set", "stage=local", "--set", "initial_weights={fold_dir}/global/model.pt"])],
}
RECIPE = "mias"  # each bundle's mini-MIAS recipe (configs/mias.json): its training and the network it serves
PRETRAIN = ("pretrain", ["--with", "pretrain"])  # GLAM's self-supervised start: its trunk starts the first stage
JOINT = ("joint", ["--set", "stage=joint", "--set", "initial_weights={fold_dir}/local/model.pt"])  # GLAM, optional
VIEWS = {  # name: (bundle overrides, wrapper of the predictor or None, stage scored; None: the fold's last stage)
    END2END: {"end2end": ({"members": 1}, None, "classifier"),
              "end2end Grad-CAM": ({"members": 1, "network_def#flip_average": False},
                                   lambda p: GradCamPredictor(p, "classifiers.0.trunk", lesion_class=True),
                                   "classifier")},
    GLAM: {"GLAM": ({}, None, None),
           "GLAM, map scaled to its peak": ({}, UnitRangeMap, None),
           "global module": ({"network_def#stage": "global"}, None, "global"),
           "global module, map scaled to its peak": ({"network_def#stage": "global"}, UnitRangeMap, "global")},
}


@dataclass(frozen=True)
class Folds:
    """One cross-validation: the bundle, its output folder, the checkpoint scored and the stages each fold trains."""

    bundle: str
    out: Path
    checkpoint: str
    stages: list[tuple[str, list[str]]]

    @property
    def final(self) -> str:
        return self.stages[-1][0]

    def folder(self, fold: int) -> Path:
        return self.out / f"fold{fold}"


def fold_stages(bundle: str, pretrain: bool, joint: bool = False) -> list[tuple[str, list[str]]]:
    """The bundle's stages; with ``pretrain``, the self-supervised stage first, its trunk starting the next one;
    with ``joint``, GLAM's joint fine-tuning last."""
    stages = list(STAGES[bundle])
    if pretrain:
        (first, options), *rest = stages
        stages = [PRETRAIN, (first, [*options, "--set", "pretrained_trunk={fold_dir}/pretrain/last.pt"]), *rest]
    return [*stages, JOINT] if joint else stages


def train_fold(cv: Folds, fold: int, extra: list[str]) -> Path:
    """Every stage of one fold (logs next to the checkpoints); returns the fold folder."""
    folder = cv.folder(fold)
    folder.mkdir(parents=True, exist_ok=True)
    for stage, options in cv.stages:
        if (folder / stage / "last.pt").is_file():  # written when the stage's schedule has finished
            continue
        options = [o.format(fold_dir=folder) for o in options]
        command = [sys.executable, "-m", "breastlab.cli", "train", cv.bundle, "--with", RECIPE, *options,
                   "--set", f"fold={fold}", "--out", str(folder / stage),
                   "--set", f"output_dir={folder / f'eval_{stage}'}", *extra]
        with open(folder / f"{stage}.log", "w") as log:
            subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, check=True,
                           env={**os.environ, "OMP_NUM_THREADS": "1"})
    return folder


def fold_weights(cv: Folds, fold: int, stage: str) -> Path:
    """The file a view loads: end2end pairs the fold's classifier with its patch classifier; GLAM's stage
    checkpoints hold the whole network. Earlier stages are taken at their chosen epoch."""
    chosen, folder = cv.checkpoint if stage == cv.final else "model.pt", cv.folder(fold)
    if cv.bundle != END2END:
        return folder / stage / chosen
    weights = folder / f"member_{Path(chosen).stem}.pt"
    torch.save(MammogramEnsemble.state_dict_from([folder / "classifier" / chosen], [folder / "patch" / "model.pt"]),
               weights)
    return weights


def view_predictors(cv: Folds, fold: int):
    """(view, predictor, the fold's held-out cases) for every view of the bundle."""
    for view, (overrides, wrapper, stage) in VIEWS[cv.bundle].items():
        served = get_bundle(cv.bundle, RECIPE, **overrides)
        predictor = served.predictor(fold_weights(cv, fold, stage or cv.final))
        if wrapper:
            predictor = wrapper(predictor)
        yield view, predictor, served.parser("train", fold=fold).get_parsed_content("cases")[1]


def held_out_rows(cv: Folds, fold: int) -> dict[str, list[dict]]:
    """Every view's score rows on the fold's held-out images."""
    return {view: [{**r, "fold": fold} for r in score_cases(predictor, held_out, f"{view}, fold {fold}")]
            for view, predictor, held_out in view_predictors(cv, fold)}


def plot_examples(cv: Folds, path: Path, folds: list[int]) -> Path:
    """Every view's lesion map on one benign and one malignant held-out image of each of the first two folds,
    with the lesion circles outlined."""
    rows = []
    for fold in folds[:2]:
        maps, shown = {}, []
        for view, predictor, held_out in view_predictors(cv, fold):
            shown = [next(c for c in held_out if c.label == label and lesion_circles(c))
                     for label in ("benign", "malignant")]
            maps[view] = [predictor(c.image)["probability"] for c in shown]
        for i, case in enumerate(shown):
            image = read_mammogram(case.image)
            rows.append((f"{case.case} ({case.label}, fold {fold})", image,
                         lesion_mask(lesion_circles(case), image.shape), {v: m[i] for v, m in maps.items()}))
    return plot_map_overlays(rows, path)


def patch_stage_scores(out: Path, folds: list[int]) -> dict:
    """end2end's patch classifiers on their held-out folds' patches, pooled: malignant vs rest and lesion vs
    background, with bootstrap CIs."""
    labels, probabilities = [], []
    for fold in folds:
        items = get_bundle(END2END, RECIPE).parser("train", "patch", fold=fold).get_parsed_content("val_datalist")
        network = PatchClassifier().eval()
        network.load_state_dict(read_state_dict(out / f"fold{fold}" / "patch" / "model.pt"))
        with torch.no_grad():
            probabilities.append(network(torch.stack([torch.as_tensor(i["image"]) for i in items])).softmax(1))
        labels += [i["label"] for i in items]
    labels, probabilities = np.array(labels), torch.cat(probabilities).numpy()
    return {"patches: malignant vs rest": classification_scores(labels == 2, probabilities[:, 2]),
            "patches: lesion vs background": classification_scores(labels > 0, 1 - probabilities[:, 0])}


def fold_aucs(rows: list[dict]) -> dict[str, list[float]]:
    """Each classification task's AUC within each fold (where the fold has both outcomes)."""
    per_fold = [summarize([r for r in rows if r["fold"] == f])["classification"]
                for f in sorted({r["fold"] for r in rows})]
    return {task: [scores[task]["auc"]["value"] for scores in per_fold if task in scores]
            for task in summarize(rows)["classification"]}


def print_summary(bundle: str, views: dict, scope: str) -> None:
    for view, result in views.items():
        title = f"{bundle} / {view}: {scope} (bootstrap 95% CI)"
        table = [{"task": task, **scores, "fold_auc": " ".join(f"{a:.2f}" for a in result["fold_auc"][task])}
                 for task, scores in result["classification"].items()]
        print(format_table(table, [*CLASSIFICATION_COLUMNS, "fold_auc"], title), end="\n\n")
        if result["segmentation"]:
            table = [{"group": g, **s} for g, s in result["segmentation"].items()]
            print(format_table(table, SEGMENTATION_COLUMNS, f"{view}: lesion map vs lesion circles"), end="\n\n")


def served_weights(cv: Folds, folds: list[int], rows: list[dict], stem: str) -> Path:
    """end2end: every fold in one ensemble; GLAM: the fold with the best held-out malignant AUC."""
    if cv.bundle == END2END:
        path = cv.out / f"ensemble_{stem}.pt"
        torch.save(MammogramEnsemble.state_dict_from([cv.folder(f) / "classifier" / cv.checkpoint for f in folds],
                                                     [cv.folder(f) / "patch" / "model.pt" for f in folds]), path)
        return path
    def malignant_auc(fold: int) -> float:
        scored = [r for r in rows if r["fold"] == fold]
        truth = np.array([r["label"] == "malignant" for r in scored])
        return classification_scores(truth, np.array([r["class_probabilities"]["malignant"] for r in scored]))[
            "auc"]["value"]
    best = max(folds, key=malignant_auc)
    path = cv.out / f"best_{stem}.pt"
    torch.save(torch.load(cv.folder(best) / cv.final / cv.checkpoint, map_location="cpu"), path)
    print(f"best fold: {best}")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", choices=sorted(STAGES))
    parser.add_argument("out", type=Path)
    parser.add_argument("--folds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--checkpoint", default="model.pt", choices=["model.pt", "last.pt"])
    parser.add_argument("--pretrain", action="store_true",
                        help="GLAM: start the global trunk from self-supervised pretraining (configs/pretrain.json)")
    parser.add_argument("--joint", action="store_true", help="GLAM: add the joint fine-tuning stage and score it")
    parser.add_argument("--figure", type=Path, help="also plot the views' maps on four held-out images (PNG)")
    parser.add_argument("--set", dest="extra", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    if args.joint and args.bundle != GLAM:
        parser.error("--joint is a GLAM stage")
    cv = Folds(args.bundle, args.out, args.checkpoint, fold_stages(args.bundle, args.pretrain, args.joint))
    extra = [item for kv in args.extra for item in ("--set", kv)]
    with ThreadPoolExecutor(args.parallel) as pool:
        list(pool.map(lambda f: train_fold(cv, f, extra), args.folds))
    torch.set_num_threads(2)
    rows: dict[str, list[dict]] = {}
    for fold in args.folds:
        for view, view_rows in held_out_rows(cv, fold).items():
            rows.setdefault(view, []).extend(view_rows)
    views = {view: {**summarize(r), "fold_auc": fold_aucs(r), "cases": r} for view, r in rows.items()}
    if args.bundle == END2END:
        patches = patch_stage_scores(args.out, args.folds)
        views["patch stage"] = {"classification": patches, "segmentation": None, "fold_auc": {t: [] for t in patches}}
    stem = ("joint_" if args.joint else "") + Path(args.checkpoint).stem
    (args.out / f"cv_{stem}.json").write_text(json.dumps(views, indent=2))
    print_summary(args.bundle, views, f"out-of-fold on mini-MIAS dev, {args.checkpoint}")
    weights = served_weights(cv, args.folds, next(iter(rows.values())), stem)
    print(f"wrote {args.out / f'cv_{stem}.json'} and {weights}")
    if args.figure:
        print(f"wrote {plot_examples(cv, args.figure, args.folds)}")


if __name__ == "__main__":
    main()
