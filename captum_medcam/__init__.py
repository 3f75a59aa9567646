"""captum_medcam: explain 2D and 3D medical image classifiers, and measure how faithful
the explanations are. Methods are Captum ``Attribution`` subclasses.

>>> from captum_medcam import ScoreCAM3D
"""

from importlib.metadata import PackageNotFoundError, version

from captum_medcam.attr import ScoreCAM, ScoreCAM3D
from captum_medcam.metrics import (
    RandomizationResult,
    attribution_dice,
    attribution_iou,
    energy_pointing_game,
    model_parameter_randomization,
    pointing_game,
    relevance_rank_accuracy,
    spearman_rank_correlation,
    structural_similarity,
)
from captum_medcam.visualization import plot_randomization

try:
    __version__ = version("captum-medcam")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0+unknown"

__all__ = [
    "RandomizationResult",
    "ScoreCAM",
    "ScoreCAM3D",
    "__version__",
    "attribution_dice",
    "attribution_iou",
    "energy_pointing_game",
    "model_parameter_randomization",
    "plot_randomization",
    "pointing_game",
    "relevance_rank_accuracy",
    "spearman_rank_correlation",
    "structural_similarity",
]
