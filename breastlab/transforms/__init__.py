"""MONAI transforms for mammograms (breast side, crop, mask, results put back) and for click-guided segmentation."""

from .clicks import AddClickChannelsd, AddClickd, ClickSignald, check_points, next_click
from .mammo import CropBreastd, MaskBreastd, OrientBreastd, RestoreBreastd, RestoreWindowsd

__all__ = ["AddClickChannelsd", "AddClickd", "ClickSignald", "CropBreastd", "MaskBreastd", "OrientBreastd",
           "RestoreBreastd", "RestoreWindowsd", "check_points", "next_click"]
