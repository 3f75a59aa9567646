"""CNN Fixations: discriminative input locations found by unravelling the forward pass."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, final

import torch
import torch.nn.functional as F
from captum.attr import Attribution
from torch import Tensor, nn

from captum_medcam.attr._checks import (
    check_finite_float,
    check_inputs,
    check_target_type,
    format_additional_args,
    per_sample_target,
    unwrap_meta,
    warn_if_training,
    wrap_meta,
)
from captum_medcam.attr._interop import captum_attribute

__all__ = ["CNNFixations", "fixation_density"]

#: Modules that map each element to the element at the same index (possibly mixing
#: values along a dim, as softmax and batch norm do, but never moving them).
_INDEX_PRESERVING: tuple[type[nn.Module], ...] = (
    nn.Identity,
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.ELU,
    nn.SELU,
    nn.GELU,
    nn.SiLU,
    nn.Sigmoid,
    nn.Tanh,
    nn.Softmax,
    nn.LogSoftmax,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
)
_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_MAX_POOL = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)
_AVG_POOL = (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)
_ADAPTIVE_POOL = (
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d,
)
_RESHAPE = (nn.Flatten, nn.Unflatten)
_MAX_POOL_FN = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}


@dataclass
class _Call:
    """One call of a leaf module during the traced forward pass."""

    name: str
    module: nn.Module
    input: Tensor
    output: Tensor
    output_version: int


def _describe(call: _Call) -> str:
    return f"{type(call.module).__name__} ({call.name or 'the model'})"


def _trace(model: nn.Module, x: Tensor, args: tuple[Any, ...]) -> tuple[Tensor, list[_Call]]:
    """Run ``model(x, *args)`` once and record every leaf module's input and output.

    The forward must be a chain: each leaf's input is the previous leaf's output, untouched,
    and the model's output is the last leaf's output. Anything else (a residual addition, a
    ``view`` or another function applied in ``forward``) cannot be unravelled with the rules
    of the paper and raises ``NotImplementedError`` naming the module where the chain breaks.
    Hooks live for this call only.
    """
    names = {m: name for name, m in model.named_modules()}
    by_name = {name: m for m, name in names.items()}

    def inside(name: str) -> str:
        parent = name.rpartition(".")[0]
        if not name or parent not in by_name:
            return ""
        return f" inside {type(by_name[parent]).__name__} ({parent or 'the model'})"

    calls: list[_Call] = []
    problem: list[str] = []

    def pre_hook(module: nn.Module, inp: tuple[Any, ...]) -> None:
        if problem or module is model:
            return
        name = names.get(module, "?")
        tensors = [a for a in inp if isinstance(a, Tensor)]
        if len(inp) != 1 or len(tensors) != 1:
            problem.append(
                f"{type(module).__name__} ({name}) takes {len(inp)} arguments, not one tensor"
            )
            return
        prev = calls[-1] if calls else None
        source = prev.output if prev is not None else x
        version = prev.output_version if prev is not None else x._version
        if tensors[0] is not source or tensors[0]._version != version:
            where = f"the output of {_describe(prev)}" if prev is not None else "the model's input"
            problem.append(
                f"the input of {type(module).__name__} ({name}){inside(name)} is not {where}: "
                "the forward pass is not a chain of layers (a residual addition, a skip connection, or a "
                "function applied in forward such as x.view(...) or x + y)"
            )

    def leaf_hook(module: nn.Module, inp: tuple[Any, ...], out: Any) -> None:
        if problem:
            return
        if not isinstance(out, Tensor):
            problem.append(
                f"{type(module).__name__} ({names.get(module, '?')}) returns a {type(out).__name__}, not a tensor"
            )
            return
        calls.append(_Call(names.get(module, "?"), module, inp[0], out, out._version))

    def container_hook(module: nn.Module, _inp: tuple[Any, ...], out: Any) -> None:
        if problem or not calls:
            return
        if out is not calls[-1].output or out._version != calls[-1].output_version:
            problem.append(
                f"the output of {type(module).__name__} ({names.get(module, '?')}) is not the "
                f"output of its last layer {_describe(calls[-1])}: its forward applies a function "
                "(e.g. a residual addition) that cannot be unravelled"
            )

    handles = []
    try:
        for module in model.modules():
            handles.append(module.register_forward_pre_hook(pre_hook))
            leaf = next(module.children(), None) is None
            handles.append(module.register_forward_hook(leaf_hook if leaf else container_hook))
        output = model(x, *args)
    finally:
        for handle in handles:
            handle.remove()
    if problem:
        raise NotImplementedError(f"CNN Fixations cannot trace this model: {problem[0]}")
    if not calls:
        raise NotImplementedError("CNN Fixations found no layer to trace in the model")
    if not isinstance(output, Tensor) or output is not calls[-1].output:
        raise NotImplementedError(
            f"the model's output is not the output of its last layer {_describe(calls[-1])}: "
            "its forward applies a function after it that cannot be unravelled"
        )
    return output, calls


def _unravel(flat: Tensor, shape: tuple[int, ...]) -> Tensor:
    """Flat indices ``(M,)`` to coordinates ``(M, len(shape))``."""
    return torch.stack(torch.unravel_index(flat, shape), dim=1)


def _ravel(coords: Tensor, shape: tuple[int, ...]) -> Tensor:
    """Coordinates ``(M, len(shape))`` to flat indices ``(M,)``."""
    flat = torch.zeros(coords.shape[0], dtype=torch.long, device=coords.device)
    for dim, size in enumerate(shape):
        flat = flat * size + coords[:, dim]
    return flat


def _back_linear(call: _Call, points: Tensor, single: bool) -> Tensor:
    """FC layer: inputs whose contribution ``a_i W[j, i]`` to a selected output is positive.

    ``single`` keeps only the largest contribution (the input is a flattened convolutional
    map, as in the authors' code). An output with no positive contribution keeps its largest
    one, so that the trace never dies out.
    """
    assert isinstance(call.module, nn.Linear)
    a, weight = call.input, call.module.weight  # (N, F), (K, F)
    if a.dim() != 2:
        raise NotImplementedError(
            f"{_describe(call)} is applied to an input of shape {tuple(a.shape)}; CNN Fixations "
            "supports linear layers on (N, features)"
        )
    n, j = points[:, 0], points[:, 1]
    contrib = a[n] * weight.to(a.dtype)[j]  # (M, F)
    best = contrib.argmax(1)
    if single:
        return torch.stack([n, best], 1)
    keep = contrib > 0
    keep[torch.arange(keep.shape[0], device=keep.device), best] = True
    rows, cols = keep.nonzero(as_tuple=True)
    return torch.stack([n[rows], cols], 1)


def _back_pool(call: _Call, points: Tensor) -> Tensor:
    """Pooling: the location of the largest input in the window (max and average pooling)."""
    m, a = call.module, call.input
    spatial = tuple(a.shape[2:])
    dims = len(spatial)
    if isinstance(m, _ADAPTIVE_POOL):
        out = tuple(call.output.shape[2:])
        if any(s % o for s, o in zip(spatial, out, strict=True)):
            raise NotImplementedError(
                f"{_describe(call)} pools {spatial} to {out}, windows of unequal size; CNN "
                "Fixations supports global pooling or sizes that divide the input"
            )
        kernel = stride = tuple(s // o for s, o in zip(spatial, out, strict=True))
        padding, dilation, ceil_mode = 0, 1, False
    else:
        kernel, stride, padding = m.kernel_size, m.stride, m.padding  # type: ignore[assignment]
        dilation = getattr(m, "dilation", 1)
        ceil_mode = m.ceil_mode  # type: ignore[assignment]
    # Max pooling of the input gives, for every window, the location of its largest entry;
    # for average pooling too (max pooling pads with -inf, so padding is never chosen).
    _, index = _MAX_POOL_FN[dims](
        a, kernel, stride, padding, dilation, ceil_mode=bool(ceil_mode), return_indices=True
    )
    flat = index[tuple(points.T)]
    return torch.cat([points[:, :2], _unravel(flat, spatial)], 1)


def _back_conv(call: _Call, points: Tensor) -> Tensor:
    """Convolution: the input channel with the largest contribution summed over the window.

    The location is the centre of the window (the authors' code maps ``p`` to ``stride * p``,
    which is the centre for the usual "same" padding); a centre in the padding is clamped
    into the input.
    """
    m, a = call.module, call.input
    assert isinstance(m, _CONV)
    spatial = tuple(a.shape[2:])
    dims = len(spatial)
    stride, dilation, kernel = m.stride, m.dilation, m.kernel_size
    pads = m._reversed_padding_repeated_twice  # (last dim left, right, ..., first dim left, right)
    left = [pads[2 * (dims - 1 - d)] for d in range(dims)]
    mode = "constant" if m.padding_mode == "zeros" else m.padding_mode
    padded = F.pad(a, tuple(pads), mode=mode)
    n, co, pos = points[:, 0], points[:, 1], points[:, 2:]
    offsets = torch.cartesian_prod(*[torch.arange(k, device=a.device) for k in kernel]).view(
        -1, dims
    )
    dev = torch.tensor(dilation, device=a.device)
    coords = pos.unsqueeze(1) * torch.tensor(stride, device=a.device) + offsets * dev  # (M, K, d)
    index: tuple[Any, ...] = (n.unsqueeze(1), slice(None), *coords.unbind(-1))
    window = padded[index]  # (M, K, C_in)
    group_in = m.in_channels // m.groups
    first = (co // (m.out_channels // m.groups)) * group_in
    channels = first.unsqueeze(1) + torch.arange(group_in, device=a.device)  # (M, C_in/g)
    window = window.gather(2, channels.unsqueeze(1).expand(-1, window.shape[1], -1))
    weight = m.weight.to(a.dtype)[co].flatten(2)  # (M, C_in/g, K)
    contrib = torch.einsum("mkc,mck->mc", window, weight)
    channel = first + contrib.argmax(1)
    centre = torch.tensor(
        [dilation[d] * ((kernel[d] - 1) // 2) - left[d] for d in range(dims)], device=a.device
    )
    location = pos * torch.tensor(stride, device=a.device) + centre
    location = torch.minimum(location.clamp(min=0), torch.tensor(spatial, device=a.device) - 1)
    return torch.cat([n.unsqueeze(1), channel.unsqueeze(1), location], 1)


def _backtrack(calls: list[_Call], points: Tensor) -> Tensor:
    """Carry ``points`` ``(M, 1 + k)`` (example, index into the output) back to the input."""
    for i in range(len(calls) - 1, -1, -1):
        call = calls[i]
        m = call.module
        if isinstance(m, _INDEX_PRESERVING) and call.input.shape == call.output.shape:
            pass
        elif isinstance(m, _RESHAPE):
            flat = _ravel(points[:, 1:], tuple(call.output.shape[1:]))
            points = torch.cat([points[:, :1], _unravel(flat, tuple(call.input.shape[1:]))], 1)
        elif isinstance(m, nn.Linear):
            j = i - 1  # look past element-wise layers (e.g. dropout) for a flattened map
            while j >= 0 and isinstance(calls[j].module, _INDEX_PRESERVING):
                j -= 1
            from_map = (
                j >= 0
                and isinstance(calls[j].module, _RESHAPE)
                and calls[j].input.dim() > 2
                and calls[j].input[0, 0].numel() > 1
            )
            points = _back_linear(call, points, single=from_map)
        elif isinstance(m, _CONV):
            points = _back_conv(call, points)
        elif isinstance(m, _MAX_POOL + _AVG_POOL + _ADAPTIVE_POOL):
            points = _back_pool(call, points)
        else:
            raise NotImplementedError(
                f"CNN Fixations cannot unravel {_describe(call)}; supported layers are Conv1d/2d/3d, "
                "Linear, max/average/global pooling, Flatten, and element-wise layers (ReLU, "
                "batch norm, dropout, ...)"
            )
        points = torch.unique(points, dim=0)
    return points


def fixation_density(
    points: list[Tensor],
    size: tuple[int, ...],
    sigma: float,
    *,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Density map of fixation points: a unit mass at each point, blurred by a Gaussian.

    Args:
        points: one long tensor ``(P_i, d)`` of input coordinates per example.
        size: the spatial size ``S`` (``d`` ints).
        sigma: the Gaussian's standard deviation in voxels (0 for no blur). The kernel is
            truncated at ``3 sigma`` and mass blurred across the border is lost.
        dtype: the map's dtype.

    Returns:
        ``(N, 1, *S)``; each map sums to the number of its points when no point is near the
        border.
    """
    sigma = check_finite_float(sigma, "sigma", low=0)
    device = points[0].device if points else torch.device("cpu")
    maps = torch.zeros(len(points), 1, *size, dtype=dtype, device=device)
    for i, p in enumerate(points):
        if p.numel():
            maps[i, 0].view(-1).index_put_(
                (_ravel(p, size),),
                torch.ones(p.shape[0], dtype=dtype, device=device),
                accumulate=True,
            )
    if sigma == 0:
        return maps
    radius = max(1, math.ceil(3 * sigma))
    if radius <= _MAX_KERNEL_RADIUS:
        t = torch.arange(-radius, radius + 1, dtype=dtype, device=device)
        kernel = torch.exp(-0.5 * (t / sigma) ** 2)
        kernel = kernel / kernel.sum()
    else:  # offsets beyond the map never land in it: keep those that can, normalise exactly
        total = _gaussian_sum(radius, sigma)
        radius = max(size)
        t = torch.arange(-radius, radius + 1, dtype=torch.float64, device=device)
        kernel = (torch.exp(-0.5 * (t / sigma) ** 2) / total).to(dtype)
    conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[len(size)]
    for d in range(len(size)):
        shape = [1, 1] + [1] * len(size)
        shape[2 + d] = kernel.numel()
        padding = [0] * len(size)
        padding[d] = radius
        maps = conv(maps, kernel.view(shape), padding=tuple(padding))
    return maps


#: Above this kernel radius (a sigma wider than any volume) the kernel is cut to the map.
_MAX_KERNEL_RADIUS = 2**20


def _gaussian_sum(radius: int, sigma: float) -> float:
    """``sum_{|t| <= radius} exp(-t^2 / (2 sigma^2))`` for a large ``sigma`` (Euler-Maclaurin).

    The next correction is of relative order ``sigma^-4``, below float64's precision for the
    ``sigma > 2^20 / 3`` this is used for.
    """
    edge = math.exp(-0.5 * (radius / sigma) ** 2)
    integral = sigma * math.sqrt(math.pi / 2) * math.erf(radius / (sigma * math.sqrt(2)))
    return 2 * integral + edge - radius / sigma**2 * edge / 6


def _remove_outliers(points: Tensor, radius: float, fraction: float) -> Tensor:
    """Keep points with more than ``fraction`` of all points within ``radius`` (itself included)."""
    if points.shape[0] == 0:
        return points
    p = points.to(torch.float64)
    neighbours = (torch.cdist(p, p) < radius).sum(1)
    return points[neighbours > fraction * points.shape[0]]


@final
class CNNFixations(Attribution):
    r"""CNN Fixations: the input locations that the prediction depends on, found by unravelling
    the forward pass from the target class back to the input, without gradients.

    One forward pass records every layer's input. Starting from the target class, the
    selected neurons are carried back layer by layer:

    * **Linear**: the inputs ``i`` with a positive contribution ``a_i W[j, i]`` to a selected
      output ``j``; when the input is a flattened convolutional map, only the largest
      contribution (as the authors' code does).
    * **Convolution**: the input channel with the largest contribution
      ``sum_window a * W[j]`` (bias ignored), at the centre of the window.
    * **Max, average and global pooling**: the location of the largest input in the window.
    * **Flatten**, and element-wise layers (ReLU, batch norm, dropout, softmax, ...): the
      same element.

    The points that reach the input (channels dropped) are the fixations. Outliers are
    removed as in the authors' code: a point is kept when more than ``outlier_fraction`` of
    all points lie within ``outlier_radius`` times the input's diagonal. The density map puts
    a unit mass on each fixation and blurs it with a Gaussian of width ``sigma``.

    Decisions the paper leaves open, made here: an FC output with no positive contribution
    keeps its largest one (so a trace never dies out); a convolution maps to the centre of the
    window (the authors' ``stride * p``, which is the centre for "same" padding); ties take
    the first maximum; the density map is not normalised (a display step).

    Only chains of layers can be unravelled: ``nn.Sequential`` models, nested, or modules
    whose ``forward`` calls their layers one after the other. A residual addition, a skip
    connection or a function applied in ``forward`` (``x.view``, ``x + y``) is detected
    during the traced forward and raises ``NotImplementedError`` naming the module, as does
    a layer without a rule (e.g. a transposed convolution).

    References:
        Mopuri, Garg, Babu. "CNN Fixations: An Unraveling Approach to Visualize the
        Discriminative Image Regions". IEEE Transactions on Image Processing 28(5), 2019.
        arXiv:1708.06670.

    Args:
        forward_func: the model, an ``nn.Module`` returning ``(N, K)``.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from captum_medcam import CNNFixations
        >>> model = nn.Sequential(nn.Conv3d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool3d(2),
        ...                       nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(4, 2)).eval()
        >>> fix = CNNFixations(model)
        >>> x = torch.randn(2, 1, 16, 16, 16)
        >>> points = fix.fixations(x, target=[0, 1])
        >>> points[0].shape[1], fix.attribute(x, target=[0, 1], sigma=2.0).shape
        (3, torch.Size([2, 1, 16, 16, 16]))
    """

    def __init__(self, forward_func: nn.Module) -> None:
        if not isinstance(forward_func, nn.Module):
            raise TypeError(
                "CNN Fixations reads the model's layers: forward_func must be a torch.nn.Module, "
                f"got {type(forward_func).__name__}"
            )
        super().__init__(forward_func)

    def fixations(
        self,
        inputs: Tensor,
        target: Any = None,
        additional_forward_args: Any = None,
        *,
        outlier_radius: float | None = 0.1,
        outlier_fraction: float = 0.05,
    ) -> list[Tensor]:
        """The fixation points of each example.

        Args:
            inputs: ``(N, C, *S)`` with 1 to 3 spatial dims, floating point.
            target: the class to explain, as in Captum: an int, or a tensor or list with one
                class per example; None when the model returns one score per example.
            additional_forward_args: further arguments of the model, as in Captum.
            outlier_radius: neighbourhood radius as a fraction of the input's diagonal (0.1 in
                the authors' code); None keeps every point.
            outlier_fraction: a point is kept when more than this fraction of all points of
                its example lie within the radius (0.05 in the authors' code).

        Returns:
            One long tensor ``(P_i, d)`` per example: the input coordinates of its fixations,
            sorted, without duplicates.

        Raises:
            TypeError: inputs not a floating tensor.
            ValueError: wrong input dims, NaN/inf inputs, a target out of range, a model
                output that is not ``(N, K)``, bad outlier options.
            NotImplementedError: a model that is not a chain of supported layers.
        """
        x = check_inputs(unwrap_meta(inputs))
        check_target_type(target)
        if outlier_radius is not None:
            check_finite_float(outlier_radius, "outlier_radius", low=0, low_open=True)
        check_finite_float(outlier_fraction, "outlier_fraction", low=0, high=1, high_open=True)
        args = format_additional_args(additional_forward_args)
        model = self.forward_func
        assert isinstance(model, nn.Module)
        warn_if_training(model)
        n = x.shape[0]
        with torch.no_grad():
            output, calls = _trace(model, x, args)
            if output.dim() != 2:
                raise ValueError(
                    f"CNN Fixations needs a model output of shape (N, K), got {tuple(output.shape)}"
                )
            targets = per_sample_target(target, n, output)
            if targets is None:
                targets = torch.zeros(n, dtype=torch.long, device=output.device)
            elif not isinstance(targets, Tensor):
                raise ValueError(f"CNN Fixations needs integer class targets, got {target!r}")
            start = torch.stack(
                [torch.arange(n, device=output.device), targets.to(output.device)], 1
            )
            points = _backtrack(calls, start)
            if points.shape[1] != x.dim():
                raise NotImplementedError(
                    f"the trace ended at shape {tuple(calls[0].input.shape)}, not at the inputs"
                )
            spatial = torch.unique(torch.cat([points[:, :1], points[:, 2:]], 1), dim=0)
            per_example = [spatial[spatial[:, 0] == i, 1:] for i in range(n)]
            if outlier_radius is not None:
                diagonal = math.sqrt(sum(s * s for s in x.shape[2:]))
                per_example = [
                    _remove_outliers(p, outlier_radius * diagonal, outlier_fraction)
                    for p in per_example
                ]
        return per_example

    @captum_attribute
    def attribute(
        self,
        inputs: Tensor,
        target: Any = None,
        additional_forward_args: Any = None,
        *,
        sigma: float | None = None,
        outlier_radius: float | None = 0.1,
        outlier_fraction: float = 0.05,
    ) -> Tensor:
        """The density map of the fixations at input resolution.

        Args:
            inputs, target, additional_forward_args, outlier_radius, outlier_fraction: as in
                :meth:`fixations`.
            sigma: the Gaussian's standard deviation in voxels; None uses ``min(S) / 11``
                (20 pixels on a 224 image, the authors' setting); 0 gives the points alone.

        Returns:
            ``(N, 1, *S)`` in the inputs' dtype and device, not normalised. A MONAI
            ``MetaTensor`` input gives a ``MetaTensor`` with its metadata.

        Raises:
            The errors of :meth:`fixations`, and ValueError for a negative ``sigma``.
        """
        x = check_inputs(unwrap_meta(inputs))
        size = tuple(x.shape[2:])
        sigma = min(size) / 11 if sigma is None else check_finite_float(sigma, "sigma", low=0)
        points = self.fixations(
            x,
            target,
            additional_forward_args,
            outlier_radius=outlier_radius,
            outlier_fraction=outlier_fraction,
        )
        with torch.no_grad():
            density = fixation_density(points, size, sigma, dtype=x.dtype)
        return wrap_meta(density.to(x.device), inputs)
