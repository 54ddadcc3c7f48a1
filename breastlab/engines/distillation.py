"""T2KD joint distillation: class-specific teachers guide the student, one training step at a time."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from monai.engines.utils import IterationEvents
from monai.inferers import SimpleInferer

from breastlab.bundle import load_weights
from breastlab.data import CLASS_NAMES

MODES = ("matching", "ensemble")


def load_teachers(make_network: Callable[[], torch.nn.Module], paths: dict[str, str | Path],
                  device: str | torch.device = "cpu") -> dict[str, torch.nn.Module]:
    """One frozen network per class name (``benign``, ``malignant``) from its checkpoint."""
    teachers = {}
    for name, path in paths.items():
        if name not in CLASS_NAMES:
            raise ValueError(f"teacher {name!r}: expected a class name from {CLASS_NAMES}")
        if not Path(path).is_file():
            raise FileNotFoundError(f"teacher {name!r}: {path} not found (train it with configs/teacher.json)")
        teacher = load_weights(make_network(), path, device).eval()
        teachers[name] = teacher.requires_grad_(False)
    return teachers


class DistillationStep:
    """A ``SupervisedTrainer`` iteration: ``seg_loss(student) + alpha * kd_loss(student, teacher)``.

    ``mode="matching"``: each image learns from the teacher of its class (benign/malignant); images
    of other classes (normal) get the segmentation loss only. ``mode="ensemble"``: every image learns
    from the mean of all teachers' logits.
    """

    def __init__(self, teachers: dict[str, torch.nn.Module], seg_loss: torch.nn.Module, kd_loss: torch.nn.Module,
                 alpha: float = 0.5, mode: str = "matching"):
        if mode not in MODES:
            raise ValueError(f"mode {mode!r}: expected one of {MODES}")
        self.teachers, self.seg_loss, self.kd_loss = teachers, seg_loss, kd_loss
        self.alpha, self.mode = alpha, mode

    @torch.no_grad()
    def teacher_logits(self, images: torch.Tensor, classes: torch.Tensor,
                       inferer=SimpleInferer()) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher logits per image (run by ``inferer``) and a (B,) mask of the images that have a teacher."""
        if self.mode == "ensemble":
            logits = torch.stack([inferer(images, t) for t in self.teachers.values()]).mean(0)
            return logits, torch.ones(len(images), dtype=torch.bool, device=images.device)
        logits = torch.zeros((len(images), 1, *images.shape[2:]), dtype=images.dtype, device=images.device)
        mask = torch.zeros(len(images), dtype=torch.bool, device=images.device)
        for name, teacher in self.teachers.items():
            rows = classes == CLASS_NAMES.index(name)
            if rows.any():
                logits[rows] = inferer(images[rows], teacher).to(logits.dtype)
                mask |= rows
        return logits, mask

    def losses(self, student: torch.nn.Module, images, labels, classes,
               inferer=SimpleInferer()) -> tuple[torch.Tensor, ...]:
        """(total, segmentation, distillation) losses and the student's logits for one batch, the networks run by
        ``inferer`` (the trainer's: its mixed precision)."""
        logits = inferer(images, student)
        teacher, mask = self.teacher_logits(images, classes, inferer)
        seg, kd = self.seg_loss(logits, labels), self.kd_loss(logits, teacher, mask)
        return seg + self.alpha * kd, seg, kd, logits

    def __call__(self, engine, batch: dict) -> dict:
        device = engine.state.device
        images, labels = batch["image"].to(device), batch["label"].to(device)
        classes = torch.as_tensor(batch["class"], device=device)
        engine.network.train()
        engine.optimizer.zero_grad(set_to_none=True)
        loss, seg, kd, logits = self.losses(engine.network, images, labels, classes, engine.inferer)
        loss.backward()
        engine.optimizer.step()
        engine.state.output = {"image": images, "label": labels, "pred": logits, "loss": loss.item(),
                               "seg_loss": seg.item(), "kd_loss": kd.item()}
        engine.fire_event(IterationEvents.MODEL_COMPLETED)  # decollates the output, as MONAI's own iteration
        return engine.state.output
