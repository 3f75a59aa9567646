"""captum_medcam: explain 2D and 3D medical image classifiers, and measure how faithful
the explanations are. Methods are Captum ``Attribution`` subclasses; metrics are plain
functions in :mod:`captum_medcam.metrics`, as in :mod:`captum.metrics`.

>>> from captum_medcam import ScoreCAM3D
"""

from importlib.metadata import PackageNotFoundError, version

from captum_medcam import attr, data, metrics, reshapes, visualization
from captum_medcam._core.engine import PerturbationOptions, perturbation_options
from captum_medcam.attr import (
    CRM,
    CRM3D,
    ISCAM,
    ISCAM3D,
    SSCAM,
    SSCAM3D,
    AblationCAM,
    AblationCAM3D,
    CNNFixations,
    EnsembleAttribution,
    GradCAM,
    GradCAM3D,
    GradCAMPlusPlus,
    GradCAMPlusPlus3D,
    GuidedGradCAM3D,
    HiResCAM,
    HiResCAM3D,
    LayerCAM,
    LayerCAM3D,
    ScoreCAM,
    ScoreCAM3D,
    XGradCAM,
    XGradCAM3D,
)
from captum_medcam.data import MedMNIST3D
from captum_medcam.evaluation import EvaluationResult, evaluate_dataset, run_distributed

try:
    __version__ = version("captum-medcam")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0+unknown"

__all__ = [
    "CRM",
    "CRM3D",
    "ISCAM",
    "ISCAM3D",
    "SSCAM",
    "SSCAM3D",
    "AblationCAM",
    "AblationCAM3D",
    "CNNFixations",
    "EnsembleAttribution",
    "EvaluationResult",
    "GradCAM",
    "GradCAM3D",
    "GradCAMPlusPlus",
    "GradCAMPlusPlus3D",
    "GuidedGradCAM3D",
    "HiResCAM",
    "HiResCAM3D",
    "LayerCAM",
    "LayerCAM3D",
    "MedMNIST3D",
    "PerturbationOptions",
    "ScoreCAM",
    "ScoreCAM3D",
    "XGradCAM",
    "XGradCAM3D",
    "__version__",
    "attr",
    "data",
    "evaluate_dataset",
    "metrics",
    "perturbation_options",
    "reshapes",
    "run_distributed",
    "visualization",
]
