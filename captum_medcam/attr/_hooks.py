"""Capture a layer's activations during one forward pass.

The hook lives for one call only and is removed in ``finally``, also when the forward
raises, so the user's model is left exactly as it was.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from captum_medcam._core.checks import check_forward_and_layer
from captum_medcam._core.engine import Perturbed


class LayerMonitor:
    """The checks made on a layer's output (or input) each time the layer runs.

    One instance serves one forward pass (:meth:`reset` starts the next): a layer must
    produce one tensor and run once per device, and :meth:`check_reached` after the
    forward says whether it ran at all. Used by :func:`forward_with_capture` and, around
    Captum's own hooks, by :func:`checked_forward`, so every method refuses the same layers
    with the same messages.
    """

    def __init__(self, layer: nn.Module, attribute_to_layer_input: bool = False) -> None:
        self.layer = layer
        self.where = "input" if attribute_to_layer_input else "output"
        self.saved: dict[torch.device, Tensor] = {}
        self._lock = threading.Lock()

    def reset(self) -> None:
        """Forget what the previous forward pass saved."""
        with self._lock:
            self.saved.clear()

    def store(self, value: Any) -> Tensor:
        """Check and save the layer's ``value`` (a tensor or a 1-tuple); return the tensor.

        Raises:
            ValueError: several tensors, something that is not a tensor, or a second call
                on the same device in one forward pass.
        """
        if isinstance(value, (tuple, list)):
            if len(value) != 1:
                raise ValueError(
                    f"the layer's {self.where} is a {type(value).__name__} of {len(value)} "
                    "tensors; choose a layer with a single tensor output"
                )
            value = value[0]
        if not isinstance(value, Tensor):
            raise ValueError(f"the layer's {self.where} is a {type(value).__name__}, not a tensor")
        with self._lock:
            if value.device in self.saved:
                raise ValueError(
                    f"layer {type(self.layer).__name__} is called more than once in one forward "
                    "pass (a shared module?); choose a layer that is called once"
                )
            self.saved[value.device] = value
        return value

    def check_reached(self) -> None:
        """Raise ``ValueError`` if the layer did not run in the forward pass."""
        if not self.saved:
            raise ValueError(
                f"layer {type(self.layer).__name__} was not reached by the forward pass: it is "
                "not part of this model, or the model does not call it; pass a module that the "
                "model calls (e.g. model.layer4)"
            )


def check_model_output(output: object) -> Tensor:
    """Return ``output`` if it is a tensor; a tuple or dict output is a ``TypeError``."""
    if not isinstance(output, Tensor):
        raise TypeError(
            f"the model must return a tensor, got {type(output).__name__}; wrap it in a "
            "function that returns the class scores, e.g. lambda x: model(x)[0]"
        )
    return output


@contextmanager
def checked_forward(
    forward_func: Callable[..., Any],
    layer: nn.Module,
    attribute_to_layer_input: bool = False,
    on_output: Callable[[Tensor], None] | None = None,
) -> Iterator[Callable[..., Any]]:
    """Yield a forward function that applies the checks of :class:`LayerMonitor`.

    For code that runs the model itself (Captum's ``LayerGradCam``): every forward pass
    through the yielded function checks the layer (one tensor, called once, reached) and
    the model's output (a tensor, then ``on_output(output)``) before the caller sees it.
    A module keeps its identity (so Captum still recognises ``DataParallel``) and gets
    hooks for the duration of the call; a plain function is wrapped. The layer's value is
    not replaced.
    """
    monitor = LayerMonitor(layer, attribute_to_layer_input)

    def layer_hook(_module: nn.Module, *args: Any) -> None:
        # a forward hook gets (inputs, output), a pre-hook (inputs,)
        monitor.store(args[-1] if not attribute_to_layer_input else args[0][:1])

    def after(output: Any) -> None:
        monitor.check_reached()
        out = check_model_output(output)
        if on_output is not None:
            on_output(out)

    handles = [
        layer.register_forward_pre_hook(layer_hook)
        if attribute_to_layer_input
        else layer.register_forward_hook(layer_hook)
    ]
    try:
        if isinstance(forward_func, nn.Module):
            handles.append(forward_func.register_forward_pre_hook(lambda *_: monitor.reset()))
            handles.append(forward_func.register_forward_hook(lambda _m, _i, out: after(out)))
            yield forward_func
        else:

            def checked(*args: Any, **kwargs: Any) -> Any:
                monitor.reset()
                output = forward_func(*args, **kwargs)
                after(output)
                return output

            yield checked
    finally:
        for h in handles:
            h.remove()


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
    monitor = LayerMonitor(layer, attribute_to_layer_input)

    def pre_hook(_module: nn.Module, inp: tuple[Any, ...]) -> tuple[Any, ...]:
        return (monitor.store(inp[:1]).clone(), *inp[1:])

    def post_hook(_module: nn.Module, _inp: tuple[Any, ...], out: Any) -> Any:
        # The model goes on with a clone, so an in-place op after the layer (MONAI's
        # DenseNet ReLUs) cannot change the saved tensor, and gradients still reach it.
        clone = monitor.store(out).clone()
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
    monitor.check_reached()
    saved, where = monitor.saved, monitor.where
    output = check_model_output(output)
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


def forward_replaced(
    forward_func: Callable[..., Any],
    layer: nn.Module,
    x: Tensor,
    args: tuple[Any, ...],
    copies: Tensor,
) -> Tensor:
    """Run ``forward_func(x, *args)`` with the layer's output replaced by ``copies``.

    One call, one hook (removed in ``finally``); ``copies`` take the dtype of the layer's
    output. CRM's removals and Ablation-CAM's ablated channels run the model this way.

    Raises:
        ValueError: the layer is called more than once in the forward pass.
        TypeError: the model does not return a tensor.
    """
    calls = [0]

    def replace(_module: nn.Module, _inp: tuple[Any, ...], out: Any) -> Any:
        calls[0] += 1
        if calls[0] > 1:
            raise ValueError(
                f"layer {type(layer).__name__} is called more than once in one forward "
                "pass (a shared module?); choose a layer that is called once"
            )
        value = copies.to(out[0].dtype if isinstance(out, (tuple, list)) else out.dtype)
        return type(out)([value]) if isinstance(out, (tuple, list)) else value

    handle = layer.register_forward_hook(replace)
    try:
        out = forward_func(x, *args)
    finally:
        handle.remove()
    if not isinstance(out, Tensor):
        raise TypeError(f"the model must return a tensor, got {type(out).__name__}")
    return out


def replacing_forward(
    forward_func: Callable[..., Any], layer: nn.Module, x: Tensor, *, copies: str, method: str
) -> Callable[[Perturbed, tuple[Any, ...]], Tensor]:
    """The engine's ``forward`` for jobs that replace the layer's output.

    A chunk's ``inputs`` are copies of the layer's output and its ``extra`` the examples
    of ``x`` to run them from (see :func:`forward_replaced`); the model must return one row
    per copy.

    Args:
        forward_func: the model.
        layer: the module whose output is replaced.
        x: the inputs ``(N, C, *S)``.
        copies: what a copy is, in the error message (``"perturbed"``, ``"ablated"``).
        method: the method's name, in the error message.
    """

    def forward(rows: Perturbed, rest: tuple[Any, ...]) -> Tensor:
        out = forward_replaced(
            forward_func, layer, x.index_select(0, rows.extra), rest, rows.inputs
        )
        if out.shape[0] != rows.inputs.shape[0]:
            raise ValueError(
                f"the model returned {out.shape[0]} rows for {rows.inputs.shape[0]} {copies} "
                f"copies of the layer's output; {method} needs a model that treats examples "
                "independently"
            )
        return out

    return forward
