"""Argument validation shared by the methods, the metrics and the integrations.

Errors name the offending value and say what was expected; nothing here changes the
user's model or data.
"""

from __future__ import annotations

import functools
import math
import numbers
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any, TypeVar, cast

import numpy as np
import torch
from torch import Tensor, nn

from captum_medcam._core.meta import unwrap_meta

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


#: Stands for "no layer argument" in :func:`check_forward_and_layer` (None is refused).
_NO_LAYER: Any = object()

#: The seed of every random choice made when the caller passes no ``generator``.
DEFAULT_SEED = 0


def check_forward_and_layer(
    forward_func: object, layer: object = _NO_LAYER, device_ids: object = None
) -> None:
    """Check a method's configuration: a callable model, a module layer when one is
    passed, and Captum's ``device_ids`` (None or a list of CUDA device indices).

    Raises:
        TypeError: ``forward_func`` is not callable, ``layer`` (when passed, None
            included) is not an ``nn.Module``, ``device_ids`` is not None or a list of ints.
        ValueError: a negative device index.
    """
    if device_ids is not None:
        if not isinstance(device_ids, (list, tuple)):
            raise TypeError(
                f"device_ids must be None or a list of CUDA device indices, got {device_ids!r}"
            )
        for index in device_ids:
            check_int(index, "device_ids", low=0)
    if not callable(forward_func):
        raise TypeError(
            f"forward_func must be callable (a model), got {type(forward_func).__name__}"
        )
    if layer is _NO_LAYER:
        return
    if layer is None:
        raise TypeError(
            "layer is None; pass the module to explain, e.g. model.layer4 (list the candidates "
            "with captum_medcam.integrations.monai.list_layers)"
        )
    if not isinstance(layer, nn.Module):
        raise TypeError(f"layer must be a torch.nn.Module, got {type(layer).__name__}")


def check_positive_int(value: object, name: str) -> int:
    """Return ``value`` if it is an int >= 1, else raise naming ``name``."""
    return check_int(value, name, low=1)


def check_int(value: object, name: str, *, low: int | None = None) -> int:
    """Return ``value`` if it is an int (not a bool) and at least ``low``.

    Raises:
        TypeError: not an int (a float such as ``4.0`` included).
        ValueError: below ``low``.
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        what = f"an int >= {low}" if low is not None else "an int"
        raise TypeError(f"{name} must be {what}, got {value!r} ({type(value).__name__})")
    if low is not None and value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    return int(value)


def check_finite_float(
    value: object,
    name: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """Return ``value`` as a float if it is a finite real number within the bounds.

    Args:
        value: the value to check.
        name: the argument's name in error messages.
        low, high: inclusive bounds (None: unbounded).
        low_open, high_open: make the bound exclusive.

    Raises:
        TypeError: not a real number (a string, a bool, a tensor with several values).
        ValueError: NaN, inf, or out of bounds.
    """
    if isinstance(value, Tensor) and value.numel() == 1 and not value.is_complex():
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be a finite number, got {v}")
    too_low = low is not None and (v <= low if low_open else v < low)
    too_high = high is not None and (v >= high if high_open else v > high)
    if too_low or too_high:
        if high is None:
            wanted = f"{'>' if low_open else '>='} {low:g}"
        elif low is None:
            wanted = f"{'<' if high_open else '<='} {high:g}"
        else:
            wanted = f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ValueError(f"{name} must be {wanted}, got {v:g}")
    return v


def check_bool(value: object, name: str) -> bool:
    """Return ``value`` if it is a bool; a string such as ``"False"`` is a ``TypeError``."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r} ({type(value).__name__})")
    return bool(value)


def check_flags(**flags: object) -> None:
    """:func:`check_bool` for each keyword, named by it: ``check_flags(upsample=upsample)``."""
    for name, value in flags.items():
        check_bool(value, name)


def check_choice(value: object, name: str, choices: Sequence[str]) -> Any:
    """Return ``value`` if it is one of ``choices`` (compared by equality, strings only).

    Raises:
        TypeError: ``value`` is not a string (the choices are strings).
        ValueError: an unknown choice; the message lists the valid ones.
    """
    options = [repr(c) for c in choices]
    listed = options[0] if len(options) == 1 else ", ".join(options[:-1]) + " or " + options[-1]
    if not isinstance(value, str):
        raise TypeError(f"{name} must be {listed}, got {value!r} ({type(value).__name__})")
    if value not in choices:
        raise ValueError(f"{name} must be {listed}, got {value!r}")
    return value


