"""Multi-process training: DDP with synchronised batch norm over gloo equals one process."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.networks.nets import AttentionUnet

from breastlab.bundle import PROJECT_ROOT, get_bundle
from breastlab.engines.distributed import DistributedBatchNorm

WORKER = Path(__file__).with_name("ddp_gradients.py")


def run(command: list[str], tmp_path: Path, timeout: float = 900) -> None:
    """Run ``command`` with its temp folder (torchrun leaves ``torchelastic_*`` folders) in ``tmp_path``; the
    timeout only stops a hung run (a slow machine is not a failure)."""
    result = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=timeout,
                            env={**os.environ, "TMPDIR": str(tmp_path)})
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]


def torchrun(processes: int, *args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}", *args]


def test_converted_batchnorm_keeps_weights_and_outputs_without_a_process_group():
    torch.manual_seed(0)
    network = AttentionUnet(2, 1, 1, [4, 8, 16], [2, 2])
    original = copy.deepcopy(network)
    converted = DistributedBatchNorm.convert(network)
    assert not any(type(m) is torch.nn.BatchNorm2d for m in converted.modules())
    assert any(isinstance(m, DistributedBatchNorm) for m in converted.modules())
    assert all(torch.equal(original.state_dict()[k], v) for k, v in converted.state_dict().items())
    x = torch.rand(2, 1, 32, 32)
    for mode in (True, False):
        assert torch.allclose(converted.train(mode)(x), original.train(mode)(x))


def test_per_process_batch_must_split_evenly(monkeypatch):
    from breastlab.engines import distributed

    monkeypatch.setattr(torch.distributed, "get_world_size", lambda: 3)
    assert distributed.per_process(9) == 3
    with pytest.raises(ValueError, match="does not split evenly"):
        distributed.per_process(8)


@pytest.mark.slow
def test_two_processes_give_the_gradient_of_one(tmp_path):
    run([sys.executable, str(WORKER), str(tmp_path / "alone.pt")], tmp_path)
    run(torchrun(2, str(WORKER), str(tmp_path / "ddp.pt")), tmp_path)
    alone, ddp = torch.load(tmp_path / "alone.pt"), torch.load(tmp_path / "ddp.pt")
    error = sum((alone[k] - ddp[k]).norm() ** 2 for k in alone) ** 0.5
    assert error / sum(g.norm() ** 2 for g in alone.values()) ** 0.5 < 1e-10


@pytest.mark.slow
def test_bundle_trains_the_same_in_two_processes_as_in_one(make_dataset, tmp_path):
    """``breastlab train --processes N`` (the bundle's multi_gpu_train.json): same weights and val Dice."""
    rng = np.random.default_rng(0)
    images, masks, splits = {}, {}, {}
    for i in range(20):
        yy, xx = np.mgrid[:64, :64]
        (y, x), r = rng.integers(16, 48, 2), rng.integers(5, 12)
        lesion = (yy - y) ** 2 + (xx - x) ** 2 < r * r
        images[f"c{i}"] = np.where(lesion, 200, rng.integers(0, 120, (64, 64)))
        masks[f"c{i}"], splits[f"c{i}"] = lesion * 255, "train" if i < 16 else "val"
    data = make_dataset(images, labels=dict.fromkeys(images, "benign"), splits=splits, masks=masks)
    start = tmp_path / "start.pt"
    torch.save(get_bundle("breast_us_t2kd").network().state_dict(), start)
    results = {}
    for processes in (1, 2):
        out = tmp_path / f"run{processes}"
        run([sys.executable, "-m", "breastlab.cli", "train", "breast_us_t2kd", "--processes", str(processes),
             "--data", str(data), "--epochs", "2", "--out", str(out), "--set", f"output_dir={out / 'eval'}",
             "--set", "image_size=[64,64]", "--set", "train#augmentation=[]", "--set", f"initial_weights={start}",
             "--set", "optimizer#_target_=torch.optim.SGD", "--set", "learning_rate=0.1",
             "--set", "precision=fp32"], tmp_path)  # the same steps exactly: bfloat16 rounds by batch split
        dice = float((out / "eval" / "metrics.csv").read_text().split(",")[1])
        results[processes] = torch.load(out / "last.pt"), dice
    initial, (one, dice_one), (two, dice_two) = torch.load(start), results[1], results[2]
    moved = sum((one[k].double() - initial[k].double()).norm() ** 2 for k in one) ** 0.5
    apart = sum((one[k].double() - two[k].double()).norm() ** 2 for k in one) ** 0.5
    assert moved > 0.1
    assert apart < 0.01 * moved
    assert dice_one == pytest.approx(dice_two, abs=0.01)  # a few boundary pixels may round the other way
