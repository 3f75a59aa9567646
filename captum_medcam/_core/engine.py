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

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, get_args

import torch
from torch import Tensor

from captum_medcam._core.checks import index_additional_args
from captum_medcam._core.targets import class_scores

__all__ = ["PerturbationOptions", "perturbation_options"]

#: How :func:`run_jobs` scores a row: a class score of the target (see
#: :func:`~captum_medcam._core.targets.class_scores`), or ``"output"``, the model's output row
#: as it is (its own dtype; CRM's score changes and the metrics' clean forward need it).
EngineScore = Literal["probability", "logit", "sigmoid", "correct", "output"]
ENGINE_SCORES: tuple[str, ...] = get_args(EngineScore)


@dataclass(frozen=True)
class PerturbationOptions:
    """How the engine runs perturbed forwards; set with :func:`perturbation_options`.

    Attributes:
        autocast: None (the inputs' precision), ``torch.bfloat16`` or ``torch.float16``:
            forwards run under ``torch.autocast`` with that dtype on the inputs' device.
        chunk_size: None (the call's ``perturbations_per_eval`` / ``max_examples_per_batch``)
            or ``"auto"``: on a CUDA device the chunk size follows free GPU memory.
        compile: False, True (``torch.compile`` with its default backend) or the name of a
            ``torch.compile`` backend; applies to the plain forwards, not a custom one.
        memory_fraction: the share of free GPU memory that ``"auto"`` may fill.
    """

    autocast: torch.dtype | None = None
    chunk_size: Literal["auto"] | None = None
    compile: bool | str = False
    memory_fraction: float = 0.5


_DEFAULT_OPTIONS = PerturbationOptions()
_OPTIONS: ContextVar[PerturbationOptions | None] = ContextVar(
    "captum_medcam_perturbation_options", default=None
)
_AUTOCAST = {"bfloat16": torch.bfloat16, "float16": torch.float16}


@contextmanager
def perturbation_options(
    *,
    autocast: str | torch.dtype | None = None,
    chunk_size: Literal["auto"] | None = None,
    compile: bool | str = False,
    memory_fraction: float = 0.5,
) -> Iterator[PerturbationOptions]:
    """Speed options for every perturbed forward pass run inside the ``with`` block.

    One switch for all perturbation methods and metrics: Score-CAM's masked inputs, CRM's
    removals (``fc_layer=None``), deletion, insertion and AOPC, ``correctly_classified``,
    and the data-set evaluation that calls them. Gradient methods are not affected. The
    options hold for the current thread (or task) and are restored on leaving the block.

    * ``autocast="bfloat16"`` or ``"float16"``: run the perturbed forwards under
      ``torch.autocast`` on the inputs' device (bfloat16 also runs on a CPU). Scores are
      computed from the outputs in the inputs' dtype. Results agree with float32 to the
      tolerance measured in the README (a map rank correlation above 0.99 and metric
      differences of about 1e-3 on a 3D network); exact reproduction needs float32. CRM
      keeps full precision: its map squares score differences that are often below the
      resolution of a bfloat16 score.
    * ``chunk_size="auto"``: on a CUDA device, the first chunk runs at the call's
      ``perturbations_per_eval`` / ``max_examples_per_batch``, its peak memory per row is
      measured (this resets CUDA's peak-memory statistics), and later chunks are as large
      as ``memory_fraction`` of the free GPU memory allows (see :func:`auto_chunk_size`).
      On a CPU the call's value is used. Results do not depend on the chunk size beyond
      floating-point rounding of batched convolutions.
    * ``compile=True``: run the model through ``torch.compile`` for the perturbed forwards
      (a string names the backend, e.g. ``"inductor"``). Compiling takes long (on a CPU
      about 90 s of wall time for a 3D ResNet-10, then about 2 s for each new chunk shape)
      and pays off only over a long run; off by default (measurements in the README).

    Args:
        autocast: None, ``"bfloat16"``, ``"float16"``, ``torch.bfloat16`` or
            ``torch.float16``.
        chunk_size: None or ``"auto"``.
        compile: True (or a ``torch.compile`` backend name) to compile the model's forward.
        memory_fraction: the share in (0, 1] of free GPU memory ``"auto"`` may use.

    Yields:
        The :class:`PerturbationOptions` in force.

    Raises:
        ValueError: an unknown autocast dtype or chunk size, a fraction outside (0, 1].
        TypeError: a ``compile`` that is not a bool or a backend name.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from captum_medcam import ScoreCAM, perturbation_options
        >>> model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(),
        ...                       nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)).eval()
        >>> with perturbation_options(autocast="bfloat16", chunk_size="auto"):
        ...     maps = ScoreCAM(model, model[1]).attribute(torch.randn(2, 1, 16, 16), target=0)
        >>> maps.dtype
        torch.float32
    """
    options = PerturbationOptions(
        autocast=_check_autocast(autocast),
        chunk_size=_check_chunk_option(chunk_size),
        compile=_check_compile(compile),
        memory_fraction=_check_fraction(memory_fraction),
    )
    token = _OPTIONS.set(options)
    try:
        yield options
    finally:
        _OPTIONS.reset(token)


