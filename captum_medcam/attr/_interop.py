"""What Captum's own wrappers expect of an ``attribute`` method, written once.

Captum's ``NoiseTunnel`` calls ``method.attribute.__wrapped__(method, inputs, **kwargs)``:
every Captum method's ``attribute`` is decorated with ``captum.log.log_usage``, whose
``functools.wraps`` provides ``__wrapped__``. Captum's metrics (``sensitivity_max``) pass
the inputs as a 1-tuple ``(x,)`` and expect attributions in the same form back. The
decorator below gives our methods both conventions, and turns the tensors that MONAI
clients pass as targets and baselines (``MetaTensor``) into plain tensors.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar, cast

from captum.log import log_usage
from torch import Tensor

from captum_medcam._core.meta import unwrap_meta

F = TypeVar("F", bound=Callable[..., Any])


def captum_attribute(func: F) -> F:
    """Decorate an ``attribute(self, inputs, target=None, additional_forward_args=None, *, ...)``.

    - ``inputs`` given as a 1-tuple ``(x,)`` (as Captum's ``sensitivity_max`` and
      ``NoiseTunnel`` pass them for tuple inputs) give a 1-tuple ``(maps,)``, as Captum's
      methods return for tuple inputs; a tensor gives a tensor. Longer tuples go on to the
      method, whose input check names the problem.
    - A MONAI ``MetaTensor`` target or ``baselines`` is used as a plain tensor (its metadata
      means nothing to a class index or a baseline); a ``MetaTensor`` input keeps its
      metadata, which the methods copy to the maps.
    - A volume entry point (``ScoreCAM3D``: the N-D class with its output options fixed)
      lists the keywords it does not take in ``fixed_keywords``; passing one is the
      ``TypeError`` that a missing keyword argument would give, naming the N-D class.
    - The result is wrapped by ``captum.log.log_usage``, whose ``__wrapped__`` Captum's
      ``NoiseTunnel`` calls. The conversions above are inside it, so they hold there too.
    """

    @functools.wraps(func)
    def attribute(
        self: Any,
        inputs: Any,
        target: Any = None,
        additional_forward_args: Any = None,
        **kwargs: Any,
    ) -> Any:
        for name in getattr(self, "fixed_keywords", ()):
            if name in kwargs:
                nd = type(self).__mro__[1].__name__
                raise TypeError(
                    f"{type(self).__name__}.attribute() got an unexpected keyword argument "
                    f"{name!r}: a volume entry point always returns maps at input resolution "
                    f"(trilinear, align_corners=False); use {nd} for other output options"
                )
        if isinstance(inputs, tuple) and len(inputs) == 1:
            return (attribute(self, inputs[0], target, additional_forward_args, **kwargs),)
        if isinstance(target, Tensor):
            target = unwrap_meta(target)
        baselines = kwargs.get("baselines")
        if isinstance(baselines, Tensor):
            kwargs["baselines"] = unwrap_meta(baselines)
        return func(self, inputs, target, additional_forward_args, **kwargs)

    return cast(F, log_usage()(attribute))
