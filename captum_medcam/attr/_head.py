"""The ``layer -> global average pooling -> fc_layer`` head that CAM and CRM's fast path need.

One forward captures the layer's output and the input of ``fc_layer``; :func:`check_gap_linear_head`
then checks, on those tensors, that the head is what the closed forms assume.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from captum_medcam.attr._hooks import forward_with_capture
from captum_medcam.attr._reshape import ReshapeTransform, apply_reshape

__all__: list[str] = []


def check_fc_layer(fc_layer: object, remedy: str) -> nn.Linear:
    """Return ``fc_layer`` if it is an ``nn.Linear``.

    Args:
        fc_layer: the value passed.
        remedy: what the user can do instead, appended to the message.

    Raises:
        TypeError: not an ``nn.Linear``.
    """
    if not isinstance(fc_layer, nn.Linear):
        raise TypeError(
            f"fc_layer must be the torch.nn.Linear after global average pooling, got "
            f"{type(fc_layer).__name__}; {remedy}"
        )
    return fc_layer


def forward_with_head(
    forward_func: Callable[..., Any],
    layer: nn.Module,
    fc_layer: nn.Linear,
    x: Tensor,
    args: tuple[Any, ...],
    *,
    device_ids: list[int] | None = None,
    reshape_transform: ReshapeTransform | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """One forward that captures the layer's output and the input of ``fc_layer``.

    Args:
        forward_func: the model or a function of ``(inputs, *args)``.
        layer: the module whose output is captured.
        fc_layer: the linear layer whose input is captured.
        x: inputs ``(N, C, *S)``.
        args: additional forward arguments.
        device_ids: as in Captum, for ``DataParallel`` models.
        reshape_transform: None, or the callable applied to the layer's output.

    Returns:
        ``(output, activations, fc_input)``: the model's output, the layer's (reshaped)
        output ``(N, K, *S')`` and ``fc_layer``'s input, in the dtype of ``x``.
    """
    seen: list[Tensor] = []

    def forward(inp: Tensor, *rest: Any) -> Tensor:
        out, fc_input = forward_with_capture(
            forward_func, fc_layer, inp, rest, attribute_to_layer_input=True
        )
        seen.append(fc_input)
        return out

    output, acts = forward_with_capture(forward, layer, x, args, device_ids=device_ids)
    acts = apply_reshape(reshape_transform, acts, x.shape[0])
    return output, acts.to(x.dtype), seen[0].to(x.dtype)


def _close(a: Tensor, b: Tensor) -> bool:
    """``a == b`` up to rounding of ``a``'s dtype (relative to ``b``'s largest entry)."""
    tol = 10 * torch.finfo(a.dtype).eps ** 0.5
    scale = float(b.abs().max()) if b.numel() else 0.0
    return a.shape == b.shape and bool(torch.allclose(a, b, rtol=tol, atol=tol * max(scale, 1e-12)))


def check_gap_linear_head(
    fc_layer: nn.Linear, acts: Tensor, fc_input: Tensor, output: Tensor, remedy: str
) -> None:
    """Check that the head is ``layer -> GAP -> fc_layer`` and that its output is the model's.

    Args:
        fc_layer: the linear layer.
        acts: the layer's output ``(N, K, *S')``.
        fc_input: the input of ``fc_layer`` in the same forward.
        output: the model's output in the same forward.
        remedy: what the user can do instead, appended to each message.

    Raises:
        ValueError: ``fc_layer``'s width is not the layer's number of channels, its input is
            not the spatial mean of the layer's output, or its output is not the model's
            output (e.g. a softmax follows it).
    """
    if fc_layer.in_features != acts.shape[1]:
        raise ValueError(
            f"fc_layer has in_features={fc_layer.in_features} but the layer has "
            f"{acts.shape[1]} channels; this needs the head layer -> global average pooling "
            f"-> fc_layer. {remedy}"
        )
    if not _close(fc_input.reshape(acts.shape[0], -1), acts.flatten(2).mean(-1)):
        raise ValueError(
            "the input of fc_layer is not the global average of the layer's output; this "
            f"needs the head layer -> global average pooling -> fc_layer. {remedy}"
        )
    flat = fc_input.reshape(acts.shape[0], -1).to(fc_layer.weight.dtype)
    fc_output = fc_layer(flat).to(output.dtype)
    if output.numel() != fc_output.numel() or not _close(
        output.reshape(fc_output.shape), fc_output
    ):
        raise ValueError(
            f"the model's output (shape {tuple(output.shape)}) is not the output of fc_layer "
            "(e.g. a softmax follows it); the scores are the model's outputs. Pass a "
            f"forward_func that returns fc_layer's output. {remedy}"
        )
