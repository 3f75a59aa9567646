"""Targets and class scores: one class per example, and the score of that class.

:func:`per_sample_target` turns a Captum ``target`` into one entry per example,
:func:`select_target` and :func:`class_scores` read the score of it from a model's output
(the score kinds :data:`Score` and, for the metrics, :data:`MetricScore`), and
:func:`class_indices` reads class indices from the predictions and labels that MONAI
pipelines leave behind.

MONAI's classification postprocessing stores a prediction in one of several forms, and
the same key (``"pred"``) may hold any of them. :func:`class_indices` reads each of them
as one class index per example and refuses what cannot be read unambiguously, saying
which transform or option gives a form it can read.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, get_args

import torch
from torch import Tensor

from captum_medcam._core.meta import unwrap_meta

#: What a method scores a masked input by: the target's softmax probability, its logit, or
#: the sigmoid of its logit (one label of a multi-label head).
Score = Literal["probability", "logit", "sigmoid"]
#: The metrics' score kinds: :data:`Score` and ``"correct"``, 0/1 correctness of the argmax.
MetricScore = Literal[Score, "correct"]
SCORES: tuple[str, ...] = get_args(Score)
METRIC_SCORES: tuple[str, ...] = get_args(MetricScore)


def _as_tensor(value: Any, name: str) -> Tensor:
    if isinstance(value, Tensor):
        return unwrap_meta(value).detach()
    try:
        return torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError) as error:
        raise TypeError(
            f"{name} must be a tensor, a number or a list of per-sample tensors, got "
            f"{type(value).__name__}"
        ) from error


def _stack_samples(value: Sequence[Any], n: int, name: str) -> Tensor:
    """Stack a decollated list (one entry per sample) into a batch ``(n, ...)``."""
    if len(value) != n:
        raise ValueError(
            f"{name} is a list of {len(value)} samples, expected one per example ({n})"
        )
    rows = [_as_tensor(v, name) for v in value]
    shapes = {tuple(r.shape) for r in rows}
    if len(shapes) > 1:
        raise ValueError(
            f"the samples of {name} have different shapes {sorted(shapes)}; each must hold the "
            "same form (class scores (K,), a one-hot (K,) or a class index (1,) or ())"
        )
    return torch.stack(rows)


def class_indices(value: Any, n: int, *, name: str = "pred") -> Tensor:
    """One class index per example from a MONAI prediction or label.

    The forms, for a batch of ``n`` examples and ``K > 1`` classes:

    ======================================  =================================  ============
    form                                    what leaves it                     read as
    ======================================  =================================  ============
    class scores ``(N, K)``, floating       the network; ``Activationsd``      argmax
                                            (softmax / sigmoid)
    one-hot ``(N, K)``, 0/1, one 1 a row    ``AsDiscreted(to_onehot=K)``       the 1
    class indices ``(N,)`` or ``(N, 1)``    ``AsDiscreted(argmax=True)``       as they are
    (integers, or floats holding them)      (after ``Activationsd``), labels
    a list of ``N`` per-sample tensors      ``decollate_batch`` / an evaluator  as above,
    (each ``(K,)``, ``(1,)`` or ``()``)     with ``decollate=True``            per sample
    ======================================  =================================  ============

    MetaTensors are read as plain tensors. Scores of a ``(N, K)`` tensor are never read
    as indices, and indices never as scores: ``(N, 1)`` holds one index per example (the
    argmax of it would always be 0).

    Args:
        value: the prediction or label, in one of the forms above.
        n: the number of examples in the batch.
        name: the value's name (e.g. its key) in error messages.

    Returns:
        ``(n,)`` long tensor of class indices, on the value's device.

    Raises:
        ValueError: what cannot be read unambiguously: a batch dim other than ``n`` (e.g.
            ``Activationsd``/``AsDiscreted`` applied over the batch dim of a collated
            batch), 0/1 rows with several or no 1s (multi-label), a single value per
            example that is not an integer (a score, not a class), negative indices,
            NaN/inf, or more than two dims.
        TypeError: a value that is not a tensor, a number or a list of them.

    Example:
        >>> import torch
        >>> class_indices(torch.tensor([[0.1, 2.0, -1.0], [3.0, 0.0, 0.5]]), 2).tolist()
        [1, 0]
        >>> class_indices(torch.tensor([[2.0], [0.0]]), 2).tolist()  # AsDiscreted(argmax=True)
        [2, 0]
        >>> class_indices([torch.tensor([1.0]), torch.tensor([2.0])], 2).tolist()  # decollated
        [1, 2]
    """
    if isinstance(value, (list, tuple)):
        t = _stack_samples(value, n, name)
    else:
        t = _as_tensor(value, name)
        if t.dim() == 0:
            t = t.reshape(1)
    if t.is_complex() or t.dtype == torch.bool:
        raise TypeError(f"{name} must hold class scores or class indices, got dtype {t.dtype}")
    if t.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(t.shape)})")
    if t.is_floating_point() and not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains NaN or inf values, so it names no class")
    if t.shape[0] != n:
        raise ValueError(
            f"{name} has shape {tuple(t.shape)}, but the batch has {n} examples: its first dim "
            "must be the batch. On a collated batch (an evaluator with decollate=False), MONAI's "
            "Activationsd and AsDiscreted act on dim 0 unless told otherwise: pass dim=1 to "
            "them, or use decollate=True"
        )
    if t.dim() > 2:
        raise ValueError(
            f"{name} has shape {tuple(t.shape)}; a classification needs class scores or a one-hot "
            "(N, K), or class indices (N,) or (N, 1)"
        )
    if t.dim() == 2 and t.shape[1] > 1:
        binary = bool(((t == 0) | (t == 1)).all())
        if binary or not t.is_floating_point():
            ones = (t == 1).sum(1)
            if not binary or not bool((ones == 1).all()):
                raise ValueError(
                    f"{name} of shape {tuple(t.shape)} holds {'0/1 values' if binary else 'integers'}"
                    " but not one 1 per row (a multi-label or thresholded prediction names no "
                    "single class): keep the class scores (drop AsDiscreted's threshold) so "
                    "their argmax is used, store one-hot rows (AsDiscreted(argmax=True, "
                    "to_onehot=K)), or pass the class to explain as target"
                )
        return t.argmax(1)
    t = t.reshape(n)
    if t.is_floating_point():
        if not bool((t == t.round()).all()):
            raise ValueError(
                f"{name} holds one value per example, {t[t != t.round()][0].item():g} among them, "
                "which is not a class index: a score (e.g. of a model with one output) names no "
                "class. Store class scores (N, K) or class indices (AsDiscreted(argmax=True)), or "
                "pass the output to explain as target (0 for a model with one output)"
            )
    if bool((t < 0).any()):
        raise ValueError(f"{name} holds negative class indices: {t[t < 0][0].item():g}")
    return t.long()


def per_sample_target(target: object, n: int, output: Tensor) -> Tensor | list[Any] | None:
    """Turn a Captum ``target`` into one entry per example and check it against ``output``.

    Args:
        target: None, an int, a tuple of ints, a tensor with one or ``n`` entries (a MONAI
            ``MetaTensor`` too), or a list of ``n`` ints or tuples (Captum's ``TargetType``).
        n: number of examples.
        output: the model's output on the clean inputs, ``(N, K, ...)``.

    Returns:
        None (the output is already one scalar per example), a long tensor ``(n,)`` of
        class indices on the output's device, or a list of ``n`` tuples.

    Raises:
        ValueError: a target out of range, of the wrong length, or None where the model
            returns several scores per example.
        TypeError: a target of an unsupported type.
    """
    shape = tuple(output.shape)
    if isinstance(target, Tensor):
        target = unwrap_meta(target)  # MONAI's predictions and labels are MetaTensors
    if target is None:
        if output.dim() > 2 or (output.dim() == 2 and output.shape[1] != 1):
            raise ValueError(
                f"target=None, but the model returns output of shape {shape}, several scores "
                "per example. Pass target= the class to explain (an int, or one per example, "
                "e.g. target=model(x).argmax(1) for the predicted class), as in Captum."
            )
        return None
    if isinstance(target, tuple):
        if len(target) != output.dim() - 1 or not all(isinstance(t, int) for t in target):
            raise ValueError(f"target {target!r} does not index an output of shape {shape}")
        for t, size in zip(target, shape[1:], strict=True):
            if not -size <= t < size:
                raise ValueError(f"target {target!r} is out of range for output of shape {shape}")
        return [target] * n
    if isinstance(target, list):
        if len(target) != n:
            raise ValueError(
                f"target is a list of {len(target)} items, expected one per example ({n})"
            )
        if all(isinstance(t, int) and not isinstance(t, bool) for t in target):
            target = torch.tensor(target, dtype=torch.long)
        elif all(isinstance(t, tuple) for t in target):
            for t in target:
                per_sample_target(t, 1, output[:1])
            return list(target)
        else:
            raise TypeError(f"a list target must hold ints or tuples of ints, got {target!r}")
    if isinstance(target, bool) or not isinstance(target, (int, Tensor)):
        raise TypeError(
            f"target must be None, an int, a tuple, a list or a tensor, got {type(target).__name__}"
        )
    t = torch.as_tensor(target, device=output.device)
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise TypeError(f"target must hold integer class indices, got dtype {t.dtype}")
    t = t.reshape(-1).long()
    if t.numel() == 1:
        t = t.expand(n)
    elif t.numel() != n:
        raise ValueError(f"target has {t.numel()} entries, expected 1 or one per example ({n})")
    if output.dim() != 2:
        raise ValueError(
            f"an integer target needs a model output of shape (N, K), got {shape}; "
            "use a tuple target for outputs with more dims"
        )
    k = output.shape[1]
    bad = (t < 0) | (t >= k)
    if bool(bad.any()):
        raise ValueError(
            f"target {t[bad][0].item()} is out of range for a model with {k} outputs "
            f"(output shape {shape}); valid classes are 0 to {k - 1}"
        )
    return t.contiguous()


def select_target(output: Tensor, target: Tensor | list[Any] | None, index: Tensor) -> Tensor:
    """Select one score per row of ``output`` for the examples ``index`` (``(B,)``).

    Returns:
        Scores of shape ``(B,)``.
    """
    if target is None:
        return output.reshape(output.shape[0])
    if isinstance(target, Tensor):
        t = target.index_select(0, index.to(target.device)).to(output.device)
        return output.gather(1, t.unsqueeze(1)).squeeze(1)
    keys = [(i, *target[j]) for i, j in enumerate(index.tolist())]  # (example, *output index)
    rows = [output[key] for key in keys]
    return torch.stack(rows)


def class_scores(
    output: Tensor, target: Tensor | list[Any] | None, index: Tensor, score: MetricScore
) -> Tensor:
    """One score per row ``(B,)`` of the examples ``index`` (``(B,)``) of ``output``.

    The target's logit, its probability, its sigmoid, or (``"correct"``, for the metrics)
    1 where the argmax of ``output`` is the target, else 0, in the output's dtype.

    ``"probability"`` is the softmax over dim 1, or the sigmoid when the model returns one
    score per example (a binary classifier with a single logit). ``"sigmoid"`` is
    ``sigmoid(logit)`` of the target label alone: the probability of one finding of a
    multi-label head (one sigmoid per label, e.g. ChestMNIST's 14 findings), where a
    softmax over all labels would be wrong.
    """
    if score == "correct":
        if not isinstance(target, Tensor):
            raise ValueError('score="correct" needs one class index per example as target')
        hit = output.argmax(1) == target.index_select(0, index.to(target.device))
        return hit.to(output.dtype)
    if score == "sigmoid":
        return select_target(output, target, index).sigmoid()
    if score == "probability":
        output = (
            output.sigmoid() if output.dim() == 1 or output.shape[1] == 1 else output.softmax(1)
        )
    return select_target(output, target, index)
