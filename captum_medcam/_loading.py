"""Loading for the command line: networks, weights, volumes and data tables.

Private: the public surface is :mod:`captum_medcam.pipeline` and the ``captum-medcam``
command. Nothing here unpickles arbitrary objects: weights are read with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import csv
import importlib
import json
import os
import pickle
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

_NIFTI = (".nii", ".nii.gz")
_PNG = (".png",)


def _suffix(path: str | os.PathLike[str]) -> str:
    name = os.fspath(path).lower()
    return ".nii.gz" if name.endswith(".nii.gz") else Path(name).suffix


def load_network(spec: str) -> nn.Module:
    """Build a network from a MONAI bundle-style definition or an import string.

    Args:
        spec: one of
            - a JSON object, e.g. ``'{"_target_": "monai.networks.nets.resnet18",
              "spatial_dims": 3, "n_input_channels": 1, "num_classes": 11}'``, instantiated
              by ``monai.bundle.ConfigParser`` as MONAI bundles do;
            - a ``.json`` or ``.yaml`` file holding such an object (or a bundle config with a
              ``"network_def"`` or ``"network"`` entry);
            - ``"module:callable"``, a function or class called without arguments that returns
              an ``nn.Module`` (e.g. ``"mypackage.models:build_classifier"``).

    Returns:
        The network (in the mode its constructor left it; the caller sets ``eval()``).

    Raises:
        ValueError: a spec of none of these forms, or a definition that fails to build.
        TypeError: the result is not an ``nn.Module``.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(
            "--network must be a JSON definition such as "
            '\'{"_target_": "monai.networks.nets.resnet18", "spatial_dims": 3, '
            '"n_input_channels": 1, "num_classes": 11}\', a .json/.yaml file, or '
            f"'module:callable'; got {spec!r}"
        )
    text = spec.strip()
    config: Any = None
    if text.startswith("{"):
        try:
            config = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"--network is not valid JSON ({error}): {text!r}") from None
    elif _suffix(text) in (".json", ".yaml", ".yml"):
        if not Path(text).is_file():
            raise ValueError(f"--network file {text!r} does not exist")
        from monai.bundle import ConfigParser

        config = ConfigParser.load_config_file(text)
        if isinstance(config, Mapping) and "_target_" not in config:
            for key in ("network_def", "network"):
                if key in config:
                    parser = ConfigParser(dict(config))
                    return _check_module(parser.get_parsed_content(key), text)
    elif ":" in text:
        module_name, _, attr = text.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as error:
            raise ValueError(
                f"--network {text!r}: cannot import module {module_name!r} ({error}); is it on "
                "PYTHONPATH?"
            ) from None
        factory = module
        for part in attr.split("."):
            if not hasattr(factory, part):
                raise ValueError(f"--network {text!r}: {module_name} has no attribute {attr!r}")
            factory = getattr(factory, part)
        if not callable(factory):
            raise ValueError(f"--network {text!r}: {attr!r} is not callable")
        return _check_module(factory(), text)
    else:
        raise ValueError(
            f"--network {text!r} is neither a JSON object, a .json/.yaml file nor 'module:callable'"
        )
    if not isinstance(config, Mapping) or "_target_" not in config:
        raise ValueError(
            "--network must define the network with a '_target_' key (the class to build), "
            f"e.g. 'monai.networks.nets.resnet18'; got {config!r}"
        )
    from monai.bundle import ConfigParser

    parser = ConfigParser({"network": dict(config)})
    try:
        network = parser.get_parsed_content("network")
    except Exception as error:  # MONAI wraps any constructor error; show it to the user
        raise ValueError(f"--network could not be built: {error}") from error
    return _check_module(network, text)


def _check_module(network: object, spec: str) -> nn.Module:
    if not isinstance(network, nn.Module):
        raise TypeError(
            f"--network {spec!r} gave a {type(network).__name__}, expected a torch.nn.Module"
        )
    return network


