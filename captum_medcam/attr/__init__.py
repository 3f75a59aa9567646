"""Attribution methods: Captum ``Attribution`` subclasses for 1D, 2D and 3D inputs."""

from captum_medcam.attr._ablation_cam import AblationCAM, AblationCAM3D
from captum_medcam.attr._crm import CRM, CRM3D
from captum_medcam.attr._ensemble import EnsembleAttribution
from captum_medcam.attr._fixations import CNNFixations
from captum_medcam.attr._grad_cam import GradCAM, GradCAM3D
from captum_medcam.attr._grad_cam_plusplus import GradCAMPlusPlus, GradCAMPlusPlus3D
from captum_medcam.attr._guided_grad_cam import GuidedGradCAM3D
from captum_medcam.attr._hires_cam import HiResCAM, HiResCAM3D
from captum_medcam.attr._layer_cam import LayerCAM, LayerCAM3D
from captum_medcam.attr._score_cam import ScoreCAM, ScoreCAM3D
from captum_medcam.attr._smoothed_score_cam import ISCAM, ISCAM3D, SSCAM, SSCAM3D
from captum_medcam.attr._xgrad_cam import XGradCAM, XGradCAM3D

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
    "GradCAM",
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
]
