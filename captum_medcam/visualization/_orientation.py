"""Names of the three slice views of a volume, from its orientation when it is known.

A slice taken across the left-right axis is sagittal, across anterior-posterior coronal,
across superior-inferior axial. Which voxel axis is which comes from the image's affine
(the nearest anatomical axis of each voxel axis, as ``nibabel.orientations.aff2axcodes``
finds it) or from axis codes such as ``"RAS"``; without either, the views are named by
array axis, never with anatomical names that may be wrong.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

_PLANES = {"L": "sagittal", "R": "sagittal", "A": "coronal", "P": "coronal"}
_PLANES |= {"S": "axial", "I": "axial"}
_WORLD = ("RL", "AP", "SI")  # world axis k of a RAS affine: positive letter, negative letter
_BY_ARRAY_AXIS = ("axis 0 (D)", "axis 1 (H)", "axis 2 (W)")


def axis_codes(affine: Any) -> tuple[str, str, str]:
    """The anatomical direction of each voxel axis of a 3D ``affine`` ``(4, 4)`` (RAS world).

    Each voxel axis gets the world axis its direction is closest to, assigned greedily from
    the largest direction cosine so that no two voxel axes share one (an oblique affine gets
    the nearest orthogonal labelling, like nibabel's ``aff2axcodes``).

    Raises:
        ValueError: ``affine`` is not a finite ``(4, 4)`` matrix with an invertible 3x3 part.
    """
    try:
        a = np.asarray(affine.detach().cpu() if isinstance(affine, torch.Tensor) else affine)
        a = a.astype(np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"affine must be a (4, 4) matrix, got {type(affine).__name__}") from None
    if a.shape == (1, 4, 4):
        a = a[0]
    if a.shape != (4, 4) or not np.isfinite(a).all():
        raise ValueError(f"affine must be a finite (4, 4) matrix, got shape {a.shape}")
    directions = a[:3, :3]
    norms = np.linalg.norm(directions, axis=0)
    if (norms == 0).any() or abs(np.linalg.det(directions)) < 1e-12 * float(norms.prod()):
        raise ValueError(f"affine has a singular 3x3 part, no orientation: {a[:3, :3].tolist()}")
    cosines = np.abs(directions / norms)  # [world, voxel]
    codes = [""] * 3
    free_world, free_voxel = [0, 1, 2], [0, 1, 2]
    for _ in range(3):
        sub = cosines[np.ix_(free_world, free_voxel)]
        w, v = np.unravel_index(int(sub.argmax()), sub.shape)
        world, voxel = free_world.pop(int(w)), free_voxel.pop(int(v))
        codes[voxel] = _WORLD[world][0 if directions[world, voxel] > 0 else 1]
    return codes[0], codes[1], codes[2]


def check_orientation(orientation: Any) -> tuple[str, str, str]:
    """``orientation`` as three axis codes, one of L/R, A/P and S/I each (e.g. ``"RAS"``)."""
    if not isinstance(orientation, str):
        raise TypeError(
            f"orientation must be a string of 3 axis codes such as 'RAS', got {orientation!r}"
        )
    codes = tuple(orientation.upper())
    if len(codes) != 3 or sorted(_PLANES[c] for c in codes if c in _PLANES) != [
        "axial",
        "coronal",
        "sagittal",
    ]:
        raise ValueError(
            f"orientation must be 3 axis codes, one each of L/R, A/P and S/I (e.g. 'RAS', "
            f"'LPS', 'SPL'), got {orientation!r}"
        )
    return codes[0], codes[1], codes[2]


def view_names(
    affine: Any = None, orientation: str | None = None, like: Any = None
) -> tuple[str, str, str]:
    """The names of the slices across voxel axes 0, 1 and 2 of a volume.

    Args:
        affine: the volume's ``(4, 4)`` voxel-to-world affine (RAS or LPS world), or None.
        orientation: axis codes of the voxel axes, e.g. ``"RAS"``, or None.
        like: a tensor whose MONAI ``MetaTensor`` affine is used when neither is given.

    Returns:
        e.g. ``("sagittal", "coronal", "axial")`` for a RAS volume, and
        ``("axis 0 (D)", "axis 1 (H)", "axis 2 (W)")`` when the orientation is unknown.

    Raises:
        ValueError: both ``affine`` and ``orientation``, or either of them malformed.
    """
    if affine is not None and orientation is not None:
        raise ValueError("give the affine or the orientation, not both")
    if orientation is not None:
        codes = check_orientation(orientation)
    elif affine is not None:
        codes = axis_codes(affine)
    elif (meta := getattr(like, "affine", None)) is not None and tuple(meta.shape)[-2:] == (4, 4):
        if meta.dim() == 3 and meta.shape[0] != 1:  # a batch's affines: not one volume's
            return _BY_ARRAY_AXIS
        codes = axis_codes(meta)
    else:
        return _BY_ARRAY_AXIS
    names = tuple(_PLANES[c] for c in codes)
    return names[0], names[1], names[2]
