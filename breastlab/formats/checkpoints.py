"""Checkpoints as BreastLab's trainers write them: a state dict, or a dict holding one under ``model``
(MONAI's ``CheckpointSaver`` with more than one object)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch


def read_state_dict(source: str | Path | Mapping | torch.nn.Module,
                    device: str | torch.device = "cpu") -> Mapping[str, torch.Tensor]:
    """The state dict of a module, of a (possibly ``model``-wrapped) mapping, or of a checkpoint file."""
    if isinstance(source, torch.nn.Module):
        return source.state_dict()
    state = source if isinstance(source, Mapping) else torch.load(source, map_location=device, weights_only=True)
    return state["model"] if isinstance(state.get("model"), Mapping) else state
