"""MONAI transforms: mammograms (breast side, crop, mask, results put back), clicks, multi-output postprocessing,
the lesion-presence gate."""

from .clicks import AddClickChannelsd, AddClickd, ClickSignald, check_points, next_click
from .gates import LesionGated, lesion_present
from .mammo import CropBreastd, MaskBreastd, OrientBreastd, RestoreBreastd, RestoreWindowsd
from .outputs import UnpackOutputsd

__all__ = ["AddClickChannelsd", "AddClickd", "ClickSignald", "CropBreastd", "LesionGated", "MaskBreastd",
           "OrientBreastd",
           "RestoreBreastd", "RestoreWindowsd", "UnpackOutputsd", "check_points", "lesion_present", "next_click"]
