"""The AI steps on the current image, for undo: the mask before and after each one and the prompts it was run with.

Pure numpy (no Slicer). Undoing a step restores the mask before it except where the annotator edited the segment
since, so that undo never takes back a manual edit (MONAI Label's own Slicer plugin overwrites them, MONAILabel#780).
Clicks refine the segment as it is, manual edits included: ``mask_to_send`` says when it has to go to the server.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_STEPS = 30  # per image; the oldest steps are dropped first


@dataclass(frozen=True)
class Prompts:
    """The prompts on the image: control points in the lesion and background lists, the box in image pixels."""

    foreground: int = 0
    background: int = 0
    box: tuple[int, ...] | None = None


@dataclass(frozen=True)
class AIStep:
    """One AI result: ``before`` the segment it replaced, ``after`` the mask it wrote (boolean arrays), the prompts
    before and with it, and whether the server keeps the answer in its own history (``synced``: promptable models)."""

    model: str
    before: np.ndarray
    after: np.ndarray
    prompts_before: Prompts
    prompts: Prompts
    synced: bool = False

    def added_prompts(self) -> tuple[int, int, bool]:
        """The lesion and background points the step added, and whether it added (or changed) the box."""
        old, new = self.prompts_before, self.prompts
        return (max(new.foreground - old.foreground, 0), max(new.background - old.background, 0),
                new.box is not None and new.box != old.box)


def undo_mask(step: AIStep, current: np.ndarray) -> np.ndarray:
    """The segment with ``step`` undone, as a 0/1 uint8 array: ``step.before`` where ``current`` still holds what the
    step wrote, ``current`` where the annotator changed it since."""
    current = np.asarray(current) > 0
    if current.shape != step.after.shape:
        raise ValueError(f"segment of shape {current.shape} does not match the step's {step.after.shape}")
    return np.where(current != step.after, current, step.before).astype(np.uint8)


def keeps_history(result: dict) -> bool:
    """Whether the model's JSON result comes from a promptable model, whose server keeps its answers for undo: those
    carry ``history`` (the answers kept) and the decoder's ``predicted_iou``."""
    return "history" in result or "predicted_iou" in result


def mask_to_send(current: np.ndarray, server_answer: np.ndarray | None) -> np.ndarray | None:
    """The mask a click request to a promptable model sends for its clicks to refine (``label=``), as a boolean
    array: the segment ``current``, unless it is the server's last answer (``server_answer``, None when the server
    keeps none), which the clicks refine anyway, or empty (the clicks start afresh); None then."""
    current = np.asarray(current) > 0
    if not current.any() or (server_answer is not None and np.array_equal(current, server_answer)):
        return None
    return current
