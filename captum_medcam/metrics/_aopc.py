"""AOPC: area over the MoRF (or LeRF) region perturbation curve, for 1D, 2D and 3D inputs."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

import torch
from torch import Tensor

from captum_medcam._core.baselines import resolve_baseline
from captum_medcam._core.checks import check_choice, check_positive_int
from captum_medcam._core.targets import MetricScore
from captum_medcam.metrics._baselines import Baseline, mean_baseline
from captum_medcam.metrics._perturbation import (
    DEFAULT_MAX_EXAMPLES_PER_BATCH,
    CurveSpec,
    PerturbationCurve,
    prepare,
    run_curves,
)

__all__ = ["aopc", "aopc_curve", "region_labels"]

Order = Literal["morf", "lerf"]
Reduction = Literal["mean", "sum"]

#: Samek et al.'s patch edge (9x9), shrunk to the input where it is smaller.
_DEFAULT_REGION = 9

#: The default perturbation: each example's per-channel mean (deterministic, in range).
_MEAN = mean_baseline()

#: The default share of the regions perturbed, ``L = ceil(0.2 * R)``.
DEFAULT_REGION_FRACTION = 0.2


def region_labels(
    inputs: Tensor,
    region_size: int | tuple[int, ...] | None = None,
    feature_mask: Tensor | None = None,
) -> Tensor:
    """Region index of every voxel, ``(N, *S)`` long with values ``0 .. R - 1``.

    Args:
        inputs: ``(N, C, *S)``.
        region_size: patch (cube) edge, one int or one per spatial dim; patches are laid on
            a grid from the origin, and the last patch along a dim may be smaller.
        feature_mask: Captum-style integer labels broadcastable to ``(N, 1, *S)``; voxels with
            the same label form a region. Labels need not be contiguous.

    Raises:
        ValueError: both or neither given, a region larger than the input, a mask that does
            not broadcast. TypeError: a mask that is not an integer tensor.
    """
    n, _, *spatial = inputs.shape
    if feature_mask is not None:
        if region_size is not None:
            raise ValueError("pass either region_size or feature_mask, not both")
        if (
            not isinstance(feature_mask, Tensor)
            or feature_mask.is_floating_point()
            or feature_mask.is_complex()
        ):
            raise TypeError(
                f"feature_mask must be an integer tensor of region labels, got "
                f"{feature_mask.dtype if isinstance(feature_mask, Tensor) else type(feature_mask).__name__}"
            )
        try:
            mask = feature_mask.to(inputs.device).expand(n, 1, *spatial)
        except RuntimeError:
            raise ValueError(
                f"feature_mask of shape {tuple(feature_mask.shape)} does not broadcast to "
                f"(N, 1, *S) = {(n, 1, *spatial)}"
            ) from None
        return torch.unique(mask[:, 0], return_inverse=True)[1]
    if region_size is None:
        raise ValueError("pass region_size (the patch edge in voxels) or feature_mask")
    if not isinstance(region_size, (tuple, list)):
        region_size = (check_positive_int(region_size, "region_size"),) * len(spatial)
    size = tuple(check_positive_int(s, "region_size") for s in region_size)
    if len(size) != len(spatial):
        raise ValueError(f"region_size must be an int or {len(spatial)} ints, got {region_size!r}")
    if any(s > d for s, d in zip(size, spatial, strict=True)):
        raise ValueError(
            f"region_size {size} must be between 1 and the input's spatial shape {tuple(spatial)}"
        )
    labels = torch.zeros((), dtype=torch.long, device=inputs.device)
    for d, (s, extent) in enumerate(zip(size, spatial, strict=True)):
        cells = -(-extent // s)
        coord = torch.arange(extent, device=inputs.device) // s
        shape = [1] * len(spatial)
        shape[d] = extent
        labels = labels * cells + coord.view(shape)
    return labels.expand(n, *spatial)


def aopc_curve(
    forward_func: Callable[..., Any],
    inputs: Tensor,
    attributions: Tensor,
    target: Any = None,
    additional_forward_args: Any = None,
    *,
    region_size: int | tuple[int, ...] | None = None,
    feature_mask: Tensor | None = None,
    n_regions: int | None = None,
    region_fraction: float | None = None,
    order: Order = "morf",
    reduction: Reduction = "mean",
    baselines: Baseline = _MEAN,
    score: MetricScore = "probability",
    max_examples_per_batch: int | None = DEFAULT_MAX_EXAMPLES_PER_BATCH,
    show_progress: bool = False,
) -> PerturbationCurve:
    r"""Region perturbation curve ``f(x_k)``, ``k = 0 .. L`` (Samek et al. 2017).

    Regions (patches on a grid, cubes in 3D, or the labels of a ``feature_mask``) are ranked
    by their relevance, the ``reduction`` (mean or sum) of the attributions (summed over
    channels) inside them; ``x_0 = x`` and ``x_k`` replaces the ``k`` first regions by the
    baseline. Ties are broken by region index (grid raster order, or increasing label).

    Defaults: the example's mean replaces a region, and the first 20% of the regions are
    perturbed; :func:`aopc` says why, and when noise replacement misleads.

    The AOPC up to every ``L`` (the figure of the X-ray study) is
    ``((s[:, :1] - s).cumsum(1) / torch.arange(1, L + 2))`` with ``s = curve.scores``.

    References:
        Samek, Binder, Montavon, Lapuschkin, Müller. "Evaluating the visualization of what a
        deep neural network has learned". IEEE TNNLS 2017. arXiv:1509.06321.

    Args:
        forward_func, inputs, attributions, target, additional_forward_args, score,
            max_examples_per_batch, show_progress: as in :func:`deletion_auc`.
        region_size: patch edge in voxels, an int or one per spatial dim (default: 9, the
            paper's 9x9 patches, or the input's extent where that is smaller, when no
            ``feature_mask`` is given). A given size larger than the input is an error.
        feature_mask: integer labels broadcastable to ``(N, 1, *S)``, as in Captum.
        n_regions: ``L``, the number of regions perturbed (Samek et al. use 100); pass
            either this or ``region_fraction``.
        region_fraction: ``L`` as a share of the regions, ``L = ceil(region_fraction * R)``
            in (0, 1], ``R`` the number of regions (the fewest of any example); default
            0.2 when ``n_regions`` is not given either. ``1.0`` perturbs every region.
        order: ``"morf"`` (most relevant first) or ``"lerf"`` (least relevant first, the
            usual control).
        reduction: region relevance, ``"mean"`` or ``"sum"`` of the attribution.
        baselines: what a perturbed region becomes: a number, a tensor, or a callable of
            the inputs; default :func:`mean_baseline` (see above). Samek et al.'s choice is
            ``uniform_noise_baseline()``, the X-ray study's
            ``normal_noise_baseline(0.0, 0.1)``. A callable that returns ``x + noise`` adds
            noise to the regions instead of replacing them.

    Returns:
        ``PerturbationCurve(x, scores)``: ``x = 0 .. L`` ``(L + 1,)`` and ``scores``
        ``(N, L + 1)``.

    Raises:
        ValueError: a region larger than the input, both or neither of ``region_size`` and
            ``feature_mask`` when needed, ``n_regions`` < 1 or above the number of regions,
            ``region_fraction`` outside (0, 1] or given with ``n_regions``, an unknown
            ``order``, ``reduction`` or ``score``, shape mismatches.
        TypeError: see :func:`deletion_auc`; a float ``feature_mask``.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(512, 3)).eval()
        >>> x = torch.randn(2, 1, 8, 8, 8)
        >>> aopc_curve(model, x, x.abs(), region_size=4).scores.shape  # 8 cubes, L = 2
        torch.Size([2, 3])
        >>> aopc_curve(model, x, x.abs(), region_size=4, region_fraction=1.0).scores.shape
        torch.Size([2, 9])
    """
    check_choice(order, "order", ("morf", "lerf"))
    check_choice(reduction, "reduction", ("mean", "sum"))
    if n_regions is not None:
        check_positive_int(n_regions, "n_regions")
    fraction = DEFAULT_REGION_FRACTION if region_fraction is None else region_fraction
    if not (
        isinstance(fraction, (int, float)) and not isinstance(fraction, bool) and 0 < fraction <= 1
    ):
        raise ValueError(f"region_fraction must be in (0, 1], got {region_fraction!r}")
    p = prepare(
        forward_func,
        inputs,
        attributions,
        additional_forward_args,
        score,
        max_examples_per_batch,
        target=target,
        show_progress=show_progress,
    )
    if region_size is None and feature_mask is None:
        region_size = tuple(min(_DEFAULT_REGION, extent) for extent in p.x.shape[2:])
    labels = region_labels(p.x, region_size, feature_mask).flatten(1)  # (N, V)
    n = p.x.shape[0]
    r = int(labels.max()) + 1
    rel = p.relevance.flatten(1).to(torch.float64)
    sums = rel.new_zeros(n, r).scatter_add_(1, labels, rel)
    counts = rel.new_zeros(n, r).scatter_add_(1, labels, torch.ones_like(rel))
    value = sums / counts.clamp(min=1) if reduction == "mean" else sums
    present = counts > 0
    # Regions absent from an example go last in either order, so they are never perturbed.
    value = value.masked_fill(~present, float("-inf") if order == "morf" else float("inf"))
    ranked = torch.sort(value, dim=1, descending=order == "morf", stable=True).indices
    rank = torch.empty_like(ranked).scatter_(
        1, ranked, torch.arange(r, device=rel.device).expand(n, r)
    )
    n_present = present.sum(1)
    fewest, most = int(n_present.min()), int(n_present.max())
    if n_regions is not None and region_fraction is not None:
        raise ValueError(
            f"pass either n_regions or region_fraction, not both (got {n_regions!r} and "
            f"{region_fraction!r})"
        )
    if n_regions is None:
        n_regions = max(1, math.ceil(fraction * fewest - 1e-9))
    elif n_regions > fewest:
        raise ValueError(
            f"n_regions must be between 1 and the number of regions ({fewest}), got {n_regions}"
        )
    voxel_rank = rank.gather(1, labels).view(p.relevance.shape)
    substrate = resolve_baseline(baselines, p.x)
    (scores,) = run_curves(
        forward_func,
        p.x,
        p.args,
        target,
        voxel_rank,
        most,
        [substrate],
        [CurveSpec(0, False, range(n_regions + 1), f"AOPC ({order.upper()})")],
        score=score,
        max_examples_per_batch=max_examples_per_batch,
        show_progress=show_progress,
    )
    return PerturbationCurve(
        torch.arange(n_regions + 1, dtype=p.x.dtype, device=p.x.device), scores
    )


def aopc(
    forward_func: Callable[..., Any],
    inputs: Tensor,
    attributions: Tensor,
    target: Any = None,
    additional_forward_args: Any = None,
    *,
    region_size: int | tuple[int, ...] | None = None,
    feature_mask: Tensor | None = None,
    n_regions: int | None = None,
    region_fraction: float | None = None,
    order: Order = "morf",
    reduction: Reduction = "mean",
    baselines: Baseline = _MEAN,
    score: MetricScore = "probability",
    max_examples_per_batch: int | None = DEFAULT_MAX_EXAMPLES_PER_BATCH,
    show_progress: bool = False,
) -> Tensor:
    r"""AOPC per example: the mean drop of the score as regions are perturbed.

    ::

        AOPC = 1 / (L + 1) * sum_{k=0..L} (f(x_0) - f(x_k))

    with ``x_k`` as in :func:`aopc_curve` (Samek et al. average this over a data set; here
    it is one value per example, average it with :func:`summarize`). MoRF: higher is
    better; the MoRF - LeRF gap is a common summary. The X-ray study (299x299 images, 81
    regions of 34 px, ``normal_noise_baseline(0.0, 0.1)``, softmax of the top class,
    correctly classified images) is ``aopc(model, x, maps, region_size=34,
    baselines=normal_noise_baseline(0.0, 0.1), region_fraction=1.0)``; Samek et al.'s
    is ``aopc(model, x, maps, region_size=9, baselines=uniform_noise_baseline(),
    n_regions=100)``.

    **Defaults, and why.** A perturbed region becomes the example's mean
    (:func:`mean_baseline`) and the first 20% of the regions are perturbed
    (``L = ceil(0.2 * R)``). Both were chosen by measuring how far apart the true lesion
    mask and a random map land (``benchmarks/aopc_defaults.py``: a MONAI resnet10 on
    ``SyntheticLesions`` at 32^3, and a 2D CNN on 64x64 lesion slices, 6 lesion examples
    each, cubes/patches of 4 and 9 voxels). With the mean, the true mask minus the random
    map was 0.79 to 0.93 over the four settings at 20% of the regions, with the random map
    at the floor (within 0.011 of 0); 0.46 to 0.71 when every region is perturbed (the tail,
    where every map has deleted everything, dilutes the difference), 0.66 to 0.88 at 10%,
    and 0.75 to 0.93 at 50% (at 2.5 times the cost, the random map off the floor by up to
    0.17). Zero did as well as the mean here but depends on the intensity scale; RISE's
    blur (sigma 5) left too much of a 2D lesion in place (the true mask at most 0.13).

    **When noise replacement misleads.** Samek et al.'s uniform noise over each example's
    range (``uniform_noise_baseline()``) fills a region with intensities that span the whole
    image, bright ones included; a lesion detector reads them as lesion, so its score
    saturates within the first few regions whatever the order. In the measurement above,
    with every region perturbed (the former default), Score-CAM, a random map and the true
    mask got the same AOPC (within 0.001 in 3D, 0.000 in 2D; MoRF - LeRF gaps of at most
    0.001). Noise is a fair perturbation where it is in distribution for the model
    (natural images in Samek et al.; the X-ray study's ``normal_noise_baseline(0.0, 0.1)``
    on images in [0, 1]); check a choice with :func:`metric_sanity_check`. A run whose
    curves carry no information about the order issues a :class:`DegenerateCurveWarning`.

    References:
        Samek, Binder, Montavon, Lapuschkin, Müller. "Evaluating the visualization of what a
        deep neural network has learned". IEEE TNNLS 2017. arXiv:1509.06321.

    Args:
        forward_func, inputs, attributions, target, additional_forward_args, region_size,
            feature_mask, n_regions, region_fraction, order, reduction, baselines, score,
            max_examples_per_batch, show_progress: as in :func:`aopc_curve`.

    Returns:
        ``(N,)``: one AOPC per example.

    Raises:
        ValueError, TypeError: as in :func:`aopc_curve`.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(512, 3)).eval()
        >>> x = torch.randn(2, 1, 8, 8, 8)
        >>> aopc(model, x, x.abs(), region_size=4).shape
        torch.Size([2])
    """
    s = aopc_curve(
        forward_func,
        inputs,
        attributions,
        target,
        additional_forward_args,
        region_size=region_size,
        feature_mask=feature_mask,
        n_regions=n_regions,
        region_fraction=region_fraction,
        order=order,
        reduction=reduction,
        baselines=baselines,
        score=score,
        max_examples_per_batch=max_examples_per_batch,
        show_progress=show_progress,
    ).scores
    return (s[:, :1] - s).mean(1)
