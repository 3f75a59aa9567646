"""Data sets: MedMNIST 3D (read with medmnist, imported only when a data set is made)."""

from captum_medcam.data._medmnist import MEDMNIST_3D_FLAGS, MedMNIST3D

__all__ = ["MEDMNIST_3D_FLAGS", "MedMNIST3D"]
