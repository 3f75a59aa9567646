"""CNN Fixations: discriminative input locations found by unravelling the forward pass."""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from typing import Any, Literal, final

import torch
import torch.fx as fx
import torch.nn.functional as F
from captum.attr import Attribution
from torch import Tensor, nn

from captum_medcam._core.checks import (
    check_finite_float,
    check_inputs,
    check_target_type,
    format_additional_args,
    warn_if_training,
)
from captum_medcam._core.meta import unwrap_meta, wrap_meta
from captum_medcam._core.targets import per_sample_target
from captum_medcam.attr._interop import captum_attribute

__all__ = ["CNNFixations"]

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
    """One call of a module (or function) in the traced forward pass: its input and output."""

    name: str
    module: nn.Module
    input: Tensor
    output: Tensor


def _describe(call: _Call) -> str:
    return f"{type(call.module).__name__} ({call.name or 'the model'})"


#: Sum rules: the authors' code follows, at each point, the branch with the larger
#: activation; "both" follows every branch.
SumRule = Literal["larger", "both"]

_SAME_FUNCTIONS: tuple[Any, ...] = (
    F.relu,
    torch.relu,
    torch.relu_,
    F.relu6,
    F.leaky_relu,
    F.elu,
    F.gelu,
    F.silu,
    torch.sigmoid,
    torch.tanh,
    F.dropout,
    F.batch_norm,
)
_SAME_METHODS = {"relu", "relu_", "sigmoid", "tanh", "contiguous", "clone", "float", "double", "to"}
_RESHAPE_FUNCTIONS: tuple[Any, ...] = (torch.flatten, torch.reshape)
_RESHAPE_METHODS = {"flatten", "view", "reshape"}
_SUM_FUNCTIONS: tuple[Any, ...] = (operator.add, operator.iadd, torch.add)
_SUM_METHODS = {"add", "add_"}
_CAT_FUNCTIONS: tuple[Any, ...] = (torch.cat, torch.concat)


class _Recorder(fx.Interpreter):
    """Runs the traced graph and keeps a copy of every node's tensor output.

    Copies, because an in-place operation later in the forward (``out += residual``, an
    in-place ReLU) would otherwise change a recorded value.
    """

    def __init__(self, module: fx.GraphModule) -> None:
        super().__init__(module)
        self.values: dict[fx.Node, Any] = {}

    def run_node(self, n: fx.Node) -> Any:
        out = super().run_node(n)
        self.values[n] = out.detach().clone() if isinstance(out, Tensor) else out
        return out


def _trace(
    model: nn.Module, x: Tensor, args: tuple[Any, ...]
) -> tuple[fx.GraphModule, dict[fx.Node, Any], fx.Node]:
    """Trace ``model`` with ``torch.fx`` and run it once on ``(x, *args)``, recording values.

    The graph gives the data flow (residual additions, concatenations, reshapes in
    ``forward``), which hooks on modules cannot see. The user's model is not changed: the
    graph module calls the model's own submodules, and nothing is registered on them.

    Returns:
        ``(graph module, value of every node, the node of the model's output)``.
    """
    try:
        graph_module = fx.symbolic_trace(model)
    except Exception as error:  # fx raises many kinds (TraceError, TypeError, ...)
        raise NotImplementedError(
            f"CNN Fixations follows the model's forward as a torch.fx graph, and tracing "
            f"{type(model).__name__} failed ({type(error).__name__}: {error}); models with "
            "control flow on tensor values cannot be unravelled"
        ) from error
    recorder = _Recorder(graph_module)
    recorder.run(x, *args)
    output = next(n for n in graph_module.graph.nodes if n.op == "output")
    result = output.args[0]
    if not isinstance(result, fx.Node) or not isinstance(recorder.values.get(result), Tensor):
        raise NotImplementedError(
            f"the model returns {type(result).__name__}, not one tensor; CNN Fixations needs a "
            "model that returns (N, K) scores"
        )
    return graph_module, recorder.values, result


def _tensor_inputs(node: fx.Node, values: dict[fx.Node, Any]) -> list[fx.Node]:
    return [a for a in node.all_input_nodes if isinstance(values.get(a), Tensor)]


def _node_name(node: fx.Node) -> str:
    if node.op == "call_module":
        return str(node.target)
    target = node.target
    return f"{getattr(target, '__name__', target)} ({node.name})"


