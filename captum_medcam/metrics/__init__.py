"""Metrics over precomputed attributions: localization against masks and sanity checks.

Every metric returns one value per example, works for 1, 2 and 3 spatial dims and runs on
the attributions' device.
"""

from captum_medcam.metrics._localization import (
    attribution_dice,
    attribution_iou,
    energy_pointing_game,
    pointing_game,
    relevance_rank_accuracy,
)
from captum_medcam.metrics._sanity import RandomizationResult, model_parameter_randomization
from captum_medcam.metrics._similarity import spearman_rank_correlation, structural_similarity

__all__ = [
    "RandomizationResult",
    "attribution_dice",
    "attribution_iou",
    "energy_pointing_game",
    "model_parameter_randomization",
    "pointing_game",
    "relevance_rank_accuracy",
    "spearman_rank_correlation",
    "structural_similarity",
]
