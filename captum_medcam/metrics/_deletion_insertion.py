"""Deletion and insertion curves and their areas (RISE), for 1D, 2D and 3D inputs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from captum_medcam._core.baselines import resolve_baseline
from captum_medcam._core.checks import check_positive_int
from captum_medcam._core.targets import MetricScore
from captum_medcam.metrics._baselines import Baseline, blur_baseline
from captum_medcam.metrics._perturbation import (
    DEFAULT_MAX_EXAMPLES_PER_BATCH,
    CurveSpec,
    PerturbationCurve,
    auc,
    prepare,
    run_curves,
    voxel_order,
)

__all__ = [
    "deletion_auc",
    "deletion_curve",
    "deletion_insertion_auc",
    "deletion_insertion_curves",
    "insertion_auc",
    "insertion_curve",
]

#: RISE's insertion substrate: a Gaussian blur, kernel 11, sigma 5.
_RISE_BLUR = blur_baseline(11, 5.0)


def _one(
    forward_func: Callable[..., Any],
    inputs: Tensor,
    attributions: Tensor,
    target: Any,
    additional_forward_args: Any,
    *,
    n_steps: int,
    baselines: list[Baseline],
    inserts: list[bool],
    score: MetricScore,
    max_examples_per_batch: int | None,
    show_progress: bool,
) -> list[PerturbationCurve]:
    """Deletion and/or insertion curves in one pass; equal baselines share a substrate."""
    check_positive_int(n_steps, "n_steps")
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
    n_vox = p.relevance[0, 0].numel()
    step = -(-n_vox // n_steps)
    thresholds = [min(i * step, n_vox) for i in range(n_steps + 1)]
    substrates: list[Any] = []
    specs = []
    for base, insert in zip(baselines, inserts, strict=True):
        same = next((j for j, (b, _) in enumerate(substrates) if _same_baseline(b, base)), None)
        if same is None:
            substrates.append((base, resolve_baseline(base, p.x)))
            same = len(substrates) - 1
        label = "insertion" if insert else "deletion"
        option = f"{label}_baselines" if len(baselines) > 1 else "baselines"
        specs.append(CurveSpec(same, insert, thresholds, label, option))
    scores = run_curves(
        forward_func,
        p.x,
        p.args,
        target,
        voxel_order(p.relevance),
        n_vox,
        [s for _, s in substrates],
        specs,
        score=score,
        max_examples_per_batch=max_examples_per_batch,
        show_progress=show_progress,
    )
    xs = torch.arange(n_steps + 1, dtype=p.x.dtype, device=p.x.device) / n_steps
    return [PerturbationCurve(xs, s) for s in scores]


def _same_baseline(a: object, b: object) -> bool:
    """True when two baselines certainly give the same substrate (so it is computed once)."""
    if a is b:
        return True
    if isinstance(a, Tensor) and isinstance(b, Tensor):
        return a.shape == b.shape and bool(torch.equal(a, b))
    numbers = (int, float)
    return (
        isinstance(a, numbers)
        and isinstance(b, numbers)
        and not isinstance(a, bool)
        and not isinstance(b, bool)
        and a == b
    )


def deletion_curve(
    forward_func: Callable[..., Any],
    inputs: Tensor,
    attributions: Tensor,
    target: Any = None,
    additional_forward_args: Any = None,
    *,
    n_steps: int = 100,
    baselines: Baseline = 0.0,
    score: MetricScore = "probability",
    max_examples_per_batch: int | None = DEFAULT_MAX_EXAMPLES_PER_BATCH,
    show_progress: bool = False,
) -> PerturbationCurve:
    r"""Deletion curve: the score as the most relevant voxels are replaced by a baseline.

    Voxels are ranked by decreasing attribution (the attributions summed over channels; a
    one-channel map is broadcast, so all input channels of a voxel move together). Ties are
    broken by position: the voxel with the smaller flattened ``(D, H, W)`` index comes
    first. With ``V`` voxels and ``step = ceil(V / n_steps)`` (as in the RISE code), point
    ``i = 0 .. n_steps`` of the curve is at ``x_i = i / n_steps`` and scores the input whose
    ``min(i * step, V)`` top voxels are::

        deletion:  replaced by the baseline (start: the input; lower AUC is better)
        insertion: taken from the input, the rest from the baseline (start: the baseline;
                   higher AUC is better)

    The AUC is the trapezoid rule, ``(sum - first / 2 - last / 2) / n_steps``.

    ``score`` is what the curve plots: ``"probability"`` (softmax of the target class, or
    the sigmoid of a single-logit model; RISE's choice), ``"logit"``, ``"sigmoid"`` (the
    sigmoid of the target label's logit alone, for multi-label heads with one sigmoid per
    finding such as ChestMNIST; ``target`` names the label), or ``"correct"``
    (1 where the argmax equals the target, else 0). The 3D Score-CAM study on OrganMNIST3D
    reported ``"correct"`` with ``n_steps=129`` (130 points, every AUC of the form
    ``(k - 1/2) / 129``).

    All perturbed inputs of all examples and steps are built lazily and go through the model
    ``max_examples_per_batch`` at a time under ``torch.no_grad()``. Identical inputs are
    evaluated once: the clean input (deletion's start, insertion's end), the fully replaced
    input, and the trailing steps where ``i * step >= V``. A call whose curves carry no
    information about the order (the score sits on one plateau, also in the reverse order)
    issues a :class:`DegenerateCurveWarning`.

    References:
        Petsiuk, Das, Saenko. "RISE: Randomized Input Sampling for Explanation of Black-box
        Models". BMVC 2018. arXiv:1806.07421.

    Args:
        forward_func: the model, called as ``forward_func(inputs, *additional_forward_args)``.
            Its mode is left as it is (call ``model.eval()`` first).
        inputs: ``(N, C, *S)`` with 1 to 3 spatial dims, e.g. ``(N, C, D, H, W)``.
        attributions: ``(N, 1, *S)`` or ``(N, C, *S)`` at input resolution, from this
            library or Captum (e.g. ``IntegratedGradients``).
        target: the class to score, as in Captum; None takes the class predicted on the
            unperturbed input (RISE).
        additional_forward_args: further model arguments, as in Captum; tensors whose first
            dim is ``N`` follow their example.
        n_steps: number of steps; the curve has ``n_steps + 1`` points.
        baselines: what deleted voxels become: a number, a tensor broadcastable to the
            inputs, or a callable of the inputs (see :func:`blur_baseline`,
            :func:`mean_baseline`, :func:`uniform_noise_baseline`); default 0 as in RISE.
        score: ``"probability"``, ``"logit"``, ``"sigmoid"`` (multi-label heads) or
            ``"correct"``.
        max_examples_per_batch: perturbed inputs per forward pass (None: all at once). It
            bounds memory; the number of steps does not. See
            :func:`captum_medcam.perturbation_options` for mixed precision and ``"auto"``.
        show_progress: a progress bar over the forward passes.

    Returns:
        ``PerturbationCurve(x, scores)``: ``x`` ``(n_steps + 1,)`` and ``scores``
        ``(N, n_steps + 1)``.

    Raises:
        TypeError: inputs or attributions that are not floating tensors, a baseline of an
            unsupported type.
        ValueError: shapes that do not match (a layer-resolution map must be upsampled
            first), ``n_steps < 1``, an unknown ``score``, a target out of range.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(64, 3)).eval()
        >>> x = torch.randn(2, 1, 4, 4, 4)
        >>> curve = deletion_curve(model, x, x.abs(), n_steps=8)
        >>> curve.x.shape, curve.scores.shape
        (torch.Size([9]), torch.Size([2, 9]))
    """
    return _one(
        forward_func,
        inputs,
        attributions,
        target,
        additional_forward_args,
        n_steps=n_steps,
        baselines=[baselines],
        inserts=[False],
        score=score,
        max_examples_per_batch=max_examples_per_batch,
        show_progress=show_progress,
    )[0]


def insertion_curve(
    forward_func: Callable[..., Any],
    inputs: Tensor,
    attributions: Tensor,
    target: Any = None,
    additional_forward_args: Any = None,
    *,
    n_steps: int = 100,
    baselines: Baseline = _RISE_BLUR,
    score: MetricScore = "probability",
    max_examples_per_batch: int | None = DEFAULT_MAX_EXAMPLES_PER_BATCH,
    show_progress: bool = False,
) -> PerturbationCurve:
    r"""Insertion curve: the score as the most relevant voxels are put back into a baseline.

    Voxels are ranked by decreasing attribution (the attributions summed over channels; a
    one-channel map is broadcast, so all input channels of a voxel move together). Ties are
    broken by position: the voxel with the smaller flattened ``(D, H, W)`` index comes
    first. With ``V`` voxels and ``step = ceil(V / n_steps)`` (as in the RISE code), point
    ``i = 0 .. n_steps`` of the curve is at ``x_i = i / n_steps`` and scores the input whose
    ``min(i * step, V)`` top voxels are::

        deletion:  replaced by the baseline (start: the input; lower AUC is better)
        insertion: taken from the input, the rest from the baseline (start: the baseline;
                   higher AUC is better)

    The AUC is the trapezoid rule, ``(sum - first / 2 - last / 2) / n_steps``.

    ``score`` is what the curve plots: ``"probability"`` (softmax of the target class, or
    the sigmoid of a single-logit model; RISE's choice), ``"logit"``, ``"sigmoid"`` (the
    sigmoid of the target label's logit alone, for multi-label heads with one sigmoid per
    finding such as ChestMNIST; ``target`` names the label), or ``"correct"``
    (1 where the argmax equals the target, else 0). The 3D Score-CAM study on OrganMNIST3D
    reported ``"correct"`` with ``n_steps=129`` (130 points, every AUC of the form
    ``(k - 1/2) / 129``).

    All perturbed inputs of all examples and steps are built lazily and go through the model
    ``max_examples_per_batch`` at a time under ``torch.no_grad()``. Identical inputs are
    evaluated once: the clean input (deletion's start, insertion's end), the fully replaced
    input, and the trailing steps where ``i * step >= V``. A call whose curves carry no
    information about the order (the score sits on one plateau, also in the reverse order)
    issues a :class:`DegenerateCurveWarning`.

    References:
        Petsiuk, Das, Saenko. "RISE: Randomized Input Sampling for Explanation of Black-box
        Models". BMVC 2018. arXiv:1806.07421.

    Args:
        forward_func: the model, called as ``forward_func(inputs, *additional_forward_args)``.
            Its mode is left as it is (call ``model.eval()`` first).
        inputs: ``(N, C, *S)`` with 1 to 3 spatial dims, e.g. ``(N, C, D, H, W)``.
        attributions: ``(N, 1, *S)`` or ``(N, C, *S)`` at input resolution, from this
            library or Captum (e.g. ``IntegratedGradients``).
        target: the class to score, as in Captum; None takes the class predicted on the
            unperturbed input (RISE).
        additional_forward_args: further model arguments, as in Captum; tensors whose first
            dim is ``N`` follow their example.
        n_steps: number of steps; the curve has ``n_steps + 1`` points.
        baselines: the input the voxels are inserted into: a number, a tensor
            broadcastable to the inputs, or a callable of the inputs; default
            ``blur_baseline(11, 5.0)``, RISE's Gaussian blur.
        score: ``"probability"``, ``"logit"``, ``"sigmoid"`` (multi-label heads) or
            ``"correct"``.
        max_examples_per_batch: perturbed inputs per forward pass (None: all at once). It
            bounds memory; the number of steps does not. See
            :func:`captum_medcam.perturbation_options` for mixed precision and ``"auto"``.
        show_progress: a progress bar over the forward passes.

    Returns:
        ``PerturbationCurve(x, scores)``: ``x`` ``(n_steps + 1,)`` and ``scores``
        ``(N, n_steps + 1)``.

    Raises:
        TypeError: inputs or attributions that are not floating tensors, a baseline of an
            unsupported type.
        ValueError: shapes that do not match (a layer-resolution map must be upsampled
            first), ``n_steps < 1``, an unknown ``score``, a target out of range.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(64, 3)).eval()
        >>> x = torch.randn(2, 1, 4, 4, 4)
        >>> insertion_curve(model, x, x.abs(), n_steps=8).scores.shape
        torch.Size([2, 9])
    """
    return _one(
        forward_func,
        inputs,
        attributions,
        target,
        additional_forward_args,
        n_steps=n_steps,
        baselines=[baselines],
        inserts=[True],
        score=score,
        max_examples_per_batch=max_examples_per_batch,
        show_progress=show_progress,
    )[0]


def deletion_auc(
    forward_func: Callable[..., Any],
    inputs: Tensor,
    attributions: Tensor,
    target: Any = None,
    additional_forward_args: Any = None,
    *,
    n_steps: int = 100,
    baselines: Baseline = 0.0,
    score: MetricScore = "probability",
    max_examples_per_batch: int | None = DEFAULT_MAX_EXAMPLES_PER_BATCH,
    show_progress: bool = False,
) -> Tensor:
    r"""Deletion AUC per example (lower is better): the area under :func:`deletion_curve`.

    The area under the curve of :func:`deletion_curve` (which defines the voxel ranking,
    the steps, the score and the batching) by the trapezoid rule,
    ``(sum_i s_i - s_0 / 2 - s_n / 2) / n_steps``.

    References:
        Petsiuk, Das, Saenko. "RISE: Randomized Input Sampling for Explanation of Black-box
        Models". BMVC 2018. arXiv:1806.07421.

    Args:
        forward_func: the model, called as ``forward_func(inputs, *additional_forward_args)``.
            Its mode is left as it is (call ``model.eval()`` first).
        inputs: ``(N, C, *S)`` with 1 to 3 spatial dims, e.g. ``(N, C, D, H, W)``.
        attributions: ``(N, 1, *S)`` or ``(N, C, *S)`` at input resolution, from this
            library or Captum (e.g. ``IntegratedGradients``).
        target: the class to score, as in Captum; None takes the class predicted on the
            unperturbed input (RISE).
        additional_forward_args: further model arguments, as in Captum; tensors whose first
            dim is ``N`` follow their example.
        n_steps: number of steps; the curve has ``n_steps + 1`` points.
        baselines: what deleted voxels become (default 0, as in RISE); see
            :func:`deletion_curve`.
        score: ``"probability"``, ``"logit"``, ``"sigmoid"`` (multi-label heads) or
            ``"correct"``.
        max_examples_per_batch: perturbed inputs per forward pass (None: all at once). It
            bounds memory; the number of steps does not. See
            :func:`captum_medcam.perturbation_options` for mixed precision and ``"auto"``.
        show_progress: a progress bar over the forward passes.

    Returns:
        ``(N,)``: one AUC per example, in the inputs' dtype.

    Raises:
        TypeError: inputs or attributions that are not floating tensors, a baseline of an
            unsupported type.
        ValueError: shapes that do not match (a layer-resolution map must be upsampled
            first), ``n_steps < 1``, an unknown ``score``, a target out of range.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(64, 3)).eval()
        >>> x = torch.randn(2, 1, 4, 4, 4)
        >>> deletion_auc(model, x, x.abs(), n_steps=8).shape
        torch.Size([2])
    """
    return auc(
        deletion_curve(
            forward_func,
            inputs,
            attributions,
            target,
            additional_forward_args,
            n_steps=n_steps,
            baselines=baselines,
            score=score,
            max_examples_per_batch=max_examples_per_batch,
            show_progress=show_progress,
        )
    )


def insertion_auc(
    forward_func: Callable[..., Any],
    inputs: Tensor,
    attributions: Tensor,
    target: Any = None,
    additional_forward_args: Any = None,
    *,
    n_steps: int = 100,
    baselines: Baseline = _RISE_BLUR,
    score: MetricScore = "probability",
    max_examples_per_batch: int | None = DEFAULT_MAX_EXAMPLES_PER_BATCH,
    show_progress: bool = False,
) -> Tensor:
    r"""Insertion AUC per example (higher is better): the area under :func:`insertion_curve`.

    The area under the curve of :func:`insertion_curve` (which defines the voxel ranking,
    the steps, the score and the batching) by the trapezoid rule,
    ``(sum_i s_i - s_0 / 2 - s_n / 2) / n_steps``.

    References:
        Petsiuk, Das, Saenko. "RISE: Randomized Input Sampling for Explanation of Black-box
        Models". BMVC 2018. arXiv:1806.07421.

    Args:
        forward_func: the model, called as ``forward_func(inputs, *additional_forward_args)``.
            Its mode is left as it is (call ``model.eval()`` first).
        inputs: ``(N, C, *S)`` with 1 to 3 spatial dims, e.g. ``(N, C, D, H, W)``.
        attributions: ``(N, 1, *S)`` or ``(N, C, *S)`` at input resolution, from this
            library or Captum (e.g. ``IntegratedGradients``).
        target: the class to score, as in Captum; None takes the class predicted on the
            unperturbed input (RISE).
        additional_forward_args: further model arguments, as in Captum; tensors whose first
            dim is ``N`` follow their example.
        n_steps: number of steps; the curve has ``n_steps + 1`` points.
        baselines: the input the voxels are inserted into (default: RISE's blur,
            ``blur_baseline(11, 5.0)``); see :func:`insertion_curve`.
        score: ``"probability"``, ``"logit"``, ``"sigmoid"`` (multi-label heads) or
            ``"correct"``.
        max_examples_per_batch: perturbed inputs per forward pass (None: all at once). It
            bounds memory; the number of steps does not. See
            :func:`captum_medcam.perturbation_options` for mixed precision and ``"auto"``.
        show_progress: a progress bar over the forward passes.

    Returns:
        ``(N,)``: one AUC per example.

    Raises:
        TypeError: inputs or attributions that are not floating tensors, a baseline of an
            unsupported type.
        ValueError: shapes that do not match (a layer-resolution map must be upsampled
            first), ``n_steps < 1``, an unknown ``score``, a target out of range.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(64, 3)).eval()
        >>> x = torch.randn(2, 1, 4, 4, 4)
        >>> insertion_auc(model, x, x.abs(), n_steps=8).shape
        torch.Size([2])
    """
    return auc(
        insertion_curve(
            forward_func,
            inputs,
            attributions,
            target,
            additional_forward_args,
            n_steps=n_steps,
            baselines=baselines,
            score=score,
            max_examples_per_batch=max_examples_per_batch,
            show_progress=show_progress,
        )
    )


def deletion_insertion_curves(
    forward_func: Callable[..., Any],
    inputs: Tensor,
    attributions: Tensor,
    target: Any = None,
    additional_forward_args: Any = None,
    *,
    n_steps: int = 100,
    deletion_baselines: Baseline = 0.0,
    insertion_baselines: Baseline = _RISE_BLUR,
    score: MetricScore = "probability",
    max_examples_per_batch: int | None = DEFAULT_MAX_EXAMPLES_PER_BATCH,
    show_progress: bool = False,
) -> tuple[PerturbationCurve, PerturbationCurve]:
    r"""Deletion and insertion curves in one pass over the model.

    Equivalent to :func:`deletion_curve` and :func:`insertion_curve`, but the clean input
    is scored once for both, both curves' inputs share the forward batches, and with a
    shared baseline the fully deleted input (insertion's start) is scored once.

    :func:`deletion_curve` defines the voxel ranking, the steps, the score and the batching.

    References:
        Petsiuk, Das, Saenko. "RISE: Randomized Input Sampling for Explanation of Black-box
        Models". BMVC 2018. arXiv:1806.07421.

    Args:
        forward_func: the model, called as ``forward_func(inputs, *additional_forward_args)``.
            Its mode is left as it is (call ``model.eval()`` first).
        inputs: ``(N, C, *S)`` with 1 to 3 spatial dims, e.g. ``(N, C, D, H, W)``.
        attributions: ``(N, 1, *S)`` or ``(N, C, *S)`` at input resolution, from this
            library or Captum (e.g. ``IntegratedGradients``).
        target: the class to score, as in Captum; None takes the class predicted on the
            unperturbed input (RISE).
        additional_forward_args: further model arguments, as in Captum; tensors whose first
            dim is ``N`` follow their example.
        n_steps: number of steps; the curve has ``n_steps + 1`` points.
        deletion_baselines: deletion's substrate (default 0, RISE).
        insertion_baselines: insertion's substrate (default RISE's blur). When both are the
            same (the same object, equal numbers or equal tensors) the substrate is computed
            once and the fully deleted input, which is insertion's start, is evaluated once.
        score: ``"probability"``, ``"logit"``, ``"sigmoid"`` (multi-label heads) or
            ``"correct"``.
        max_examples_per_batch: perturbed inputs per forward pass (None: all at once). It
            bounds memory; the number of steps does not. See
            :func:`captum_medcam.perturbation_options` for mixed precision and ``"auto"``.
        show_progress: a progress bar over the forward passes.

    Returns:
        ``(deletion, insertion)``, two ``PerturbationCurve``.

    Raises:
        TypeError: inputs or attributions that are not floating tensors, a baseline of an
            unsupported type.
        ValueError: shapes that do not match (a layer-resolution map must be upsampled
            first), ``n_steps < 1``, an unknown ``score``, a target out of range.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(64, 3)).eval()
        >>> x = torch.randn(2, 1, 4, 4, 4)
        >>> d, i = deletion_insertion_curves(model, x, x.abs(), n_steps=8)
        >>> d.scores.shape, i.scores.shape
        (torch.Size([2, 9]), torch.Size([2, 9]))
    """
    return tuple(  # type: ignore[return-value]
        _one(
            forward_func,
            inputs,
            attributions,
            target,
            additional_forward_args,
            n_steps=n_steps,
            baselines=[deletion_baselines, insertion_baselines],
            inserts=[False, True],
            score=score,
            max_examples_per_batch=max_examples_per_batch,
            show_progress=show_progress,
        )
    )


def deletion_insertion_auc(
    forward_func: Callable[..., Any],
    inputs: Tensor,
    attributions: Tensor,
    target: Any = None,
    additional_forward_args: Any = None,
    *,
    n_steps: int = 100,
    deletion_baselines: Baseline = 0.0,
    insertion_baselines: Baseline = _RISE_BLUR,
    score: MetricScore = "probability",
    max_examples_per_batch: int | None = DEFAULT_MAX_EXAMPLES_PER_BATCH,
    show_progress: bool = False,
) -> tuple[Tensor, Tensor]:
    r"""Deletion and insertion AUC per example in one pass (see
    :func:`deletion_insertion_curves` for what is shared).

    The areas by the trapezoid rule, ``(sum_i s_i - s_0 / 2 - s_n / 2) / n_steps``, of the
    curves that :func:`deletion_curve` and :func:`insertion_curve` define.

    References:
        Petsiuk, Das, Saenko. "RISE: Randomized Input Sampling for Explanation of Black-box
        Models". BMVC 2018. arXiv:1806.07421.

    Args:
        forward_func: the model, called as ``forward_func(inputs, *additional_forward_args)``.
            Its mode is left as it is (call ``model.eval()`` first).
        inputs: ``(N, C, *S)`` with 1 to 3 spatial dims, e.g. ``(N, C, D, H, W)``.
        attributions: ``(N, 1, *S)`` or ``(N, C, *S)`` at input resolution, from this
            library or Captum (e.g. ``IntegratedGradients``).
        target: the class to score, as in Captum; None takes the class predicted on the
            unperturbed input (RISE).
        additional_forward_args: further model arguments, as in Captum; tensors whose first
            dim is ``N`` follow their example.
        n_steps: number of steps; the curve has ``n_steps + 1`` points.
        deletion_baselines: deletion's substrate (default 0, RISE).
        insertion_baselines: insertion's substrate (default RISE's blur). When both are the
            same (the same object, equal numbers or equal tensors) the substrate is computed
            once and the fully deleted input, which is insertion's start, is evaluated once.
        score: ``"probability"``, ``"logit"``, ``"sigmoid"`` (multi-label heads) or
            ``"correct"``.
        max_examples_per_batch: perturbed inputs per forward pass (None: all at once). It
            bounds memory; the number of steps does not. See
            :func:`captum_medcam.perturbation_options` for mixed precision and ``"auto"``.
        show_progress: a progress bar over the forward passes.

    Returns:
        ``(deletion_auc, insertion_auc)``, each ``(N,)``.

    Raises:
        TypeError: inputs or attributions that are not floating tensors, a baseline of an
            unsupported type.
        ValueError: shapes that do not match (a layer-resolution map must be upsampled
            first), ``n_steps < 1``, an unknown ``score``, a target out of range.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(64, 3)).eval()
        >>> x = torch.randn(2, 1, 4, 4, 4)
        >>> dauc, iauc = deletion_insertion_auc(model, x, x.abs(), n_steps=8)
        >>> dauc.shape, iauc.shape
        (torch.Size([2]), torch.Size([2]))
    """
    deletion, insertion = deletion_insertion_curves(
        forward_func,
        inputs,
        attributions,
        target,
        additional_forward_args,
        n_steps=n_steps,
        deletion_baselines=deletion_baselines,
        insertion_baselines=insertion_baselines,
        score=score,
        max_examples_per_batch=max_examples_per_batch,
        show_progress=show_progress,
    )
    return auc(deletion), auc(insertion)