def _kind(node: fx.Node, graph_module: fx.GraphModule) -> str:
    """The rule that unravels ``node``: same, reshape, sum, cat, linear, conv, pool."""
    if node.op == "call_module":
        m = graph_module.get_submodule(str(node.target))
        if isinstance(m, _INDEX_PRESERVING):
            return "same"
        if isinstance(m, _RESHAPE):
            return "reshape"
        if isinstance(m, nn.Linear):
            return "linear"
        if isinstance(m, _CONV):
            return "conv"
        if isinstance(m, _MAX_POOL + _AVG_POOL + _ADAPTIVE_POOL):
            return "pool"
        return "unknown"
    if node.op == "call_function":
        t = node.target
        if t in _SAME_FUNCTIONS:
            return "same"
        if t in _RESHAPE_FUNCTIONS:
            return "reshape"
        if t in _SUM_FUNCTIONS:
            return "sum"
        if t in _CAT_FUNCTIONS:
            return "cat"
        return "unknown"
    if node.op == "call_method":
        if node.target in _SAME_METHODS:
            return "same"
        if node.target in _RESHAPE_METHODS:
            return "reshape"
        if node.target in _SUM_METHODS:
            return "sum"
        return "unknown"
    return "none"  # placeholders (other than the input) and parameters: the trace ends


def _reshape_points(points: Tensor, out: Tensor, inp: Tensor) -> Tensor:
    flat = _ravel(points[:, 1:], tuple(out.shape[1:]))
    return torch.cat([points[:, :1], _unravel(flat, tuple(inp.shape[1:]))], 1)


def _is_flattened_map(node: fx.Node, values: dict[fx.Node, Any], gm: fx.GraphModule) -> bool:
    """Whether ``node`` is a convolutional map flattened (past element-wise steps)."""
    while _kind(node, gm) == "same" and _tensor_inputs(node, values):
        node = _tensor_inputs(node, values)[0]
    if _kind(node, gm) != "reshape" or not _tensor_inputs(node, values):
        return False
    source = values[_tensor_inputs(node, values)[0]]
    return source.dim() > 2 and source[0, 0].numel() > 1


def _unravel_node(
    node: fx.Node,
    points: Tensor,
    values: dict[fx.Node, Any],
    gm: fx.GraphModule,
    sum_rule: SumRule,
) -> list[tuple[fx.Node, Tensor]]:
    """Carry ``points`` (example, index into ``node``'s output) to ``node``'s inputs."""
    kind = _kind(node, gm)
    if kind == "none":
        return []
    out = values[node]
    inputs = _tensor_inputs(node, values)
    if kind == "unknown" or not inputs:
        what = (
            f"{type(gm.get_submodule(str(node.target))).__name__} ({node.target})"
            if node.op == "call_module"
            else f"the function {_node_name(node)}"
        )
        raise NotImplementedError(
            f"CNN Fixations cannot unravel {what}; supported are Conv1d/2d/3d, Linear, max/"
            "average/global pooling, Flatten/view/reshape, residual additions, "
            "concatenations, and element-wise layers (ReLU, batch norm, dropout, ...)"
        )
    if kind == "sum":
        branches = [a for a in inputs if values[a].shape == out.shape]
        if not branches:
            raise NotImplementedError(
                f"the addition {_node_name(node)} broadcasts all its inputs; CNN Fixations "
                "follows additions of tensors of the output's shape"
            )
        if sum_rule == "both" or len(branches) == 1:
            return [(b, points) for b in branches]
        index = tuple(points.T)
        choice = torch.stack([values[b][index] for b in branches], 1).argmax(1)
        return [(b, points[choice == i]) for i, b in enumerate(branches)]
    if kind == "cat":
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
        assert isinstance(dim, int)
        dim = dim % out.dim()
        if dim == 0:
            raise NotImplementedError(
                f"{_node_name(node)} concatenates along the batch dim; CNN Fixations follows "
                "concatenations of features (dim >= 1)"
            )
        pieces = node.args[0]
        assert isinstance(pieces, (list, tuple))
        result, offset = [], 0
        for piece in pieces:
            value = values[piece] if isinstance(piece, fx.Node) else piece
            if not isinstance(value, Tensor):
                raise NotImplementedError(f"{_node_name(node)} concatenates a non-tensor")
            size = value.shape[dim]
            inside = (points[:, dim] >= offset) & (points[:, dim] < offset + size)
            if isinstance(piece, fx.Node) and bool(inside.any()):
                moved = points[inside].clone()
                moved[:, dim] -= offset
                result.append((piece, moved))
            offset += size
        return result
    src = inputs[0]
    inp = values[src]
    if kind == "same":
        if inp.shape != out.shape:
            raise NotImplementedError(
                f"{_node_name(node)} changes the shape {tuple(inp.shape)} to {tuple(out.shape)}"
            )
        return [(src, points)]
    if inp.shape[0] != out.shape[0]:
        raise NotImplementedError(
            f"{_node_name(node)} mixes examples (shape {tuple(inp.shape)} to {tuple(out.shape)})"
        )
    if kind == "reshape":
        return [(src, _reshape_points(points, out, inp))]
    module = gm.get_submodule(str(node.target))
    call = _Call(str(node.target), module, inp, out)
    if kind == "linear":
        return [(src, _back_linear(call, points, single=_is_flattened_map(src, values, gm)))]
    if kind == "conv":
        return [(src, _back_conv(call, points))]
    return [(src, _back_pool(call, points))]


