"""Training saves its run after every epoch and goes on from it: a stopped run trains only the epochs left."""

from __future__ import annotations

import pytest
import torch

from breastlab.bundle import get_bundle

from helpers import SAMPLES


def train(tmp_path, epochs: int, resume: bool = False) -> tuple[list[int], object]:
    seen = []
    parser = get_bundle("breast_us_t2kd").train(
        on_epoch=lambda trainer: seen.append(trainer.state.epoch), resume=resume, data_dir=str(SAMPLES),
        train_split="demo", val_split="demo", epochs=epochs, batch_size=3, image_size=[64, 64],
        ckpt_dir=str(tmp_path / "models"), output_dir=str(tmp_path / "eval"))
    return seen, parser


@pytest.mark.slow
@pytest.mark.usefixtures("float32")
def test_a_resumed_run_trains_only_the_epochs_left_from_the_saved_state(tmp_path):
    with pytest.raises(FileNotFoundError, match="no run to resume"):
        train(tmp_path, 1, resume=True)
    seen, parser = train(tmp_path, 1)
    saved = torch.load(tmp_path / "models" / "resume.pt", weights_only=False)
    assert seen == [1] and set(saved) == {"network", "optimizer", "trainer", "lr_scheduler", "best"}
    assert saved["trainer"]["iteration"] == saved["trainer"]["epoch_length"] == 2  # one epoch of 6 images, batch 3
    assert saved["best"]["best_metric_epoch"] == 1
    network = parser.get_parsed_content("network")
    assert all(torch.equal(v, saved["network"][k]) for k, v in network.state_dict().items())
    seen, parser = train(tmp_path, 2, resume=True)
    resumed = torch.load(tmp_path / "models" / "resume.pt", weights_only=False)["trainer"]
    assert seen == [2] and resumed["iteration"] == 2 * resumed["epoch_length"]
    assert parser.get_parsed_content("validate#evaluator").state.best_metric >= saved["best"]["best_metric"]
