"""Training throughput (images/s) of each bundle on this machine, float32 against bfloat16, in one run.

Per bundle: the trainer's own iteration (its prepare_batch, forward, loss — distillation or multi-task where the
bundle has one — backward and optimiser step) repeated on one batch of the shipped samples (synthetic mammograms
for the mammography bundles) at the configured image size, in float32, in bfloat16 and in bfloat16 with
``channels_last`` (steps interleaved, medians), and the speed-up of the bundle's configured setting over float32;
and the train config's load and augmentation pipeline on those samples. Run by hand:
``python bench/train_throughput.py [--bundles NAME ...] [--steps 10]``.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch
from monai.data import Dataset

from breastlab.bundle import find_bundles
from breastlab.metrics import format_table

from common import SAMPLES, synthetic_mammogram_folder

SAMPLE_RUN = {"data_dir": str(SAMPLES), "train_split": "demo", "val_split": "demo", "initial_weights": None}
MAMMOGRAM_RUN = {"train_split": "dev", "val_split": "dev", "initial_weights": None,
                 "patch_weights": None}  # data_dir: a synthetic folder


def sample_run(bundle) -> dict:
    """Config overrides that train ``bundle`` on the shipped samples, or on synthetic mammograms."""
    if bundle.metadata["breastlab"].get("modality") != "MG":
        return SAMPLE_RUN
    folder = Path(tempfile.gettempdir()) / "breastlab-bench-mammograms"
    if not (folder / "manifest.csv").is_file():
        synthetic_mammogram_folder(folder)
    return {**MAMMOGRAM_RUN, "data_dir": str(folder)}


def trainer_of(bundle, precision: str, channels_last: bool):
    """The bundle's trainer on the sample run, one batch of its data, and the input size."""
    config = bundle.parser("train", **sample_run(bundle), precision=precision, channels_last=channels_last)
    trainer = config.get_parsed_content("train#trainer")
    return trainer, next(iter(trainer.data_loader)), "x".join(map(str, config["image_size"]))


def step_seconds(modes: dict[str, tuple], steps: int) -> dict[str, float]:
    """Median seconds of one training iteration per mode, the modes interleaved step by step so that a change
    in the machine's speed during the run affects them alike."""
    times: dict[str, list[float]] = {mode: [] for mode in modes}
    for trainer, batch, _ in modes.values():
        trainer._process_function(trainer, batch)  # warm-up
    for _ in range(steps):
        for mode, (trainer, batch, _) in modes.items():
            start = time.perf_counter()
            trainer._process_function(trainer, batch)
            times[mode].append(time.perf_counter() - start)
    return {mode: statistics.median(values) for mode, values in times.items()}


def pipeline_throughput(bundle, passes: int) -> float:
    config = bundle.parser("train", **sample_run(bundle))
    dataset = Dataset(config.get_parsed_content("train_datalist"), config.get_parsed_content("train#preprocessing"))
    start = time.perf_counter()
    for _ in range(passes):
        for i in range(len(dataset)):
            dataset[i]
    return passes * len(dataset) / (time.perf_counter() - start)


def bench_bundle(bundle, steps: int, passes: int) -> dict:
    modes = {"fp32": trainer_of(bundle, "fp32", False), "bf16": trainer_of(bundle, "bf16", False),
             "bf16_cl": trainer_of(bundle, "bf16", True)}
    _, batch, size = modes["fp32"]
    images = len(batch["image"])
    fp32, bf16, bf16_cl = (images / seconds for seconds in step_seconds(modes, steps).values())
    configured = bf16_cl if bundle.parser("train")["channels_last"] else bf16
    return {"bundle": bundle.name, "batch": images, "input": size, "fp32 step (images/s)": fp32,
            "bf16 step (images/s)": bf16, "bf16 speed-up": bf16 / fp32,
            "bf16 + channels_last (images/s)": bf16_cl, "channels_last gain": bf16_cl / bf16,
            "configured speed-up": configured / fp32, "load+augment (images/s)": pipeline_throughput(bundle, passes)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--passes", type=int, default=10)
    parser.add_argument("--bundles", nargs="+", metavar="NAME", help="only these bundles (default: all)")
    args = parser.parse_args()
    bundles = [b for b in find_bundles() if not args.bundles or b.name in args.bundles]
    try:
        rows = [bench_bundle(bundle, args.steps, args.passes) for bundle in bundles]
    finally:
        shutil.rmtree(Path(tempfile.gettempdir()) / "breastlab-bench-mammograms", ignore_errors=True)
    print(format_table(rows, list(rows[0]), f"Training throughput on {torch.get_num_threads()} CPU threads"))


if __name__ == "__main__":
    main()