def current_options() -> PerturbationOptions:
    """The options in force (the defaults outside :func:`perturbation_options`)."""
    return _OPTIONS.get() or _DEFAULT_OPTIONS


def _check_autocast(value: object) -> torch.dtype | None:
    if value is None:
        return None
    if isinstance(value, str) and value in _AUTOCAST:
        return _AUTOCAST[value]
    if value in (torch.bfloat16, torch.float16):
        return value
    raise ValueError(
        f"autocast must be None, 'bfloat16', 'float16', torch.bfloat16 or torch.float16, got "
        f"{value!r}"
    )


def _check_chunk_option(value: object) -> Literal["auto"] | None:
    if value is None or value == "auto":
        return value
    raise ValueError(
        f"chunk_size must be None (the call's perturbations_per_eval / max_examples_per_batch) "
        f"or 'auto', got {value!r}"
    )


def _check_compile(value: object) -> bool | str:
    if isinstance(value, str):
        if value not in torch.compiler.list_backends(exclude_tags=()):
            raise ValueError(
                f"compile={value!r} is not a torch.compile backend; choose one of "
                f"{sorted(torch.compiler.list_backends(exclude_tags=()))}"
            )
        return value
    if not isinstance(value, bool):
        raise TypeError(
            f"compile must be True, False or a torch.compile backend name, got {value!r} "
            f"({type(value).__name__})"
        )
    return value


def _check_fraction(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"memory_fraction must be a number in (0, 1], got {value!r}")
    if not 0.0 < float(value) <= 1.0:
        raise ValueError(f"memory_fraction must be in (0, 1], got {value!r}")
    return float(value)


