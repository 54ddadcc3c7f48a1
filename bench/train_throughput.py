"""Training throughput (images/s) of each bundle on this machine.

Two numbers per bundle: the trainer's own iteration (its prepare_batch, forward, loss — distillation or
multi-task where the bundle has one — backward and optimiser step) repeated on one batch of the shipped
samples at the configured image size, and the train config's load and augmentation pipeline on those
samples. Run by hand: ``python bench/train_throughput.py``.
"""

from __future__ import annotations

import argparse
import time

import torch
from monai.data import Dataset

from breastlab.bundle import find_bundles
from breastlab.metrics import format_table

from common import SAMPLES

SAMPLE_RUN = {"data_dir": str(SAMPLES), "train_split": "demo", "val_split": "demo", "initial_weights": None}


def step_throughput(parser, steps: int) -> tuple[float, int]:
    trainer = parser.get_parsed_content("train#trainer")
    batch = next(iter(trainer.data_loader))
    images = len(batch["image"])
    trainer._process_function(trainer, batch)
    start = time.perf_counter()
    for _ in range(steps):
        trainer._process_function(trainer, batch)
    return steps * images / (time.perf_counter() - start), images


def pipeline_throughput(parser, passes: int) -> float:
    dataset = Dataset(parser.get_parsed_content("train_datalist"), parser.get_parsed_content("train#preprocessing"))
    start = time.perf_counter()
    for _ in range(passes):
        for i in range(len(dataset)):
            dataset[i]
    return passes * len(dataset) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--passes", type=int, default=10)
    args = parser.parse_args()
    rows = []
    for bundle in find_bundles():
        config = bundle.parser("train", **SAMPLE_RUN)
        rate, batch = step_throughput(config, args.steps)
        loading = pipeline_throughput(config, args.passes)
        rows.append({"bundle": bundle.name, "batch": batch, "input": "x".join(map(str, config["image_size"])),
                     "train step (images/s)": rate, "load+augment (images/s)": loading})
    print(format_table(rows, list(rows[0]), f"Training throughput on {torch.get_num_threads()} CPU threads"))


if __name__ == "__main__":
    main()
