"""Data-set evaluation: maps and faithfulness metrics for every sample, on one process or many.

:func:`evaluate_dataset` walks a data set once, computes an attribution map for every
sample and scores it with each metric (deletion AUC, insertion AUC, AOPC by default), and
returns the per-sample values and their mean +- std. Under ``torchrun`` it splits the data
set across ranks, each sample evaluated exactly once, and gathers the results on every
rank. :func:`run_distributed` sets up and tears down the process group around it.

A metric is any callable with the signature of :mod:`captum_medcam.metrics`::

    metric(forward_func, inputs, attributions, target=None, additional_forward_args=None)
        -> Tensor (N,)

Use :func:`functools.partial` to fix its options, e.g.
``partial(deletion_auc, n_steps=64, max_examples_per_batch=32)``. A metric that also takes
a ``masks`` keyword (``(N, 1, *S)`` ground truth) receives each sample's mask; wrap the
localization metrics with :func:`localization_metric` for that.
"""

from __future__ import annotations

import csv
import inspect
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from captum_medcam._core.checks import (
    DEFAULT_SEED,
    check_choice,
    check_flags,
    check_forward_and_layer,
    check_int,
    check_positive_int,
    check_target_type,
)
from captum_medcam._core.engine import progress_bar, shared_forward
from captum_medcam._core.meta import unwrap_meta, wrap_meta
from captum_medcam._core.spatial import resize
from captum_medcam._core.targets import class_indices
from captum_medcam.metrics import summarize

__all__ = [
    "EvaluatedBatch",
    "EvaluationResult",
    "Metric",
    "attribute_batch",
    "default_metrics",
    "evaluate_dataset",
    "localization_metric",
    "run_distributed",
]

#: ``metric(forward_func, inputs, attributions, target=None, additional_forward_args=None)``
#: returning one value per example ``(N,)``.
Metric = Callable[..., Tensor]


def default_metrics(score: str = "probability") -> dict[str, Metric]:
    """The faithfulness metrics used when none are given: deletion AUC, insertion AUC, AOPC.

    Args:
        score: the score every metric takes: ``"probability"`` (softmax, the default),
            ``"logit"``, ``"correct"``, or ``"sigmoid"`` for multi-label heads with one
            sigmoid per finding (ChestMNIST): pass
            ``metrics=default_metrics(score="sigmoid")`` to :func:`evaluate_dataset` with
            ``target`` naming the label.

    Returns:
        ``{"deletion_auc": ..., "insertion_auc": ..., "aopc": ...}`` with the defaults of
        :mod:`captum_medcam.metrics` (and ``score`` fixed when it is not the default).

    Raises:
        ValueError: an unknown ``score``.
    """
    from captum_medcam.metrics import aopc, deletion_auc, insertion_auc

    metrics: dict[str, Metric] = {
        "deletion_auc": deletion_auc,
        "insertion_auc": insertion_auc,
        "aopc": aopc,
    }
    if score == "probability":
        return metrics
    if score not in ("logit", "sigmoid", "correct"):
        raise ValueError(
            f"score must be 'probability', 'logit', 'sigmoid' or 'correct', got {score!r}"
        )
    return {name: partial(metric, score=score) for name, metric in metrics.items()}


