"""``reshape_transform``: turn a layer's output into ``(N, C, *grid)`` for the CAMs.

A transformer layer outputs tokens ``(N, T, E)`` and a Swin block channel-last maps
``(N, D, H, W, C)``; the CAMs need ``(N, C, *grid)``. A reshape is a callable applied to the
captured tensor (and, for the gradient CAMs, to its gradient, as in pytorch-grad-cam). It
must rearrange or select elements only (``reshape``, ``permute``, slicing off a class
token): then the reshaped gradient is the gradient with respect to the reshaped tensor,
and a change made on the grid can be mapped back to the layer's output exactly.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

#: A callable from the layer's tensor to ``(N, C, *grid)``.
ReshapeTransform = Callable[[Tensor], Tensor]


def check_reshape_transform(reshape_transform: object) -> ReshapeTransform | None:
    """Return ``reshape_transform`` if it is None or callable, else raise ``TypeError``."""
    if reshape_transform is not None and not callable(reshape_transform):
        raise TypeError(
            "reshape_transform must be None or a callable turning the layer's output into "
            f"(N, channels, *grid), got {type(reshape_transform).__name__}"
        )
    return reshape_transform


def apply_reshape(reshape_transform: ReshapeTransform | None, value: Tensor, n: int) -> Tensor:
    """``reshape_transform(value)``, checked to be a tensor with ``n`` examples first.

    Args:
        reshape_transform: None (``value`` is returned unchanged) or the user's callable.
        value: the layer's tensor, e.g. tokens ``(N, T, E)``.
        n: the number of examples.

    Returns:
        ``(N, C, *grid)``.

    Raises:
        ValueError: the callable returns something that is not a tensor with ``n`` rows.
    """
    if reshape_transform is None:
        return value
    out = reshape_transform(value)
    if not isinstance(out, Tensor):
        raise ValueError(
            f"reshape_transform returned a {type(out).__name__}, not a tensor (N, channels, *grid)"
        )
    if out.dim() < 3 or out.shape[0] != n:
        raise ValueError(
            f"reshape_transform turned the layer's tensor {tuple(value.shape)} into "
            f"{tuple(out.shape)}; expected (N, channels, *grid) with N = {n}"
        )
    return out


def unreshape(reshape_transform: ReshapeTransform, value: Tensor, grid: Tensor) -> Tensor:
    """The layer's tensor with its reshaped elements replaced by ``grid``.

    For a reshape ``R`` that rearranges or selects elements, ``value + R^T(grid - R(value))``
    puts every grid element back where it came from and leaves the elements that ``R`` drops
    (a class token) as they were. ``R^T`` is the vector-Jacobian product of ``R``.

    Args:
        reshape_transform: ``R``.
        value: the layer's tensor ``(M, ...)``.
        grid: ``(M, C, *grid)``, a changed ``R(value)``.

    Returns:
        A tensor shaped like ``value``.
    """
    with torch.enable_grad():
        point = value.detach().requires_grad_(True)
        reshaped = reshape_transform(point)
        delta = (grid - reshaped.detach()).to(reshaped.dtype)
        (back,) = torch.autograd.grad(reshaped, point, grad_outputs=delta, allow_unused=True)
    if back is None:
        return value
    return value + back.to(value.dtype)
