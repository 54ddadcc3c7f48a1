"""Training throughput (images/s) of each bundle on this machine.

Two numbers per bundle: the optimisation step alone (forward, loss, backward, optimiser step on
random batches of the configured batch size and image size), and the train config's load and
augmentation pipeline on the shipped samples. Run by hand: ``python bench/train_throughput.py``.
"""

from __future__ import annotations

import argparse
import time

import torch
from monai.data import Dataset

from breastlab.bundle import find_bundles
from breastlab.data import dataset_dicts
from breastlab.metrics import format_table

from common import SAMPLES


def step_throughput(parser, steps: int) -> tuple[float, int, list]:
    network = parser.get_parsed_content("network_def")
    loss = parser.get_parsed_content("loss")
    optimizer = torch.optim.AdamW(network.parameters(), lr=1e-4)
    batch, size = parser["batch_size"], parser["image_size"]
    x, y = torch.rand(batch, 1, *size), (torch.rand(batch, 1, *size) > 0.8).float()

    def step():
        optimizer.zero_grad()
        loss(network(x), y).backward()
        optimizer.step()

    step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch / (time.perf_counter() - start), batch, size


def pipeline_throughput(parser, passes: int) -> float:
    dataset = Dataset(dataset_dicts(SAMPLES, "demo"), parser.get_parsed_content("train#preprocessing"))
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
        config = bundle.parser("train")
        rate, batch, size = step_throughput(config, args.steps)
        loading = pipeline_throughput(config, args.passes)
        rows.append({"bundle": bundle.name, "batch": batch, "input": "x".join(map(str, size)),
                     "train step (images/s)": rate, "load+augment (images/s)": loading})
    print(format_table(rows, list(rows[0]), f"Training throughput on {torch.get_num_threads()} CPU threads"))


if __name__ == "__main__":
    main()
