"""Losses of the BreastLab methods that MONAI does not provide (referenced from bundle configs with ``_target_``)."""

from .distillation import SoftDistillationLoss, WeightBalanceLoss
from .glam import GLAMLoss
from .lanet import LANetStage2Loss, LesionMapLoss, mask_to_grid
from .multitask import MultiTaskSegClsLoss, UncertaintyWeightedLoss

__all__ = ["GLAMLoss", "LANetStage2Loss", "LesionMapLoss", "MultiTaskSegClsLoss",
           "SoftDistillationLoss", "UncertaintyWeightedLoss", "WeightBalanceLoss", "mask_to_grid"]
