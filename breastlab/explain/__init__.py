"""Explanation and uncertainty: Grad-CAM and map regions as boxes, test-time-augmentation disagreement and entropy."""

from .saliency import GradCam, GradCamPredictor, UnitRangeMap, top_boxes, unit_range
from .uncertainty import lesion_uncertainty, predictive_entropy, tta_probabilities

__all__ = ["GradCam", "GradCamPredictor", "UnitRangeMap", "predictive_entropy", "top_boxes", "tta_probabilities",
           "lesion_uncertainty", "unit_range"]
