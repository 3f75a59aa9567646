"""The perturbation engine: every chunked forward pass over perturbed inputs runs here.

Score-CAM's masked inputs, CRM's removals, the curve points of deletion, insertion and
AOPC, and the clean forwards of the metrics are all *jobs*: numbered ``0 .. n_jobs - 1``,
each one row of a forward pass that belongs to one example. A caller describes them with
a *builder*, ``build(start, stop) -> Perturbed``, that makes the rows of jobs
``start .. stop - 1`` on demand; :func:`run_jobs` calls it for one chunk of
``chunk_size`` jobs at a time, runs the model on the rows under ``torch.no_grad()``, scores
them and writes the scores into one preallocated result. Only one chunk of perturbed
inputs exists at any time: memory is bounded by ``chunk_size``, never by ``n_jobs``.

The engine owns what every such loop needs, so that it is written once:

* chunking (the user's ``perturbations_per_eval`` / ``max_examples_per_batch``),
* the per-example ``additional_forward_args`` of each row
  (:func:`~captum_medcam._core.checks.index_additional_args`),
* the score of each row (:func:`~captum_medcam._core.targets.class_scores`: probability,
  logit, sigmoid, correct; or ``"output"``, the model's whole output row),
* device and dtype (scores are in the inputs' dtype, on the inputs' device),
* the progress bar (:func:`progress_bar`, tqdm imported only when one is shown).

Nothing in the loop reads a value back to the host: chunk boundaries are Python ints, the
rows of a chunk are built with tensor ops, and results stay on the device.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, NamedTuple, get_args

import torch
from torch import Tensor

from captum_medcam._core.checks import index_additional_args
from captum_medcam._core.targets import class_scores

#: How :func:`run_jobs` scores a row: a class score of the target (see
#: :func:`~captum_medcam._core.targets.class_scores`), or ``"output"``, the model's output row
#: as it is (its own dtype; CRM's score changes and the metrics' clean forward need it).
EngineScore = Literal["probability", "logit", "sigmoid", "correct", "output"]
ENGINE_SCORES: tuple[str, ...] = get_args(EngineScore)


class Perturbed(NamedTuple):
    """The rows of one chunk of jobs, as a builder returns them.

    Attributes:
        inputs: ``(B, ...)``, what the forward receives (perturbed inputs; for CRM the
            replacement of the layer's output).
        owner: ``(B,)`` long, on the inputs' device: the example each row belongs to. It
            picks the row's target and its per-example ``additional_forward_args``.
        extra: anything else a custom ``forward`` needs for this chunk (None by default).
    """

    inputs: Tensor
    owner: Tensor
    extra: Any = None


#: ``build(start, stop)`` makes the rows of jobs ``start .. stop - 1`` (``stop - start`` rows).
Builder = Callable[[int, int], Perturbed]
#: A custom forward ``forward(chunk, args) -> output``: ``args`` are the chunk's
#: ``additional_forward_args``, already indexed by ``chunk.owner``.
Forward = Callable[[Perturbed, tuple[Any, ...]], Any]


class _NoBar:
    """Stands in for a progress bar when none is shown."""

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix_str(self, s: str = "") -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(total: int, desc: str, *, unit: str = "batch", show: bool = True) -> Any:
    """The package's progress bar: ``tqdm.auto`` with ``total`` steps, or a silent stand-in.

    tqdm is imported only when a bar is shown. The returned object has ``update(n)``,
    ``set_postfix_str(s)`` and ``close()`` either way.

    Example:
        >>> bar = progress_bar(3, "forwards", show=False)
        >>> bar.update(1); bar.close()
    """
    if not show:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit)


def run_jobs(
    forward_func: Callable[..., Any] | None,
    inputs: Tensor,
    targets: Tensor | list[Any] | None,
    args: tuple[Any, ...],
    n_jobs: int,
    build: Builder,
    *,
    chunk_size: int,
    score: EngineScore,
    forward: Forward | None = None,
    show_progress: bool = False,
    desc: str = "forwards",
    bar: Any = None,
) -> Tensor:
    """Run ``n_jobs`` perturbed forwards, ``chunk_size`` rows at a time, and score each row.

    For each chunk ``[start, stop)`` (``stop - start <= chunk_size``)::

        rows   = build(start, stop)                          # Perturbed(inputs, owner, extra)
        a      = index_additional_args(args, rows.owner, N)  # per-example args of each row
        output = forward_func(rows.inputs, *a)               # or forward(rows, a)
        result[start:stop] = class_scores(output, targets, rows.owner, score)

    Args:
        forward_func: the model, called as ``forward_func(rows.inputs, *args)``; may be None
            when ``forward`` is given.
        inputs: the clean inputs ``(N, ...)``: ``N`` indexes ``args``; scores take their
            dtype and device.
        targets: one target per example, from
            :func:`~captum_medcam._core.targets.per_sample_target` (None: the model returns
            one score per example); unused with ``score="output"``.
        args: the formatted ``additional_forward_args``
            (:func:`~captum_medcam._core.checks.format_additional_args`); tensors whose
            first dim is ``N`` are indexed by each row's owner.
        n_jobs: the number of jobs (rows), ``>= 0``.
        build: ``build(start, stop) -> Perturbed`` with ``stop - start`` rows.
        chunk_size: rows per forward pass, ``>= 1``.
        score: ``"probability"``, ``"logit"``, ``"sigmoid"``, ``"correct"`` or
            ``"output"`` (the model's output rows, unscored, in their own dtype).
        forward: a custom forward ``forward(rows, indexed_args) -> output`` used instead of
            ``forward_func`` (CRM runs the model with the layer's output replaced).
        show_progress: show a progress bar over the chunks (ignored when ``bar`` is given).
        desc: the progress bar's label.
        bar: a bar from :func:`progress_bar` to advance by one per chunk instead of a new
            one (a caller that shows several runs as one bar); it is not closed here.

    Returns:
        ``(n_jobs,)`` scores in ``inputs``' dtype on its device, or with ``score="output"``
        the outputs ``(n_jobs, *output.shape[1:])`` in the model's dtype and on its device.
        No jobs give an empty ``(0,)`` tensor.

    Raises:
        ValueError: the model returned a number of rows other than the chunk's.

    Example:
        >>> import torch
        >>> model = torch.nn.Linear(3, 2)
        >>> x = torch.randn(4, 3)
        >>> everyone = torch.arange(4)
        >>> # job j scores example j % 4 with its features scaled by (j // 4 + 1)
        >>> def build(start, stop):
        ...     owner = torch.arange(start, stop) % 4
        ...     scale = (torch.arange(start, stop) // 4 + 1).unsqueeze(1)
        ...     return Perturbed(x[owner] * scale, owner)
        >>> s = run_jobs(model, x, torch.tensor([0, 1, 0, 1]), (), 8, build,
        ...              chunk_size=3, score="logit")
        >>> s.shape, torch.allclose(s[:4], model(x).gather(1, torch.tensor([[0], [1], [0], [1]]))[:, 0])
        (torch.Size([8]), True)
    """
    if forward is None and forward_func is None:
        raise TypeError("run_jobs needs forward_func or forward")
    n = inputs.shape[0]
    own_bar = bar is None
    if own_bar:
        bar = progress_bar(-(-n_jobs // chunk_size), desc, show=show_progress)
    result: Tensor | None = None
    try:
        with torch.no_grad():
            for start in range(0, n_jobs, chunk_size):
                stop = min(start + chunk_size, n_jobs)
                rows = build(start, stop)
                indexed = index_additional_args(args, rows.owner, n)
                if forward is not None:
                    output = forward(rows, indexed)
                else:
                    assert forward_func is not None
                    output = forward_func(rows.inputs, *indexed)
                _check_rows(output, stop - start)
                if score == "output":
                    value = output
                    if result is None:
                        result = output.new_empty((n_jobs, *output.shape[1:]))
                else:
                    value = class_scores(output, targets, rows.owner, score)
                    if result is None:
                        result = inputs.new_empty(n_jobs)
                result[start:stop] = value
                bar.update(1)
    finally:
        if own_bar:
            bar.close()
    return inputs.new_empty(0) if result is None else result


def _check_rows(output: object, rows: int) -> None:
    if not isinstance(output, Tensor):
        raise TypeError(f"the model must return a tensor, got {type(output).__name__}")
    if output.dim() == 0 or output.shape[0] != rows:
        raise ValueError(
            f"the model returned output of shape {tuple(output.shape)} for a batch of {rows} "
            "inputs; it must return one row per input (dim 0 is the batch)"
        )


def forward_in_chunks(
    forward_func: Callable[..., Any],
    inputs: Tensor,
    args: tuple[Any, ...],
    *,
    chunk_size: int,
    show_progress: bool = False,
    desc: str = "forwards",
    bar: Any = None,
) -> Tensor:
    """The model's output on the clean ``inputs`` ``(N, ...)``, ``chunk_size`` examples per
    forward: :func:`run_jobs` with one job per example and ``score="output"``.

    Returns:
        ``(N, *output.shape[1:])`` in the model's dtype.

    Example:
        >>> import torch
        >>> model, x = torch.nn.Linear(3, 2), torch.randn(5, 3)
        >>> torch.allclose(forward_in_chunks(model, x, (), chunk_size=2), model(x))
        True
    """
    everyone = torch.arange(inputs.shape[0], device=inputs.device)

    def rows(start: int, stop: int) -> Perturbed:
        return Perturbed(inputs[start:stop], everyone[start:stop])

    return run_jobs(
        forward_func,
        inputs,
        None,
        args,
        inputs.shape[0],
        rows,
        chunk_size=chunk_size,
        score="output",
        show_progress=show_progress,
        desc=desc,
        bar=bar,
    )
