"""Data-set summaries of per-example metric values, as the published tables report them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch import Tensor

from captum_medcam._core.checks import (
    check_inputs,
    check_int,
    check_positive_int,
    format_additional_args,
    renamed_keywords,
    warn_if_training,
)
from captum_medcam._core.engine import forward_in_chunks
from captum_medcam._core.meta import unwrap_meta
from captum_medcam.metrics._perturbation import DEFAULT_MAX_EXAMPLES_PER_BATCH

__all__ = ["Summary", "correctly_classified", "summarize"]


def correctly_classified(
    forward_func: Callable[..., Any],
    inputs: Tensor,
    labels: Tensor,
    additional_forward_args: Any = None,
    *,
    max_examples_per_batch: int | None = DEFAULT_MAX_EXAMPLES_PER_BATCH,
) -> Tensor:
    """Which examples the model classifies correctly (argmax of the output == label).

    Both reference studies (3D Score-CAM on OrganMNIST3D; Grad-CAM AOPC on chest X-rays)
    average their metrics over the correctly classified test examples only; pass the result
    as ``mask`` to :func:`summarize`.

    Args:
        forward_func: the model, returning ``(N, K)`` scores.
        inputs: ``(N, C, *S)``.
        labels: ``(N,)`` or ``(N, 1)`` integer class labels (MedMNIST gives ``(N, 1)``).
        additional_forward_args: as in Captum.
        max_examples_per_batch: examples per forward pass (None: all at once); see
            :func:`captum_medcam.perturbation_options` for mixed precision and ``"auto"``.

    Returns:
        A bool tensor ``(N,)``.

    Raises:
        ValueError: labels that do not have one entry per example, an output that is not
            ``(N, K)``. TypeError: float labels.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2)).eval()
        >>> correctly_classified(model, torch.randn(3, 1, 2, 2), torch.tensor([0, 1, 1])).shape
        torch.Size([3])
    """
    x = check_inputs(unwrap_meta(inputs))
    if not isinstance(labels, Tensor) or labels.is_floating_point() or labels.dtype == torch.bool:
        raise TypeError(
            f"labels must be an integer tensor, got {getattr(labels, 'dtype', type(labels).__name__)}"
        )
    n = x.shape[0]
    if labels.numel() != n:
        raise ValueError(
            f"labels has shape {tuple(labels.shape)}, expected one label per example ({n})"
        )
    if max_examples_per_batch is not None:
        check_positive_int(max_examples_per_batch, "max_examples_per_batch")
    chunk = max_examples_per_batch or n
    args = format_additional_args(additional_forward_args)
    warn_if_training(forward_func)
    out = forward_in_chunks(forward_func, x, args, chunk_size=chunk)
    if out.dim() != 2:
        raise ValueError(
            f"the model's output must be (N, K) class scores, got shape {tuple(out.shape)}"
        )
    return out.argmax(1) == labels.reshape(-1).to(x.device)


class Summary(NamedTuple):
    """Mean and standard deviation of a metric over ``n`` examples; prints ``mean ± std``."""

    mean: float
    std: float
    n: int

    def __str__(self) -> str:
        return f"{self.mean:.4f} ± {self.std:.4f}"


@renamed_keywords(mask="where")
def summarize(values: Tensor, where: Tensor | None = None, *, correction: int = 0) -> Summary:
    """Mean ± standard deviation of per-example values, optionally over ``where`` only.

    The default ``correction=0`` is NumPy's ``np.std`` (the population deviation) as the
    reference tables were computed with NumPy; ``correction=1`` gives the sample deviation.

    Args:
        values: ``(N,)`` metric values, e.g. from :func:`deletion_auc`.
        where: ``(N,)`` bool, the examples to include (as NumPy's ``where=``), e.g. from
            :func:`correctly_classified`; None keeps all. (Called ``mask`` before, a name
            that means a ground-truth region everywhere else; ``mask=`` still works, with a
            ``FutureWarning``.)
        correction: degrees of freedom subtracted from the count.

    Returns:
        ``Summary(mean, std, n)``; ``str()`` gives ``"0.2576 ± 0.1710"``.

    Raises:
        ValueError: shapes that differ, or no value left.

    Example:
        >>> import torch
        >>> str(summarize(torch.tensor([0.2, 0.4, 0.9]), torch.tensor([True, True, False])))
        '0.3000 ± 0.1000'
    """
    if not isinstance(values, Tensor):
        raise TypeError(f"values must be a torch.Tensor, got {type(values).__name__}")
    check_int(correction, "correction", low=0)
    v = values.detach().reshape(-1)
    if where is not None:
        if not isinstance(where, Tensor):
            raise TypeError(f"where must be a bool tensor or None, got {type(where).__name__}")
        if where.dtype != torch.bool or where.numel() != v.numel():
            raise ValueError(
                f"where must be a bool tensor with one entry per value ({v.numel()}), got "
                f"dtype {where.dtype} and shape {tuple(where.shape)}"
            )
        v = v[where.reshape(-1).to(v.device)]
    if v.numel() == 0:
        raise ValueError("no value to summarize (empty values, or a where= that keeps none)")
    if v.numel() <= correction:
        raise ValueError(
            f"correction={correction} needs more than {correction} values, got {v.numel()}"
        )
    v = v.to(torch.float64)
    return Summary(float(v.mean()), float(v.std(correction=correction)), int(v.numel()))
