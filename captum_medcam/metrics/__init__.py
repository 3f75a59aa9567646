"""Metrics over precomputed attributions, one value per example, for 1, 2 and 3 spatial dims.

Plain functions in the style of ``captum.metrics.infidelity``: they take the model (where
needed), the inputs and any attribution tensor (from this library or from Captum).
Faithfulness (deletion, insertion, AOPC, ROAD, average drop and increase in confidence),
localization against masks, and sanity checks (of the attributions, and of the metrics
themselves: :func:`metric_sanity_check`).
"""

from captum_medcam.metrics._aopc import aopc, aopc_curve, region_labels
from captum_medcam.metrics._baselines import (
    blur_baseline,
    gaussian_blur,
    mean_baseline,
    normal_noise_baseline,
    uniform_noise_baseline,
)
from captum_medcam.metrics._confidence import average_drop, increase_in_confidence
from captum_medcam.metrics._deletion_insertion import (
    deletion_auc,
    deletion_curve,
    deletion_insertion_auc,
    deletion_insertion_curves,
    insertion_auc,
    insertion_curve,
)
from captum_medcam.metrics._localization import (
    attribution_dice,
    attribution_iou,
    energy_pointing_game,
    pointing_game,
    relevance_rank_accuracy,
)
from captum_medcam.metrics._metric_sanity import (
    MetricSanityResult,
    MetricSanityRow,
    metric_sanity_check,
)
from captum_medcam.metrics._perturbation import DegenerateCurveWarning, PerturbationCurve, auc
from captum_medcam.metrics._road import noisy_linear_imputation, road, road_curve
from captum_medcam.metrics._sanity import RandomizationResult, model_parameter_randomization
from captum_medcam.metrics._similarity import spearman_rank_correlation, structural_similarity
from captum_medcam.metrics._summary import Summary, correctly_classified, summarize

__all__ = [
    "DegenerateCurveWarning",
    "MetricSanityResult",
    "MetricSanityRow",
    "PerturbationCurve",
    "RandomizationResult",
    "Summary",
    "aopc",
    "aopc_curve",
    "attribution_dice",
    "attribution_iou",
    "auc",
    "average_drop",
    "blur_baseline",
    "correctly_classified",
    "deletion_auc",
    "deletion_curve",
    "deletion_insertion_auc",
    "deletion_insertion_curves",
    "energy_pointing_game",
    "gaussian_blur",
    "increase_in_confidence",
    "insertion_auc",
    "insertion_curve",
    "mean_baseline",
    "metric_sanity_check",
    "model_parameter_randomization",
    "noisy_linear_imputation",
    "normal_noise_baseline",
    "pointing_game",
    "region_labels",
    "relevance_rank_accuracy",
    "road",
    "road_curve",
    "spearman_rank_correlation",
    "structural_similarity",
    "summarize",
    "uniform_noise_baseline",
]
