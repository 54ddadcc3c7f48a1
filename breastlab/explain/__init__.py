"""Explanation: Grad-CAM of a classifier and the top regions of any map as boxes."""

from .saliency import GradCam, GradCamPredictor, UnitRangeMap, top_boxes, unit_range

__all__ = ["GradCam", "GradCamPredictor", "UnitRangeMap", "top_boxes", "unit_range"]
