"""Substrates for perturbation metrics: what a deleted voxel or region is replaced by.

Each factory returns a callable ``baseline(inputs) -> Tensor`` shaped like ``inputs``
``(N, C, *S)``, on the inputs' device and dtype. The metrics also take a number or a
tensor broadcastable to the inputs, as Captum's ``baselines``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from captum_medcam._core.checks import (
    DEFAULT_SEED,
    check_choice,
    check_finite_float,
    check_positive_int,
    make_generator,
)

__all__ = [
    "blur_baseline",
    "gaussian_blur",
    "mean_baseline",
    "normal_noise_baseline",
    "uniform_noise_baseline",
]

#: A number, a tensor broadcastable to the inputs, or a callable of the inputs.
Baseline = float | int | Tensor | Callable[[Tensor], Tensor]

PaddingMode = Literal["zeros", "reflect", "replicate"]
_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


#: Above this radius (sigma > 2^18 voxels) the kernel is its uniform limit.
_MAX_RADIUS = 2**20


def _rise_kernel1d(
    kernel_size: int, sigma: float, dtype: torch.dtype, device: torch.device
) -> Tensor:
    """The 1-D factor of RISE's ``gkern``: SciPy's ``gaussian_filter`` of a centred delta.

    SciPy samples a Gaussian of radius ``int(4 * sigma + 0.5)``, normalises it, and filters
    with ``mode="reflect"`` (``d c b a | a b c d | d c b a``): the tails that fall outside
    the ``kernel_size`` window are folded back in, so the kernel sums to 1.
    """
    radius = int(4.0 * sigma + 0.5)
    if radius > _MAX_RADIUS:  # the reflected Gaussian is flat to ~(k / sigma)^2 < 1e-8
        return torch.full((kernel_size,), 1.0 / kernel_size, dtype=dtype, device=device)
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
    check_finite_float(sigma, "sigma", low=0, low_open=True)
    check_choice(padding_mode, "padding_mode", ("zeros", "reflect", "replicate"))


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


def _noise(draw: Callable[..., Tensor], generator: int | torch.Generator, inputs: Tensor) -> Tensor:
    """Standard noise shaped like ``inputs``, from a seed or from the caller's generator.

    A seed draws one ``(1, C, *S)`` sample on the CPU from a new generator and gives it to
    every example: the same seed gives the same noise on every call, on every device and
    for any batch composition (so a data set split over processes gets the noise of a
    single process). A ``torch.Generator`` draws ``(N, C, *S)`` on its own device and
    advances.
    """
    if isinstance(generator, torch.Generator):
        z = draw(inputs.shape, generator=generator, dtype=inputs.dtype, device=generator.device)
        return z.to(inputs.device)
    g = make_generator(generator)
    z = draw((1, *inputs.shape[1:]), generator=g, dtype=inputs.dtype)
    return z.to(inputs.device).expand_as(inputs)


def uniform_noise_baseline(
    low: float | None = None,
    high: float | None = None,
    *,
    generator: int | torch.Generator = DEFAULT_SEED,
) -> Callable[[Tensor], Tensor]:
    """A baseline of uniform noise on ``[low, high)`` (Samek et al.'s AOPC perturbation).

    Args:
        low, high: the range (finite numbers); None takes each example's own minimum and
            maximum.
        generator: an int seed (default 0) or a ``torch.Generator``. A seed gives the same
            noise pattern on every call and to every example (scaled to its range), so a
            metric is reproducible and does not depend on how examples are batched. A
            generator draws independent noise for every example and every call, from its
            own state. Torch's global random state is never used.

    Raises:
        TypeError: a range bound that is not a number, a generator of another type.
        ValueError: NaN/inf bounds, ``low >= high``, a negative seed.

    Example:
        >>> import torch
        >>> noise = uniform_noise_baseline(0.0, 1.0, generator=0)
        >>> x = torch.zeros(2, 1, 3)
        >>> torch.equal(noise(x), noise(x)), noise(x).shape
        (True, torch.Size([2, 1, 3]))
    """
    if low is not None:
        low = check_finite_float(low, "low")
    if high is not None:
        high = check_finite_float(high, "high")
    if low is not None and high is not None and not low < high:
        raise ValueError(f"uniform noise needs low < high, got low={low}, high={high}")
    make_generator(generator)  # refuse a bad generator now, not at the first call

    def uniform(inputs: Tensor) -> Tensor:
        dims = tuple(range(1, inputs.dim()))
        lo = inputs.amin(dim=dims, keepdim=True) if low is None else low
        hi = inputs.amax(dim=dims, keepdim=True) if high is None else high
        return lo + (hi - lo) * _noise(torch.rand, generator, inputs)

    return uniform


def normal_noise_baseline(
    mean: float = 0.0, std: float = 1.0, *, generator: int | torch.Generator = DEFAULT_SEED
) -> Callable[[Tensor], Tensor]:
    """A baseline of normal noise ``N(mean, std^2)`` (the X-ray AOPC study: mean 0, std 0.1).

    To add noise to the perturbed regions instead of replacing them, pass
    ``lambda x: x + normal_noise_baseline(0, 0.1)(x)`` as the baseline.

    Args:
        mean, std: of the noise, finite numbers, ``std >= 0``.
        generator: an int seed (default 0) or a ``torch.Generator``, as in
            :func:`uniform_noise_baseline`.

    Raises:
        TypeError: a mean or std that is not a number, a generator of another type.
        ValueError: NaN/inf, a negative std, a negative seed.

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> normal_noise_baseline(0.0, 0.1, generator=g)(torch.zeros(1, 1, 2)).shape
        torch.Size([1, 1, 2])
    """
    mean = check_finite_float(mean, "mean")
    std = check_finite_float(std, "std", low=0)
    make_generator(generator)

    def normal(inputs: Tensor) -> Tensor:
        return mean + std * _noise(torch.randn, generator, inputs)

    return normal