def _backtrack(
    graph_module: fx.GraphModule,
    values: dict[fx.Node, Any],
    start: fx.Node,
    points: Tensor,
    sum_rule: SumRule,
) -> Tensor:
    """Carry ``points`` ``(M, 2)`` (example, class) from the output back to the input.

    Nodes are visited in reverse topological order, so every node has received the points
    of all its users (both branches of a residual block) before it passes them on.
    """
    graph = graph_module.graph
    source = next(n for n in graph.nodes if n.op == "placeholder")
    pending: dict[fx.Node, list[Tensor]] = {start: [points]}
    for node in reversed(graph.nodes):
        if node not in pending:
            continue
        here = torch.unique(torch.cat(pending.pop(node)), dim=0)
        if node is source:
            return here
        for target, moved in _unravel_node(node, here, values, graph_module, sum_rule):
            if moved.shape[0]:
                pending.setdefault(target, []).append(moved)
    raise NotImplementedError("the trace did not reach the model's input")


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
    * **Flatten** (and ``view``/``reshape``/``torch.flatten`` in ``forward``), and
      element-wise layers (ReLU, batch norm, dropout, softmax, ...): the same element.
    * **Residual sums** (``out + residual``): the branch whose activation at the point is
      the larger, as the authors' ResNet code does (``sum_rule="larger"``), or every branch
      (``sum_rule="both"``). An addend broadcast to the output's shape (a bias) is not
      followed.
    * **Concatenations** (``torch.cat`` along a feature dim, DenseNet's dense layers): each
      point goes to the input that holds it, at its index within that input, as the
      authors' GoogLeNet code splits inception outputs.

    The points that reach the input (channels dropped) are the fixations. Outliers are
    removed as in the authors' code: a point is kept when more than ``outlier_fraction`` of
    all points lie within ``outlier_radius`` times the input's diagonal. The density map puts
    a unit mass on each fixation and blurs it with a Gaussian of width ``sigma``.

    Decisions the paper leaves open, made here: an FC output with no positive contribution
    keeps its largest one (so a trace never dies out); a convolution maps to the centre of the
    window (the authors' ``stride * p``, which is the centre for "same" padding); ties take
    the first maximum; the density map is not normalised (a display step).

    The forward pass is followed as a ``torch.fx`` graph, so MONAI's ResNets (its
    ``ResNetBlock``/``ResNetBottleneck``, batch norm, adaptive pooling) and DenseNets (dense
    layers, transitions) in 2D and 3D are unravelled through their sums and
    concatenations; the points of every consumer of a tensor are gathered before the tensor
    passes them on. A forward with control flow on tensor values cannot be traced, and an
    operation without a rule (e.g. a transposed convolution or an upsampling) raises
    ``NotImplementedError`` naming it. The model is not changed (no hooks, no mode change).

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
        sum_rule: SumRule = "larger",
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
            sum_rule: how a point of a residual sum is carried back: ``"larger"`` follows
                the branch whose activation at the point is the larger (the authors' ResNet
                code); ``"both"`` follows every branch.

        Returns:
            One long tensor ``(P_i, d)`` per example: the input coordinates of its fixations,
            sorted, without duplicates.

        Raises:
            TypeError: inputs not a floating tensor.
            ValueError: wrong input dims, NaN/inf inputs, a target out of range, a model
                output that is not ``(N, K)``, bad outlier options, an unknown ``sum_rule``.
            NotImplementedError: a model that ``torch.fx`` cannot trace, or an operation
                without a rule (named in the message).
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
        if sum_rule not in ("larger", "both"):
            raise ValueError(f"sum_rule must be 'larger' or 'both', got {sum_rule!r}")
        with torch.no_grad():
            graph_module, values, last = _trace(model, x, args)
            output = values[last]
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
            points = _backtrack(graph_module, values, last, start, sum_rule)
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
        sum_rule: SumRule = "larger",
    ) -> Tensor:
        """The density map of the fixations at input resolution.

        Args:
            inputs, target, additional_forward_args, outlier_radius, outlier_fraction,
                sum_rule: as in :meth:`fixations`.
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
            sum_rule=sum_rule,
        )
        with torch.no_grad():
            density = fixation_density(points, size, sigma, dtype=x.dtype)
        return wrap_meta(density.to(x.device), inputs)