def load_weights(model: nn.Module, path: str | os.PathLike[str]) -> None:
    """Load a state dict into ``model`` with ``torch.load(weights_only=True)``.

    Checkpoints that nest the state dict as ``{"state_dict": ...}``, ``{"model": ...}`` or
    ``{"network": ...}`` and keys prefixed by ``"module."`` (DataParallel/DDP) are accepted.
    A file that needs arbitrary objects unpickled (a whole pickled model, or custom classes)
    is refused: it is never executed.

    Raises:
        ValueError: a missing file, an unsafe checkpoint, or weights that do not fit.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"--weights file {os.fspath(path)!r} does not exist")
    try:
        with warnings.catch_warnings():
            # torch notes files written with another pickle protocol; they load (or are
            # refused below) all the same
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise ValueError(
            f"refusing to load --weights {os.fspath(path)!r}: it needs arbitrary Python objects "
            "unpickled (it is not a plain state dict), which could run code. Save the weights "
            "with torch.save(model.state_dict(), 'weights.pt') and pass that file. "
            f"(torch said: {str(error).splitlines()[0]})"
        ) from None
    if isinstance(state, Mapping):
        for key in ("state_dict", "model", "network", "model_state_dict"):
            if key in state and isinstance(state[key], Mapping):
                state = state[key]
                break
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(
            f"--weights {os.fspath(path)!r} holds a {type(state).__name__}, not a state dict of "
            "tensors; save it with torch.save(model.state_dict(), path)"
        )
    state = {k.removeprefix("module."): v for k, v in state.items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise ValueError(
            f"--weights {os.fspath(path)!r} do not fit the --network: {error}"
        ) from None


@dataclass(frozen=True)
class Volume:
    """An image read from disk: ``array (C, *S)`` float32 and the affine of its voxel grid."""

    array: Tensor
    affine: np.ndarray
    path: Path
    is_nifti: bool


def load_volume(
    path: str | os.PathLike[str], spatial_dims: int | None = None, is_mask: bool = False
) -> Volume:
    """Read a NIfTI file, a ``.npy`` array or a PNG image as ``(C, *S)``.

    NIfTI: ``(X, Y, Z)`` gives ``(1, X, Y, Z)``, ``(X, Y, Z, C)`` gives ``(C, X, Y, Z)``, in
    the file's voxel order, with its affine. ``.npy``: ``(*S)`` or ``(C, *S)``;
    ``spatial_dims`` decides for 3-dimensional arrays (default 3: a volume). PNG: ``(1, H, W)``
    or ``(3, H, W)`` in [0, 1]. Masks come back as bool ``(1, *S)``.

    Raises:
        ValueError: an unknown file type or shape.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"image file {os.fspath(path)!r} does not exist")
    kind = _suffix(path)
    affine = np.eye(4)
    if kind in _NIFTI:
        import nibabel as nib

        image: Any = nib.load(path)
        data = np.asarray(image.dataobj, dtype=np.float32)
        affine = np.asarray(image.affine, dtype=np.float64)
        if data.ndim == 3 or (data.ndim == 2 and spatial_dims == 2):
            array = data[None]
        elif data.ndim == 4:
            array = np.moveaxis(data, -1, 0)
        elif data.ndim == 5 and data.shape[3] == 1:  # (X, Y, Z, 1, C), NIfTI's vector layout
            array = np.moveaxis(data[:, :, :, 0], -1, 0)
        else:
            raise ValueError(f"{os.fspath(path)!r}: NIfTI of shape {data.shape} is not a volume")
    elif kind == ".npy":
        data = np.load(path, allow_pickle=False).astype(np.float32)
        dims = spatial_dims or 3
        if data.ndim == dims:
            array = data[None]
        elif data.ndim == dims + 1:
            array = data
        else:
            raise ValueError(
                f"{os.fspath(path)!r}: array of shape {data.shape} is neither {dims}-D nor "
                f"(channels, {dims}-D); set --spatial-dims for 2D images"
            )
    elif kind in _PNG:
        from PIL import Image

        with Image.open(path) as img:
            data = np.asarray(img.convert("L" if img.mode in ("L", "I", "1", "P") else "RGB"))
        array = (data[None] if data.ndim == 2 else np.moveaxis(data, -1, 0)).astype(np.float32)
        array = array / 255.0 if not is_mask else array
    else:
        raise ValueError(
            f"{os.fspath(path)!r}: unknown file type {kind!r}; expected .nii, .nii.gz, .npy or .png"
        )
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    if is_mask:
        tensor = (tensor.sum(0, keepdim=True) > 0) if tensor.shape[0] > 1 else tensor > 0
    return Volume(tensor, affine, path, kind in _NIFTI)


