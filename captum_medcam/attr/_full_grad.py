"""FullGrad: the input-gradient and the bias-gradients of every layer, post-processed and summed.

Srinivas and Fleuret. "Full-Gradient Representation for Neural Network Visualization".
NeurIPS 2019, arXiv:1905.00780.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple, cast, final

import torch
from captum.attr import GradientAttribution
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd

from captum_medcam._core.checks import (
    check_choice,
    check_flags,
    check_inputs,
    check_target_type,
    format_additional_args,
    warn_if_training,
)
from captum_medcam._core.meta import unwrap_meta, wrap_meta
from captum_medcam._core.spatial import interpolation_mode, resize
from captum_medcam._core.targets import per_sample_target, select_target
from captum_medcam.attr._derivatives import check_grad_mode, grad_ready
from captum_medcam.attr._hooks import check_model_output
from captum_medcam.attr._interop import captum_attribute

__all__ = ["FullGrad", "FullGrad3D"]

#: How each gradient map is rescaled to [0, 1] before the sum: over all channels and
#: positions of an example (the authors' code) or per channel (pytorch-grad-cam).
NORMALIZE_OVER: tuple[str, ...] = ("sample", "channel")


def effective_bias(module: nn.Module) -> Tensor | None:
    """The bias a module adds to its output, or None.

    Convolutions and linear layers: their ``bias``. Batch norm with running statistics (in
    eval mode) is ``x w / s + (b - mu w / s)`` with ``s = sqrt(var + eps)``, so its bias is
    ``b - mu w / s`` (``w = 1``, ``b = 0`` without affine parameters), as in the authors'
    code. Batch norm without running statistics normalises with the batch's own, so it adds
    no fixed bias (None).

    Returns:
        ``(C,)`` (detached), or None.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> bn = nn.BatchNorm1d(2).eval()
        >>> bn.running_mean.fill_(3.0)
        tensor([3., 3.])
        >>> effective_bias(bn)  # -3 / sqrt(1 + 1e-5)
        tensor([-3.0000, -3.0000])
    """
    if isinstance(module, _BatchNorm):
        if module.running_mean is None or module.running_var is None:
            return None
        scale = (module.running_var + module.eps).rsqrt()
        weight = module.weight if module.weight is not None else torch.ones_like(scale)
        shift = module.bias if module.bias is not None else torch.zeros_like(scale)
        return (shift - module.running_mean * weight * scale).detach()
    if isinstance(module, (_ConvNd, nn.Linear)) and module.bias is not None:
        return module.bias.detach()
    return None


def bias_modules(model: nn.Module) -> list[tuple[nn.Module, Tensor]]:
    """Every convolution, batch norm and linear layer of ``model`` with an effective bias.

    Returns:
        ``(module, bias)`` pairs in ``model.modules()`` order.
    """
    found = []
    for module in model.modules():
        bias = effective_bias(module)
        if bias is not None:
            found.append((module, bias))
    return found


class FullGradients(NamedTuple):
    """The full-gradient decomposition of the target scores, detached.

    Attributes:
        scores: ``(N,)``, the target scores ``f_c(x)``.
        input_gradient: ``(N, C, *S)``, ``df_c/dx``.
        bias_gradients: one tensor per call of a bias module, ``(df_c/dz) * b`` with ``z``
            the module's output: ``(N, C_l, *S_l)`` for convolutions and batch norm (bias
            on dim 1), the output's shape for linear layers (bias on the last dim).
        channel_first: per entry of ``bias_gradients``, True for convolutions and batch norm.
    """

    scores: Tensor
    input_gradient: Tensor
    bias_gradients: list[Tensor]
    channel_first: list[bool]


def full_gradients(
    forward_func: Callable[..., Any],
    modules: list[tuple[nn.Module, Tensor]],
    inputs: Tensor,
    target: Any,
    args: tuple[Any, ...] = (),
) -> FullGradients:
    r"""One forward and one backward pass: the gradient of the target scores with respect to
    the input and to the output of every bias module.

    For a network of linear layers, biases and piecewise-linear activations (ReLU, max
    pooling; batch norm in eval mode), the decomposition is complete::

        f_c(x) = sum(df_c/dx * x) + sum_l sum(df_c/dz_l * b_l)

    The hooks live for this call only; each returns a copy of the module's output, so an
    in-place operation after the module cannot change the tensor that is differentiated.

    Args:
        forward_func: the model or a function of ``(inputs, *args)``.
        modules: ``(module, bias)`` pairs, e.g. from :func:`bias_modules`.
        inputs: ``(N, C, *S)``.
        target: a Captum target.
        args: additional forward arguments.

    Returns:
        A :class:`FullGradients`, in the dtype of ``inputs``.

    Raises:
        RuntimeError: called under ``torch.inference_mode()``.
        ValueError: a target that does not fit the output, or scores that do not depend on
            the input.
    """
    check_grad_mode()
    n = inputs.shape[0]
    captured: list[tuple[Tensor, Tensor, bool]] = []
    biases = {id(m): (b, not isinstance(m, nn.Linear)) for m, b in modules}

    def hook(module: nn.Module, _inp: tuple[Any, ...], out: Any) -> Any:
        if not isinstance(out, Tensor):
            return None
        bias, channel_first = biases[id(module)]
        captured.append((out, bias, channel_first))
        return out.clone()

    handles = [m.register_forward_hook(hook) for m, _ in modules]
    try:
        with torch.enable_grad():
            x = grad_ready(inputs)
            output = check_model_output(forward_func(x, *args))
            targets = per_sample_target(target, n, output)
            scores = select_target(output, targets, torch.arange(n, device=output.device))
            wrt = [x] + [out for out, _, _ in captured if out.requires_grad]
            grads = list(torch.autograd.grad(scores.sum(), wrt, allow_unused=True))
    finally:
        for h in handles:
            h.remove()
    input_grad = grads.pop(0)
    if input_grad is None:
        raise ValueError(
            "the target scores do not depend on the inputs, so FullGrad has no input-gradient; "
            "check that the model uses its input"
        )
    dtype = inputs.dtype
    bias_grads, channel_first = [], []
    for out, bias, first in captured:
        grad = grads.pop(0) if out.requires_grad else None
        if grad is None:
            grad = torch.zeros_like(out)
        b = bias.to(grad.device, grad.dtype)
        shape = (1, -1, *([1] * (grad.dim() - 2))) if first else (-1,)
        bias_grads.append((grad * b.view(shape)).detach().to(dtype))
        channel_first.append(first)
    return FullGradients(
        scores.detach().to(dtype), input_grad.detach().to(dtype), bias_grads, channel_first
    )


def fullgrad_postprocess(t: Tensor, normalize: str = "sample") -> Tensor:
    """``psi``: the absolute value, rescaled to [0, 1].

    Args:
        t: ``(N, C, *S)``.
        normalize: ``"sample"``: min-max over all channels and positions of each example
            (the authors' code); ``"channel"``: over the positions of each channel
            (pytorch-grad-cam). A constant map becomes 0 (the peers divide by ``max + eps``).

    Returns:
        ``(N, C, *S)`` in [0, 1].
    """
    t = t.abs()
    flat = t.flatten(2) if normalize == "channel" else t.flatten(1).unsqueeze(1)
    lo = flat.amin(-1, keepdim=True)
    span = flat.amax(-1, keepdim=True) - lo
    constant = span == 0
    scaled = ((flat - lo) / span.where(~constant, 1.0)).where(~constant, 0.0)
    return scaled.view_as(t)


def fullgrad_map(
    inputs: Tensor,
    full: FullGradients,
    *,
    normalize: str = "sample",
    mode: str | None = None,
    align_corners: bool = False,
) -> Tensor:
    r"""The FullGrad saliency map ``(N, 1, *S)``::

        S(x) = sum_C psi(df_c/dx * x) + sum_l sum_C Up(psi(df_c/dz_l * b_l))

    over the layers whose output is a channel-first map with the inputs' number of spatial
    dims (convolutions and batch norm; linear layers have no spatial map, as in the authors'
    code). The channel sum is taken before the resize (resizing is linear, so the result is
    the same and cheaper).

    Args:
        inputs: ``(N, C, *S)``.
        full: the decomposition from :func:`full_gradients`.
        normalize: see :func:`fullgrad_postprocess`.
        mode: the interpolation mode (None: linear / bilinear / trilinear).
        align_corners: passed to the linear modes (the authors' code uses True).

    Returns:
        ``(N, 1, *S)``, not normalised.
    """
    size = inputs.shape[2:]
    total = fullgrad_postprocess(full.input_gradient * inputs, normalize).sum(1, keepdim=True)
    for grad, first in zip(full.bias_gradients, full.channel_first, strict=True):
        if not first or grad.dim() != inputs.dim():
            continue
        layer_map = fullgrad_postprocess(grad, normalize).sum(1, keepdim=True)
        total = total + resize(layer_map, size, mode, align_corners)
    return total


class FullGrad(GradientAttribution):
    r"""FullGrad: input-gradient times input plus the bias-gradients of every layer.

    With ``f_c`` the target's score, ``z_l`` the output of a layer with bias ``b_l``
    (convolutions, batch norm with its effective bias ``b - mu w / sqrt(var + eps)``, linear
    layers) and ``psi`` the absolute value rescaled to [0, 1]::

        S(x) = sum_C psi(df_c/dx * x) + sum_l sum_C Up(psi(df_c/dz_l * b_l))    (N, 1, *S)

    The sum runs over the layers whose output is a channel-first map with the inputs'
    number of spatial dims (linear layers have no spatial map). For a network of ReLUs,
    max pooling, linear layers and batch norm in eval mode the decomposition is complete:
    ``f_c(x) = sum(df_c/dx * x) + sum_l sum(df_c/dz_l * b_l)`` (see :func:`full_gradients`).
    One forward and one backward pass to the input; the hooks live for one call.

    Defaults follow the authors' code (``idiap/fullgrad-saliency``): ``psi`` rescales over
    all channels and positions of an example (``normalize="channel"``: per channel, as
    pytorch-grad-cam), each map is resized (linear / bilinear / trilinear) and summed over
    channels; the result is not normalised. Differences: the authors resize with
    ``align_corners=True`` (pass it; the default here is False, as for every map of this
    library) and divide by ``max + 1e-6`` (pytorch-grad-cam ``1e-7``), where a constant map
    is 0 here; pytorch-grad-cam takes only ``Conv2d`` and ``BatchNorm2d``, 2D inputs only,
    and min-max normalises the sum. Batch norm without running statistics adds no fixed
    bias and is left out; other normalisations (group, instance, layer norm) are too, and
    the decomposition is then not complete.

    Args:
        forward_func: the model, an ``nn.Module`` (its layers are searched for biases).

    References:
        Srinivas and Fleuret. "Full-Gradient Representation for Neural Network
        Visualization". NeurIPS 2019. arXiv:1905.00780.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from captum_medcam import FullGrad
        >>> model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
        ...                       nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)).eval()
        >>> FullGrad(model).attribute(torch.randn(2, 1, 16, 16), target=[0, 2]).shape
        torch.Size([2, 1, 16, 16])

    Raises:
        TypeError: ``forward_func`` is not an ``nn.Module``.
    """

    #: The number of spatial dims the inputs must have (None: 1 to 3); 3 in ``FullGrad3D``.
    spatial_dims: ClassVar[int | None] = None

    def __init__(self, forward_func: nn.Module) -> None:
        if not isinstance(forward_func, nn.Module):
            raise TypeError(
                f"{type(self).__name__} needs the model as a torch.nn.Module (its layers are "
                f"searched for biases), got {type(forward_func).__name__}"
            )
        GradientAttribution.__init__(self, forward_func)

    @property
    def multiplies_by_inputs(self) -> bool:
        """False: the map is post-processed (absolute values rescaled and summed), not a
        gradient times the inputs in Captum's sense."""
        return False

    @property
    def fixed_keywords(self) -> tuple[str, ...]:
        """The output keywords this class refuses (those of the volume entry point)."""
        return ("interpolate_mode", "align_corners") if self.spatial_dims == 3 else ()

    @captum_attribute
    def attribute(
        self,
        inputs: Tensor,
        target: Any = None,
        additional_forward_args: Any = None,
        *,
        normalize: str = "sample",
        interpolate_mode: str | None = None,
        align_corners: bool = False,
    ) -> Tensor:
        """Compute FullGrad maps.

        Args:
            inputs: ``(N, C, *S)`` with 1 to 3 spatial dims (5-D for ``FullGrad3D``),
                floating point, a tensor or a MONAI ``MetaTensor``.
            target: the class to explain, as in Captum: an int, a tuple, a tensor or list
                with one entry per example, or None when the model returns one score per
                example.
            additional_forward_args: further arguments of the model, as in Captum.
            normalize: ``"sample"`` (default, the authors' code) or ``"channel"``
                (pytorch-grad-cam): what ``psi`` rescales to [0, 1] together.
            interpolate_mode: how the layers' maps are resized to the input: ``None`` picks
                linear / bilinear / trilinear. Not taken by ``FullGrad3D`` (trilinear).
            align_corners: passed to the linear modes (the authors' code uses True). Not
                taken by ``FullGrad3D`` (False).

        Returns:
            Maps ``(N, 1, *S)``, non-negative, not normalised, on the inputs' device and
            dtype; a ``MetaTensor`` input gives a ``MetaTensor`` with its metadata.

        Raises:
            TypeError: inputs not a floating tensor; an option of the wrong type; a model
                that returns a tuple or a dict.
            ValueError: wrong input dims, NaN/inf inputs, a target out of range, an unknown
                ``normalize``, an interpolation mode that does not fit the inputs, scores
                that do not depend on the inputs.
            RuntimeError: called under ``torch.inference_mode()``.
        """
        x = check_inputs(unwrap_meta(inputs), spatial_dims=self.spatial_dims)
        check_target_type(target)
        check_choice(normalize, "normalize", NORMALIZE_OVER)
        check_flags(align_corners=align_corners)
        if self.spatial_dims == 3:
            interpolate_mode, align_corners = "trilinear", False
        mode = interpolation_mode(x.dim() - 2, interpolate_mode)
        model = cast(nn.Module, self.forward_func)  # checked in __init__
        warn_if_training(model)
        full = full_gradients(
            model, bias_modules(model), x, target, format_additional_args(additional_forward_args)
        )
        maps = fullgrad_map(x, full, normalize=normalize, mode=mode, align_corners=align_corners)
        return wrap_meta(maps, inputs)


@final
class FullGrad3D(FullGrad):
    r"""FullGrad for volumes: ``(N, C, D, H, W)`` in, ``(N, 1, D, H, W)`` out.

    :class:`FullGrad` (see there for the formula and the defaults) with 5-D input required
    and every layer's map resized trilinearly (``align_corners=False``); passing
    ``interpolate_mode`` or ``align_corners`` is a ``TypeError``.

    References:
        Srinivas and Fleuret. "Full-Gradient Representation for Neural Network
        Visualization". NeurIPS 2019. arXiv:1905.00780.

    Example:
        >>> import torch
        >>> from monai.networks.nets import resnet10
        >>> from captum_medcam import FullGrad3D
        >>> net = resnet10(spatial_dims=3, n_input_channels=1, num_classes=2).eval()
        >>> FullGrad3D(net).attribute(torch.randn(1, 1, 32, 32, 32), target=1).shape
        torch.Size([1, 1, 32, 32, 32])
    """

    spatial_dims = 3
