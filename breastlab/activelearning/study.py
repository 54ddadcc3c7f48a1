"""Simulated active-learning study: grow a labelled set round by round, by one strategy's picks.

Each (strategy, seed) run starts from ``initial`` images of the pool: random ones (per seed) for ``random`` and
``uncertainty``, the first of the diversity order for ``diverse`` and ``hybrid`` (ImageNet features need no label).
It trains the bundle from scratch on the labelled set, scores validation Dice, then adds ``per_round`` images:
random ones, the most uncertain under the model just trained, or the next of ``selection_order`` (``diverse``;
``hybrid`` with that model's uncertainty). Every training is kept under ``out/trainings`` by its labelled set and
seed, so runs that share a round (the same initial images) train it once, and a stopped study resumes.
Results: one row per (strategy, seed, round), with the cases added for that round.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import tempfile
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

from breastlab.activelearning.diversity import ImageEncoder, selection_order
from breastlab.activelearning.uncertainty import lesion_uncertainty
from breastlab.bundle import Bundle
from breastlab.data import CLASS_NAMES, dataset_dicts
from breastlab.formats.png import read_gray_png
from breastlab.metrics import format_table
from breastlab.progress import progress

STRATEGIES = ("random", "diverse", "uncertainty", "hybrid")  # runs sharing a first round are not started together
NEEDS_FEATURES = {"diverse", "hybrid"}


def run_study(bundle: Bundle, data: str | Path, out: str | Path, initial: int = 20, per_round: int = 20,
              rounds: int = 5, seeds: tuple[int, ...] = (0, 1, 2), strategies: tuple[str, ...] = STRATEGIES,
              epochs: int = 10, train_split: str = "train", val_split: str = "val", workers: int = 1) -> list[dict]:
    """Run every (strategy, seed), ``workers`` at a time in their own processes (one torch thread each when
    more than one), seed by seed; write ``results.json`` and ``learning_curve.png`` to ``out``."""
    unknown = set(strategies) - set(STRATEGIES)
    if unknown:
        raise ValueError(f"unknown strategies {sorted(unknown)}; expected some of {STRATEGIES}")
    pool = dataset_dicts(data, train_split)
    if initial + rounds * per_round > len(pool):
        raise ValueError(f"{initial} + {rounds} x {per_round} images asked for, the pool has {len(pool)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    features = pool_features(pool, out) if NEEDS_FEATURES & set(strategies) else None
    runs = [(bundle, pool, features, data, val_split, strategy, seed, initial, per_round, rounds, epochs, out)
            for seed in seeds for strategy in strategies]
    rows = []
    executor = ProcessPoolExecutor(workers, initializer=torch.set_num_threads, initargs=(1,)) if workers > 1 else None
    with executor or nullcontext():
        for run_rows in (executor.map if executor else map)(run_one, *zip(*runs)):
            rows += run_rows
            (out / "results.json").write_text(json.dumps(rows, indent=2))
    plot_learning_curves(rows, out / "learning_curve.png")
    return rows


def pool_features(pool: list[dict], out: Path) -> np.ndarray:
    """ImageNet features of every pool image, kept in ``out/features.npz`` for the pool's cases."""
    cache, cases = out / "features.npz", [item["case"] for item in pool]
    if cache.is_file():
        with np.load(cache) as content:
            if content["cases"].tolist() == cases:
                return content["features"]
    encoder = ImageEncoder()
    features = np.stack([encoder(item["image"]) for item in progress(pool, "al-study features")])
    np.savez(cache, cases=np.array(cases), features=features)
    return features


def run_one(bundle, pool, features, data, val_split, strategy, seed, initial, per_round, rounds, epochs,
            out) -> list[dict]:
    rng = random.Random(seed)
    order = list(range(len(pool)))
    rng.shuffle(order)
    if strategy in NEEDS_FEATURES:
        order = selection_order(features, np.zeros(len(pool), bool), initial, seed=seed)
    labelled, unlabelled = order[:initial], sorted(set(range(len(pool))) - set(order[:initial]))
    added = labelled
    rows = []
    for round_ in progress(range(rounds + 1), f"al-study {strategy} seed {seed}", unit="round"):
        dice, weights = cached_training(bundle, [pool[i] for i in labelled], data, val_split, seed, epochs, out)
        rows.append({"strategy": strategy, "seed": seed, "round": round_, "labelled": len(labelled),
                     "val_dice": dice, "added": [pool[i]["case"] for i in added]})
        if round_ < rounds:
            added = pick(strategy, bundle, weights, pool, features, labelled, unlabelled, per_round, rng, seed)
            labelled = labelled + added
            unlabelled = sorted(set(unlabelled) - set(added))
    return rows


def cached_training(bundle, items, data, val_split, seed, epochs, out: Path) -> tuple[float, Path]:
    """``train_and_validate``, kept under ``out/trainings/<hash of the cases, seed, epochs>``.

    The items are sorted by case first: a labelled set is one training whatever order its images were picked in.
    """
    items = sorted(items, key=lambda item: item["case"])
    key = hashlib.sha1(json.dumps([[i["case"] for i in items], seed, epochs]).encode()).hexdigest()[:16]
    done = out / "trainings" / key
    if not (done / "result.json").is_file():
        with tempfile.TemporaryDirectory(dir=out) as tmp:
            dice, _ = train_and_validate(bundle, items, data, val_split, seed, epochs, Path(tmp))
            (Path(tmp) / "result.json").write_text(json.dumps({"val_dice": dice, "images": len(items)}))
            shutil.rmtree(Path(tmp) / "eval", ignore_errors=True)
            done.parent.mkdir(exist_ok=True)
            shutil.rmtree(done, ignore_errors=True)
            shutil.copytree(tmp, done)
    return json.loads((done / "result.json").read_text())["val_dice"], done / "model.pt"


