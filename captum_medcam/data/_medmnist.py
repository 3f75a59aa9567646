"""MedMNIST 2D and 3D data sets as float32 tensors, for MONAI transforms and ``DataLoader``s."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import torch
from torch.utils.data import Dataset

from captum_medcam._core.checks import check_flags

__all__ = ["MEDMNIST_2D_FLAGS", "MEDMNIST_3D_FLAGS", "MedMNIST2D", "MedMNIST3D"]

#: The six 3D data sets of MedMNIST v2 (medmnist's ``flag`` names).
MEDMNIST_3D_FLAGS = (
    "organmnist3d",
    "nodulemnist3d",
    "adrenalmnist3d",
    "fracturemnist3d",
    "vesselmnist3d",
    "synapsemnist3d",
)
#: The twelve 2D data sets of MedMNIST v2 (``chestmnist`` is multi-label).
MEDMNIST_2D_FLAGS = (
    "pathmnist",
    "chestmnist",
    "dermamnist",
    "octmnist",
    "pneumoniamnist",
    "retinamnist",
    "breastmnist",
    "bloodmnist",
    "tissuemnist",
    "organamnist",
    "organcmnist",
    "organsmnist",
)
_SIZES = (28, 64)
_SIZES_2D = (28, 64, 128, 224)
_SPLITS = ("train", "val", "test")


def _check_request(
    flag: object,
    split: object,
    size: object,
    root: object,
    download: object,
    transform: object,
    as_dict: object,
    flags: tuple[str, ...],
    sizes: tuple[int, ...],
    kind: str,
) -> None:
    """The arguments of :class:`MedMNIST2D` and :class:`MedMNIST3D`, checked before any file
    is read (``kind`` is ``"2D"`` or ``"3D"``, for the messages)."""
    check_flags(download=download, as_dict=as_dict)
    if transform is not None and not callable(transform):
        raise TypeError(f"transform must be callable or None, got {transform!r}")
    if root is not None and not isinstance(root, (str, os.PathLike)):
        raise TypeError(f"root must be a path or None, got {root!r}")
    if not isinstance(flag, str) or flag not in flags:
        raise ValueError(f"flag must be one of {list(flags)}, got {flag!r}")
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {list(_SPLITS)}, got {split!r}")
    if size not in sizes:
        raise ValueError(
            f"size must be one of {list(sizes)} for the {kind} data sets, got {size!r}"
        )


def _load_arrays(
    flag: str, split: str, size: int, root: str | os.PathLike[str] | None, download: bool
) -> tuple[Any, Any, dict[str, Any], str]:
    """``(images, labels, info, root)`` read by medmnist's own class, sample count checked."""
    import medmnist
    from medmnist.info import DEFAULT_ROOT, INFO

    info = INFO[flag]
    root = os.fspath(root) if root is not None else DEFAULT_ROOT
    source = getattr(medmnist, info["python_class"])(
        split=split, root=root, size=size, download=download
    )
    images, labels = source.imgs, source.labels
    expected = info["n_samples"][split]
    if images.shape[0] != expected or labels.shape[0] != expected:
        raise ValueError(
            f"{flag} (size {size}) split {split!r} in {root} has {images.shape[0]} images and "
            f"{labels.shape[0]} labels, medmnist expects {expected}: an incomplete or "
            "foreign file? Delete it and download it again"
        )
    return images, labels, info, root


class MedMNIST3D(Dataset[Any]):
    """A MedMNIST 3D data set: ``(1, S, S, S)`` float32 volumes in [0, 1] and class indices.

    The files are read (and, with ``download=True``, downloaded) by medmnist's own code:
    ``{flag}.npz`` for size 28 and ``{flag}_64.npz`` for size 64 in ``root``, with the
    arrays ``train_images``, ``train_labels``, ``val_images``, ... The number of samples is
    checked against medmnist's ``INFO`` table, which catches incomplete files.

    References:
        Yang, Shi, Wei, Liu, Zhao, Ke, Pfister, Ni. "MedMNIST v2 - A large-scale lightweight
        benchmark for 2D and 3D biomedical image classification". Scientific Data 10, 41,
        2023. arXiv:2110.14795.

    Args:
        flag: one of :data:`MEDMNIST_3D_FLAGS`, e.g. ``"organmnist3d"``.
        split: ``"train"``, ``"val"`` or ``"test"``.
        size: 28 or 64 (edge length of the cube).
        root: folder of the ``.npz`` files (default: medmnist's, ``~/.medmnist``).
        download: download the file with medmnist if it is missing.
        transform: applied to the image ``(1, S, S, S)`` (``as_dict=False``) or to the whole
            sample dict (``as_dict=True``, for MONAI dictionary transforms).
        as_dict: return ``{"image": image, "label": label}`` instead of ``(image, label)``.

    Attributes:
        classes: class names from medmnist's ``INFO``, indexed by label.
        info: medmnist's ``INFO`` entry for ``flag``.

    Raises:
        ValueError: an unknown flag, split or size; a file whose sample count is not the
            one medmnist expects.
        RuntimeError: the file is missing and ``download`` is False (medmnist's error).

    Example::

        data = MedMNIST3D("organmnist3d", split="test", size=64, download=True)
        image, label = data[0]          # (1, 64, 64, 64) float32, int
        data.classes[label]             # e.g. 'liver'
    """

    def __init__(
        self,
        flag: str,
        split: str = "test",
        size: int = 28,
        root: str | os.PathLike[str] | None = None,
        download: bool = False,
        transform: Callable[[Any], Any] | None = None,
        as_dict: bool = False,
    ) -> None:
        _check_request(
            flag, split, size, root, download, transform, as_dict, MEDMNIST_3D_FLAGS, _SIZES, "3D"
        )
        images, labels, info, root = _load_arrays(flag, split, size, root, download)
        if images.shape[1:] != (size, size, size):
            raise ValueError(
                f"{flag} split {split!r} holds images of shape {images.shape[1:]}, expected {(size,) * 3}"
            )
        self.flag, self.split, self.size = flag, split, size
        self.info = info
        self.classes = [info["label"][str(i)] for i in range(len(info["label"]))]
        self.transform = transform
        self.as_dict = as_dict
        self._images = torch.from_numpy(images)
        self._labels = torch.from_numpy(labels.reshape(labels.shape[0], -1)[:, 0].astype("int64"))

    def __len__(self) -> int:
        return int(self._images.shape[0])

    def __getitem__(self, index: int) -> Any:
        image = self._images[index].unsqueeze(0).to(torch.float32).div_(255.0)
        label = int(self._labels[index])
        if self.as_dict:
            sample: dict[str, Any] = {"image": image, "label": label}
            return self.transform(sample) if self.transform is not None else sample
        if self.transform is not None:
            image = self.transform(image)
        return image, label

    def __repr__(self) -> str:
        return (
            f"MedMNIST3D({self.flag!r}, split={self.split!r}, size={self.size}, "
            f"{len(self)} samples, {len(self.classes)} classes)"
        )


