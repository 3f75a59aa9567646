"""captum_medcam: explain 2D and 3D medical image classifiers, and measure how faithful
the explanations are. Methods are Captum ``Attribution`` subclasses.

>>> from captum_medcam import ScoreCAM3D
"""

from importlib.metadata import PackageNotFoundError, version

from captum_medcam.attr import (
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

try:
    __version__ = version("captum-medcam")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0+unknown"

__all__ = [
    "GradCAM3D",
    "GradCAMPlusPlus",
    "GradCAMPlusPlus3D",
    "GuidedGradCAM3D",
    "HiResCAM",
    "HiResCAM3D",
    "LayerCAM",
    "LayerCAM3D",
    "ScoreCAM",
    "ScoreCAM3D",
    "XGradCAM",
    "XGradCAM3D",
    "__version__",
]