def auto_chunk_size(
    free_bytes: int | None,
    bytes_per_row: float,
    requested: int,
    remaining: int,
    *,
    memory_fraction: float = 0.5,
) -> int:
    """The chunk size ``"auto"`` picks: as many rows as ``memory_fraction`` of the free memory
    holds at the measured cost per row, between 1 and the ``remaining`` jobs.

    ``free_bytes=None`` (no CUDA device: a CPU gains nothing from larger batches) or a cost
    that could not be measured (``bytes_per_row <= 0``) keep the ``requested`` size.

    Args:
        free_bytes: free memory on the device in bytes (``torch.cuda.mem_get_info()[0]``
            plus what PyTorch's allocator holds unused), or None.
        bytes_per_row: the peak memory one row of a forward needs, measured on a chunk.
        requested: the call's chunk size (``perturbations_per_eval * N`` or
            ``max_examples_per_batch``).
        remaining: the jobs still to run (at least 1).
        memory_fraction: the share of ``free_bytes`` to fill.

    Returns:
        The chunk size, ``1 <= size <= max(remaining, 1)``.

    Example:
        >>> auto_chunk_size(8 * 2**30, 64 * 2**20, 16, 10_000)  # 8 GiB free, 64 MiB a row
        64
        >>> auto_chunk_size(None, 64 * 2**20, 16, 10_000)  # CPU: the call's value
        16
        >>> auto_chunk_size(2**20, 64 * 2**20, 16, 10_000)  # less than one row fits
        1
    """
    if free_bytes is None or bytes_per_row <= 0:
        size = requested
    else:
        size = math.floor(memory_fraction * free_bytes / bytes_per_row)
    return max(1, min(size, max(remaining, 1)))


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
    allow_autocast: bool = True,
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
        allow_autocast: False keeps full precision under ``perturbation_options(autocast=)``,
            for a caller whose result is a difference of nearly equal scores (CRM).
        show_progress: show a progress bar over the jobs (ignored when ``bar`` is given).
        desc: the progress bar's label.
        bar: a bar from :func:`progress_bar` to advance by the rows of each chunk instead
            of a new one (a caller that shows several runs as one bar); not closed here.

    The :func:`perturbation_options` in force apply: ``autocast`` wraps each forward
    (outputs are converted back to the inputs' dtype before scoring), ``chunk_size="auto"``
    resizes the chunks after the first on a CUDA device, ``compile`` compiles
    ``forward_func`` (not a custom ``forward``). Nothing in the loop reads a value back to
    the host.

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
    options = current_options()
    precision = options.autocast if allow_autocast else None
    model = forward_func
    if forward is None and options.compile is not False:
        backend = "inductor" if options.compile is True else options.compile
        model = torch.compile(forward_func, backend=backend)  # dynamo caches across calls
    device = inputs.device
    measure = _measures_memory(options, device)
    n = inputs.shape[0]
    own_bar = bar is None
    if own_bar:
        bar = progress_bar(n_jobs, desc, unit="input", show=show_progress)
    result: Tensor | None = None
    size, start = chunk_size, 0
    try:
        with torch.no_grad():
            while start < n_jobs:
                stop = min(start + size, n_jobs)
                base = _start_measure(device) if measure and start == 0 else 0
                rows = build(start, stop)
                indexed = index_additional_args(args, rows.owner, n)
                with _autocast(precision, device):
                    if forward is not None:
                        output = forward(rows, indexed)
                    else:
                        assert model is not None
                        output = model(rows.inputs, *indexed)
                _check_rows(output, stop - start)
                if precision is not None:
                    output = _full_precision(output, inputs.dtype)
                if score == "output":
                    value = output
                    if result is None:
                        result = output.new_empty((n_jobs, *output.shape[1:]))
                else:
                    value = class_scores(output, targets, rows.owner, score)
                    if result is None:
                        result = inputs.new_empty(n_jobs)
                result[start:stop] = value
                bar.update(stop - start)
                if measure and start == 0:
                    size = auto_chunk_size(
                        _cuda_free_bytes(device),
                        _bytes_per_row(device, base, stop - start),
                        chunk_size,
                        n_jobs - stop,
                        memory_fraction=options.memory_fraction,
                    )
                start = stop
    finally:
        if own_bar:
            bar.close()
    return inputs.new_empty(0) if result is None else result


def _autocast(dtype: torch.dtype | None, device: torch.device) -> Any:
    """``torch.autocast`` on ``device`` with ``dtype``, or nothing for None."""
    if dtype is None:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _full_precision(output: Tensor, dtype: torch.dtype) -> Tensor:
    """An autocast output back in the inputs' floating ``dtype`` (scores are computed there)."""
    if output.is_floating_point() and dtype.is_floating_point and output.dtype != dtype:
        return output.to(dtype)
    return output


def _measures_memory(options: PerturbationOptions, device: torch.device) -> bool:
    """Whether ``chunk_size="auto"`` measures memory: only on a CUDA device."""
    return options.chunk_size == "auto" and device.type == "cuda"


def _start_measure(device: torch.device) -> int:
    """Reset CUDA's peak statistics; the memory allocated before the first chunk."""
    torch.cuda.reset_peak_memory_stats(device)
    return torch.cuda.memory_allocated(device)


def _bytes_per_row(device: torch.device, base: int, rows: int) -> float:
    """The first chunk's peak memory growth per row (host-side allocator counters, no sync)."""
    return (torch.cuda.max_memory_allocated(device) - base) / max(rows, 1)


def _cuda_free_bytes(device: torch.device) -> int:
    """Free device memory plus what PyTorch's caching allocator holds unused."""
    free, _total = torch.cuda.mem_get_info(device)
    return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))


