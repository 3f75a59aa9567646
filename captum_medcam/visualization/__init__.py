"""Figures and reports. matplotlib is imported inside the functions, never at import."""

from captum_medcam.visualization._curves import plot_deletion_insertion

__all__ = ["plot_deletion_insertion"]
