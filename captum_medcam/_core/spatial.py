"""Resizing and min-max normalisation of maps, for 1, 2 or 3 spatial dims.

Used by the CAMs (upsampling to the input), the metrics and the command line.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

_LINEAR_MODES = {1: "linear", 2: "bilinear", 3: "trilinear"}
_MODES_BY_DIMS = {
    1: {"linear", "nearest", "nearest-exact", "area"},
    2: {"bilinear", "bicubic", "nearest", "nearest-exact", "area"},
    3: {"trilinear", "nearest", "nearest-exact", "area"},
}


def interpolation_mode(spatial_dims: int, mode: str | None = None) -> str:
    """The interpolation mode for maps with ``spatial_dims`` spatial dims.

    ``None`` picks the linear mode of that dimensionality (linear / bilinear / trilinear).
    A mode that cannot work on that many dims (e.g. ``"bilinear"`` on a volume) is an error,
    never a silently empty or wrong map.
    """
    if spatial_dims not in _LINEAR_MODES:
        raise ValueError(f"maps must have 1 to 3 spatial dims, got {spatial_dims}")
    if mode is None:
        return _LINEAR_MODES[spatial_dims]
    if not isinstance(mode, str):
        raise TypeError(f"interpolate_mode must be a string or None, got {mode!r}")
    if mode not in _MODES_BY_DIMS[spatial_dims]:
        raise ValueError(
            f"interpolate_mode {mode!r} does not work on {spatial_dims}-D maps; "
            f"use one of {sorted(_MODES_BY_DIMS[spatial_dims])}"
        )
    return mode


def resize(
    maps: Tensor, size: Sequence[int], mode: str | None = None, align_corners: bool = False
) -> Tensor:
    """Resize ``(N, K, *S')`` maps to ``(N, K, *size)``.

    Linear modes are used with ``align_corners=False`` unless asked otherwise, as
    ``F.interpolate`` and the Score-CAM and torchcam code do. A map already at ``size`` is
    returned unchanged.
    """
    size = tuple(int(s) for s in size)
    if tuple(maps.shape[2:]) == size:
        return maps
    mode = interpolation_mode(maps.dim() - 2, mode)
    linear = mode in ("linear", "bilinear", "bicubic", "trilinear")
    return F.interpolate(
        maps, size=size, mode=mode, align_corners=align_corners if linear else None
    )


def minmax_normalize(maps: Tensor) -> tuple[Tensor, Tensor]:
    """Per-map min-max scaling ``s(M) = (M - min M) / (max M - min M)`` over spatial dims.

    Args:
        maps: ``(N, K, *S)``.

    Returns:
        ``(scaled, constant)``: ``scaled`` of shape ``(N, K, *S)`` in [0, 1], zero where a
        map is constant; ``constant`` a bool tensor ``(N, K)``.
    """
    flat = maps.flatten(2)
    lo = flat.amin(-1, keepdim=True)
    hi = flat.amax(-1, keepdim=True)
    span = hi - lo
    constant = span == 0
    scaled = (flat - lo) / torch.where(constant, torch.ones_like(span), span)
    return scaled.view_as(maps), constant.squeeze(-1)