def _resize(x: Tensor, size: Sequence[int], mode: str) -> Tensor:
    from captum_medcam._core.spatial import resize

    if tuple(x.shape[1:]) == tuple(size):
        return x
    if mode == "nearest":
        return torch.nn.functional.interpolate(x[None].float(), size=tuple(size), mode="nearest")[0]
    return resize(x[None], tuple(size))[0]


class TableDataset(Dataset[dict[str, Any]]):
    """Samples listed in a CSV file: an image path, a label and an optional mask path.

    Columns: ``image`` (required), ``label`` (an int; or several ints separated by spaces for
    multi-label), ``mask`` (optional). Relative paths are relative to the CSV file. Images are
    NIfTI, ``.npy`` or PNG (see :func:`load_volume`).

    Args:
        table: the CSV file.
        spatial_size: resize every image (linear) and mask (nearest) to this size for the
            model; the maps are written back at each image's own size.
        intensity: ``"none"`` (as stored) or ``"minmax"`` (each image scaled to [0, 1]).
        spatial_dims: for ``.npy`` files, 2 or 3.

    Returns (per item):
        ``{"image": (C, *S) float32, "label": int or (K,) int64, "mask": (1, *S) bool}``
        (``label`` and ``mask`` only when the table has them).
    """

    def __init__(
        self,
        table: str | os.PathLike[str],
        spatial_size: Sequence[int] | None = None,
        intensity: str = "none",
        spatial_dims: int | None = None,
    ) -> None:
        table = Path(table)
        if not table.is_file():
            raise ValueError(f"--data table {os.fspath(table)!r} does not exist")
        if intensity not in ("none", "minmax"):
            raise ValueError(f"intensity must be 'none' or 'minmax', got {intensity!r}")
        with table.open(newline="") as f:
            rows = list(csv.DictReader(f))
        if not rows or "image" not in rows[0]:
            raise ValueError(
                f"--data table {os.fspath(table)!r} needs a header with an 'image' column "
                "(and optionally 'label' and 'mask'), e.g. 'image,label,mask'"
            )
        self.rows = rows
        self.folder = table.parent
        self.has_labels = "label" in rows[0] and all(r["label"].strip() for r in rows)
        self.has_masks = "mask" in rows[0] and all(r["mask"].strip() for r in rows)
        self.spatial_size = tuple(spatial_size) if spatial_size else None
        self.intensity = intensity
        self.spatial_dims = spatial_dims

    def __len__(self) -> int:
        return len(self.rows)

    def path(self, index: int, column: str = "image") -> Path:
        """The file of sample ``index`` in ``column``, resolved against the table's folder."""
        p = Path(self.rows[index][column].strip())
        return p if p.is_absolute() else self.folder / p

    def space(self, index: int) -> tuple[np.ndarray | None, tuple[int, ...]]:
        """``(affine, spatial shape)`` of sample ``index``'s image as stored, read from the
        NIfTI header only; ``(None, ())`` for other file types."""
        path = self.path(index)
        if _suffix(path) not in _NIFTI:
            return None, ()
        import nibabel as nib

        header: Any = nib.load(path)
        shape = tuple(int(s) for s in header.shape)
        return np.asarray(header.affine, dtype=np.float64), shape[:3] if len(shape) >= 3 else shape

    def volume(self, index: int) -> Volume:
        """Sample ``index``'s image as stored (before resizing), with its affine."""
        return load_volume(self.path(index), self.spatial_dims)

    def __getitem__(self, index: int) -> dict[str, Any]:
        volume = self.volume(index)
        image = volume.array
        if self.intensity == "minmax":
            lo, hi = image.min(), image.max()
            image = (image - lo) / (hi - lo) if hi > lo else torch.zeros_like(image)
        if self.spatial_size is not None:
            image = _resize(image, self.spatial_size, "linear")
        sample: dict[str, Any] = {"image": image}
        if self.has_labels:
            parts = self.rows[index]["label"].split()
            try:
                ints = [int(float(p)) for p in parts]
            except ValueError:
                raise ValueError(
                    f"row {index} of the table: label {self.rows[index]['label']!r} is not an "
                    "integer (or space-separated integers for multi-label)"
                ) from None
            sample["label"] = ints[0] if len(ints) == 1 else torch.tensor(ints)
        if self.has_masks:
            mask = load_volume(self.path(index, "mask"), self.spatial_dims, is_mask=True).array
            if mask.shape[1:] != volume.array.shape[1:]:
                raise ValueError(
                    f"row {index}: mask {self.path(index, 'mask')} has shape "
                    f"{tuple(mask.shape[1:])}, its image {tuple(volume.array.shape[1:])}"
                )
            if self.spatial_size is not None:
                mask = _resize(mask, self.spatial_size, "nearest") > 0.5
            sample["mask"] = mask
        return sample


