"""captum_medcam: explain 2D and 3D medical image classifiers, and measure how faithful
the explanations are. Methods are Captum ``Attribution`` subclasses.

>>> from captum_medcam import ScoreCAM3D
"""

from importlib.metadata import PackageNotFoundError, version

from captum_medcam.attr import ScoreCAM, ScoreCAM3D
from captum_medcam.metrics import (
    PerturbationCurve,
    Summary,
    aopc,
    aopc_curve,
    auc,
    blur_baseline,
    correctly_classified,
    deletion_auc,
    deletion_curve,
    deletion_insertion_auc,
    deletion_insertion_curves,
    gaussian_blur,
    insertion_auc,
    insertion_curve,
    mean_baseline,
    normal_noise_baseline,
    region_labels,
    summarize,
    uniform_noise_baseline,
)
from captum_medcam.visualization import plot_deletion_insertion

try:
    __version__ = version("captum-medcam")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0+unknown"

__all__ = [
    "PerturbationCurve",
    "ScoreCAM",
    "ScoreCAM3D",
    "Summary",
    "__version__",
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
    "plot_deletion_insertion",
    "region_labels",
    "summarize",
    "uniform_noise_baseline",
]
