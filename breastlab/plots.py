"""Figures people would rather look at than read: training curves from a MONAI training log."""

from __future__ import annotations

import re
import sys
from collections import defaultdict
from pathlib import Path

LOSS = re.compile(r"Epoch: (\d+)/\d+, Iter: \d+/\d+ -- train_loss: ([\d.]+)")
METRIC = re.compile(r"Epoch\[(\d+)\] Metrics -- (.*)")


def read_training_log(path: str | Path) -> tuple[dict[int, float], dict[str, dict[int, float]]]:
    """Mean train loss per epoch and each validation metric per epoch, from ``StatsHandler`` lines."""
    losses: dict[int, list[float]] = defaultdict(list)
    metrics: dict[str, dict[int, float]] = defaultdict(dict)
    for line in Path(path).read_text().splitlines():
        if m := LOSS.search(line):
            losses[int(m[1])].append(float(m[2]))
        elif m := METRIC.search(line):
            for name, value in re.findall(r"(\w+): ([\d.]+)", m[2]):
                metrics[name][int(m[1])] = float(value)
    return {e: sum(v) / len(v) for e, v in sorted(losses.items())}, dict(metrics)


def plot_training_log(log: str | Path, out: str | Path, title: str = "", loss_name: str = "Dice + BCE") -> Path:
    """Save a PNG with the train loss (left axis) and validation metrics (right axis) per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return Path(out)


if __name__ == "__main__":
    plot_training_log(sys.argv[1], sys.argv[2], *sys.argv[3:4])
