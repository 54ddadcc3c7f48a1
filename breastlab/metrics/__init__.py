"""Segmentation and classification metrics, and plain-text tables to print them."""

from .classification import classification_scores, multiclass_scores
from .report import format_ci, format_table
from .segmentation import segmentation_scores, summarize_segmentation

__all__ = [
    "classification_scores",
    "format_ci",
    "format_table",
    "multiclass_scores",
    "segmentation_scores",
    "summarize_segmentation",
]
