"""captum_medcam: explain 2D and 3D medical image classifiers, and measure how faithful
the explanations are. Methods are Captum ``Attribution`` subclasses.

>>> from captum_medcam import ScoreCAM3D
"""

from importlib.metadata import PackageNotFoundError, version

from captum_medcam.attr import ScoreCAM, ScoreCAM3D
from captum_medcam.data import MEDMNIST_3D_FLAGS, MedMNIST3D
from captum_medcam.evaluation import EvaluationResult, evaluate_dataset, run_distributed

try:
    __version__ = version("captum-medcam")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0+unknown"

__all__ = [
    "MEDMNIST_3D_FLAGS",
    "EvaluationResult",
    "MedMNIST3D",
    "ScoreCAM",
    "ScoreCAM3D",
    "__version__",
    "evaluate_dataset",
    "run_distributed",
]
