"""Attribution methods: Captum ``Attribution`` subclasses for 1D, 2D and 3D inputs."""

from captum_medcam.attr._crm import CRM, CRM3D
from captum_medcam.attr._fixations import CNNFixations
from captum_medcam.attr._score_cam import ScoreCAM, ScoreCAM3D

__all__ = ["CRM", "CRM3D", "CNNFixations", "ScoreCAM", "ScoreCAM3D"]
