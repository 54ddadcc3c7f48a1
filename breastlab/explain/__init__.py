"""Explanation and uncertainty: Grad-CAM and map regions as boxes, test-time-augmentation variance and entropy."""

from .saliency import GradCam, GradCamPredictor, UnitRangeMap, top_boxes, unit_range
from .uncertainty import predictive_entropy, tta_probabilities, tta_variance

__all__ = ["GradCam", "GradCamPredictor", "UnitRangeMap", "predictive_entropy", "top_boxes", "tta_probabilities",
           "tta_variance", "unit_range"]
