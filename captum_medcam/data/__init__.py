"""Data sets: MedMNIST 2D and 3D (read with medmnist, imported only when a data set is
made) and a synthetic lesion set with ground-truth masks for tutorials, tests and the demo."""

from captum_medcam.data._medmnist import (
    MEDMNIST_2D_FLAGS,
    MEDMNIST_3D_FLAGS,
    MedMNIST2D,
    MedMNIST3D,
)
from captum_medcam.data._synthetic import SyntheticLesions

__all__ = ["MEDMNIST_2D_FLAGS", "MEDMNIST_3D_FLAGS", "MedMNIST2D", "MedMNIST3D", "SyntheticLesions"]