def medmnist_dataset(
    flag: str, size: int, root: str | os.PathLike[str] | None, split: str
) -> Dataset[Any]:
    """A MedMNIST 2D or 3D data set as dict samples; downloaded only when the file is missing."""
    from captum_medcam.data import (
        MEDMNIST_2D_FLAGS,
        MEDMNIST_3D_FLAGS,
        MedMNIST2D,
        MedMNIST3D,
    )

    if flag not in MEDMNIST_2D_FLAGS + MEDMNIST_3D_FLAGS:
        raise ValueError(
            f"--medmnist must be one of {list(MEDMNIST_3D_FLAGS + MEDMNIST_2D_FLAGS)}, got {flag!r}"
        )
    if root is None:
        from medmnist.info import DEFAULT_ROOT

        root = DEFAULT_ROOT
    Path(root).mkdir(parents=True, exist_ok=True)
    name = f"{flag}.npz" if size == 28 else f"{flag}_{size}.npz"
    download = not (Path(root) / name).is_file()
    cls = MedMNIST3D if flag in MEDMNIST_3D_FLAGS else MedMNIST2D
    try:
        return cls(flag, split=split, size=size, root=root, download=download, as_dict=True)
    except (OSError, RuntimeError) as error:
        if download:
            raise ValueError(
                f"{name} is not in --root {os.fspath(root)!r} and downloading it failed "
                f"({error}); download it with medmnist on a machine with internet access "
                f"and put it into {os.fspath(root)!r}"
            ) from error
        raise


def save_nifti(array: Tensor, affine: np.ndarray, path: str | os.PathLike[str]) -> Path:
    """Save ``(*S)`` or ``(C, *S)`` (channels last in the file) as float32 NIfTI."""
    import nibabel as nib

    data = array.detach().cpu().float().numpy()
    if data.ndim == 4:
        data = data[0] if data.shape[0] == 1 else np.moveaxis(data, 0, -1)
    path = Path(path)
    nib.save(nib.Nifti1Image(data.astype(np.float32), affine), path)
    return path
