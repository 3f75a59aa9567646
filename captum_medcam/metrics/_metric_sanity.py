"""A sanity check for metrics: does a metric, with its options, tell a good map from a bad one?

A faithfulness or localization metric is only useful if it scores a map that is known to be
good better than a random one. Whether it does depends on the model, the data and the
options (a noise substrate that the model reads as the class makes every map score the
same). :func:`metric_sanity_check` measures it on the user's own model and data: it scores
reference maps (the true masks, or maps the user trusts), random maps drawn from a local
generator, and the reference maps inverted, with the metric functions themselves.

References:
    Tomsett, Harborne, Chakraborty, Gurram, Preece. "Sanity Checks for Saliency Metrics".
    AAAI 2020. arXiv:1912.01451.
    Hedström, Bommer, Wickstrøm, Samek, Lapuschkin, Höhne. "The Meta-Evaluation Problem in
    Explainable AI: Identifying Reliable Estimators with MetaQuantus". TMLR 2023.
    arXiv:2302.07265.
"""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

import torch
from torch import Tensor

from captum_medcam._core.checks import check_inputs, check_positive_int
from captum_medcam._core.meta import unwrap_meta
from captum_medcam.metrics._aopc import aopc
from captum_medcam.metrics._deletion_insertion import deletion_auc, insertion_auc
from captum_medcam.metrics._localization import (
    attribution_dice,
    attribution_iou,
    energy_pointing_game,
    pointing_game,
    relevance_rank_accuracy,
)
from captum_medcam.metrics._perturbation import DegenerateCurveWarning, same_score

__all__ = ["MetricSanityResult", "MetricSanityRow", "metric_sanity_check"]

Kind = Literal["faithfulness", "localization"]
Verdict = Literal["separates", "does not separate"]

#: The library's per-example metrics: name -> (function, kind, higher is better).
_KNOWN: dict[str, tuple[Callable[..., Tensor], Kind, bool]] = {
    "deletion_auc": (deletion_auc, "faithfulness", False),
    "insertion_auc": (insertion_auc, "faithfulness", True),
    "aopc": (aopc, "faithfulness", True),
    "pointing_game": (pointing_game, "localization", True),
    "energy_pointing_game": (energy_pointing_game, "localization", True),
    "relevance_rank_accuracy": (relevance_rank_accuracy, "localization", True),
    "attribution_iou": (attribution_iou, "localization", True),
    "attribution_dice": (attribution_dice, "localization", True),
}

#: A metric: a name from the list above, a function, or either with keyword options.
MetricSpec = str | Callable[..., Tensor] | tuple[str | Callable[..., Tensor], Mapping[str, Any]]


@dataclass(frozen=True)
class MetricSanityRow:
    """What :func:`metric_sanity_check` measured for one metric.

    Attributes:
        name: the metric's label.
        higher_is_better: the metric's direction (AOPC with ``order="lerf"`` and the
            deletion AUC: lower is better).
        reference: the reference maps' values ``(N,)``.
        random: the random maps' values ``(n_random, N)``.
        inverted: the inverted reference maps' values ``(N,)``.
        beats_random: the share of (random map, example) pairs in which the reference is
            better than the random map (by more than ``1e-3 * max(1, |values|)``: closer
            values are a tie; pairs with a NaN left out; NaN if none).
        beats_inverted: the share of examples in which the reference is strictly better
            than its inversion.
        verdict: ``"separates"`` when ``beats_random >= min_win_rate``, else
            ``"does not separate"``.
        degenerate: a :class:`DegenerateCurveWarning` was raised while scoring: the curves
            did not depend on the maps' order.
    """

    name: str
    higher_is_better: bool
    reference: Tensor
    random: Tensor
    inverted: Tensor
    beats_random: float
    beats_inverted: float
    verdict: Verdict
    degenerate: bool

    @property
    def reference_mean(self) -> float:
        """Mean over the examples (NaN values left out)."""
        return float(self.reference.nanmean())

    @property
    def random_mean(self) -> float:
        """Mean over the random maps and the examples (NaN values left out)."""
        return float(self.random.nanmean())

    @property
    def inverted_mean(self) -> float:
        """Mean over the examples (NaN values left out)."""
        return float(self.inverted.nanmean())


