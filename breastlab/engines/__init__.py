"""Glue for MONAI's engines: mixed precision, multi-task targets and losses, T2KD distillation, click rounds, DDP."""

from .distillation import DistillationStep, load_teachers
from .interaction import ClickInteraction
from .multitask import KeywordLoss, TargetsBatch, parameter_groups
from .precision import MixedPrecisionInferer, autocast_dtype, cpu_has_bf16

__all__ = ["ClickInteraction", "DistillationStep", "KeywordLoss", "MixedPrecisionInferer", "TargetsBatch",
           "autocast_dtype", "cpu_has_bf16", "load_teachers", "parameter_groups"]
