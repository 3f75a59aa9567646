"""Faithfulness metrics over precomputed attributions, one value per example.

Plain functions in the style of ``captum.metrics.infidelity``: they take the model, the
inputs and any attribution tensor (from this library or from Captum) and return ``(N,)``.
"""

from captum_medcam.metrics._aopc import aopc, aopc_curve, region_labels
from captum_medcam.metrics._baselines import (
    blur_baseline,
    gaussian_blur,
    mean_baseline,
    normal_noise_baseline,
    uniform_noise_baseline,
)
from captum_medcam.metrics._deletion_insertion import (
    deletion_auc,
    deletion_curve,
    deletion_insertion_auc,
    deletion_insertion_curves,
    insertion_auc,
    insertion_curve,
)
from captum_medcam.metrics._perturbation import PerturbationCurve, auc
from captum_medcam.metrics._summary import Summary, correctly_classified, summarize

__all__ = [
    "PerturbationCurve",
    "Summary",
    "aopc",
    "aopc_curve",
    "auc",
    "blur_baseline",
    "correctly_classified",
    "deletion_auc",
    "deletion_curve",
    "deletion_insertion_auc",
    "deletion_insertion_curves",
    "gaussian_blur",
    "insertion_auc",
    "insertion_curve",
    "mean_baseline",
    "normal_noise_baseline",
    "region_labels",
    "summarize",
    "uniform_noise_baseline",
]
