"""The simulated active-learning study end to end on the samples (slow: trains the bundle)."""

from __future__ import annotations

import json

import pytest
import torch

from breastlab.activelearning.study import picks_rows, run_study, summary_rows
from breastlab.bundle import get_bundle
from breastlab.data import dataset_dicts

pytestmark = pytest.mark.slow


def test_study_grows_the_labelled_set_and_reports_each_round(samples_dir, tmp_path):
    rows = run_study(get_bundle("breast_us_t2kd"), samples_dir, tmp_path, initial=2, per_round=2, rounds=1,
                     seeds=(0,), epochs=1, train_split="demo", val_split="demo")
    assert [(r["strategy"], r["round"], r["labelled"]) for r in rows] == [
        (s, n, 2 + 2 * n) for s in ("random", "diverse", "uncertainty", "hybrid") for n in (0, 1)]
    assert all(0.0 <= r["val_dice"] <= 1.0 for r in rows)
    by = {(r["strategy"], r["round"]): r for r in rows}
    by_strategy = ["random", "diverse", "uncertainty", "hybrid"]
    for a, b in (("random", "uncertainty"), ("diverse", "hybrid")):  # same seed, same initial images: one training
        assert by[a, 0]["added"] == by[b, 0]["added"] and by[a, 0]["val_dice"] == by[b, 0]["val_dice"]
    for strategy in ("random", "diverse"):
        first, second = by[strategy, 0]["added"], by[strategy, 1]["added"]
        assert len(first) == len(second) == 2 and not set(first) & set(second)
    trainings = {frozenset(by[s, 0]["added"] + by[s, 1]["added"]) for s, _ in by}
    assert len(list((tmp_path / "trainings").iterdir())) == 2 + len(trainings)  # each labelled set trained once
    assert json.loads((tmp_path / "results.json").read_text()) == rows
    assert (tmp_path / "learning_curve.png").stat().st_size > 1000
    assert [r["seeds"] for r in summary_rows(rows)] == [1] * 8
    picks = picks_rows(rows, dataset_dicts(samples_dir, "demo"))
    assert [(p["round"], p["strategy"], p["images"]) for p in picks] == [(n, s, 2) for n in (0, 1) for s in by_strategy]
    assert all(p["normal"] + p["benign"] + p["malignant"] == pytest.approx(1.0) for p in picks)
    again = run_study(get_bundle("breast_us_t2kd"), samples_dir, tmp_path, initial=2, per_round=2, rounds=1,
                      seeds=(0,), strategies=("random",), epochs=1, train_split="demo", val_split="demo")
    assert again == rows[:2]  # resumed from the kept trainings


def test_study_rejects_impossible_plans(samples_dir, tmp_path):
    bundle = get_bundle("breast_us_t2kd")
    with pytest.raises(ValueError, match="pool has 6"):
        run_study(bundle, samples_dir, tmp_path, initial=4, per_round=2, rounds=2, train_split="demo")
    with pytest.raises(ValueError, match="unknown strategies"):
        run_study(bundle, samples_dir, tmp_path, strategies=("entropy",), train_split="demo")


def test_runs_in_worker_processes_give_the_serial_results(samples_dir, tmp_path):
    """Workers compute with one torch thread each; the serial run does too, so the results are the same numbers
    (a reduction split over more threads rounds differently)."""
    plan = dict(initial=2, per_round=2, rounds=0, seeds=(0, 1), strategies=("random",), epochs=1,
                train_split="demo", val_split="demo")
    bundle = get_bundle("breast_us_t2kd", image_size=[64, 64], precision="fp32")  # bf16 rounds by thread count
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        serial = run_study(bundle, samples_dir, tmp_path / "serial", **plan)
    finally:
        torch.set_num_threads(threads)
    parallel = run_study(bundle, samples_dir, tmp_path / "parallel", workers=2, **plan)
    assert [r["seed"] for r in parallel] == [0, 1]
    assert parallel == serial
