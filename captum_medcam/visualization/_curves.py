"""Figures of perturbation curves (deletion, insertion, AOPC). matplotlib is imported lazily."""

from __future__ import annotations

from typing import Any

from captum_medcam._core.checks import check_int
from captum_medcam.metrics._perturbation import PerturbationCurve, _check_curve, auc

__all__ = ["plot_deletion_insertion"]


def plot_deletion_insertion(
    deletion: PerturbationCurve | None = None,
    insertion: PerturbationCurve | None = None,
    *,
    sample: int | None = None,
    ax: Any = None,
    title: str | None = None,
) -> Any:
    """Draw deletion and insertion curves with their AUCs in the legend.

    With ``sample=None`` the mean curve over the examples is drawn with a ±1 std band and
    the legend gives the mean AUC; with an int, that example's curve and AUC.

    Args:
        deletion: from :func:`~captum_medcam.metrics.deletion_curve` (or the first item of
            :func:`~captum_medcam.metrics.deletion_insertion_curves`).
        insertion: from :func:`~captum_medcam.metrics.insertion_curve`.
        sample: the example to draw, or None for the mean over examples.
        ax: a matplotlib ``Axes``; None makes a new figure.
        title: the axes' title.

    Returns:
        The matplotlib ``Axes``.

    Raises:
        ValueError: no curve given, or ``sample`` out of range.

    Example:
        >>> import torch
        >>> from captum_medcam.metrics import PerturbationCurve
        >>> x = torch.linspace(0, 1, 5)
        >>> ax = plot_deletion_insertion(PerturbationCurve(x, 1 - x[None]), PerturbationCurve(x, x[None]))
        >>> [t.get_text() for t in ax.get_legend().get_texts()]
        ['deletion (AUC 0.500)', 'insertion (AUC 0.500)']
    """
    curves = [
        (name, c) for name, c in (("deletion", deletion), ("insertion", insertion)) if c is not None
    ]
    if not curves:
        raise ValueError("pass a deletion curve, an insertion curve, or both")
    for name, c in curves:
        _check_curve(c, name)
    if sample is not None:
        check_int(sample, "sample")
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 3.5))
    for name, c in curves:
        n = c.scores.shape[0]
        if sample is not None and not -n <= sample < n:
            raise ValueError(f"sample {sample} is out of range for curves of {n} examples")
        x = c.x.detach().cpu().double()
        s = c.scores.detach().cpu().double()
        area = auc(PerturbationCurve(x, s))
        if sample is None:
            y, value = s.mean(0), float(area.mean())
            label = f"{name} (AUC {value:.3f}" + (f", mean of {n})" if n > 1 else ")")
        else:
            y, value = s[sample], float(area[sample])
            label = f"{name} (AUC {value:.3f})"
        (line,) = ax.plot(x.numpy(), y.numpy(), label=label)
        ax.fill_between(x.numpy(), 0, y.numpy(), alpha=0.12, color=line.get_color())
        if sample is None and n > 1:
            sd = s.std(0, correction=0)
            ax.fill_between(
                x.numpy(),
                (y - sd).numpy(),
                (y + sd).numpy(),
                alpha=0.2,
                color=line.get_color(),
                linewidth=0,
            )
    ax.set_xlabel("fraction of voxels deleted / inserted")
    ax.set_ylabel("score")
    ax.set_xlim(0, 1)
    ax.legend(loc="best")
    if title is not None:
        ax.set_title(title)
    return ax
