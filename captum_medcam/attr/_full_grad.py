"""FullGrad: the input-gradient and the bias-gradients of every layer, post-processed and summed.

Srinivas and Fleuret. "Full-Gradient Representation for Neural Network Visualization".
NeurIPS 2019, arXiv:1905.00780.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd

from captum_medcam._core.spatial import resize
from captum_medcam._core.targets import per_sample_target, select_target
from captum_medcam.attr._grad_cam import _check_grad_mode, _grad_ready
from captum_medcam.attr._hooks import check_model_output

__all__: list[str] = []

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
    _check_grad_mode()
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
            x = _grad_ready(inputs)
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
