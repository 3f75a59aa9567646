"""Substrates for perturbation metrics: what a deleted voxel or region is replaced by.

Each factory returns a callable ``baseline(inputs) -> Tensor`` shaped like ``inputs``
``(N, C, *S)``, on the inputs' device and dtype. The metrics also take a number or a
tensor broadcastable to the inputs, as Captum's ``baselines``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from captum_medcam.attr._checks import check_positive_int

__all__ = [
    "Baseline",
    "blur_baseline",
    "gaussian_blur",
    "mean_baseline",
    "normal_noise_baseline",
    "resolve_baseline",
    "uniform_noise_baseline",
]

#: A number, a tensor broadcastable to the inputs, or a callable of the inputs.
Baseline = float | int | Tensor | Callable[[Tensor], Tensor]

PaddingMode = Literal["zeros", "reflect", "replicate"]
_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def _rise_kernel1d(
    kernel_size: int, sigma: float, dtype: torch.dtype, device: torch.device
) -> Tensor:
    """The 1-D factor of RISE's ``gkern``: SciPy's ``gaussian_filter`` of a centred delta.

    SciPy samples a Gaussian of radius ``int(4 * sigma + 0.5)``, normalises it, and filters
    with ``mode="reflect"`` (``d c b a | a b c d | d c b a``): the tails that fall outside
    the ``kernel_size`` window are folded back in, so the kernel sums to 1.
    """
    radius = int(4.0 * sigma + 0.5)
    j = torch.arange(-radius, radius + 1, dtype=torch.float64)
    w = torch.exp(-0.5 * (j / sigma) ** 2)
    w = w / w.sum()
    n, centre = kernel_size, kernel_size // 2
    out = torch.zeros(n, dtype=torch.float64)
    for i in range(n):
        p = i - j.long()  # the extended-signal positions that reach output i
        q = torch.remainder(p, 2 * n)
        q = torch.where(q >= n, 2 * n - 1 - q, q)  # half-sample symmetric reflection
        out[i] = w[q == centre].sum()
    return out.to(dtype=dtype, device=device)


def _check_blur_args(kernel_size: object, sigma: object, padding_mode: object) -> None:
    if check_positive_int(kernel_size, "kernel_size") % 2 == 0:
        raise ValueError(f"kernel_size must be odd, got {kernel_size}")
    if not (isinstance(sigma, (int, float)) and math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma must be a positive number, got {sigma!r}")
    if padding_mode not in ("zeros", "reflect", "replicate"):
        raise ValueError(
            f"padding_mode must be 'zeros', 'reflect' or 'replicate', got {padding_mode!r}"
        )


def gaussian_blur(
    inputs: Tensor,
    kernel_size: int = 11,
    sigma: float = 5.0,
    *,
    padding_mode: PaddingMode = "zeros",
) -> Tensor:
    """Separable Gaussian blur over every spatial dim, channel by channel.

    The kernel is RISE's (``gkern(klen=11, nsig=5)``): SciPy's ``gaussian_filter`` of a
    delta, i.e. a normalised Gaussian whose tails are reflected back into the window. As in
    the RISE code the borders are zero-padded by default.

    References:
        Petsiuk, Das, Saenko. "RISE: Randomized Input Sampling for Explanation of Black-box
        Models". BMVC 2018. arXiv:1806.07421.

    Args:
        inputs: ``(N, C, *S)`` with 1 to 3 spatial dims.
        kernel_size: odd window length per dim.
        sigma: standard deviation in voxels.
        padding_mode: ``"zeros"`` (RISE), ``"reflect"`` or ``"replicate"``.

    Returns:
        The blurred inputs, same shape, device and dtype.

    Raises:
        ValueError: an even or non-positive ``kernel_size``, ``sigma <= 0``, an unknown
            ``padding_mode``, or inputs without 1 to 3 spatial dims.

    Example:
        >>> import torch
        >>> gaussian_blur(torch.ones(1, 1, 16, 16, 16), padding_mode="replicate").allclose(
        ...     torch.ones(1, 1, 16, 16, 16))
        True
    """
    _check_blur_args(kernel_size, sigma, padding_mode)
    dims = inputs.dim() - 2
    if dims not in _CONV:
        raise ValueError(
            f"inputs must be (N, C, *S) with 1 to 3 spatial dims, got {tuple(inputs.shape)}"
        )
    c = inputs.shape[1]
    k = _rise_kernel1d(kernel_size, float(sigma), inputs.dtype, inputs.device)
    half = kernel_size // 2
    out = inputs
    for d in range(dims):
        shape = [1, 1] + [1] * dims
        shape[2 + d] = kernel_size
        weight = k.view(shape).expand(c, *shape[1:])
        if padding_mode == "zeros":
            padding = [0] * dims
            padding[d] = half
            out = _CONV[dims](out, weight, padding=tuple(padding), groups=c)
        else:
            pad = [0] * (2 * dims)  # F.pad counts from the last dim
            pad[2 * (dims - 1 - d)] = pad[2 * (dims - 1 - d) + 1] = half
            out = _CONV[dims](F.pad(out, pad, mode=padding_mode), weight, groups=c)
    return out


def blur_baseline(
    kernel_size: int = 11, sigma: float = 5.0, *, padding_mode: PaddingMode = "zeros"
) -> Callable[[Tensor], Tensor]:
    """A baseline that blurs the inputs (RISE's insertion substrate: kernel 11, sigma 5).

    See :func:`gaussian_blur` for the arguments.

    Example:
        >>> import torch
        >>> blur_baseline()(torch.randn(2, 1, 8, 8, 8)).shape
        torch.Size([2, 1, 8, 8, 8])
    """
    _check_blur_args(kernel_size, sigma, padding_mode)

    def blur(inputs: Tensor) -> Tensor:
        return gaussian_blur(inputs, kernel_size, sigma, padding_mode=padding_mode)

    return blur


def mean_baseline() -> Callable[[Tensor], Tensor]:
    """A baseline holding each example's per-channel mean over its spatial dims.

    Example:
        >>> import torch
        >>> mean_baseline()(torch.arange(4.0).view(1, 1, 2, 2))
        tensor([[[[1.5000, 1.5000],
                  [1.5000, 1.5000]]]])
    """

    def mean(inputs: Tensor) -> Tensor:
        return inputs.mean(dim=tuple(range(2, inputs.dim())), keepdim=True).expand_as(inputs)

    return mean


def uniform_noise_baseline(
    low: float | None = None, high: float | None = None, *, generator: torch.Generator | None = None
) -> Callable[[Tensor], Tensor]:
    """A baseline of uniform noise on ``[low, high)`` (Samek et al.'s AOPC perturbation).

    Args:
        low, high: the range; None takes each example's own minimum and maximum.
        generator: a ``torch.Generator`` on the inputs' device, for reproducible noise.
            Every call draws new noise, so seed a new generator for every metric call that
            must repeat exactly.

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> uniform_noise_baseline(0.0, 1.0, generator=g)(torch.zeros(1, 1, 2)).shape
        torch.Size([1, 1, 2])
    """
    if low is not None and high is not None and not low < high:
        raise ValueError(f"uniform noise needs low < high, got low={low}, high={high}")

    def uniform(inputs: Tensor) -> Tensor:
        dims = tuple(range(1, inputs.dim()))
        lo = inputs.amin(dim=dims, keepdim=True) if low is None else low
        hi = inputs.amax(dim=dims, keepdim=True) if high is None else high
        u = torch.rand(inputs.shape, generator=generator, dtype=inputs.dtype, device=inputs.device)
        return lo + (hi - lo) * u

    return uniform


def normal_noise_baseline(
    mean: float = 0.0, std: float = 1.0, *, generator: torch.Generator | None = None
) -> Callable[[Tensor], Tensor]:
    """A baseline of normal noise ``N(mean, std^2)`` (the X-ray AOPC study: mean 0, std 0.1).

    To add noise to the perturbed regions instead of replacing them, pass
    ``lambda x: x + normal_noise_baseline(0, 0.1, generator=g)(x)`` as the baseline.

    Args:
        mean, std: of the noise.
        generator: a ``torch.Generator`` on the inputs' device, for reproducible noise.

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> normal_noise_baseline(0.0, 0.1, generator=g)(torch.zeros(1, 1, 2)).shape
        torch.Size([1, 1, 2])
    """
    if not std >= 0:
        raise ValueError(f"std must be >= 0, got {std}")

    def normal(inputs: Tensor) -> Tensor:
        z = torch.randn(inputs.shape, generator=generator, dtype=inputs.dtype, device=inputs.device)
        return mean + std * z

    return normal


def resolve_baseline(baselines: object, inputs: Tensor, name: str = "baselines") -> Tensor:
    """Turn a number, a tensor or a callable into a substrate shaped like ``inputs``.

    Raises:
        TypeError: a value of another type, or a callable that does not return a tensor.
        ValueError: a tensor that does not broadcast to the inputs.
    """
    if callable(baselines):
        out = baselines(inputs)
        if not isinstance(out, Tensor):
            raise TypeError(f"the {name} callable must return a tensor, got {type(out).__name__}")
    elif isinstance(baselines, (int, float, Tensor)) and not isinstance(baselines, bool):
        out = torch.as_tensor(baselines, dtype=inputs.dtype, device=inputs.device)
    else:
        raise TypeError(
            f"{name} must be a number, a tensor broadcastable to the inputs or a callable of "
            f"the inputs, got {type(baselines).__name__}"
        )
    try:
        out = out.to(dtype=inputs.dtype, device=inputs.device).expand_as(inputs)
    except RuntimeError:
        raise ValueError(
            f"{name} of shape {tuple(out.shape)} does not broadcast to the inputs' shape "
            f"{tuple(inputs.shape)}"
        ) from None
    return out