def _check_rows(output: object, rows: int) -> None:
    if not isinstance(output, Tensor):
        raise TypeError(f"the model must return a tensor, got {type(output).__name__}")
    if output.dim() == 0 or output.shape[0] != rows:
        raise ValueError(
            f"the model returned output of shape {tuple(output.shape)} for a batch of {rows} "
            "inputs; it must return one row per input (dim 0 is the batch)"
        )


class _SharedForward(NamedTuple):
    forward_func: Any
    inputs: Tensor
    output: Tensor


_SHARED: ContextVar[_SharedForward | None] = ContextVar(
    "captum_medcam_shared_forward", default=None
)


@contextmanager
def shared_forward(forward_func: Any, inputs: Tensor, output: Tensor) -> Iterator[None]:
    """Share one clean forward: inside the block, :func:`forward_in_chunks` of this
    ``forward_func`` on this very ``inputs`` tensor returns ``output`` instead of running it.

    The data-set evaluation computes ``output = model(x)`` once per batch for the target
    and the correctness, and every metric's clean forward then reuses it. The output is
    used only where the forward it replaces is the same computation: the same model object
    and input tensor (``is``), no ``additional_forward_args``, one chunk for the whole batch
    (``chunk_size >= N``), and no :func:`perturbation_options` in force (autocast or
    compile would compute it differently). Otherwise the forward runs as usual.

    Args:
        forward_func: the model that computed ``output``.
        inputs: the inputs ``(N, ...)`` it was computed on.
        output: ``forward_func(inputs)``, computed under ``torch.no_grad()``.

    Example:
        >>> import torch
        >>> model, x = torch.nn.Linear(3, 2), torch.randn(4, 3)
        >>> with torch.no_grad():
        ...     out = model(x)
        >>> with shared_forward(model, x, out):
        ...     forward_in_chunks(model, x, (), chunk_size=4) is out
        True
    """
    token = _SHARED.set(_SharedForward(forward_func, inputs, output))
    try:
        yield
    finally:
        _SHARED.reset(token)


def _shared_output(
    forward_func: Any, inputs: Tensor, args: tuple[Any, ...], chunk_size: int
) -> Tensor | None:
    shared = _SHARED.get()
    if (
        shared is None
        or shared.forward_func is not forward_func
        or shared.inputs is not inputs
        or args
        or chunk_size < inputs.shape[0]
        or current_options().autocast is not None
        or current_options().compile is not False
    ):
        return None
    return shared.output


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
    forward: :func:`run_jobs` with one job per example and ``score="output"`` (or, inside
    :func:`shared_forward` for the same model and inputs, the output computed there).

    Returns:
        ``(N, *output.shape[1:])`` in the model's dtype.

    Example:
        >>> import torch
        >>> model, x = torch.nn.Linear(3, 2), torch.randn(5, 3)
        >>> torch.allclose(forward_in_chunks(model, x, (), chunk_size=2), model(x))
        True
    """
    shared = _shared_output(forward_func, inputs, args, chunk_size)
    if shared is not None:
        if bar is not None:
            bar.update(inputs.shape[0])
        return shared
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
