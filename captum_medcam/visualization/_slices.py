"""Slice overlays of an attribution on a volume (matplotlib, imported lazily)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from captum_medcam._core.checks import check_finite_float, check_int, check_tensor_finite
from captum_medcam.visualization._orientation import view_names

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["plot_slices"]


def plot_slices(
    volume: Tensor,
    attribution: Tensor,
    *,
    center: Sequence[int] | None = None,
    mask: Tensor | None = None,
    alpha: float = 0.45,
    cmap: str = "jet",
    title: str | None = None,
    affine: Any = None,
    orientation: str | None = None,
) -> Figure:
    """Three orthogonal slices of ``volume`` with ``attribution`` overlaid.

    The slices pass through ``center``, by default the voxel where the attribution is
    largest. The overlay is min-max scaled for display only; the colour bar says so.

    The panels are named from the volume's orientation when it is known: a slice across
    the voxel axis that runs left-right is "sagittal", anterior-posterior "coronal",
    superior-inferior "axial". The orientation is ``affine`` or ``orientation`` when given,
    else the affine of a MONAI ``MetaTensor`` ``volume`` (or ``attribution``), as
    ``LoadImage`` returns it. A plain tensor, e.g. a MedMNIST volume, has no known
    orientation: its panels are named by array axis, "axis 0 (D)", "axis 1 (H)" and
    "axis 2 (W)".

    Args:
        volume: ``(D, H, W)``, ``(1, D, H, W)`` or ``(1, 1, D, H, W)``.
        attribution: the same spatial shape as ``volume`` (upsample a layer-resolution map
            first, e.g. with ``ScoreCAM3D``).
        center: ``(d, h, w)`` voxel to slice through.
        mask: optional ground-truth mask of the same shape, drawn as a contour.
        alpha: overlay opacity.
        cmap: colour map of the overlay.
        title: figure title.
        affine: the volume's ``(4, 4)`` voxel-to-world matrix (a NumPy array or a tensor),
            e.g. ``nibabel.load(path).affine``, to name the views.
        orientation: instead of ``affine``, the axis codes of the voxel axes, one each of
            L/R, A/P and S/I, e.g. ``"RAS"`` (axis 0 runs to the right, so its slices are
            sagittal) or ``"SPL"``.

    Returns:
        A matplotlib ``Figure`` with one row of three panels.

    Raises:
        ValueError: shapes that are not one volume, or that differ; a malformed
            ``affine`` or ``orientation``, or both given.

    Example:
        >>> import numpy as np, torch
        >>> from captum_medcam.visualization import plot_slices
        >>> volume, att = torch.rand(8, 9, 10), torch.rand(8, 9, 10)
        >>> fig = plot_slices(volume, att, center=(4, 4, 4), affine=np.diag([2, 2, 2, 1]))
        >>> [ax.get_title() for ax in fig.axes[:3]]
        ['sagittal slice 4', 'coronal slice 4', 'axial slice 4']
        >>> fig = plot_slices(volume, att, center=(4, 4, 4))  # no orientation known
        >>> fig.axes[0].get_title()
        'axis 0 (D) slice 4'
    """
    from matplotlib.figure import Figure

    check_finite_float(alpha, "alpha", low=0, high=1)
    if not isinstance(cmap, str):
        raise TypeError(f"cmap must be the name of a matplotlib colour map, got {cmap!r}")
    names = view_names(affine, orientation, volume if hasattr(volume, "affine") else attribution)
    vol = _as_volume(volume, "volume")
    att = _as_volume(attribution, "attribution")
    check_tensor_finite(att.double(), "attribution")
    if att.shape != vol.shape:
        raise ValueError(
            f"attribution shape {tuple(att.shape)} differs from volume shape {tuple(vol.shape)}; "
            "upsample the map to the input first"
        )
    msk = _as_volume(mask, "mask") if mask is not None else None
    if center is not None:
        if not isinstance(center, Sequence) or len(center) != 3:
            raise TypeError(f"center must be 3 ints (d, h, w), got {center!r}")
        for c, extent in zip(center, vol.shape, strict=True):
            if not 0 <= check_int(c, "center") < extent:
                raise ValueError(f"center {tuple(center)} is outside the volume {tuple(vol.shape)}")
    if center is None:
        flat = int(att.argmax())
        center = (
            flat // (vol.shape[1] * vol.shape[2]),
            (flat // vol.shape[2]) % vol.shape[1],
            flat % vol.shape[2],
        )
    span = float(att.max() - att.min())
    shown = (att - att.min()) / span if span > 0 else torch.zeros_like(att)

    fig = Figure(figsize=(12, 4.3), layout="constrained")
    axes = fig.subplots(1, 3)
    image: Any = None
    for axis, ax in enumerate(axes):
        index: list[int | slice] = [slice(None)] * 3
        index[axis] = int(center[axis])
        ax.imshow(vol[tuple(index)].numpy(), cmap="gray", origin="lower")
        image = ax.imshow(
            shown[tuple(index)].numpy(), cmap=cmap, alpha=alpha, vmin=0, vmax=1, origin="lower"
        )
        if msk is not None and bool(msk[tuple(index)].any()):
            ax.contour(
                msk[tuple(index)].float().numpy(), levels=[0.5], colors="white", linewidths=1.2
            )
        ax.set_title(f"{names[axis]} slice {int(center[axis])}")
        ax.set_axis_off()
    fig.colorbar(image, ax=list(axes), shrink=0.8, label="attribution (min-max scaled for display)")
    if title:
        fig.suptitle(title)
    return fig


def _as_volume(x: Tensor, name: str) -> Tensor:
    t = torch.as_tensor(x).detach()
    t = t.as_tensor() if hasattr(t, "as_tensor") else t
    while t.dim() > 3 and t.shape[0] == 1:
        t = t[0]
    if t.dim() != 3:
        raise ValueError(
            f"{name} must be one volume (D, H, W), got shape {tuple(torch.as_tensor(x).shape)}"
        )
    return t.float().cpu()