def attribute_batch(
    attribution: Any,
    inputs: Tensor,
    target: Any = None,
    additional_forward_args: Any = None,
    **attribute_kwargs: Any,
) -> Tensor:
    """Compute maps at input resolution with any Captum or captum_medcam attribution object.

    Works wherever an evaluation runs: gradients are enabled locally (MONAI evaluators run
    the model under ``torch.no_grad()``), and inputs made under ``torch.inference_mode()``
    are cloned into normal tensors, so gradient methods such as Captum's ``LayerGradCam``
    work too. Maps at layer resolution (``LayerGradCam``) are upsampled to the input with
    the linear mode of their dimensionality (trilinear for volumes), ``align_corners=False``.

    Args:
        attribution: an object with ``attribute(inputs, target=..., ...)``, e.g.
            ``ScoreCAM3D(model, model.layer4)`` or ``captum.attr.LayerGradCam(...)``.
        inputs: ``(N, C, *S)``, a tensor or a MONAI ``MetaTensor``.
        target: the class to explain, as in Captum.
        additional_forward_args: further model arguments, as in Captum.
        **attribute_kwargs: passed to ``attribution.attribute``.

    Returns:
        Detached maps ``(N, C', *S)`` (``C'`` is 1 for CAMs); a ``MetaTensor`` with the
        inputs' metadata when the inputs are one.

    Raises:
        TypeError: ``attribution`` has no ``attribute`` method, or returns no single tensor.
    """
    if not callable(getattr(attribution, "attribute", None)):
        raise TypeError(
            f"attribution must be an attribution object with an attribute() method "
            f"(e.g. ScoreCAM3D(model, layer) or captum.attr.LayerGradCam), got {type(attribution).__name__}"
        )
    with torch.inference_mode(False), torch.enable_grad():
        x = unwrap_meta(inputs)
        if torch.is_inference(x):
            x = x.clone()
        if additional_forward_args is not None:
            attribute_kwargs["additional_forward_args"] = additional_forward_args
        maps = attribution.attribute(x, target=target, **attribute_kwargs)
    if not isinstance(maps, Tensor):
        raise TypeError(
            f"{type(attribution).__name__}.attribute returned a {type(maps).__name__}; "
            "one tensor of maps is expected (a single input tensor)"
        )
    maps = unwrap_meta(maps).detach()
    if maps.dim() != x.dim() or maps.shape[0] != x.shape[0]:
        raise ValueError(
            f"{type(attribution).__name__} returned maps of shape {tuple(maps.shape)} for inputs "
            f"{tuple(x.shape)}; expected (N, channels, *spatial) with the inputs' spatial dims"
        )
    maps = resize(maps, x.shape[2:])
    return wrap_meta(maps, inputs)


def localization_metric(function: Callable[..., Tensor], **options: Any) -> Metric:
    """Turn a localization metric ``f(attributions, masks, **options)`` into a data-set metric.

    :func:`evaluate_dataset` passes each sample's mask (the ``mask_key`` entry of dict
    samples, or the third element of tuples) to metrics that take a ``masks`` keyword.
    Samples with an empty mask (e.g. a healthy volume) give NaN unless ``empty_mask`` is
    set otherwise; NaN values are left out of the summary (its ``n`` says how many count).

    Args:
        function: e.g. :func:`captum_medcam.metrics.pointing_game`.
        **options: its options, e.g. ``tolerance=2`` (``empty_mask`` defaults to ``"nan"``).

    Returns:
        ``metric(forward_func, inputs, attributions, target=None,
        additional_forward_args=None, *, masks) -> (N,)``.

    Example:
        >>> import torch
        >>> from captum_medcam.metrics import pointing_game
        >>> metric = localization_metric(pointing_game, tolerance=1)
        >>> maps = torch.zeros(1, 1, 4, 4)
        >>> maps[0, 0, 1, 1] = 1.0
        >>> mask = torch.zeros(1, 1, 4, 4, dtype=torch.bool)
        >>> mask[0, 0, 1, 2] = True
        >>> metric(None, torch.zeros(1, 1, 4, 4), maps, masks=mask)
        tensor([1.])
    """
    if not callable(function):
        raise TypeError(f"function must be a localization metric, got {type(function).__name__}")
    options.setdefault("empty_mask", "nan")

    def metric(
        forward_func: Any,
        inputs: Tensor,
        attributions: Tensor,
        target: Any = None,
        additional_forward_args: Any = None,
        *,
        masks: Tensor,
    ) -> Tensor:
        return function(attributions, masks.to(attributions.device), **options)

    metric.__name__ = getattr(function, "__name__", "localization_metric")
    return metric


def _wants_masks(metric: Metric) -> bool:
    """Whether ``metric`` takes a ``masks`` keyword."""
    try:
        return "masks" in inspect.signature(metric).parameters
    except (TypeError, ValueError):  # builtins without a signature
        return False


def apply_metrics(
    metrics: Mapping[str, Metric],
    forward_func: Callable[..., Tensor],
    inputs: Tensor,
    maps: Tensor,
    target: Any,
    masks: Tensor | None = None,
    on_metric: Callable[[str], None] | None = None,
) -> dict[str, Tensor]:
    """Score ``maps`` with every metric; each returns one value per example ``(N,)``.

    Metrics that take a ``masks`` keyword get ``masks`` (``(N, 1, *S)``).
    """
    x = unwrap_meta(inputs)
    maps = unwrap_meta(maps)
    values = {}
    with torch.inference_mode(False), torch.no_grad():
        if torch.is_inference(x):
            x = x.clone()
        for name, metric in metrics.items():
            if on_metric is not None:
                on_metric(name)
            kwargs: dict[str, Any] = {}
            if _wants_masks(metric):
                if masks is None:
                    raise ValueError(
                        f"metric {name!r} compares the maps with ground-truth masks, but the "
                        "samples have none; give each sample a mask (the mask_key entry of a "
                        "dict sample, or the third element of a tuple) or drop the metric"
                    )
                kwargs["masks"] = unwrap_meta(masks)
            value = metric(forward_func, x, maps, target=target, **kwargs)
            if not isinstance(value, Tensor) or value.shape != (x.shape[0],):
                shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
                raise ValueError(
                    f"metric {name!r} returned {shape}; a metric must return a tensor with one "
                    f"value per example, shape ({x.shape[0]},)"
                )
            values[name] = value.detach()
    return values


