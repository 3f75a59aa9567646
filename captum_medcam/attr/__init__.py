"""Attribution methods: Captum ``Attribution`` subclasses for 1D, 2D and 3D inputs."""

from captum_medcam.attr._score_cam import ScoreCAM, ScoreCAM3D

__all__ = ["ScoreCAM", "ScoreCAM3D"]
