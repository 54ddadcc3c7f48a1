"""MONAI transforms: mammograms (breast side, crop, mask, results put back), clicks, multi-output postprocessing."""

from .clicks import AddClickChannelsd, AddClickd, ClickSignald, check_points, next_click
from .mammo import CropBreastd, MaskBreastd, OrientBreastd, RestoreBreastd, RestoreWindowsd
from .outputs import UnpackOutputsd

__all__ = ["AddClickChannelsd", "AddClickd", "ClickSignald", "CropBreastd", "MaskBreastd", "OrientBreastd",
           "RestoreBreastd", "RestoreWindowsd", "UnpackOutputsd", "check_points", "next_click"]
