"""Segmentation, classification and calibration metrics, BI-RADS suggestions, and plain-text tables to print them."""

from .birads import birads_probabilities, fit_birads, malignancy_by_category, suggested_categories, weighted_kappa
from .calibration import (
    apply_temperature,
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
    reliability_bins,
)
from .classification import classification_scores, multiclass_scores
from .report import format_ci, format_table
from .segmentation import segmentation_scores, summarize_segmentation

__all__ = [
    "apply_temperature",
    "birads_probabilities",
    "classification_scores",
    "expected_calibration_error",
    "fit_birads",
    "fit_temperature",
    "format_ci",
    "format_table",
    "malignancy_by_category",
    "multiclass_scores",
    "negative_log_likelihood",
    "reliability_bins",
    "segmentation_scores",
    "suggested_categories",
    "summarize_segmentation",
    "weighted_kappa",
]
