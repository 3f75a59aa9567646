"""MedMNIST3D on .npz files written in medmnist's real format and file names, offline."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from medmnist.info import INFO
from monai.transforms import Compose, SpatialPadd
from torch.utils.data import DataLoader

from captum_medcam.data import MEDMNIST_3D_FLAGS, MedMNIST3D

COUNTS = {"train": 4, "val": 2, "test": 3}


def write_npz(root, flag: str, size: int, counts=COUNTS, seed: int = 0) -> dict[str, np.ndarray]:
    """Write ``{flag}.npz`` (28) or ``{flag}_64.npz`` with medmnist's keys; return the arrays."""
    rng = np.random.default_rng(seed)
    n_classes = len(INFO[flag]["label"])
    arrays = {}
    for split, n in counts.items():
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, size, size, size), dtype=np.uint8)
        arrays[f"{split}_labels"] = rng.integers(0, n_classes, (n, 1), dtype=np.uint8)
    name = f"{flag}.npz" if size == 28 else f"{flag}_{size}.npz"
    np.savez_compressed(root / name, **arrays)
    return arrays


@pytest.fixture
def small_counts(monkeypatch):
    """medmnist checks the number of samples against INFO: make INFO expect our small files."""
    for flag in MEDMNIST_3D_FLAGS:
        monkeypatch.setitem(INFO[flag], "n_samples", dict(COUNTS))


@pytest.mark.parametrize("flag", MEDMNIST_3D_FLAGS)
def test_every_flag_at_28(tmp_path, small_counts, flag):
    arrays = write_npz(tmp_path, flag, 28)
    data = MedMNIST3D(flag, split="val", root=tmp_path)
    assert len(data) == 2
    image, label = data[1]
    assert image.dtype == torch.float32 and image.shape == (1, 28, 28, 28)
    np.testing.assert_allclose(image[0].numpy(), arrays["val_images"][1] / 255.0, rtol=1e-6)
    assert isinstance(label, int) and label == int(arrays["val_labels"][1, 0])
    assert data.classes == [INFO[flag]["label"][str(i)] for i in range(len(INFO[flag]["label"]))]


def test_size_64_file_and_loader(tmp_path, small_counts):
    arrays = write_npz(tmp_path, "organmnist3d", 64)
    data = MedMNIST3D("organmnist3d", split="test", size=64, root=tmp_path)
    assert data.classes[0] == "liver" and len(data.classes) == 11
    images, labels = next(iter(DataLoader(data, batch_size=3)))
    assert images.shape == (3, 1, 64, 64, 64) and images.dtype == torch.float32
    assert labels.dtype == torch.int64
    assert labels.tolist() == arrays["test_labels"][:, 0].tolist()
    assert float(images.min()) >= 0.0 and float(images.max()) <= 1.0


def test_monai_dictionary_transforms(tmp_path, small_counts):
    write_npz(tmp_path, "nodulemnist3d", 28)
    data = MedMNIST3D(
        "nodulemnist3d",
        split="train",
        root=tmp_path,
        as_dict=True,
        transform=Compose([SpatialPadd("image", spatial_size=(32, 32, 32))]),
    )
    batch = next(iter(DataLoader(data, batch_size=2)))
    assert batch["image"].shape == (2, 1, 32, 32, 32)
    assert batch["label"].shape == (2,)


def test_sample_count_is_checked(tmp_path):
    write_npz(tmp_path, "organmnist3d", 28)  # INFO expects 971/161/610 samples
    with pytest.raises(ValueError, match="has 3 images and 3 labels, medmnist expects 610"):
        MedMNIST3D("organmnist3d", split="test", root=tmp_path)


def test_bad_arguments(tmp_path, small_counts):
    with pytest.raises(ValueError, match="flag must be one of"):
        MedMNIST3D("organmnist", root=tmp_path)
    with pytest.raises(ValueError, match="size must be one of"):
        MedMNIST3D("organmnist3d", size=128, root=tmp_path)
    with pytest.raises(ValueError, match="split must be one of"):
        MedMNIST3D("organmnist3d", split="validation", root=tmp_path)
    with pytest.raises(RuntimeError, match="download=True"):
        MedMNIST3D("organmnist3d", root=tmp_path)


@pytest.mark.parametrize(
    ("flag", "shape", "channels"),
    [("pneumoniamnist", (28, 28), 1), ("pathmnist", (28, 28, 3), 3), ("chestmnist", (64, 64), 1)],
)
def test_medmnist_2d(tmp_path, monkeypatch, flag, shape, channels):
    """2D MedMNIST in medmnist's format: (C, H, W) float32 in [0, 1]; ChestMNIST's label is
    its 14-finding vector."""
    from captum_medcam.data import MEDMNIST_2D_FLAGS, MedMNIST2D

    assert flag in MEDMNIST_2D_FLAGS
    monkeypatch.setitem(INFO[flag], "n_samples", dict(COUNTS))
    rng = np.random.default_rng(0)
    k = len(INFO[flag]["label"])
    multi = flag == "chestmnist"
    arrays = {}
    for split, n in COUNTS.items():
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, *shape), dtype=np.uint8)
        arrays[f"{split}_labels"] = rng.integers(0, 2 if multi else k, (n, k if multi else 1))
    size = shape[0]
    np.savez_compressed(
        tmp_path / (f"{flag}.npz" if size == 28 else f"{flag}_{size}.npz"), **arrays
    )
    data = MedMNIST2D(flag, split="test", size=size, root=tmp_path)
    assert len(data) == 3 and data.multi_label == multi
    image, label = data[2]
    assert image.shape == (channels, size, size) and image.dtype == torch.float32
    raw = arrays["test_images"][2]
    expected = raw[None] if raw.ndim == 2 else np.moveaxis(raw, -1, 0)
    np.testing.assert_allclose(image.numpy(), expected / 255.0, rtol=1e-6)
    if multi:
        assert label.tolist() == arrays["test_labels"][2].tolist()
    else:
        assert label == int(arrays["test_labels"][2, 0])
    batch = next(iter(DataLoader(MedMNIST2D(flag, size=size, root=tmp_path, as_dict=True), 3)))
    assert batch["image"].shape == (3, channels, size, size)
    assert batch["label"].shape == ((3, k) if multi else (3,))
    with pytest.raises(ValueError, match="size must be one of"):
        MedMNIST2D(flag, size=32, root=tmp_path)
    with pytest.raises(ValueError, match="flag must be one of"):
        MedMNIST2D("organmnist3d", root=tmp_path)