def check_metrics(metrics: Mapping[str, Metric] | None) -> dict[str, Metric]:
    """``metrics`` as a dict of callables (the defaults when None)."""
    if metrics is None:
        return default_metrics()
    if not isinstance(metrics, Mapping):
        raise TypeError(
            f"metrics must be a mapping of names to metric functions, e.g. "
            f"{{'deletion_auc': deletion_auc}}, got {type(metrics).__name__}"
        )
    if not metrics:
        raise ValueError("metrics is empty; pass at least one metric, or None for the defaults")
    for name, metric in metrics.items():
        if not callable(metric):
            raise TypeError(f"metric {name!r} must be callable, got {type(metric).__name__}")
    return dict(metrics)


def mean_std(values: Tensor) -> tuple[float, float]:
    """Mean and population std of ``values`` for a report: (NaN, NaN) when there is none.

    :func:`captum_medcam.metrics.summarize` computes them (``ddof=0``, as NumPy's ``std``)
    and raises on empty input, so a caller cannot mistake "no value" for a result. A report
    (:attr:`EvaluationResult.summary`, the handler's ``engine.state.metrics``) has a cell
    for every metric, also one that had no sample (an epoch without batches, a localization
    metric on a data set without lesions): that cell is NaN, with its count 0.
    """
    if values.numel() == 0:
        return float("nan"), float("nan")
    s = summarize(values)
    return s.mean, s.std


def _finite_summary(values: Tensor) -> tuple[float, float, int]:
    """Mean, population std and count of the values that are not NaN."""
    v = values.double()
    v = v[~torch.isnan(v)]
    return (*mean_std(v), int(v.numel()))


def _cell(value: Tensor | None, i: int) -> Any:
    """One sample's entry as a plain Python value (a list for a vector)."""
    if value is None:
        return None
    item = value[i]
    if item.dim() > 0:
        return item.tolist()
    return bool(item) if item.dtype == torch.bool else item.item()