def train_and_validate(bundle, items, data, val_split, seed, epochs, workdir: Path) -> tuple[float, Path]:
    """Train from scratch on ``items``, validate once at the end; (val Dice, weights path)."""
    parser = bundle.train(train_datalist=items, data_dir=str(data), val_split=val_split, epochs=epochs,
                          val_interval=epochs, seed=seed, ckpt_dir=str(workdir), output_dir=str(workdir / "eval"))
    state = parser.get_parsed_content("validate#evaluator").state
    return float(state.best_metric), workdir / "model.pt"


def pick(strategy: str, bundle: Bundle, weights: Path, pool: list[dict], features, labelled: list[int],
         unlabelled: list[int], k: int, rng: random.Random, seed: int) -> list[int]:
    """Pool indices of the next ``k`` images to label."""
    if strategy == "random":
        return rng.sample(unlabelled, k)
    if strategy == "diverse":
        return _next_in_order(features, labelled, k, None, seed)
    predictor = bundle.predictor(weights)
    scores = np.full(len(pool), -1.0)
    for i in progress(unlabelled, f"al-study {strategy} uncertainty"):
        scores[i] = lesion_uncertainty(predictor.network, predictor.network_input(pool[i]["image"]),
                                       predictor.inferer)
    if strategy == "hybrid":
        return _next_in_order(features, labelled, k, scores, seed)
    return sorted(unlabelled, key=scores.__getitem__, reverse=True)[:k]


def _next_in_order(features, labelled: list[int], k: int, uncertainty, seed: int) -> list[int]:
    mask = np.zeros(len(features), bool)
    mask[labelled] = True
    return selection_order(features, mask, k, uncertainty, seed=seed)[:k]


def summary_rows(rows: list[dict]) -> list[dict]:
    """Mean and spread of val Dice per (strategy, round) over seeds."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["strategy"], row["round"]), []).append(row)
    out = []
    for (strategy, round_), group in sorted(groups.items(), key=lambda g: (g[0][1], g[0][0])):
        dice = [r["val_dice"] for r in group]
        mean = sum(dice) / len(dice)
        std = (sum((d - mean) ** 2 for d in dice) / len(dice)) ** 0.5
        out.append({"round": round_, "labelled": group[0]["labelled"], "strategy": strategy, "seeds": len(dice),
                    "val Dice mean": mean, "val Dice std": std})
    return out


def picks_rows(rows: list[dict], pool: list[dict], rounds: tuple[int, ...] = (0, 1)) -> list[dict]:
    """What each strategy picked in ``rounds`` (over seeds): class mix and lesion area (share of the image)."""
    by_case = {item["case"]: item for item in pool}
    out = []
    for round_ in rounds:
        for strategy in dict.fromkeys(r["strategy"] for r in rows):
            cases = [c for r in rows if (r["strategy"], r["round"]) == (strategy, round_) for c in r["added"]]
            classes = [CLASS_NAMES[by_case[c]["class"]] if by_case[c]["class"] >= 0 else "unknown" for c in cases]
            areas = [float((read_gray_png(by_case[c]["label"]) > 0).mean()) for c in cases]
            lesions = sorted(a for a in areas if a > 0)
            out.append({"round": round_, "strategy": strategy, "images": len(cases),
                        **{name: classes.count(name) / len(cases) for name in CLASS_NAMES},
                        "median lesion area": lesions[len(lesions) // 2] if lesions else 0.0,
                        "lesions > 20 %": sum(a > 0.2 for a in lesions) / len(cases)})
    return out


def print_summary(rows: list[dict], pool: list[dict] | None = None) -> None:
    table = summary_rows(rows)
    print(format_table(table, list(table[0]), "Simulated active learning: validation Dice per round"))
    if pool is not None:
        picks = picks_rows(rows, pool)
        print(format_table(picks, list(picks[0]), "What each strategy picked (shares of the images picked)"))


def plot_learning_curves(rows: list[dict], out: Path) -> Path:
    """Mean val Dice against labelled images per strategy, with a ±1 std band over seeds."""
    from breastlab.evaluation.plots import pyplot, save_figure

    plt = pyplot()
    table = summary_rows(rows)
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for strategy in sorted({r["strategy"] for r in table}):
        points = [r for r in table if r["strategy"] == strategy]
        x = [r["labelled"] for r in points]
        mean = [r["val Dice mean"] for r in points]
        std = [r["val Dice std"] for r in points]
        ax.plot(x, mean, marker="o", label=strategy)
        ax.fill_between(x, [m - s for m, s in zip(mean, std)], [m + s for m, s in zip(mean, std)], alpha=0.2)
    ax.set_xlabel("labelled training images")
    ax.set_ylabel("validation lesion Dice")
    ax.legend()
    ax.grid(alpha=0.3)
    return save_figure(fig, out)
