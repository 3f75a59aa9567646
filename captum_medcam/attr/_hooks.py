"""Capture a layer's activations during one forward pass.

The hook lives for one call only and is removed in ``finally``, also when the forward
raises, so the user's model is left exactly as it was.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from captum_medcam.attr._checks import check_forward_and_layer

__all__ = ["forward_with_capture"]


def forward_with_capture(
    forward_func: Callable[..., Any],
    layer: nn.Module,
    inputs: Tensor,
    args: tuple[Any, ...] = (),
    *,
    attribute_to_layer_input: bool = False,
    device_ids: Sequence[int] | None = None,
) -> tuple[Tensor, Tensor]:
    """Run ``forward_func(inputs, *args)`` once and return its output and the layer's tensor.

    Args:
        forward_func: the model or a function of ``(inputs, *args)``.
        layer: the module whose output (or input) is captured.
        inputs: ``(N, C, *S)``.
        args: additional forward arguments.
        attribute_to_layer_input: capture the layer's first input instead of its output.
        device_ids: device order used to gather the pieces of a ``DataParallel`` forward.

    Returns:
        ``(output, activations)``; activations ``(N, K, *S')`` as produced by the layer (not
        detached: gradients flow through them when grad mode is on).

    Raises:
        ValueError: the layer is not called by the forward pass, is called more than once
            on one device, or produces something other than one tensor.
    """
    check_forward_and_layer(forward_func, layer)
    saved: dict[torch.device, Tensor] = {}
    lock = threading.Lock()
    where = "input" if attribute_to_layer_input else "output"

    def store(value: Any) -> Tensor:
        """Save ``value`` and return the clone that the rest of the model sees.

        The model goes on with a clone, so an in-place op after the layer (MONAI's DenseNet
        ReLUs) cannot change the saved tensor, and gradients still reach it.
        """
        if isinstance(value, (tuple, list)):
            if len(value) != 1:
                raise ValueError(
                    f"the layer's {where} is a {type(value).__name__} of {len(value)} tensors; "
                    "choose a layer with a single tensor output"
                )
            value = value[0]
        if not isinstance(value, Tensor):
            raise ValueError(f"the layer's {where} is a {type(value).__name__}, not a tensor")
        with lock:
            if value.device in saved:
                raise ValueError(
                    f"layer {type(layer).__name__} is called more than once in one forward pass "
                    "(a shared module?); choose a layer that is called once"
                )
            saved[value.device] = value
        return value.clone()

    def pre_hook(_module: nn.Module, inp: tuple[Any, ...]) -> tuple[Any, ...]:
        return (store(inp[:1]), *inp[1:])

    def post_hook(_module: nn.Module, _inp: tuple[Any, ...], out: Any) -> Any:
        clone = store(out)
        return type(out)([clone]) if isinstance(out, (tuple, list)) else clone

    handle = (
        layer.register_forward_pre_hook(pre_hook)
        if attribute_to_layer_input
        else layer.register_forward_hook(post_hook)
    )
    try:
        output = forward_func(inputs, *args)
    finally:
        handle.remove()
    if not saved:
        raise ValueError(
            f"layer {type(layer).__name__} was not reached by the forward pass; "
            "pass a module that the model calls (e.g. model.layer4)"
        )
    if not isinstance(output, Tensor):
        raise TypeError(f"the model must return a tensor, got {type(output).__name__}")
    if len(saved) == 1:
        activations = next(iter(saved.values()))
    else:  # DataParallel: one piece per device, gathered in device order
        order = list(device_ids) if device_ids is not None else sorted(d.index or 0 for d in saved)
        pieces = [saved[torch.device("cuda", i)] for i in order if torch.device("cuda", i) in saved]
        activations = torch.cat([p.to(output.device) for p in pieces])
    if activations.shape[0] != inputs.shape[0]:
        raise ValueError(
            f"the layer's {where} has batch size {activations.shape[0]} but inputs have "
            f"{inputs.shape[0]} examples; choose a layer whose {where} is (N, channels, *spatial)"
        )
    return output, activations