@dataclass(frozen=True)
class EvaluationResult:
    """Per-sample metric values of a data set, in data-set order.

    Attributes:
        values: metric name -> ``(M,)`` values, one per sample (NaN where a metric has no
            value, e.g. a localization metric on a sample without a lesion).
        targets: ``(M,)`` the class explained for each sample.
        indices: ``(M,)`` each sample's index in the data set (``arange(M)`` unless
            ``correct_only`` left samples out).
        predictions: ``(M,)`` the class the model predicts (argmax of its output).
        labels: ``(M,)`` class labels, or ``(M, K)`` multi-label vectors; None when the
            samples have no labels.
        correct: ``(M,)`` bool, whether the prediction is right (for multi-label vectors:
            whether the predicted class is one of the positive labels); None without labels.
        method: a name for the attribution method, written into the exported rows.
        summary: metric name -> ``(mean, std)`` over the samples, NaN values left out.
        counts: metric name -> the number of values in the summary (not NaN).
    """

    values: dict[str, Tensor]
    targets: Tensor
    indices: Tensor
    predictions: Tensor | None = None
    labels: Tensor | None = None
    correct: Tensor | None = None
    method: str | None = None
    summary: dict[str, tuple[float, float]] = field(init=False)
    counts: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        stats = {k: _finite_summary(v) for k, v in self.values.items()}
        object.__setattr__(self, "summary", {k: (m, s) for k, (m, s, _) in stats.items()})
        object.__setattr__(self, "counts", {k: n for k, (_, _, n) in stats.items()})

    def __str__(self) -> str:
        lines = [f"{len(self.indices)} samples" + (f" ({self.method})" if self.method else "")]
        lines += [f"{name}: {mean:.4f} +- {std:.4f}" for name, (mean, std) in self.summary.items()]
        return "\n".join(lines)

    def rows(self) -> list[dict[str, Any]]:
        """One dict per sample: ``index, label, prediction, correct, target, method`` and
        one float per metric (the columns of ``results.csv``)."""
        out = []
        for i in range(len(self.indices)):
            row: dict[str, Any] = {
                "index": int(self.indices[i]),
                "label": _cell(self.labels, i),
                "prediction": _cell(self.predictions, i),
                "correct": _cell(self.correct, i),
                "target": _cell(self.targets, i),
                "method": self.method,
            }
            row.update({name: float(v[i]) for name, v in self.values.items()})
            out.append(row)
        return out

    def summary_dict(self) -> dict[str, dict[str, float]]:
        """metric -> ``{"mean": ..., "std": ..., "n": ...}`` (NaN values left out)."""
        return {
            name: {"mean": mean, "std": std, "n": self.counts[name]}
            for name, (mean, std) in self.summary.items()
        }

    def to_dict(self) -> dict[str, Any]:
        """``{"method": ..., "results": rows(), "summary": summary_dict()}``: plain Python
        values, ready for :func:`json.dump` (NaN stays a float NaN)."""
        return {"method": self.method, "results": self.rows(), "summary": self.summary_dict()}

    def to_csv(self, path: str | os.PathLike[str]) -> Path:
        """Write :meth:`rows` to a CSV file (multi-label vectors as ``"0 1 0 ..."``).

        Returns:
            The file's path.
        """
        return write_csv(self.rows(), path)

    def to_pandas(self) -> Any:
        """:meth:`rows` as a ``pandas.DataFrame`` (needs pandas).

        Raises:
            ImportError: pandas is not installed (``pip install pandas``).
        """
        try:
            import pandas as pd
        except ImportError as error:  # pragma: no cover - pandas is in the dev extra
            raise ImportError(
                "EvaluationResult.to_pandas needs pandas: pip install pandas "
                "(or use to_csv / to_dict)"
            ) from error
        return pd.DataFrame(self.rows())


def write_csv(rows: Iterable[Mapping[str, Any]], path: str | os.PathLike[str]) -> Path:
    """Write result rows (dicts with the same keys) to ``path``; lists become ``"a b c"``."""
    rows = list(rows)
    path = Path(path)
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {
                    k: " ".join(str(x) for x in v)
                    if isinstance(v, list)
                    else ("" if v is None else v)
                    for k, v in row.items()
                }
            )
    return path


@dataclass(frozen=True)
class EvaluatedBatch:
    """What :func:`evaluate_dataset` passes to ``on_batch`` after each batch.

    Attributes:
        indices: ``(B,)`` the samples' indices in the data set.
        inputs: ``(B, C, *S)`` the model's inputs (on the evaluation device).
        maps: ``(B, C', *S)`` the attribution maps at input resolution.
        targets: ``(B,)`` the classes explained.
        predictions: ``(B,)`` the predicted classes.
        labels: ``(B,)`` or ``(B, K)``, or None.
        masks: ``(B, 1, *S)`` ground truth, or None.
        values: metric name -> ``(B,)``.
        affines: ``(B, 4, 4)`` each input's affine when the inputs were a MONAI
            ``MetaTensor`` batch with one affine per sample (MONAI's ``list_data_collate``,
            or a batch of one), else None.
    """

    indices: Tensor
    inputs: Tensor
    maps: Tensor
    targets: Tensor
    predictions: Tensor
    labels: Tensor | None
    masks: Tensor | None
    values: dict[str, Tensor]
    affines: Tensor | None = None


def _batch_affines(images: Any, n: int) -> Tensor | None:
    """Each sample's ``(4, 4)`` affine of a MONAI ``MetaTensor`` batch, or None. torch's
    default collate keeps the first sample's affine only: it is used for a batch of one."""
    affine = getattr(images, "affine", None)
    if not isinstance(affine, Tensor):
        return None
    affine = unwrap_meta(affine).detach().cpu()
    if tuple(affine.shape) == (n, 4, 4):
        return affine
    return affine[None] if n == 1 and tuple(affine.shape) == (4, 4) else None


