"""Active learning: uncertainty (test-time-augmentation disagreement, entropy), diversity (features, clusters,
typicality) and the simulated study that compares strategies."""

from .uncertainty import lesion_uncertainty, predictive_entropy, tta_probabilities

__all__ = ["lesion_uncertainty", "predictive_entropy", "tta_probabilities"]
