"""The perturbation curves shared by deletion, insertion and AOPC.

Every metric here scores a sequence of inputs in which the highest ranked units (voxels or
regions) are swapped with a substrate. With ``order`` the rank of each voxel's unit
``(N, 1, *S)`` and a threshold ``t``::

    deletion:  x_t = where(order < t, substrate, x)
    insertion: x_t = where(order < t, x, substrate)

The engine lists the distinct ``(threshold, substrate, direction)`` points of all requested
curves, so an input that two curves share (the clean input; the fully deleted input, which
is also insertion's start when both use the same substrate) is evaluated once. Jobs
``(point, example)`` are then built on the fly, ``max_examples_per_batch`` at a time, and run
under ``torch.no_grad()`` by the package's engine (:mod:`captum_medcam._core.engine`):
memory is bounded by the batch knob, not by the number of steps.
Curves that carry no information about the order issue a :class:`DegenerateCurveWarning`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, cast

import torch
from torch import Tensor

from captum_medcam._core.checks import (
    check_choice,
    check_flags,
    check_forward_and_layer,
    check_inputs,
    check_positive_int,
    check_target_type,
    format_additional_args,
    user_stacklevel,
    warn_if_training,
)
from captum_medcam._core.engine import Perturbed, forward_in_chunks, progress_bar, run_jobs
from captum_medcam._core.meta import unwrap_meta
from captum_medcam._core.targets import METRIC_SCORES, MetricScore, class_scores, per_sample_target

__all__ = ["DegenerateCurveWarning", "PerturbationCurve", "auc"]


#: Perturbed inputs per forward pass. Raise it on a GPU until memory is the limit.
DEFAULT_MAX_EXAMPLES_PER_BATCH = 32


class DegenerateCurveWarning(UserWarning):
    """A perturbation metric's curves carry no information about the attribution's order.

    Issued once per metric call when, for every example, the score jumps to its final value
    and stays there over at least 80% of the curve, perturbing the least relevant units
    first does the same, and (for a curve that stops early, such as AOPC's ``L`` regions)
    perturbing every unit gives that value too: any map, a random one included, would get
    about the same number. Typical causes: a substrate that the model reads as the class
    (noise replacement in a lesion detector), or a saturated score (``score="correct"``
    whose prediction never flips). The check costs nothing unless the curve is on a
    plateau, then up to 6 forwards per example.
    """


class PerturbationCurve(NamedTuple):
    """A perturbation curve: x positions ``(T,)`` and one score per example ``(N, T)``."""

    x: Tensor
    scores: Tensor


def auc(curve: PerturbationCurve) -> Tensor:
    """Area under a curve by the trapezoid rule, one value per example ``(N,)``.

    With ``T = n_steps + 1`` equally spaced points on ``[0, 1]`` this is RISE's
    ``(sum - first / 2 - last / 2) / n_steps``.

    Example:
        >>> import torch
        >>> auc(PerturbationCurve(torch.linspace(0, 1, 3), torch.tensor([[1.0, 0.5, 0.0]])))
        tensor([0.5000])
    """
    _check_curve(curve, "curve")
    return torch.trapezoid(curve.scores, curve.x.to(curve.scores), dim=1)


def _check_curve(curve: object, name: str) -> PerturbationCurve:
    """Return ``curve`` if it is a :class:`PerturbationCurve` with ``x (T,)`` and ``(N, T)``."""
    if not isinstance(curve, PerturbationCurve):
        raise TypeError(
            f"{name} must be a PerturbationCurve (from deletion_curve, insertion_curve or "
            f"aopc_curve), got {type(curve).__name__}"
        )
    x, s = curve
    if not isinstance(x, Tensor) or not isinstance(s, Tensor):
        raise TypeError(f"{name}.x and {name}.scores must be tensors")
    if x.dim() != 1 or s.dim() != 2 or s.shape[1] != x.shape[0]:
        raise ValueError(
            f"{name} must hold x of shape (T,) and scores of shape (N, T), got "
            f"{tuple(x.shape)} and {tuple(s.shape)}"
        )
    return curve


class Prepared(NamedTuple):
    """Checked inputs of a metric call."""

    x: Tensor  # (N, C, *S)
    relevance: Tensor  # (N, 1, *S): the attributions summed over channels
    args: tuple[Any, ...]


def prepare(
    forward_func: Callable[..., Any],
    inputs: object,
    attributions: object,
    additional_forward_args: object,
    score: object,
    max_examples_per_batch: object,
    *,
    target: object = None,
    show_progress: object = False,
) -> Prepared:
    """Check the arguments every perturbation metric shares.

    Raises:
        TypeError: a forward_func that is not callable, inputs or attributions that are not
            floating tensors, a non-int ``max_examples_per_batch``.
        ValueError: shapes that do not match, a layer-resolution map, NaN/inf, an unknown
            ``score``, ``max_examples_per_batch < 1``.
    """
    check_forward_and_layer(forward_func)
    check_choice(score, "score", METRIC_SCORES)
    check_target_type(target)
    check_flags(show_progress=show_progress)
    if max_examples_per_batch is not None:
        check_positive_int(max_examples_per_batch, "max_examples_per_batch")
    x = check_inputs(unwrap_meta(inputs))  # type: ignore[arg-type]
    attr = check_inputs(unwrap_meta(attributions), name="attributions")  # type: ignore[arg-type]
    if attr.dim() != x.dim():
        raise ValueError(
            f"attributions of shape {tuple(attr.shape)} do not match inputs of shape "
            f"{tuple(x.shape)}: expected (N, 1 or C, *spatial) with the same number of dims"
        )
    if attr.shape[2:] != x.shape[2:]:
        mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[x.dim() - 2]
        raise ValueError(
            f"attributions have spatial shape {tuple(attr.shape[2:])} but the inputs "
            f"{tuple(x.shape[2:])}: a layer-resolution map must be upsampled to the input first, "
            f"e.g. captum.attr.LayerAttribution.interpolate(attributions, inputs.shape[2:], "
            f"'{mode}')"
        )
    if attr.shape[0] != x.shape[0]:
        raise ValueError(
            f"attributions have {attr.shape[0]} examples but the inputs {x.shape[0]} "
            f"(shapes {tuple(attr.shape)} and {tuple(x.shape)})"
        )
    if attr.shape[1] not in (1, x.shape[1]):
        raise ValueError(
            f"attributions have {attr.shape[1]} channels; expected 1 (broadcast over the "
            f"inputs' channels) or {x.shape[1]} like the inputs"
        )
    warn_if_training(forward_func)
    relevance = attr.detach().to(x.device).sum(1, keepdim=True)
    return Prepared(x, relevance, format_additional_args(additional_forward_args))


def voxel_order(relevance: Tensor, descending: bool = True) -> Tensor:
    """Rank of every voxel, 0 for the most relevant ``(N, 1, *S)``.

    Ties are broken by position: of voxels with equal relevance the one that comes first in
    C order (the flattened ``D, H, W`` index) is ranked first, in both directions.
    """
    flat = relevance.flatten(1)
    n, v = flat.shape
    idx = torch.sort(flat, dim=1, descending=descending, stable=True).indices
    rank = torch.empty_like(idx)
    rank.scatter_(1, idx, torch.arange(v, device=flat.device).expand(n, v))
    return rank.view(relevance.shape)


class CurveSpec(NamedTuple):
    """One requested curve: a substrate, a direction and one threshold per point.

    ``label`` names the curve and ``option`` the argument that sets its substrate, both for
    the :class:`DegenerateCurveWarning`.
    """

    substrate: int  # index into the substrates list
    insert: bool  # False: deletion (the first t units take the substrate)
    thresholds: Sequence[int]
    label: str = "perturbation"
    option: str = "baselines"


def run_curves(
    forward_func: Callable[..., Any],
    x: Tensor,
    args: tuple[Any, ...],
    target: object,
    order: Tensor,
    full: int,
    substrates: Sequence[Tensor],
    specs: Sequence[CurveSpec],
    *,
    score: MetricScore,
    max_examples_per_batch: int | None,
    show_progress: bool,
) -> list[Tensor]:
    """Score every point of every requested curve, each distinct input once.

    Args:
        forward_func: the model.
        x: clean inputs ``(N, C, *S)``.
        args: formatted additional forward args.
        target: Captum target; None takes the class predicted on ``x``.
        order: rank of each voxel's unit ``(N, 1, *S)``, long.
        full: a threshold at or above which every unit of every example is perturbed.
        substrates: tensors shaped like ``x``.
        specs: the curves.
        score: ``"probability"``, ``"logit"``, ``"sigmoid"`` or ``"correct"``.
        max_examples_per_batch: inputs per forward (None: all in one).
        show_progress: a progress bar over the forwards.

    Returns:
        One ``(N, T)`` score tensor per spec.
    """
    n = x.shape[0]
    chunk = max_examples_per_batch or max(n, 1)
    everyone = torch.arange(n, device=x.device)

    # Distinct points. Key None is the clean input, already scored by the clean forward.
    keys: dict[tuple[int, bool, int], int] = {}
    columns: list[list[int | None]] = []
    for spec in specs:
        cols: list[int | None] = []
        for t in spec.thresholds:
            t = int(min(max(t, 0), full))
            if t == (full if spec.insert else 0):
                cols.append(None)
                continue
            fully_replaced = t == (0 if spec.insert else full)
            # The fully replaced input is the same for deletion and insertion: one key.
            key = (
                (spec.substrate, False, full)
                if fully_replaced
                else (spec.substrate, spec.insert, t)
            )
            cols.append(keys.setdefault(key, len(keys)))
        columns.append(cols)
    n_keys = len(keys)
    key_sub = torch.tensor([k[0] for k in keys], dtype=torch.long, device=x.device)
    key_insert = torch.tensor([k[1] for k in keys], dtype=torch.bool, device=x.device)
    key_t = torch.tensor([k[2] for k in keys], dtype=torch.long, device=x.device)
    stacked = substrates[0].unsqueeze(0) if len(substrates) == 1 else torch.stack(list(substrates))
    view = (-1,) + (1,) * (x.dim() - 1)

    def build(start: int, stop: int) -> Perturbed:
        # Job j scores point j // n of example j % n.
        ids = torch.arange(start, stop, device=x.device)
        k, s = ids // n, ids % n
        shown = (order.index_select(0, s) < key_t[k].view(view)) != key_insert[k].view(view)
        return Perturbed(torch.where(shown, stacked[key_sub[k], s], x.index_select(0, s)), s)

    n_jobs = n_keys * n
    bar = progress_bar(n + n_jobs, "metric forwards", unit="input", show=show_progress)
    try:
        clean_out = forward_in_chunks(forward_func, x, args, chunk_size=chunk, bar=bar)
        targets = _resolve_target(target, n, clean_out, score)
        clean = _score(clean_out, targets, everyone, score, x.dtype)
        flat_scores = run_jobs(
            forward_func, x, targets, args, n_jobs, build, chunk_size=chunk, score=score, bar=bar
        )
    finally:
        bar.close()
    scores = flat_scores.view(n_keys, n)
    curves = [
        torch.stack([clean if c is None else scores[c] for c in cols], dim=1) for cols in columns
    ]
    _warn_if_degenerate(
        forward_func, x, args, targets, order, full, stacked, specs, curves, score, chunk
    )
    return curves


#: Two scores closer than this (times ``max(1, |score|)``) count as the same value.
_DEGENERATE_RTOL = 1e-3
#: A curve "sits at its final value" when at least this share of its perturbed points does.
_PLATEAU_SHARE = 0.8
#: Points of the reverse-order curve scored to check a plateau (spent only on suspects).
_REVERSE_POINTS = 5


def same_score(a: Tensor, b: Tensor) -> Tensor:
    """Elementwise: ``a`` and ``b`` agree within ``1e-3 * max(1, |a|, |b|)``."""
    scale = torch.maximum(a.abs(), b.abs()).clamp(min=1.0)
    return (a - b).abs() <= _DEGENERATE_RTOL * scale


def _at_plateau(scores: Tensor, final: Tensor) -> Tensor:
    """Per example ``(N,)``: whether most of ``scores`` ``(N, P)`` equal ``final`` ``(N, 1)``."""
    return same_score(scores, final).to(torch.float64).mean(1) >= _PLATEAU_SHARE


def _warn_if_degenerate(
    forward_func: Callable[..., Any],
    x: Tensor,
    args: tuple[Any, ...],
    targets: Tensor | list[Any] | None,
    order: Tensor,
    full: int,
    stacked: Tensor,
    specs: Sequence[CurveSpec],
    curves: Sequence[Tensor],
    score: MetricScore,
    chunk: int,
) -> None:
    """Warn once when some curves carry no information about the order of the units.

    A curve is degenerate when, for every example, (1) at least 80% of its perturbed points
    (all but the first, unperturbed one) have the curve's final score (within
    ``1e-3 * max(1, |score|)``): the score jumps to a plateau and stays there; (2) the same
    holds when the units are perturbed in the reverse order (least relevant first), checked
    at up to 5 of the curve's thresholds that perturb some but not all units; and (3) for a
    curve that stops before every unit is perturbed (AOPC's ``L``), perturbing every unit
    gives the plateau's score too. (1) alone also holds for a perfect map whose first step
    removes all the evidence, which (2) rules out; (3) rules out a model that only changes
    its mind once all the evidence is gone, where a random map and its reverse both stay
    on the clean score while a good map does not. The checks cost up to 6 extra forwards
    per example, spent only when (1) holds. Curves with fewer than two perturbed points
    are not judged.
    """
    suspects = [
        i
        for i, c in enumerate(curves)
        if c.shape[1] >= 3 and c.shape[0] > 0 and bool(_at_plateau(c[:, 1:], c[:, -1:]).all())
    ]
    if not suspects:
        return
    n = x.shape[0]
    view = (-1,) + (1,) * (x.dim() - 1)
    reverse = order.flatten(1).amax(1).view(view) - order  # least relevant unit first
    degenerate = []
    with torch.no_grad():
        for i in suspects:
            spec = specs[i]
            inner = sorted(
                {t for t in (min(max(int(t), 0), full) for t in spec.thresholds) if 0 < t < full}
            )
            if not inner:
                continue
            m = min(_REVERSE_POINTS, len(inner))
            points = sorted({inner[round(k * (len(inner) - 1) / max(m - 1, 1))] for k in range(m)})
            # A curve that stops early (AOPC's L regions) must also end where perturbing every
            # unit ends: a plateau that more perturbation would leave is not degenerate.
            stops_early = min(max(int(spec.thresholds[-1]), 0), full) != full
            picks = torch.tensor(points + [full] * stops_early, device=x.device)
            n_jobs = picks.shape[0] * n

            def build(
                start: int, stop: int, spec: CurveSpec = spec, picks: Tensor = picks
            ) -> Perturbed:
                ids = torch.arange(start, stop, device=x.device)
                k, s = ids // n, ids % n
                shown = (reverse.index_select(0, s) < picks[k].view(view)) != spec.insert
                sub = stacked[spec.substrate].index_select(0, s)
                return Perturbed(torch.where(shown, sub, x.index_select(0, s)), s)

            rev = run_jobs(
                forward_func, x, targets, args, n_jobs, build, chunk_size=chunk, score=score
            )
            rev = rev.view(-1, n).T  # (N, points [+ full])
            final = curves[i][:, -1:]
            if stops_early and not bool(same_score(rev[:, -1:], final).all()):
                continue
            if bool(_at_plateau(rev[:, : len(points)], final).all()):
                degenerate.append(spec)
    if not degenerate:
        return
    labels = " and ".join(dict.fromkeys(spec.label for spec in degenerate))
    options = " / ".join(f"`{o}`" for o in dict.fromkeys(spec.option for spec in degenerate))
    warnings.warn(
        f"the {labels} curves carry no information about the attributions' order: for every "
        f"example the {score} jumps to its final value and stays there over nearly the whole "
        f"curve, also when the least relevant units are perturbed first, so any map, a "
        f"random one included, gets about the same result. Likely cause: the substrate "
        f"({options}) changes the prediction by itself (noise replacement puts "
        f"out-of-distribution intensities everywhere, which a lesion detector reads as "
        f"lesion), or the score saturates (score='correct' whose prediction never flips, a "
        f"probability pinned at 0 or 1). Change {options} (e.g. mean_baseline() or "
        f"blur_baseline()) or `score` (e.g. 'logit'); metric_sanity_check shows whether a "
        f"setting separates a good map from a random one.",
        DegenerateCurveWarning,
        stacklevel=user_stacklevel(),
    )


def _resolve_target(
    target: object, n: int, output: Tensor, score: str
) -> Tensor | list[Any] | None:
    """Captum's target, or the class predicted on the clean input when it is None."""
    if target is None and output.dim() == 2 and output.shape[1] > 1:
        return output.argmax(1)
    targets = per_sample_target(target, n, output)
    if score == "correct" and not (
        isinstance(targets, Tensor) and output.dim() == 2 and output.shape[1] > 1
    ):
        raise ValueError(
            f"score='correct' compares the argmax over classes with the target, so it needs a "
            f"model output of shape (N, K) with K > 1 and integer targets; got output shape "
            f"{tuple(output.shape)} and target {target!r}"
        )
    return targets


def _score(
    output: Tensor,
    targets: Tensor | list[Any] | None,
    index: Tensor,
    score: str,
    dtype: torch.dtype,
) -> Tensor:
    """One score per row of ``output``: probability, logit, sigmoid or 0/1 correctness."""
    return class_scores(output, targets, index, cast(MetricScore, score)).to(dtype)
