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
``partial(deletion_auc, n_steps=64, max_examples_per_batch=32)``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn

from captum_medcam._targets import class_indices
from captum_medcam.attr._cam import resize
from captum_medcam.attr._checks import (
    DEFAULT_SEED,
    check_choice,
    check_flags,
    check_forward_and_layer,
    check_int,
    check_positive_int,
    check_target_type,
    unwrap_meta,
    wrap_meta,
)

__all__ = [
    "EvaluationResult",
    "Metric",
    "attribute_batch",
    "default_metrics",
    "evaluate_dataset",
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


def apply_metrics(
    metrics: Mapping[str, Metric],
    forward_func: Callable[..., Tensor],
    inputs: Tensor,
    maps: Tensor,
    target: Any,
) -> dict[str, Tensor]:
    """Score ``maps`` with every metric; each returns one value per example ``(N,)``."""
    x = unwrap_meta(inputs)
    maps = unwrap_meta(maps)
    values = {}
    with torch.inference_mode(False), torch.no_grad():
        if torch.is_inference(x):
            x = x.clone()
        for name, metric in metrics.items():
            value = metric(forward_func, x, maps, target=target)
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


def summarize(values: Tensor) -> tuple[float, float]:
    """Mean and standard deviation (population, ``ddof=0``, as NumPy's ``std``) of ``values``."""
    if values.numel() == 0:
        return float("nan"), float("nan")
    v = values.double()
    return float(v.mean()), float(v.std(correction=0))


@dataclass(frozen=True)
class EvaluationResult:
    """Per-sample metric values of a data set, in data-set order.

    Attributes:
        values: metric name -> ``(M,)`` values, one per sample.
        targets: ``(M,)`` the class explained for each sample.
        indices: ``(M,)`` each sample's index in the data set (``arange(M)``).
    """

    values: dict[str, Tensor]
    targets: Tensor
    indices: Tensor
    summary: dict[str, tuple[float, float]] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "summary", {k: summarize(v) for k, v in self.values.items()})

    def __str__(self) -> str:
        lines = [f"{len(self.indices)} samples"]
        lines += [f"{name}: {mean:.4f} +- {std:.4f}" for name, (mean, std) in self.summary.items()]
        return "\n".join(lines)


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


def batch_target(target: Any, labels: Any, output: Tensor | None, n: int) -> Any:
    """Resolve ``target`` ("pred", "label", or a Captum target) for a batch of ``n``.

    Predictions and labels may be in any form :func:`captum_medcam._targets.class_indices`
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
    return {k: torch.cat([g[k] for g in gathered]) for k in local}


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
    device: torch.device | str | None = None,
    attribute_kwargs: Mapping[str, Any] | None = None,
    show_progress: bool = True,
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
        image_key, label_key: keys of dict samples.
        device: where the inputs are moved (default: the model's parameters' device).
        attribute_kwargs: options of ``attribution.attribute`` (e.g.
            ``{"perturbations_per_eval": 32}``).
        show_progress: a progress bar (on rank 0).

    Returns:
        :class:`EvaluationResult` with per-sample values ``(M,)`` in data-set order, the
        targets, and ``summary[name] = (mean, std)``.

    Raises:
        TypeError: an iterable data set (its length is needed to split it), bad metrics, an
            option of the wrong type.
        ValueError: a metric that does not return one value per example, bad targets,
            ``batch_size < 1``, ``num_workers < 0``.
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
    check_flags(show_progress=show_progress)
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
    if show_progress and rank == 0:
        from tqdm.auto import tqdm

        loader = tqdm(loader, desc=f"evaluating (rank 0 of {world_size})", unit="batch")

    parts: dict[str, list[Tensor]] = {name: [] for name in (*metric_fns, "__target__")}
    for batch in loader:
        images, labels = _split_batch(batch, image_key, label_key)
        x = unwrap_meta(images).to(device)
        output = None
        if target == "pred":
            with torch.no_grad():
                output = model(x)
        t = batch_target(target, labels, output, x.shape[0])
        maps = attribute_batch(attribution, x, t, **kwargs)
        for name, value in apply_metrics(metric_fns, model, x, maps, t).items():
            parts[name].append(value)
        tt = torch.as_tensor(t, device=x.device).reshape(-1).long().expand(x.shape[0])
        parts["__target__"].append(tt)

    local = {
        name: torch.cat(vals)
        if vals
        else torch.empty(0, dtype=torch.long if name == "__target__" else torch.float32)
        for name, vals in parts.items()
    }
    local["__index__"] = torch.tensor(indices, dtype=torch.long)
    merged = gather_values(local, world_size)
    order = merged.pop("__index__").argsort()
    targets = merged.pop("__target__")[order]
    return EvaluationResult(
        values={k: v[order] for k, v in merged.items()},
        targets=targets,
        indices=torch.arange(len(order)),
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
