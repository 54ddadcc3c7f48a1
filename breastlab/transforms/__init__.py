"""MONAI transforms: mammograms (inverted display, breast side, crop, mask, results put back), clicks, multi-output
postprocessing, temperature-scaled logits and a BI-RADS suggestion, the lesion-presence gate, box and click prompts,
ultrasound-scanner augmentation."""

from .calibration import BiradsSuggestiond, TemperatureScaled
from .clicks import AddClickChannelsd, AddClickd, ClickSignald, check_points, next_click
from .gates import LesionGated, lesion_present
from .mammo import CropBreastd, MaskBreastd, OrientBreastd, RestoreBreastd, RestoreWindowsd, UninvertMammogramd
from .outputs import UnpackOutputsd
from .prompts import HonourClicksd, PromptsToNetworkd, check_roi
from .scanner import RandScreenMarksd, scanner_augmentation

__all__ = [
    "AddClickChannelsd",
    "AddClickd",
    "BiradsSuggestiond",
    "ClickSignald",
    "CropBreastd",
    "HonourClicksd",
    "LesionGated",
    "MaskBreastd",
    "OrientBreastd",
    "PromptsToNetworkd",
    "RandScreenMarksd",
    "RestoreBreastd",
    "RestoreWindowsd",
    "TemperatureScaled",
    "UninvertMammogramd",
    "UnpackOutputsd",
    "check_points",
    "check_roi",
    "lesion_present",
    "next_click",
    "scanner_augmentation",
]