def _split_batch(batch: Any, image_key: str, label_key: str) -> tuple[Tensor, Any]:
    """``(images, labels)`` from a MONAI dict batch or an ``(images, labels, ...)`` tuple."""
    if isinstance(batch, Mapping):
        if image_key not in batch:
            raise KeyError(
                f"image_key {image_key!r} is not in the batch; its keys are {sorted(map(str, batch))}"
            )
        return batch[image_key], batch.get(label_key)
    if isinstance(batch, (tuple, list)) and len(batch) >= 1:
        return batch[0], batch[1] if len(batch) > 1 else None
    raise TypeError(
        f"a batch must be a dict (MONAI) or a tuple (images, labels), got {type(batch).__name__}"
    )


def _batch_masks(batch: Any, mask_key: str) -> Any:
    """The masks of a dict batch (``mask_key``) or of a tuple's third element, or None."""
    if isinstance(batch, Mapping):
        return batch.get(mask_key)
    if isinstance(batch, (tuple, list)) and len(batch) > 2:
        return batch[2]
    return None


def _labels_tensor(labels: Any, n: int) -> Tensor | None:
    """Labels as ``(n,)`` class indices or ``(n, K)`` vectors, or None."""
    if labels is None:
        return None
    t = torch.as_tensor(unwrap_meta(labels) if isinstance(labels, Tensor) else labels)
    if t.numel() == n:
        return t.reshape(n)
    if t.dim() >= 2 and t.shape[0] == n:
        return t.reshape(n, -1)
    raise ValueError(f"labels of shape {tuple(t.shape)} do not give one label per example ({n})")


def correctness(predictions: Tensor, labels: Tensor) -> Tensor:
    """``(N,)`` bool: the prediction equals the label, or, for ``(N, K)`` label vectors
    (one-hot or multi-label), the predicted class is a positive label."""
    labels = labels.to(predictions.device)
    if labels.dim() == 1:
        return predictions == labels.long()
    return labels.gather(1, predictions.reshape(-1, 1)).reshape(-1) > 0


def _take(target: Any, keep: Tensor, n: int) -> Any:
    """The entries of a per-example target at ``keep``; a shared target is returned as is."""
    if isinstance(target, Tensor) and target.dim() > 0 and target.shape[0] == n:
        return target[keep.to(target.device)]
    if isinstance(target, list) and len(target) == n:
        return [target[int(i)] for i in keep]
    return target


def batch_target(target: Any, labels: Any, output: Tensor | None, n: int) -> Any:
    """Resolve ``target`` ("pred", "label", or a Captum target) for a batch of ``n``.

    Predictions and labels may be in any form :func:`captum_medcam._core.targets.class_indices`
    reads (scores, one-hot, class indices, a decollated list).
    """
    if target == "pred":
        if output is None:
            raise ValueError("target='pred' needs the model's output")
        return class_indices(output, n, name="pred")
    if target == "label":
        if labels is None:
            raise ValueError("target='label' but the batch has no labels")
        return class_indices(labels, n, name="label")
    if isinstance(target, str):
        raise ValueError(f"target must be 'pred', 'label' or a Captum target, got {target!r}")
    return target


def check_evaluation_target(target: object) -> None:
    """Refuse, before any batch, a ``target`` that :func:`batch_target` cannot resolve.

    Raises:
        ValueError: a string other than ``"pred"`` and ``"label"``.
        TypeError: a value that is neither such a string nor a Captum target.
    """
    if isinstance(target, str):
        if target not in ("pred", "label"):
            raise ValueError(
                f"target must be 'pred', 'label' or a Captum target (an int, or one per "
                f"example), got {target!r}"
            )
        return
    check_target_type(target)


def check_attribute_kwargs(attribute_kwargs: object) -> dict[str, Any]:
    """``attribute_kwargs`` as a dict; None gives ``{}``.

    Raises:
        TypeError: not a mapping of option names (strings) to values.
    """
    if attribute_kwargs is None:
        return {}
    if not isinstance(attribute_kwargs, Mapping) or not all(
        isinstance(k, str) for k in attribute_kwargs
    ):
        raise TypeError(
            "attribute_kwargs must be a dict of options of attribution.attribute, e.g. "
            f"{{'perturbations_per_eval': 32}}, got {attribute_kwargs!r}"
        )
    return dict(attribute_kwargs)


def _world() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather_values(local: dict[str, Tensor], world_size: int) -> dict[str, Tensor]:
    """Concatenate every rank's tensors (on the CPU), on every rank.

    Every rank must call this (a collective called on one rank only deadlocks).
    """
    if world_size == 1:
        return {k: v.cpu() for k, v in local.items()}
    import torch.distributed as dist

    gathered: list[Any] = [None] * world_size
    dist.all_gather_object(gathered, {k: v.cpu() for k, v in local.items()})
    # a rank without samples sends (0,) tensors, which do not cat with (m, K) label vectors
    return {
        k: torch.cat([g[k] for g in gathered if g[k].numel()] or [gathered[0][k]]) for k in local
    }


