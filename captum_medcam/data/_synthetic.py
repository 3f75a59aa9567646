"""A synthetic 3D data set with ground truth: CT-like volumes with or without a lesion."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.data import Dataset

from captum_medcam._core.checks import check_int, check_positive_int

__all__ = ["SyntheticLesions"]


class SyntheticLesions(Dataset[dict[str, Tensor]]):
    """Volumes of a soft-tissue "body" with a few bright distractor blobs; label 1 adds a
    small, brighter spherical lesion whose mask is returned, so an explanation can be
    checked against the truth.

    Every item is generated from ``seed + index``, so the data set is identical on every
    machine and costs no download.

    Args:
        length: number of volumes.
        size: edge of the cubic volume in voxels.
        seed: base seed.

    Returns (per item):
        ``{"image": (1, S, S, S) float32, "label": () long, "mask": (1, S, S, S) bool}``;
        the mask is empty for label 0.

    Example:
        >>> from captum_medcam.data import SyntheticLesions
        >>> item = SyntheticLesions(4, size=16)[1]
        >>> item["image"].shape, int(item["label"])
        (torch.Size([1, 16, 16, 16]), 1)
    """

    def __init__(self, length: int = 64, size: int = 32, seed: int = 0) -> None:
        check_positive_int(length, "length")
        check_int(size, "size", low=8)
        check_int(seed, "seed", low=0)
        self.length, self.size, self.seed = length, size, seed

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} volumes")
        g = torch.Generator().manual_seed(self.seed * 100_003 + index)
        s = self.size
        axis = torch.linspace(-1, 1, s)
        zz, yy, xx = torch.meshgrid(axis, axis, axis, indexing="ij")
        body = ((zz / 0.9) ** 2 + (yy / 0.75) ** 2 + (xx / 0.85) ** 2 <= 1).float()
        image = 0.3 * body + 0.05 * torch.randn(s, s, s, generator=g)
        for _ in range(3):  # distractors: larger, dimmer blobs
            c = (torch.rand(3, generator=g) - 0.5) * 1.0
            r2 = (zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2
            image += 0.25 * torch.exp(-r2 / 0.05) * body
        label = index % 2
        mask = torch.zeros(s, s, s, dtype=torch.bool)
        if label:
            c = (torch.rand(3, generator=g) - 0.5) * 0.9
            radius = 0.18 + 0.1 * float(torch.rand((), generator=g))
            mask = ((zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2) <= radius**2
            image += 0.8 * mask.float()
        return {
            "image": image.unsqueeze(0),
            "label": torch.tensor(label, dtype=torch.long),
            "mask": mask.unsqueeze(0),
        }
