"""Figures. matplotlib is imported inside the functions, never at ``import captum_medcam``."""

from captum_medcam.visualization._sanity import plot_randomization

__all__ = ["plot_randomization"]