def evaluate_dataset(
    model: Callable[..., Tensor],
    attribution: Any,
    data: Any,
    metrics: Mapping[str, Metric] | None = None,
    *,
    target: Any = "pred",
    batch_size: int | None = None,
    num_workers: int = 0,
    image_key: str = "image",
    label_key: str = "label",
    mask_key: str = "mask",
    device: torch.device | str | None = None,
    attribute_kwargs: Mapping[str, Any] | None = None,
    show_progress: bool = True,
    correct_only: bool = False,
    method: str | None = None,
    on_batch: Callable[[EvaluatedBatch], None] | None = None,
) -> EvaluationResult:
    """Compute a map and every metric for each sample of a data set, and their summary.

    Each sample ``i`` gets a map ``A_i = attribution.attribute(x_i, target=t_i)`` and one
    value per metric ``m(model, x_i, A_i, target=t_i)``; the summary is the mean and the
    population standard deviation over the data set.

    Under ``torch.distributed`` (e.g. ``torchrun --nproc_per_node=N``, see
    :func:`run_distributed`), rank ``r`` of ``W`` takes samples ``r, r + W, r + 2W, ...``:
    each sample is evaluated exactly once, without the padding duplicates of PyTorch's
    ``DistributedSampler``. The results are gathered on every rank, so every rank returns
    the same :class:`EvaluationResult`, equal to the single-process one. All ranks must
    call this function.

    The model is used as it is: call ``model.eval()`` first (a warning says so otherwise).
    It is run once more per batch, without gradients, for the predictions (and the
    correctness, when the samples have labels).

    Args:
        model: the classifier, ``(N, C, *S) -> (N, K)``; used by the metrics and for
            ``target="pred"``.
        attribution: an attribution object over ``model`` (e.g.
            ``ScoreCAM3D(model, model.layer4)``, ``captum.attr.LayerGradCam(model, layer)``).
        data: a map-style ``Dataset`` of dicts (MONAI) or ``(image, label)`` tuples, or a
            ``DataLoader`` over one: its data set, batch size, workers and collate function
            are used, its sampler is not (the data set is visited in order).
        metrics: name -> metric function (see the module docs); None for
            :func:`default_metrics`; ``default_metrics(score="sigmoid")`` for a
            multi-label head.
        target: ``"pred"`` (the class the model predicts, as in RISE), ``"label"`` (the
            batch's labels), or a fixed Captum target (an int).
        batch_size: samples per batch (default: the loader's, or 1).
        num_workers: loader workers when ``data`` is a data set.
        image_key, label_key, mask_key: keys of dict samples. Tuple samples are
            ``(image, label)`` or ``(image, label, mask)``. The masks ``(1, *S)`` go to
            the metrics that take a ``masks`` keyword (see :func:`localization_metric`).
        device: where the inputs are moved (default: the model's parameters' device).
        attribute_kwargs: options of ``attribution.attribute`` (e.g.
            ``{"perturbations_per_eval": 32}``).
        show_progress: a progress bar on stderr (on rank 0) that counts volumes and names
            the stage (maps, then each metric) of the current batch.
        correct_only: evaluate only the samples the model classifies correctly (needs
            labels), as in the X-ray AOPC study; the others get no map.
        method: a name for the attribution, shown in the progress bar and the exports.
        on_batch: called after every batch with an :class:`EvaluatedBatch` (the maps,
            inputs and values), e.g. to save maps; on each rank, for its own samples.

    Returns:
        :class:`EvaluationResult` with per-sample values ``(M,)`` in data-set order, the
        targets, predictions, labels and correctness, ``summary[name] = (mean, std)``, and
        exports (:meth:`~EvaluationResult.to_csv`, :meth:`~EvaluationResult.to_dict`,
        :meth:`~EvaluationResult.to_pandas`).

    Raises:
        TypeError: an iterable data set (its length is needed to split it), bad metrics, an
            option of the wrong type.
        ValueError: a metric that does not return one value per example, bad targets,
            ``batch_size < 1``, ``num_workers < 0``, ``correct_only`` without labels, a mask
            metric without masks.
        KeyError: ``image_key`` missing from the samples.

    Example:
        >>> import torch
        >>> from monai.networks.nets import resnet10
        >>> from captum_medcam import ScoreCAM3D
        >>> from captum_medcam.evaluation import evaluate_dataset
        >>> net = resnet10(spatial_dims=3, n_input_channels=1, num_classes=2,
        ...                widen_factor=0.25).eval()
        >>> data = [{"image": torch.randn(1, 16, 16, 16), "label": 1} for _ in range(3)]
        >>> mean_map = lambda f, x, a, target=None, additional_forward_args=None: a.flatten(1).mean(1)
        >>> result = evaluate_dataset(net, ScoreCAM3D(net, net.layer2), data,
        ...                           {"mean_map": mean_map}, show_progress=False)
        >>> result.values["mean_map"].shape
        torch.Size([3])
    """
    from torch.utils.data import DataLoader, Dataset, Subset

    check_forward_and_layer(model)
    metric_fns = check_metrics(metrics)
    check_evaluation_target(target)
    if batch_size is not None:
        check_positive_int(batch_size, "batch_size")
    check_int(num_workers, "num_workers", low=0)
    check_flags(show_progress=show_progress, correct_only=correct_only)
    for name, key in (("image_key", image_key), ("label_key", label_key), ("mask_key", mask_key)):
        if not isinstance(key, str):
            raise TypeError(f"{name} must be a string, got {key!r}")
    if method is not None and not isinstance(method, str):
        raise TypeError(f"method must be a string or None, got {method!r}")
    if on_batch is not None and not callable(on_batch):
        raise TypeError(f"on_batch must be callable or None, got {type(on_batch).__name__}")
    kwargs = check_attribute_kwargs(attribute_kwargs)
    if device is not None:
        if not isinstance(device, (str, torch.device)):
            raise TypeError(f"device must be None, a string or a torch.device, got {device!r}")
        try:
            device = torch.device(device)
        except RuntimeError:
            raise ValueError(f"device {device!r} is not a device, e.g. 'cpu' or 'cuda:0'") from None
    if isinstance(data, DataLoader):
        dataset = data.dataset
        batch_size = batch_size or data.batch_size or 1
        num_workers = data.num_workers
        collate_fn = data.collate_fn
    else:
        dataset, collate_fn = data, None
        batch_size = batch_size or 1
    if not hasattr(dataset, "__len__") or not hasattr(dataset, "__getitem__"):
        raise TypeError(
            f"data must be a map-style data set (with __len__ and __getitem__) or a DataLoader "
            f"over one, got {type(dataset).__name__}"
        )
    if device is None:
        param = next(iter(model.parameters()), None) if isinstance(model, nn.Module) else None
        device = param.device if param is not None else torch.device("cpu")
    rank, world_size = _world()
    indices = list(range(rank, len(dataset), world_size))
    shard: Dataset[Any] = Subset(dataset, indices)
    loader: Iterable[Any] = DataLoader(
        shard,
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=collate_fn,
        shuffle=False,
        generator=torch.Generator().manual_seed(DEFAULT_SEED),  # torch's global RNG stays put
    )
    bar: Any = None
    if show_progress and rank == 0:
        desc = f"{method or 'evaluating'} (rank 0 of {world_size})"
        bar = progress_bar(len(indices), desc, unit="volume")

    special = ("__target__", "__index__", "__pred__", "__label__", "__correct__")
    parts: dict[str, list[Tensor]] = {name: [] for name in (*metric_fns, *special)}
    start = 0
    try:
        for batch in loader:
            images, labels = _split_batch(batch, image_key, label_key)
            masks = _batch_masks(batch, mask_key)
            x = unwrap_meta(images).to(device)
            n = x.shape[0]
            affines = _batch_affines(images, n)
            batch_indices = torch.tensor(indices[start : start + n], dtype=torch.long)
            start += n
            with torch.no_grad():
                output = model(x)
            predictions = output.argmax(1)
            label_t = _labels_tensor(labels, n)
            correct = correctness(predictions, label_t) if label_t is not None else None
            t = batch_target(target, labels, output if target == "pred" else None, n)
            if correct_only:
                if correct is None:
                    raise ValueError(
                        "correct_only=True needs labels, but the batch has none "
                        f"(label_key={label_key!r})"
                    )
                keep = correct.nonzero().reshape(-1).cpu()
                if bar is not None:
                    bar.update(n - len(keep))
                if len(keep) == 0:
                    continue
                t = _take(t, keep, n)
                if len(keep) < n:
                    x = x[keep.to(x.device)]
                    with torch.no_grad():
                        output = model(x)  # the metrics' clean forward, shared below
                batch_indices, predictions = batch_indices[keep], predictions[keep.to(device)]
                correct = correct[keep.to(correct.device)]
                label_t = label_t[keep] if label_t is not None else None
                masks = masks[keep] if masks is not None else None
                affines = affines[keep] if affines is not None else None
                n = len(keep)
            if bar is not None:
                bar.set_postfix_str("maps")
            maps = attribute_batch(attribution, x, t, **kwargs)
            # Every metric's clean forward of x is the one above (exactly the same call).
            with shared_forward(model, x, output):
                values = apply_metrics(
                    metric_fns,
                    model,
                    x,
                    maps,
                    t,
                    masks=masks.to(device) if isinstance(masks, Tensor) else masks,
                    on_metric=bar.set_postfix_str if bar is not None else None,
                )
            for name, value in values.items():
                parts[name].append(value)
            tt = torch.as_tensor(t, device=x.device).reshape(-1).long().expand(n)
            parts["__target__"].append(tt)
            parts["__index__"].append(batch_indices)
            parts["__pred__"].append(predictions)
            if label_t is not None and correct is not None:
                parts["__label__"].append(label_t)
                parts["__correct__"].append(correct)
            if on_batch is not None:
                on_batch(
                    EvaluatedBatch(
                        indices=batch_indices,
                        inputs=x,
                        maps=unwrap_meta(maps),
                        targets=tt,
                        predictions=predictions,
                        labels=label_t,
                        masks=unwrap_meta(masks) if isinstance(masks, Tensor) else None,
                        values=values,
                        affines=affines,
                    )
                )
            if bar is not None:
                bar.update(n)
    finally:
        if bar is not None:
            bar.close()

    integer = ("__target__", "__index__", "__pred__")
    local = {
        name: torch.cat(vals)
        if vals
        else torch.empty(0, dtype=torch.long if name in integer else torch.float32)
        for name, vals in parts.items()
    }
    local["__correct__"] = local["__correct__"].bool()
    merged = gather_values(local, world_size)
    all_indices = merged.pop("__index__")
    order = all_indices.argsort()
    targets = merged.pop("__target__")[order]
    predictions_all = merged.pop("__pred__")[order]
    labels_all = merged.pop("__label__")
    correct_all = merged.pop("__correct__")
    with_labels = len(order) > 0 and labels_all.shape[0] == len(order)
    return EvaluationResult(
        values={k: v[order] for k, v in merged.items()},
        targets=targets,
        indices=all_indices[order],
        predictions=predictions_all,
        labels=labels_all[order] if with_labels else None,
        correct=correct_all[order] if with_labels else None,
        method=method,
    )


