"""The similarity-per-layer plot of the model parameter randomization test."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from captum_medcam._core.checks import check_flags
from captum_medcam.metrics._sanity import RandomizationResult

if TYPE_CHECKING:  # pragma: no cover - typing only; matplotlib is imported lazily
    from matplotlib.axes import Axes

__all__ = ["plot_randomization"]


def plot_randomization(
    result: RandomizationResult,
    *,
    measures: Sequence[str] | None = None,
    ax: Axes | None = None,
    show_examples: bool = False,
    **line_kwargs: Any,
) -> Axes:
    """Plot the similarity to the original map after each randomisation step.

    The x axis starts at ``"original"`` (similarity 1 by definition) and then lists the
    randomised layers in order; for each measure the mean over examples is drawn as a line
    (NaN, e.g. Spearman of a constant map, is left out of the mean) with the band from the
    smallest to the largest example. A method that passes the check falls towards 0; a
    flat line near 1 means the maps ignore the model's weights. This is the layout of
    Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS 2018, Figures 2 and 4.

    Args:
        result: what :func:`captum_medcam.metrics.model_parameter_randomization` returned.
        measures: the similarity names to draw (default: all in ``result.similarity``).
        ax: a matplotlib ``Axes`` to draw on; default a new figure.
        show_examples: also draw one thin line per example.
        **line_kwargs: passed to ``ax.plot`` for the mean lines.

    Returns:
        The ``Axes``.

    Raises:
        TypeError: ``result`` is not a :class:`RandomizationResult`.
        ValueError: a measure that is not in the result.

    Example:
        >>> import torch
        >>> from captum_medcam.metrics import RandomizationResult
        >>> from captum_medcam.visualization import plot_randomization
        >>> result = RandomizationResult(layers=("fc", "conv"), mode="cascading",
        ...     similarity={"spearman": torch.tensor([[0.5, 0.4], [0.1, 0.0]])},
        ...     original=torch.zeros(2, 1, 4, 4), seeds=(1, 2))
        >>> ax = plot_randomization(result)
    """
    if not isinstance(result, RandomizationResult):
        raise TypeError(
            f"result must be a RandomizationResult from model_parameter_randomization, got {type(result).__name__}"
        )
    check_flags(show_examples=show_examples)
    if measures is not None and (
        isinstance(measures, str) or not all(isinstance(m, str) for m in measures)
    ):
        raise TypeError(f"measures must be a list of similarity names or None, got {measures!r}")
    names = list(result.similarity) if measures is None else list(measures)
    unknown = [m for m in names if m not in result.similarity]
    if unknown:
        raise ValueError(
            f"measures {unknown} are not in the result, which has {list(result.similarity)}"
        )
    import matplotlib.pyplot as plt

    if ax is None:
        width = max(4.0, 0.45 * (len(result.layers) + 1) + 2)
        _, ax = plt.subplots(figsize=(width, 4.0), layout="constrained")
    x = list(range(len(result.layers) + 1))
    for name in names:
        values = result.similarity[name].detach().to("cpu", torch.float64)  # (L, N)
        full = torch.cat([torch.ones(1, values.shape[1], dtype=torch.float64), values])
        finite = ~full.isnan()
        mean = full.nan_to_num(0).sum(1) / finite.sum(1).clamp(min=1)
        mean[finite.sum(1) == 0] = float("nan")
        lo = full.masked_fill(~finite, float("inf")).amin(1)
        hi = full.masked_fill(~finite, float("-inf")).amax(1)
        (line,) = ax.plot(x, mean.tolist(), marker="o", label=name, **line_kwargs)
        ok = finite.any(1)
        ax.fill_between(
            [xi for xi, keep in zip(x, ok.tolist(), strict=True) if keep],
            lo[ok].tolist(),
            hi[ok].tolist(),
            color=line.get_color(),
            alpha=0.2,
            linewidth=0,
        )
        if show_examples:
            ax.plot(x, full.tolist(), color=line.get_color(), alpha=0.3, linewidth=0.7)
    ax.axhline(0.0, color="0.6", linewidth=0.8, linestyle=":")
    ax.set_xticks(x)
    ax.set_xticklabels(["original", *result.layers], rotation=90)
    ax.set_xlabel(f"randomised layer ({result.mode}, from the output)")
    ax.set_ylabel("similarity to the original map")
    ax.set_ylim(min(-0.1, ax.get_ylim()[0]), 1.05)
    ax.legend(loc="best")
    return ax
