"""Glue for MONAI's engines: multi-task targets and losses, T2KD distillation steps, click rounds, DDP."""

from .distillation import DistillationStep, load_teachers
from .interaction import ClickInteraction
from .multitask import KeywordLoss, TargetsBatch, parameter_groups

__all__ = ["ClickInteraction", "DistillationStep", "KeywordLoss", "TargetsBatch", "load_teachers",
           "parameter_groups"]