class MedMNIST2D(Dataset[Any]):
    """A MedMNIST 2D data set: ``(C, S, S)`` float32 images in [0, 1] and their labels.

    Read exactly as :class:`MedMNIST3D` (medmnist's own code and file names,
    ``{flag}.npz`` for size 28 and ``{flag}_{size}.npz`` otherwise, the sample count
    checked against medmnist's ``INFO``). Grey images have ``C = 1``, colour ones
    (``pathmnist``, ``dermamnist``, ``bloodmnist``, ``retinamnist``) ``C = 3``. The label is
    an int, except for the multi-label ``chestmnist`` (14 findings) where it is a ``(14,)``
    int64 tensor of 0/1.

    References:
        Yang et al. "MedMNIST v2". Scientific Data 10, 41, 2023. arXiv:2110.14795.

    Args:
        flag: one of :data:`MEDMNIST_2D_FLAGS`, e.g. ``"pneumoniamnist"``.
        split: ``"train"``, ``"val"`` or ``"test"``.
        size: 28, 64, 128 or 224 (edge of the square image).
        root, download, transform, as_dict: as in :class:`MedMNIST3D`.

    Attributes:
        classes: class names from medmnist's ``INFO``, indexed by label.
        info: medmnist's ``INFO`` entry for ``flag``.
        multi_label: True for ``chestmnist``.

    Raises:
        ValueError: an unknown flag, split or size; a file whose sample count is not the
            one medmnist expects.
        RuntimeError: the file is missing and ``download`` is False (medmnist's error).

    Example::

        data = MedMNIST2D("chestmnist", split="test", size=64, download=True)
        image, label = data[0]          # (1, 64, 64) float32, (14,) int64
    """

    def __init__(
        self,
        flag: str,
        split: str = "test",
        size: int = 28,
        root: str | os.PathLike[str] | None = None,
        download: bool = False,
        transform: Callable[[Any], Any] | None = None,
        as_dict: bool = False,
    ) -> None:
        _check_request(
            flag,
            split,
            size,
            root,
            download,
            transform,
            as_dict,
            MEDMNIST_2D_FLAGS,
            _SIZES_2D,
            "2D",
        )
        images, labels, info, root = _load_arrays(flag, split, size, root, download)
        if images.shape[1:3] != (size, size) or images.ndim not in (3, 4):
            raise ValueError(
                f"{flag} split {split!r} holds images of shape {images.shape[1:]}, expected "
                f"{(size, size)} or {(size, size, 3)}"
            )
        self.flag, self.split, self.size = flag, split, size
        self.info = info
        self.classes = [info["label"][str(i)] for i in range(len(info["label"]))]
        self.multi_label = info["task"].startswith("multi-label")
        self.transform = transform
        self.as_dict = as_dict
        imgs = torch.from_numpy(images)
        # (N, H, W) -> (N, 1, H, W); (N, H, W, 3) -> (N, 3, H, W)
        self._images = imgs.unsqueeze(1) if imgs.dim() == 3 else imgs.permute(0, 3, 1, 2)
        labels = torch.from_numpy(labels.reshape(labels.shape[0], -1).astype("int64"))
        self._labels = labels if self.multi_label else labels[:, 0]

    def __len__(self) -> int:
        return int(self._images.shape[0])

    def __getitem__(self, index: int) -> Any:
        image = self._images[index].to(torch.float32).div_(255.0)
        label: Any = self._labels[index].clone() if self.multi_label else int(self._labels[index])
        if self.as_dict:
            sample: dict[str, Any] = {"image": image, "label": label}
            return self.transform(sample) if self.transform is not None else sample
        if self.transform is not None:
            image = self.transform(image)
        return image, label

    def __repr__(self) -> str:
        return (
            f"MedMNIST2D({self.flag!r}, split={self.split!r}, size={self.size}, "
            f"{len(self)} samples, {len(self.classes)} classes)"
        )
