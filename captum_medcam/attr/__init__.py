"""Attribution methods: Captum ``Attribution`` subclasses for 1D, 2D and 3D inputs."""

from captum_medcam.attr._ablation_cam import AblationCAM, AblationCAM3D
from captum_medcam.attr._class_activation_map import CAM, CAM3D
from captum_medcam.attr._crm import CRM, CRM3D
from captum_medcam.attr._eigen_cam import EigenCAM, EigenCAM3D
from captum_medcam.attr._eigen_grad_cam import EigenGradCAM, EigenGradCAM3D
from captum_medcam.attr._ensemble import EnsembleAttribution
from captum_medcam.attr._fem import FEM, FEM3D
from captum_medcam.attr._finer_cam import FinerCAM, FinerCAM3D
from captum_medcam.attr._fixations import CNNFixations
from captum_medcam.attr._full_grad import FullGrad, FullGrad3D
from captum_medcam.attr._grad_cam import GradCAM, GradCAM3D
from captum_medcam.attr._grad_cam_elementwise import GradCAMElementWise, GradCAMElementWise3D
from captum_medcam.attr._grad_cam_plusplus import GradCAMPlusPlus, GradCAMPlusPlus3D
from captum_medcam.attr._guided_grad_cam import GuidedGradCAM3D
from captum_medcam.attr._hires_cam import HiResCAM, HiResCAM3D
from captum_medcam.attr._kpca_cam import KPCACAM, KPCACAM3D
from captum_medcam.attr._layer_cam import LayerCAM, LayerCAM3D
from captum_medcam.attr._score_cam import ScoreCAM, ScoreCAM3D
from captum_medcam.attr._shapley_cam import ShapleyCAM, ShapleyCAM3D
from captum_medcam.attr._smooth_grad_cam import SmoothGradCAMPlusPlus, SmoothGradCAMPlusPlus3D
from captum_medcam.attr._smoothed_score_cam import ISCAM, ISCAM3D, SSCAM, SSCAM3D
from captum_medcam.attr._xgrad_cam import XGradCAM, XGradCAM3D

__all__ = [
    "CAM",
    "CAM3D",
    "CRM",
    "CRM3D",
    "FEM",
    "FEM3D",
    "ISCAM",
    "ISCAM3D",
    "KPCACAM",
    "KPCACAM3D",
    "SSCAM",
    "SSCAM3D",
    "AblationCAM",
    "AblationCAM3D",
    "CNNFixations",
    "EigenCAM",
    "EigenCAM3D",
    "EigenGradCAM",
    "EigenGradCAM3D",
    "EnsembleAttribution",
    "FinerCAM",
    "FinerCAM3D",
    "FullGrad",
    "FullGrad3D",
    "GradCAM",
    "GradCAM3D",
    "GradCAMElementWise",
    "GradCAMElementWise3D",
    "GradCAMPlusPlus",
    "GradCAMPlusPlus3D",
    "GuidedGradCAM3D",
    "HiResCAM",
    "HiResCAM3D",
    "LayerCAM",
    "LayerCAM3D",
    "ScoreCAM",
    "ScoreCAM3D",
    "ShapleyCAM",
    "ShapleyCAM3D",
    "SmoothGradCAMPlusPlus",
    "SmoothGradCAMPlusPlus3D",
    "XGradCAM",
    "XGradCAM3D",
]