def run_distributed(
    function: Callable[..., Any], *args: Any, backend: str | None = None, **kwargs: Any
) -> Any:
    """Call ``function(*args, **kwargs)`` inside a ``torch.distributed`` process group.

    Made for ``torchrun --nproc_per_node=N script.py``: the group is set up from the
    environment that torchrun writes (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ...) unless
    one is already initialised, each process uses the GPU ``LOCAL_RANK`` when CUDA is
    available, and a group set up here is destroyed afterwards, also when ``function``
    raises. Without torchrun's environment the function simply runs on one process.

    Args:
        function: e.g. :func:`evaluate_dataset`.
        *args, **kwargs: its arguments.
        backend: ``"nccl"`` or ``"gloo"``; default nccl with CUDA, gloo otherwise.

    Returns:
        What ``function`` returns (on every rank).

    Example (``evaluate.py``, run with ``torchrun --nproc_per_node=2 evaluate.py``)::

        result = run_distributed(evaluate_dataset, model, cam, dataset, batch_size=4)
        if int(os.environ.get("RANK", 0)) == 0:
            print(result)
    """
    import torch.distributed as dist

    if not callable(function):
        raise TypeError(f"function must be callable, e.g. evaluate_dataset, got {function!r}")
    if backend is not None:
        check_choice(backend, "backend", ("nccl", "gloo", "mpi", "ucc"))
    if "WORLD_SIZE" not in os.environ or dist.is_initialized():
        return function(*args, **kwargs)
    if not dist.is_available():
        raise RuntimeError("torch.distributed is not available in this PyTorch build")
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group(backend=backend or ("nccl" if cuda else "gloo"))
    try:
        return function(*args, **kwargs)
    finally:
        dist.destroy_process_group()
