"""Figures and reports. matplotlib is imported inside the functions, not here."""

from captum_medcam.visualization._curves import plot_deletion_insertion
from captum_medcam.visualization._report import ReportExample, write_report
from captum_medcam.visualization._sanity import plot_randomization
from captum_medcam.visualization._slices import plot_slices

__all__ = [
    "ReportExample",
    "plot_deletion_insertion",
    "plot_randomization",
    "plot_slices",
    "write_report",
]
