"""Input validation and small conversions shared by every attribution method.

Errors name the offending value and say what was expected; nothing here changes the
user's model or data.
"""

from __future__ import annotations

import copy
import os
import sys
import warnings
from collections.abc import Callable
from types import FrameType
from typing import Any

import torch
from torch import Tensor, nn

__all__ = [
    "check_forward_and_layer",
    "check_inputs",
    "check_positive_int",
    "format_additional_args",
    "index_additional_args",
    "per_sample_target",
    "select_target",
    "unwrap_meta",
    "warn_if_training",
    "wrap_meta",
]

_MAX_SPATIAL_DIMS = 3


def check_inputs(
    inputs: object, *, spatial_dims: int | None = None, name: str = "inputs"
) -> Tensor:
    """Check that ``inputs`` is a finite floating tensor shaped ``(N, C, *spatial)``.

    Args:
        inputs: the value to check.
        spatial_dims: required number of spatial dims (3 for volumes), or None for 1 to 3.
        name: the argument's name in error messages.

    Returns:
        The same tensor.

    Raises:
        TypeError: not a tensor, or not floating point.
        ValueError: wrong number of dims, empty, or NaN/inf values.
    """
    if isinstance(inputs, (tuple, list)):
        raise TypeError(
            f"{name} must be a single tensor shaped (N, C, *spatial), got a {type(inputs).__name__} "
            f"of {len(inputs)} items; pass extra model arguments through additional_forward_args"
        )
    if not isinstance(inputs, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(inputs).__name__}")
    if not inputs.is_floating_point():
        raise TypeError(
            f"{name} must be a floating point tensor, got dtype {inputs.dtype}; "
            f"convert it first, e.g. {name}.float()"
        )
    if spatial_dims is not None:
        if inputs.dim() != spatial_dims + 2:
            layout = {1: "(N, C, L)", 2: "(N, C, H, W)", 3: "(N, C, D, H, W)"}[spatial_dims]
            raise ValueError(
                f"{name} must be {spatial_dims + 2}-D {layout}, got shape {tuple(inputs.shape)}"
                + (
                    "; add a channel dim with x.unsqueeze(1)"
                    if inputs.dim() == spatial_dims + 1
                    else ""
                )
            )
    elif not 3 <= inputs.dim() <= _MAX_SPATIAL_DIMS + 2:
        raise ValueError(
            f"{name} must be shaped (N, C, *spatial) with 1 to 3 spatial dims, "
            f"got shape {tuple(inputs.shape)}"
        )
    if inputs.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(inputs.shape)})")
    if not bool(torch.isfinite(inputs).all()):
        raise ValueError(f"{name} contains NaN or inf values; clean or mask them before explaining")
    return inputs


def check_forward_and_layer(forward_func: object, layer: object = None) -> None:
    """Check a method's configuration: a callable model and, when given, a module layer.

    Raises:
        TypeError: ``forward_func`` is not callable, or ``layer`` is not an ``nn.Module``.
    """
    if not callable(forward_func):
        raise TypeError(
            f"forward_func must be callable (a model), got {type(forward_func).__name__}"
        )
    if layer is not None and not isinstance(layer, nn.Module):
        raise TypeError(f"layer must be a torch.nn.Module, got {type(layer).__name__}")


def check_positive_int(value: object, name: str) -> int:
    """Return ``value`` if it is an int >= 1, else raise naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int >= 1, got {value!r} ({type(value).__name__})")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return value


def unwrap_meta(x: Tensor) -> Tensor:
    """Return the plain tensor behind a MONAI ``MetaTensor`` (``x`` itself otherwise)."""
    as_tensor = getattr(x, "as_tensor", None)
    if as_tensor is not None and type(x).__module__.startswith("monai."):
        return as_tensor()
    return x


def wrap_meta(result: Tensor, like: Tensor) -> Tensor:
    """Give ``result`` the metadata of ``like`` when ``like`` is a MONAI ``MetaTensor``.

    The affine, the original shape and ``applied_operations`` are copied (a deep copy: the
    map never shares metadata with the image), so a map at input resolution can be inverted
    and saved in the image's original space. A batch collated by ``monai.data.DataLoader``
    keeps its per-sample metadata (affines ``(N, 4, 4)``, one ``applied_operations`` list
    per sample, ``is_batch``), so ``decollate_batch(maps)`` gives each sample's map with
    its own affine. (``MetaTensor(result, meta=like.meta)`` fails on collated metadata:
    MONAI's constructor reads ``original_channel_dim`` as one value, a batch holds one per
    sample.)
    """
    if not type(like).__module__.startswith("monai."):
        return result
    from monai.data import MetaTensor

    if not isinstance(like, MetaTensor):
        return result
    out = unwrap_meta(result).as_subclass(MetaTensor)
    out.__dict__.update(copy.deepcopy(like.__dict__))  # MetaObj's state, as copy_meta_from
    return out


def user_stacklevel() -> int:
    """The ``stacklevel`` that makes a warning point at the first caller outside this package.

    Counting frames by hand breaks as soon as a public function reaches a check through a
    different number of private helpers; walking the stack does not.
    """
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    frame: FrameType | None = sys._getframe(1)  # the caller of this function warns
    level = 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(
        package + os.sep
    ):
        frame = frame.f_back
        level += 1
    return level


def warn_if_training(forward_func: Callable[..., Any], layer: nn.Module | None = None) -> None:
    """Warn (once per call) if the model or the layer is in training mode.

    The warning points at the user's line that called into captum_medcam.
    """
    module = (
        forward_func
        if isinstance(forward_func, nn.Module)
        else getattr(forward_func, "__self__", None)
    )
    training = [m for m in (module, layer) if isinstance(m, nn.Module) and m.training]
    if training:
        warnings.warn(
            f"{type(training[0]).__name__} is in training mode: dropout and batch norm make the "
            "attribution random and batch dependent. Call model.eval() before explaining "
            "(captum_medcam never changes the mode of your model).",
            UserWarning,
            stacklevel=user_stacklevel(),
        )


def format_additional_args(additional_forward_args: object) -> tuple[Any, ...]:
    """Captum's convention: None -> (), a tuple stays, anything else becomes a 1-tuple."""
    if additional_forward_args is None:
        return ()
    if isinstance(additional_forward_args, tuple):
        return additional_forward_args
    return (additional_forward_args,)


