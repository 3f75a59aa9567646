"""Baselines given as a number, a tensor or a callable, made into a tensor of one shape."""

from __future__ import annotations

import numbers

import torch
from torch import Tensor

from captum_medcam._core.checks import check_baseline_value


def resolve_baseline(
    baselines: object,
    inputs: Tensor,
    name: str = "baselines",
    *,
    what: str = "the inputs' shape",
    hint: str = "",
) -> Tensor:
    """Turn a number, a tensor or a callable into a baseline shaped like ``inputs``.

    The metrics' substrates (shaped like the inputs ``(N, C, *S)``) and CRM's baseline of
    the layer's activations (``inputs`` are then the activations ``(N, C', *S')``) are
    made here. The result is an expanded view, on the device and in the dtype of
    ``inputs``.

    Args:
        baselines: a finite number, a finite tensor broadcastable to ``inputs``, or a
            callable ``inputs -> Tensor``.
        inputs: the tensor the baseline stands in for.
        name: the argument's name in error messages.
        what: what ``inputs`` is, in the message of a baseline that does not broadcast.
        hint: appended to that message (e.g. the shapes that would work).

    Returns:
        The baseline, shaped like ``inputs``.

    Raises:
        TypeError: a value of another type, or a callable that does not return a tensor.
        ValueError: NaN or inf values (also in a callable's output), a tensor that does not
            broadcast to the inputs.
    """
    if callable(baselines) and not isinstance(baselines, Tensor):
        out = baselines(inputs)
        if not isinstance(out, Tensor):
            raise TypeError(f"the {name} callable must return a tensor, got {type(out).__name__}")
        check_baseline_value(out, f"the output of the {name} callable")
    elif isinstance(baselines, (numbers.Real, Tensor)) and not isinstance(baselines, bool):
        out = torch.as_tensor(
            check_baseline_value(baselines, name), dtype=inputs.dtype, device=inputs.device
        )
    else:
        raise TypeError(
            f"{name} must be a number, a tensor broadcastable to the inputs or a callable of "
            f"the inputs, got {baselines!r} ({type(baselines).__name__})"
        )
    try:
        out = out.to(dtype=inputs.dtype, device=inputs.device).expand_as(inputs)
    except RuntimeError:
        raise ValueError(
            f"{name} of shape {tuple(out.shape)} does not broadcast to {what} "
            f"{tuple(inputs.shape)}{hint}"
        ) from None
    return out


def activation_baseline(baselines: float | Tensor, acts: Tensor) -> Tensor:
    """The value a removed (CRM) or ablated (Ablation-CAM) activation takes, shaped like
    the layer's activations ``acts`` ``(N, C', *S')``: a number, a per-channel tensor
    ``(1, C', 1, ...)`` or a tensor broadcastable to ``acts``."""
    per_channel = f"(1, {acts.shape[1]}{', 1' * (acts.dim() - 2)})"
    return resolve_baseline(
        baselines,
        acts,
        what="the layer's activations",
        hint=f"; pass a number, a per-channel tensor shaped {per_channel}, or a tensor of "
        "the activations' shape",
    )