def check_tensor_finite(value: object, name: str) -> Tensor:
    """Return ``value`` if it is a floating tensor without NaN or inf (any shape).

    Raises:
        TypeError: not a tensor, or not floating point.
        ValueError: empty, or NaN/inf values.
    """
    value = unwrap_meta(value) if isinstance(value, Tensor) else value
    if not isinstance(value, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if not value.is_floating_point():
        raise TypeError(
            f"{name} must be a floating point tensor, got dtype {value.dtype}; "
            f"convert it first, e.g. {name}.float()"
        )
    if value.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(value.shape)})")
    if not bool(torch.isfinite(value).all()):
        raise ValueError(f"{name} contains NaN or inf values; clean or mask them first")
    return value


def check_baseline_value(value: object, name: str = "baselines") -> float | Tensor:
    """Return a constant baseline: a finite number, or a finite tensor.

    Shapes are checked where the baseline is used (against the inputs or the layer).

    Raises:
        TypeError: a string, a bool, a callable or anything else.
        ValueError: NaN or inf.
    """
    if isinstance(value, Tensor):
        if value.is_floating_point():
            return check_tensor_finite(value, name)
        if value.is_complex() or value.dtype == torch.bool:
            raise TypeError(f"{name} must be a real tensor, got dtype {value.dtype}")
        if value.numel() == 0:
            raise ValueError(f"{name} is empty (shape {tuple(value.shape)})")
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"{name} must be a number or a tensor broadcastable to the inputs, got {value!r} "
            f"({type(value).__name__})"
        )
    return check_finite_float(value, name)


def check_target_type(target: object) -> None:
    """Refuse a ``target`` that no Captum ``TargetType`` can be, before any forward pass.

    Ranges and lengths need the model's output and are checked by :func:`per_sample_target`.

    Raises:
        TypeError: a string, a float, a bool or another type.
    """
    if target is None or isinstance(target, (tuple, list, Tensor)):
        return
    if isinstance(target, bool) or not isinstance(target, (int, np.integer)):
        raise TypeError(
            "target must be None, an int, a tuple, a list or a tensor of class indices, got "
            f"{target!r} ({type(target).__name__})"
        )


def make_generator(
    generator: object, device: torch.device | str | None = None, name: str = "generator"
) -> torch.Generator:
    """A ``torch.Generator`` from an int seed, or the caller's generator itself.

    An int builds a new generator seeded with it (on ``device``, default CPU), so the same
    seed gives the same numbers on every call and torch's global random state is never
    used. A ``torch.Generator`` is used as it is (its state advances with every draw).

    Raises:
        TypeError: None, a float, a string or another type.
        ValueError: a negative seed.
    """
    if isinstance(generator, torch.Generator):
        return generator
    if isinstance(generator, bool) or not isinstance(generator, (int, np.integer)):
        raise TypeError(
            f"{name} must be an int seed or a torch.Generator, got {generator!r} "
            f"({type(generator).__name__}); the default is the seed {DEFAULT_SEED}"
        )
    if generator < 0:
        raise ValueError(f"{name} must be a seed >= 0, got {generator}")
    return torch.Generator(device=device or "cpu").manual_seed(int(generator))


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


_F = TypeVar("_F", bound=Callable[..., Any])


def renamed_keywords(**renames: str) -> Callable[[_F], _F]:
    """Keep the old keyword names of a public function working, with a ``FutureWarning``.

    ``@renamed_keywords(explainer="attribution")``: a call that passes ``explainer=`` warns,
    naming ``attribution=``, and passes the value on under the new name; passing both names
    is a ``TypeError``. The signature (``inspect.signature``, IDEs) shows the new names only.

    Example:
        >>> import warnings
        >>> @renamed_keywords(radius="tolerance")
        ... def grow(mask, tolerance=0.0):
        ...     return tolerance
        >>> with warnings.catch_warnings(record=True) as seen:
        ...     warnings.simplefilter("always")
        ...     grow(None, radius=2.0), type(seen[0].message).__name__
        (2.0, 'FutureWarning')
    """

    def decorate(func: _F) -> _F:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            for old, new in renames.items():
                if old not in kwargs:
                    continue
                if new in kwargs:
                    raise TypeError(
                        f"{func.__name__}() got both {old}= and {new}=; {old} is the old name "
                        f"of {new}: pass {new}= only"
                    )
                warnings.warn(
                    f"{func.__name__}(): {old}= is now called {new}=; the old name will be "
                    "removed in a future release",
                    FutureWarning,
                    stacklevel=2,
                )
                kwargs[new] = kwargs.pop(old)
            return func(*args, **kwargs)

        return cast(_F, wrapper)

    return decorate
