"""Figures people would rather look at than read: training curves from a MONAI training log, maps on images."""

from __future__ import annotations

import re
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

ITERATION = re.compile(r"Epoch: (\d+)/\d+, Iter: \d+/\d+ -- (.*)")
METRIC = re.compile(r"Epoch\[(\d+)\] Metrics -- (.*)")


def read_training_log(path: str | Path) -> tuple[dict[int, float], dict[str, dict[int, float]]]:
    """Mean train loss per epoch and each validation metric per epoch, from ``StatsHandler`` lines (a loss
    logged as several terms counts its ``total``)."""
    losses: dict[int, list[float]] = defaultdict(list)
    metrics: dict[str, dict[int, float]] = defaultdict(dict)
    for line in Path(path).read_text().splitlines():
        if m := ITERATION.search(line):
            terms = dict(re.findall(r"(\w+): ([\d.]+)", m[2]))
            losses[int(m[1])].append(float(terms.get("total", next(iter(terms.values()), "nan"))))
        elif m := METRIC.search(line):
            for name, value in re.findall(r"(\w+): ([\d.]+)", m[2]):
                metrics[name][int(m[1])] = float(value)
    return {e: sum(v) / len(v) for e, v in sorted(losses.items())}, dict(metrics)


def plot_training_log(log: str | Path, out: str | Path, title: str = "", loss_name: str = "Dice + BCE") -> Path:
    """Save a PNG with the train loss (left axis) and validation metrics (right axis) per epoch."""
    plt = pyplot()
    losses, metrics = read_training_log(log)
    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    ax.plot(list(losses), list(losses.values()), color="tab:red", label="train loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"train loss ({loss_name})")
    right = ax.twinx()
    for name, values in metrics.items():
        right.plot(list(values), list(values.values()), marker=".", label=name)
    right.set_ylabel("validation metric")
    right.set_ylim(bottom=0)
    handles = ax.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
    ax.legend(handles, [h.get_label() for h in handles], loc="center right")
    ax.set_title(title or Path(log).name)
    return save_figure(fig, out)


def plot_metric_curves(logs: dict[str, str | Path], metric: str, out: str | Path, title: str = "") -> Path:
    """Save a PNG with one validation ``metric`` per epoch for each of several training ``logs`` ({label: log})."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    for label, log in logs.items():
        values = read_training_log(log)[1].get(metric, {})
        ax.plot(list(values), list(values.values()), marker=".", label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.legend()
    ax.set_title(title or metric)
    return save_figure(fig, out)


def plot_click_curves(summaries: dict[str, dict], out: str | Path, title: str = "") -> Path:
    """Save a PNG of mean Dice against the number of simulated clicks, one line per ``evaluate_clicks`` summary
    ({label: summary}) for clicks alone (0: automatic mode, where the model has one; its NoC@85 / NoC@90 in the
    legend), a dotted one from its box (0: the box alone) for a promptable model, and the 0.85 / 0.90 targets
    dashed."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4), dpi=120)
    for label, summary in summaries.items():
        start = 0 if "automatic_dice" in summary else 1
        dices = ([summary["automatic_dice"]] if start == 0 else []) + summary["dice_after_clicks"]
        noc = f" (NoC@85 {summary['noc85']:.2f}, NoC@90 {summary['noc90']:.2f})" if "noc85" in summary else ""
        ax.plot(range(start, start + len(dices)), dices, marker=".", label=f"{label}, clicks only{noc}")
        if "box_dice" in summary:
            box = [summary["box_dice"], *summary["box_click_dice"]]
            ax.plot(range(len(box)), box, marker="s", linestyle=":", label=f"{label}, box + clicks")
        ax.set_xticks(range(0, start + len(dices), 2))
    for target in (0.85, 0.90):
        ax.axhline(target, color="gray", linestyle="--", linewidth=0.8)
    ax.set_xlabel("clicks (0 = automatic mode or box alone)")
    ax.set_ylabel("mean Dice")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=7)
    ax.set_title(title or "Dice after each simulated click")
    return save_figure(fig, out)


def plot_reliability(bins: dict[str, list[dict]], out: str | Path, title: str = "") -> Path:
    """Save a PNG reliability diagram: observed frequency against mean predicted probability per bin, one curve per
    binary task (``{task: reliability_bins}``), the diagonal of a calibrated model dashed; below, each bin's count."""
    plt = pyplot()
    fig, (ax, counts) = plt.subplots(2, 1, figsize=(5.5, 6), dpi=120, sharex=True, height_ratios=[3, 1])
    ax.plot([0, 1], [0, 1], color="gray", linestyle="--", linewidth=0.8, label="calibrated")
    width = 0.1 / max(len(bins), 1)
    for k, (task, task_bins) in enumerate(bins.items()):
        line = ax.plot([b["confidence"] for b in task_bins], [b["frequency"] for b in task_bins], marker="o",
                       label=task)[0]
        counts.bar([b["low"] + (k + 0.5) * width for b in task_bins], [b["n"] for b in task_bins], width=width,
                   color=line.get_color())
    ax.set_ylabel("observed frequency of positives")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=7)
    ax.set_title(title or "Reliability")
    counts.set_xlabel("predicted probability of the positive class")
    counts.set_ylabel("cases per bin")
    return save_figure(fig, out)


def plot_map_overlays(rows: list[tuple[str, np.ndarray, np.ndarray, dict[str, np.ndarray]]], out: str | Path) -> Path:
    """Save a PNG grid: one row per image ``(title, image, truth, {method: map in [0, 1]})``, the image with
    the ground-truth outline first, then each method's map over it (all arrays (H, W), same size)."""
    plt = pyplot()
    methods = list(rows[0][3])
    fig, axes = plt.subplots(len(rows), 1 + len(methods), figsize=(2.6 * (1 + len(methods)), 2.4 * len(rows)),
                             dpi=80, squeeze=False)
    for (title, image, truth, maps), row in zip(rows, axes):
        for ax, name in zip(row, ["image", *methods]):
            ax.imshow(image, cmap="gray")
            if name != "image":
                ax.imshow(maps[name], cmap="jet", alpha=0.4, vmin=0, vmax=1)
            ax.contour(truth > 0, levels=[0.5], colors="white", linewidths=1)
            ax.set_title(title if name == "image" else name, fontsize=8)
            ax.axis("off")
    return save_figure(fig, out)


def plot_map_sheet(tiles: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]], out: str | Path,
                   columns: int = 10) -> Path:
    """Save a PNG contact sheet of ``tiles`` ``(title, image, outline, map)``: each image with its map over it,
    scaled to the map's own peak, and ``outline`` (e.g. the breast) drawn in white (arrays (H, W), same size)."""
    plt = pyplot()
    rows = -(-len(tiles) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(1.9 * columns, 2.2 * rows), dpi=80, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (title, image, outline, heat) in zip(axes.flat, tiles):
        ax.imshow(image, cmap="gray")
        ax.imshow(heat / max(float(heat.max()), 1e-6), cmap="jet", alpha=0.45, vmin=0, vmax=1)
        ax.contour(outline > 0, levels=[0.5], colors="white", linewidths=0.6)
        ax.set_title(title, fontsize=7)
    return save_figure(fig, out)


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend (no display on servers)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, out: str | Path) -> Path:
    """Lay out, write and close ``fig``."""
    fig.tight_layout()
    fig.savefig(out)
    pyplot().close(fig)
    return Path(out)


if __name__ == "__main__":
    plot_training_log(sys.argv[1], sys.argv[2], *sys.argv[3:4])