@dataclass(frozen=True)
class MetricSanityResult:
    """The result of :func:`metric_sanity_check`: one :class:`MetricSanityRow` per metric.

    ``result["aopc"]`` is a row, ``result.verdicts`` maps names to verdicts, and
    ``str(result)`` (or :meth:`table`) is a Markdown table of the means, the share of pairs
    in which the reference beats a random map, and the verdicts.

    Attributes:
        rows: name -> row, in the order the metrics were given.
        n_random: random maps per example.
        min_win_rate: the share of wins over random needed for ``"separates"``.
    """

    rows: dict[str, MetricSanityRow]
    n_random: int
    min_win_rate: float

    def __getitem__(self, name: str) -> MetricSanityRow:
        return self.rows[name]

    @property
    def verdicts(self) -> dict[str, Verdict]:
        """name -> ``"separates"`` or ``"does not separate"``."""
        return {name: row.verdict for name, row in self.rows.items()}

    def table(self, digits: int = 3) -> str:
        """A Markdown table, one line per metric; degenerate metrics are listed below it."""
        lines = [
            f"| metric | better | reference | random ({self.n_random} seeds) | inverted "
            f"| reference beats random | verdict |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for name, r in self.rows.items():
            rate = "n/a" if math.isnan(r.beats_random) else f"{r.beats_random:.0%}"
            lines.append(
                f"| {name} | {'higher' if r.higher_is_better else 'lower'} "
                f"| {r.reference_mean:.{digits}f} | {r.random_mean:.{digits}f} "
                f"| {r.inverted_mean:.{digits}f} | {rate} | {r.verdict} |"
            )
        flagged = [name for name, r in self.rows.items() if r.degenerate]
        if flagged:
            lines.append("")
            lines.append(
                "degenerate curves (DegenerateCurveWarning): "
                + ", ".join(flagged)
                + ": the score did not depend on the maps' order; change the perturbation or the score"
            )
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def _resolve(label: str | None, spec: object) -> tuple[str, Callable[..., Tensor], dict[str, Any]]:
    """(label, function, options) of one metric spec."""
    kwargs: dict[str, Any] = {}
    fn: object = spec
    if isinstance(spec, tuple):
        if len(spec) != 2 or not isinstance(spec[1], Mapping):
            raise TypeError(
                f"a metric given as a tuple must be (metric, options dict), got {spec!r}"
            )
        fn, kwargs = spec[0], dict(spec[1])
    if isinstance(fn, str):
        if fn not in _KNOWN:
            raise ValueError(
                f"unknown metric {fn!r}; expected one of {sorted(_KNOWN)} or a function"
            )
        fn = _KNOWN[fn][0]
    if not callable(fn):
        raise TypeError(
            f"a metric must be a name, a function or (metric, options), got {type(fn).__name__}"
        )
    name = label if label is not None else str(getattr(fn, "__name__", type(fn).__name__))
    return name, cast(Callable[..., Tensor], fn), kwargs


def _kind_and_direction(
    name: str, fn: Callable[..., Tensor], kwargs: Mapping[str, Any], override: bool | None
) -> tuple[Kind, bool]:
    known = next((v for v in _KNOWN.values() if v[0] is fn), None)
    if known is not None:
        kind, higher = known[1], known[2]
        if fn is aopc and kwargs.get("order") == "lerf":
            higher = False  # LeRF: a faithful map keeps the score, small drops are better
        return kind, higher if override is None else override
    try:
        first = next(iter(inspect.signature(fn).parameters))
    except (TypeError, ValueError, StopIteration):
        first = ""
    if first not in ("forward_func", "attributions"):
        raise TypeError(
            f"metric {name!r}: cannot tell how to call it; expected a function whose first "
            f"parameter is forward_func (faithfulness: fn(forward_func, inputs, "
            f"attributions, target, additional_forward_args, **options)) or attributions "
            f"(localization: fn(attributions, masks, **options)), got first parameter "
            f"{first!r}"
        )
    if override is None:
        raise ValueError(
            f"metric {name!r} is not one of this library's: say whether higher values are "
            f"better with higher_is_better={{{name!r}: True or False}}"
        )
    return ("faithfulness" if first == "forward_func" else "localization"), override


def _metric_list(metrics: object) -> list[tuple[str, Callable[..., Tensor], dict[str, Any]]]:
    if isinstance(metrics, Mapping):
        items = [_resolve(str(k), v) for k, v in metrics.items()]
    elif isinstance(metrics, (str, tuple)) or callable(metrics):
        items = [_resolve(None, metrics)]
    elif isinstance(metrics, Sequence):
        items = [_resolve(None, m) for m in metrics]
    else:
        raise TypeError(
            f"metrics must be a metric, a list of metrics or a dict name -> metric, got "
            f"{type(metrics).__name__}"
        )
    if not items:
        raise ValueError("metrics is empty: pass at least one metric")
    names = [name for name, _, _ in items]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate is not None:
        raise ValueError(
            f"two metrics are named {duplicate!r}: pass a dict name -> metric to tell them apart"
        )
    return items


def _generator(generator: object) -> torch.Generator:
    if isinstance(generator, torch.Generator):
        return generator
    if isinstance(generator, int) and not isinstance(generator, bool):
        return torch.Generator().manual_seed(generator)
    raise TypeError(f"generator must be an int seed or a torch.Generator, got {generator!r}")


def _invert(maps: Tensor) -> Tensor:
    """Each example's map turned upside down: ``max - a``, so the ranking is reversed."""
    dims = tuple(range(1, maps.dim()))
    return maps.amax(dim=dims, keepdim=True) - maps


def _better(a: Tensor, b: Tensor, higher: bool) -> float:
    """Share of the pairs (``a``, ``b`` broadcast) with both finite where ``a`` is better.

    Values within the degenerate-curve tolerance (``1e-3 * max(1, |a|, |b|)``) are a tie,
    not a win: a saturated metric differs between maps only by rounding.
    """
    a, b = torch.broadcast_tensors(a, b)
    valid = a.isfinite() & b.isfinite()
    if not bool(valid.any()):
        return float("nan")
    wins = ((a > b) if higher else (a < b)) & ~same_score(a, b)
    return float((wins & valid).sum()) / float(valid.sum())


def _score(
    name: str,
    fn: Callable[..., Tensor],
    kind: Kind,
    kwargs: Mapping[str, Any],
    maps: Tensor,
    forward_func: Callable[..., Any] | None,
    inputs: Tensor,
    masks: Tensor | None,
    target: Any,
    additional_forward_args: Any,
) -> tuple[Tensor, bool]:
    """The metric's values ``(N,)`` for ``maps``, and whether its curves were degenerate."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if kind == "faithfulness":
            out = fn(forward_func, inputs, maps, target, additional_forward_args, **kwargs)
        else:
            out = fn(maps, masks, **kwargs)
    degenerate = False
    for w in caught:  # pass every other warning on, under the caller's filters
        if issubclass(w.category, DegenerateCurveWarning):
            degenerate = True
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    n = inputs.shape[0]
    if not isinstance(out, Tensor) or tuple(out.shape) != (n,):
        raise TypeError(
            f"metric {name!r} must return one value per example, a tensor of shape ({n},); got "
            f"{tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__}"
        )
    return out.detach().to(torch.float64).cpu(), degenerate


def metric_sanity_check(
    metrics: MetricSpec | Sequence[MetricSpec] | Mapping[str, MetricSpec],
    forward_func: Callable[..., Any] | None,
    inputs: Tensor,
    *,
    masks: Tensor | None = None,
    reference: Tensor | None = None,
    target: Any = None,
    additional_forward_args: Any = None,
    n_random: int = 3,
    generator: int | torch.Generator = 0,
    min_win_rate: float = 0.8,
    higher_is_better: Mapping[str, bool] | None = None,
) -> MetricSanityResult:
    r"""Check that metrics, with their options, rank a good map above a random one.

    For every metric it scores three kinds of maps on the same model and inputs:

    - the **reference** maps: ``reference``, or the ``masks`` themselves (the true lesion
      as a map: the best map a localization metric can see, and a faithful one wherever
      the model looks at the lesion);
    - ``n_random`` **random** maps per example, uniform on [0, 1) per voxel, drawn from a
      local generator (``generator``; the global random state is not touched);
    - the reference maps **inverted** (``max - a`` per example: the ranking reversed).

    It reports per metric the means, the share of (random map, example) pairs in which
    the reference is strictly better than the random map, taking the metric's direction
    into account, and a verdict: ``"separates"`` when that share is at least
    ``min_win_rate``, else ``"does not separate"``. A metric that does not separate the
    reference from random maps on a model that is known to use the lesion cannot rank
    attribution methods there; change its options (AOPC's perturbation, the score) until
    it does. The metric functions are called as they are (so faithfulness metrics run
    through the same perturbation engine), once per kind of map and random seed; a
    :class:`DegenerateCurveWarning` raised inside is recorded in the row, not re-raised.

    References:
        Tomsett et al. "Sanity Checks for Saliency Metrics". AAAI 2020. arXiv:1912.01451.
        Hedström et al. "The Meta-Evaluation Problem in Explainable AI". TMLR 2023.
        arXiv:2302.07265.

    Args:
        metrics: one metric, a list of metrics, or a dict label -> metric. A metric is the
            name of one of this library's per-example metrics (``"deletion_auc"``,
            ``"insertion_auc"``, ``"aopc"``, ``"pointing_game"``,
            ``"energy_pointing_game"``, ``"relevance_rank_accuracy"``,
            ``"attribution_iou"``, ``"attribution_dice"``), a function, or
            ``(name or function, {option: value})``. A function of your own is called as
            ``fn(forward_func, inputs, maps, target, additional_forward_args, **options)``
            when its first parameter is ``forward_func``, or ``fn(maps, masks, **options)``
            when it is ``attributions``, and must return ``(N,)``; give its direction in
            ``higher_is_better``.
        forward_func: the model (None when only localization metrics are checked). Its
            mode is left as it is (call ``model.eval()`` first).
        inputs: ``(N, C, *S)`` with 1 to 3 spatial dims.
        masks: binary ``(N, 1, *S)`` (or a shared ``(1, 1, *S)``): needed by localization
            metrics, and the reference maps when ``reference`` is not given.
        reference: maps to check against random ones ``(N, 1 or C, *S)`` at input
            resolution; default the masks.
        target: the class to score, as in Captum (None: the predicted class).
        additional_forward_args: further model arguments, as in Captum.
        n_random: random maps per example (>= 1).
        generator: an int seed or a ``torch.Generator`` (CPU) for the random maps.
        min_win_rate: in (0, 1]: the share of wins over random needed for "separates".
        higher_is_better: label -> direction, for metrics this library does not know
            (it overrides the known direction too).

    Returns:
        :class:`MetricSanityResult`; ``print(result)`` shows the table.

    Raises:
        ValueError: neither ``masks`` nor ``reference``, a localization metric without
            ``masks``, a faithfulness metric without ``forward_func``, an unknown metric
            name, a function of unknown direction, shapes that do not match,
            ``min_win_rate`` outside (0, 1].
        TypeError: a metric that is not a name, a function or (metric, options), a function
            whose call convention cannot be told, a metric that does not return ``(N,)``.

    Example:
        >>> import torch
        >>> from captum_medcam.metrics import metric_sanity_check
        >>> x = torch.zeros(4, 1, 8, 8)
        >>> x[:, :, 2:4, 2:4] = 1.0  # a bright "lesion"
        >>> lesion = x > 0
        >>> def model(t):  # logit of "lesion": the mean intensity inside the lesion
        ...     inside = t[:, 0, 2:4, 2:4].mean((1, 2))
        ...     return torch.stack([-inside, inside], 1) * 10
        >>> result = metric_sanity_check(["deletion_auc", "pointing_game"], model, x,
        ...                              masks=lesion, target=1)
        >>> result.verdicts
        {'deletion_auc': 'separates', 'pointing_game': 'separates'}
    """
    items = _metric_list(metrics)
    n_random = check_positive_int(n_random, "n_random")
    if not (
        isinstance(min_win_rate, (int, float))
        and not isinstance(min_win_rate, bool)
        and 0 < min_win_rate <= 1
    ):
        raise ValueError(f"min_win_rate must be in (0, 1], got {min_win_rate!r}")
    overrides = dict(higher_is_better or {})
    unknown = set(overrides) - {name for name, _, _ in items}
    if unknown:
        raise ValueError(
            f"higher_is_better names {sorted(unknown)}, which are not among the metrics "
            f"{[name for name, _, _ in items]}"
        )
    x = check_inputs(unwrap_meta(inputs))
    n, _, *spatial = x.shape
    if masks is not None:
        if not isinstance(masks, Tensor):
            raise TypeError(f"masks must be a tensor, got {type(masks).__name__}")
        masks = unwrap_meta(masks)
        if (
            masks.dim() != x.dim()
            or masks.shape[1] != 1
            or list(masks.shape[2:]) != spatial
            or (masks.shape[0] not in (1, n))
        ):
            raise ValueError(
                f"masks of shape {tuple(masks.shape)} do not match inputs of shape "
                f"{tuple(x.shape)}: expected (N, 1, *S) or (1, 1, *S)"
            )
    if reference is None:
        if masks is None:
            raise ValueError("pass masks (the true regions) or reference maps, or both")
        ref = masks.to(device=x.device, dtype=x.dtype).expand(n, 1, *spatial)
    else:
        ref = check_inputs(unwrap_meta(reference), name="reference")
        if ref.dim() != x.dim() or ref.shape[0] != n or list(ref.shape[2:]) != spatial:
            raise ValueError(
                f"reference of shape {tuple(ref.shape)} does not match inputs of shape "
                f"{tuple(x.shape)}: expected (N, 1 or C, *S) at input resolution"
            )
        ref = ref.detach().to(x.device)
    g = _generator(generator)
    randoms = torch.rand((n_random, *ref.shape), generator=g, device=g.device)
    randoms = randoms.to(device=ref.device, dtype=ref.dtype)
    inverted = _invert(ref)

    resolved = []
    for name, fn, kwargs in items:
        kind, higher = _kind_and_direction(name, fn, kwargs, overrides.get(name))
        if kind == "localization" and masks is None:
            raise ValueError(f"metric {name!r} compares maps with masks: pass masks")
        if kind == "faithfulness" and forward_func is None:
            raise ValueError(f"metric {name!r} perturbs the inputs: pass forward_func (the model)")
        resolved.append((name, fn, kwargs, kind, higher))

    rows: dict[str, MetricSanityRow] = {}
    for name, fn, kwargs, kind, higher in resolved:
        scored = [
            _score(
                name,
                fn,
                kind,
                kwargs,
                maps,
                forward_func,
                x,
                masks,
                target,
                additional_forward_args,
            )
            for maps in (ref, *randoms, inverted)
        ]
        degenerate = any(flag for _, flag in scored)
        ref_values, inv_values = scored[0][0], scored[-1][0]
        random_values = [values for values, _ in scored[1:-1]]
        rand = torch.stack(random_values)
        beats = _better(ref_values, rand, higher)
        rows[name] = MetricSanityRow(
            name=name,
            higher_is_better=higher,
            reference=ref_values,
            random=rand,
            inverted=inv_values,
            beats_random=beats,
            beats_inverted=_better(ref_values, inv_values, higher),
            verdict="separates" if beats >= min_win_rate else "does not separate",
            degenerate=degenerate,
        )
    return MetricSanityResult(rows=rows, n_random=n_random, min_win_rate=float(min_win_rate))
