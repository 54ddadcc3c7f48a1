"""Turning server results into what the panel shows: class probabilities, the model's BI-RADS suggestion and training
progress."""

from __future__ import annotations

import re
from dataclasses import dataclass

TRAINER_EPOCH_DONE = re.compile(r"SupervisedTrainer.*Epoch\[(\d+)\] Complete")
RUNNING_STATES = ("SUBMITTED", "QUEUED", "RUNNING")


def ranked_probabilities(probabilities: dict[str, float]) -> list[tuple[str, float]]:
    """``(class, p)`` pairs, most likely first; a probability outside [0, 1] is a ``ValueError``."""
    for name, p in probabilities.items():
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"probability of {name!r} is {p}, outside [0, 1]")
    return sorted(probabilities.items(), key=lambda item: (-item[1], item[0]))


def probabilities_text(probabilities: dict[str, float]) -> str:
    """One ``class: 87.5 %`` line per class, most likely first."""
    return "\n".join(f"{name}: {100 * p:.1f} %" for name, p in ranked_probabilities(probabilities))


@dataclass(frozen=True)
class BiradsSuggestion:
    """A model's BI-RADS ``category`` and the ``probabilities`` of every category: shown beside the annotator's BI-RADS
    field, never in it unless the annotator accepts it."""

    category: str
    probabilities: dict[str, float]

    @classmethod
    def from_result(cls, result: dict) -> "BiradsSuggestion | None":
        """The ``birads`` of a model's JSON result (``suggestion``, ``probabilities``); None where it has none."""
        birads = result.get("birads")
        if not isinstance(birads, dict):
            return None
        probabilities = {str(k): float(v) for k, v in birads.get("probabilities", {}).items()}
        category = str(birads.get("suggestion"))
        ranked_probabilities(probabilities)  # raises for a probability outside [0, 1]
        if category not in probabilities:
            raise ValueError(f"suggested BI-RADS {category!r} is not one of {sorted(probabilities)}")
        return cls(category, probabilities)

    def text(self, shown: int = 3) -> str:
        """``AI suggests BI-RADS 4 (4: 61 %, 3: 27 %, …)``: the ``shown`` likeliest categories."""
        ranked = ranked_probabilities(self.probabilities)
        listed = ", ".join(f"{name}: {100 * p:.0f} %" for name, p in ranked[:shown])
        return f"AI suggests BI-RADS {self.category} ({listed}{', …' if len(ranked) > shown else ''})"

    def accept(self, choices: list[str]) -> str:
        """The item of the annotator's BI-RADS field (its ``choices``) that accepting the suggestion selects."""
        if self.category not in choices:
            raise ValueError(f"the BI-RADS field offers no {self.category!r}: {choices}")
        return self.category


@dataclass(frozen=True)
class TrainingProgress:
    """Where a training task stands: its state and finished epochs out of the requested ones."""

    state: str
    epochs_done: int
    epochs: int

    @property
    def running(self) -> bool:
        return self.state in RUNNING_STATES

    @property
    def percent(self) -> int:
        return round(100 * min(self.epochs_done, self.epochs) / self.epochs) if self.epochs else 0

    @property
    def text(self) -> str:
        return f"{self.state}: epoch {min(self.epochs_done, self.epochs)} of {self.epochs}"


def training_progress(status: dict | None, default_epochs: int) -> TrainingProgress:
    """Progress from ``GET /train/`` (``None``: no task yet); epochs not in the request are the trainer's default.

    The server keeps only the task's last 20 log lines, so while it runs the finished-epoch count is
    the highest ``Epoch[n] Complete`` of the trainer among them (0 when none is in view).
    """
    if not status:
        return TrainingProgress("NONE", 0, default_epochs)
    epochs = int(status.get("request", {}).get("max_epochs", default_epochs))
    state = status.get("status", "UNKNOWN")
    if state == "DONE":
        return TrainingProgress(state, epochs, epochs)
    done = [int(m.group(1)) for line in status.get("details", []) for m in [TRAINER_EPOCH_DONE.search(line)] if m]
    return TrainingProgress(state, max(done, default=0), epochs)
