"""Data sets for tutorials, tests and the demo."""

from captum_medcam.data._synthetic import SyntheticLesions

__all__ = ["SyntheticLesions"]