def index_additional_args(args: tuple[Any, ...], index: Tensor, n: int) -> tuple[Any, ...]:
    """Pick rows ``index`` of every tensor argument whose first dim is the batch ``n``.

    Other arguments (numbers, strings, tensors of another length) are passed unchanged,
    as Captum does when it expands ``additional_forward_args``.
    """
    return tuple(
        a.index_select(0, index.to(a.device))
        if isinstance(a, Tensor) and a.dim() > 0 and a.shape[0] == n
        else a
        for a in args
    )


def per_sample_target(target: object, n: int, output: Tensor) -> Tensor | list[Any] | None:
    """Turn a Captum ``target`` into one entry per example and check it against ``output``.

    Args:
        target: None, an int, a tuple of ints, a tensor with one or ``n`` entries (a MONAI
            ``MetaTensor`` too), or a list of ``n`` ints or tuples (Captum's ``TargetType``).
        n: number of examples.
        output: the model's output on the clean inputs, ``(N, K, ...)``.

    Returns:
        None (the output is already one scalar per example), a long tensor ``(n,)`` of
        class indices on the output's device, or a list of ``n`` tuples.

    Raises:
        ValueError: a target out of range, of the wrong length, or None where the model
            returns several scores per example.
        TypeError: a target of an unsupported type.
    """
    shape = tuple(output.shape)
    if isinstance(target, Tensor):
        target = unwrap_meta(target)  # MONAI's predictions and labels are MetaTensors
    if target is None:
        if output.dim() > 2 or (output.dim() == 2 and output.shape[1] != 1):
            raise ValueError(
                f"target=None, but the model returns output of shape {shape}, several scores "
                "per example. Pass target= the class to explain (an int, or one per example, "
                "e.g. target=model(x).argmax(1) for the predicted class), as in Captum."
            )
        return None
    if isinstance(target, tuple):
        if len(target) != output.dim() - 1 or not all(isinstance(t, int) for t in target):
            raise ValueError(f"target {target!r} does not index an output of shape {shape}")
        for t, size in zip(target, shape[1:], strict=True):
            if not -size <= t < size:
                raise ValueError(f"target {target!r} is out of range for output of shape {shape}")
        return [target] * n
    if isinstance(target, list):
        if len(target) != n:
            raise ValueError(
                f"target is a list of {len(target)} items, expected one per example ({n})"
            )
        if all(isinstance(t, int) and not isinstance(t, bool) for t in target):
            target = torch.tensor(target, dtype=torch.long)
        elif all(isinstance(t, tuple) for t in target):
            for t in target:
                per_sample_target(t, 1, output[:1])
            return list(target)
        else:
            raise TypeError(f"a list target must hold ints or tuples of ints, got {target!r}")
    if isinstance(target, bool) or not isinstance(target, (int, Tensor)):
        raise TypeError(
            f"target must be None, an int, a tuple, a list or a tensor, got {type(target).__name__}"
        )
    t = torch.as_tensor(target, device=output.device)
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise TypeError(f"target must hold integer class indices, got dtype {t.dtype}")
    t = t.reshape(-1).long()
    if t.numel() == 1:
        t = t.expand(n)
    elif t.numel() != n:
        raise ValueError(f"target has {t.numel()} entries, expected 1 or one per example ({n})")
    if output.dim() != 2:
        raise ValueError(
            f"an integer target needs a model output of shape (N, K), got {shape}; "
            "use a tuple target for outputs with more dims"
        )
    k = output.shape[1]
    bad = (t < 0) | (t >= k)
    if bool(bad.any()):
        raise ValueError(
            f"target {t[bad][0].item()} is out of range for a model with {k} outputs "
            f"(output shape {shape}); valid classes are 0 to {k - 1}"
        )
    return t.contiguous()


def select_target(output: Tensor, target: Tensor | list[Any] | None, index: Tensor) -> Tensor:
    """Select one score per row of ``output`` for the examples ``index`` (``(B,)``).

    Returns:
        Scores of shape ``(B,)``.
    """
    if target is None:
        return output.reshape(output.shape[0])
    if isinstance(target, Tensor):
        t = target.index_select(0, index.to(target.device)).to(output.device)
        return output.gather(1, t.unsqueeze(1)).squeeze(1)
    rows = [output[(i, *target[j])] for i, j in enumerate(index.tolist())]
    return torch.stack(rows)
