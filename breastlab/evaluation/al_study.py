"""Simulated active-learning study: grow a labelled set round by round, by random or uncertainty picks.

Each (strategy, seed) run starts from the same ``initial`` random images of the pool (per seed),
trains the bundle from scratch on the labelled set, scores validation Dice, then adds
``per_round`` images: random ones, or the unlabelled ones with the highest TTA variance under the
model just trained. Results: one row per (strategy, seed, round), with the cases added for that round.
"""

from __future__ import annotations

import json
import random
import tempfile
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from pathlib import Path

import torch
from tqdm import tqdm

from breastlab.bundle import Bundle
from breastlab.data import dataset_dicts
from breastlab.explain.uncertainty import tta_variance
from breastlab.metrics import format_table

STRATEGIES = ("random", "uncertainty")


def run_study(bundle: Bundle, data: str | Path, out: str | Path, initial: int = 20, per_round: int = 20,
              rounds: int = 5, seeds: tuple[int, ...] = (0, 1, 2), strategies: tuple[str, ...] = STRATEGIES,
              epochs: int = 10, train_split: str = "train", val_split: str = "val", workers: int = 1) -> list[dict]:
    """Run every (strategy, seed), ``workers`` at a time in their own processes (one torch thread each when
    more than one); write ``results.json`` and ``learning_curve.png`` to ``out``."""
    unknown = set(strategies) - set(STRATEGIES)
    if unknown:
        raise ValueError(f"unknown strategies {sorted(unknown)}; expected some of {STRATEGIES}")
    pool = dataset_dicts(data, train_split)
    if initial + rounds * per_round > len(pool):
        raise ValueError(f"{initial} + {rounds} x {per_round} images asked for, the pool has {len(pool)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    runs = [(bundle, pool, data, val_split, strategy, seed, initial, per_round, rounds, epochs)
            for strategy in strategies for seed in seeds]
    rows = []
    executor = ProcessPoolExecutor(workers, initializer=torch.set_num_threads, initargs=(1,)) if workers > 1 else None
    with executor or nullcontext():
        for run_rows in (executor.map if executor else map)(run_one, *zip(*runs)):
            rows += run_rows
            (out / "results.json").write_text(json.dumps(rows, indent=2))
    plot_learning_curves(rows, out / "learning_curve.png")
    return rows


def run_one(bundle, pool, data, val_split, strategy, seed, initial, per_round, rounds, epochs) -> list[dict]:
    rng = random.Random(seed)
    order = list(range(len(pool)))
    rng.shuffle(order)
    labelled, unlabelled = order[:initial], order[initial:]
    added = labelled
    rows = []
    for round_ in tqdm(range(rounds + 1), desc=f"{strategy} seed {seed}", unit="round", disable=None):
        with tempfile.TemporaryDirectory() as tmp:
            dice, weights = train_and_validate(bundle, [pool[i] for i in labelled], data, val_split, seed, epochs,
                                               Path(tmp))
            rows.append({"strategy": strategy, "seed": seed, "round": round_, "labelled": len(labelled),
                         "val_dice": dice, "added": [pool[i]["case"] for i in added]})
            if round_ == rounds:
                break
            picked = pick(strategy, bundle, weights, [pool[i] for i in unlabelled], per_round, rng)
        added = [unlabelled[i] for i in picked]
        labelled = labelled + added
        chosen = set(picked)
        unlabelled = [u for n, u in enumerate(unlabelled) if n not in chosen]
    return rows


def train_and_validate(bundle, items, data, val_split, seed, epochs, workdir: Path) -> tuple[float, Path]:
    """Train from scratch on ``items``, validate once at the end; (val Dice, weights path)."""
    parser = bundle.train(train_datalist=items, data_dir=str(data), val_split=val_split, epochs=epochs,
                          val_interval=epochs, seed=seed, ckpt_dir=str(workdir), output_dir=str(workdir / "eval"))
    state = parser.get_parsed_content("validate#evaluator").state
    return float(state.best_metric), workdir / "model.pt"


def pick(strategy: str, bundle: Bundle, weights: Path, candidates: list[dict], k: int, rng: random.Random) -> list[int]:
    """Indices into ``candidates`` of the next ``k`` images to label."""
    if strategy == "random":
        return rng.sample(range(len(candidates)), k)
    predictor = bundle.predictor(weights)
    scores = [tta_variance(predictor.network, predictor.network_input(c["image"]), predictor.inferer)
              for c in candidates]
    return sorted(range(len(candidates)), key=scores.__getitem__, reverse=True)[:k]


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


def print_summary(rows: list[dict]) -> None:
    table = summary_rows(rows)
    print(format_table(table, list(table[0]), "Simulated active learning: validation Dice per round"))


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
