"""Training that can stop and go on: after every epoch, what the run needs to continue (network, optimizer,
learning-rate schedule, the trainer's epoch and the evaluator's best metric so far) is written to
``<ckpt_dir>/resume.pt``, atomically; ``breastlab train --resume`` loads it and trains the epochs left."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from ignite.engine import Events
from ignite.handlers import Checkpoint

RESUME_FILE = "resume.pt"


class BestMetric:
    """An evaluator's best key metric and its epoch, as an object ignite can checkpoint."""

    def __init__(self, evaluator):
        self.evaluator = evaluator

    def state_dict(self) -> dict:
        state = self.evaluator.state
        return {"best_metric": float(state.best_metric), "best_metric_epoch": int(state.best_metric_epoch)}

    def load_state_dict(self, saved: dict) -> None:
        self.evaluator.state.best_metric = saved["best_metric"]
        self.evaluator.state.best_metric_epoch = saved["best_metric_epoch"]


def resumable_objects(parser) -> dict:
    """What a bundle's training run needs saved to go on, by name."""
    trainer = parser.get_parsed_content("train#trainer")
    objects = {"network": trainer.network, "optimizer": trainer.optimizer, "trainer": trainer}
    if "lr_scheduler" in parser:
        objects["lr_scheduler"] = parser.get_parsed_content("lr_scheduler")
    if "validate#evaluator" in parser:
        objects["best"] = BestMetric(parser.get_parsed_content("validate#evaluator"))
    return objects


def make_resumable(parser, resume: bool = False) -> Path | None:
    """Save the run after every epoch into its ``ckpt_dir`` (the first process only); with ``resume``, load the
    saved run first. Returns the file, None when the config has no ``ckpt_dir``."""
    if "ckpt_dir" not in parser:
        return None
    path = Path(parser.get_parsed_content("ckpt_dir")) / RESUME_FILE
    objects = resumable_objects(parser)
    if resume:
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no run to resume (it is written after every epoch)")
        trainer = objects["trainer"]
        max_epochs = trainer.state.max_epochs  # the options' (ignite would take the saved run's)
        Checkpoint.load_objects(objects, torch.load(path, map_location="cpu", weights_only=False))
        trainer.state.max_epochs = max_epochs
    if int(os.environ.get("RANK", 0)) == 0:
        parser.get_parsed_content("train#trainer").add_event_handler(Events.EPOCH_COMPLETED, save, objects, path)
    return path


def save(_engine, objects: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(f".{os.getpid()}.tmp")
    torch.save({name: item.state_dict() for name, item in objects.items()}, temporary)
    os.replace(temporary, path)
