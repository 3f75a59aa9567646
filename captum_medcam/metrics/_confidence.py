"""Average drop and increase in confidence (Grad-CAM++), one value per example, 1D to 3D."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from captum_medcam._core.checks import check_bool, check_choice
from captum_medcam._core.engine import Perturbed, forward_in_chunks, progress_bar, run_jobs
from captum_medcam._core.targets import MetricScore
from captum_medcam.metrics._perturbation import (
    DEFAULT_MAX_EXAMPLES_PER_BATCH,
    _resolve_target,
    _score,
    prepare,
)

__all__ = ["average_drop", "increase_in_confidence"]

#: The scores a confidence can be: a relative drop needs a positive clean score.
_CONFIDENCE_SCORES = ("probability", "sigmoid", "logit")


def _explanation_map(inputs: Tensor, attributions: Tensor, normalize: bool = True) -> Tensor:
    """The explanation map ``E = s(L) * x`` of Grad-CAM++'s confidence metrics.

    ``L`` is the attribution summed over channels ``(N, 1, *S)``, ``s`` the min-max
    normalisation of each example's map to ``[0, 1]`` (a constant map becomes 0, as
    pytorch-grad-cam's ``scale_cam_image`` makes it), broadcast over the input channels.

    Args:
        inputs: ``(N, C, *S)``.
        attributions: ``(N, 1, *S)`` or ``(N, C, *S)`` at input resolution.
        normalize: min-max normalise the map (the paper); False multiplies by it as it is
            (pytorch-grad-cam's ``multiply_tensor_with_cam``, which expects a map already
            in ``[0, 1]``).

    Returns:
        ``(N, C, *S)`` in the inputs' dtype.

    Example:
        >>> import torch
        >>> _explanation_map(torch.ones(1, 1, 3), torch.tensor([[[2.0, 4.0, 3.0]]]))
        tensor([[[0.0000, 1.0000, 0.5000]]])
    """
    relevance = attributions.sum(1, keepdim=True).to(inputs.dtype)
    if normalize:
        flat = relevance.flatten(1)
        low = flat.amin(1).view(-1, *([1] * (relevance.dim() - 1)))
        span = (flat.amax(1) - flat.amin(1)).view_as(low)
        relevance = torch.where(
            span > 0, (relevance - low) / span.clamp(min=torch.finfo(relevance.dtype).tiny), 0.0
        )
    return inputs * relevance


def _confidences(
    forward_func: Callable[..., Any],
    inputs: Tensor,
    attributions: Tensor,
    target: Any,
    additional_forward_args: Any,
    *,
    score: MetricScore,
    normalize: bool,
    max_examples_per_batch: int | None,
    show_progress: bool,
) -> tuple[Tensor, Tensor]:
    """``(Y, O)``: the scores ``(N,)`` of the clean inputs and of the explanation maps."""
    check_choice(score, "score", _CONFIDENCE_SCORES)
    check_bool(normalize, "normalize")
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
    x, n = p.x, p.x.shape[0]
    chunk = max_examples_per_batch or max(n, 1)
    everyone = torch.arange(n, device=x.device)

    def build(start: int, stop: int) -> Perturbed:
        rows = everyone[start:stop]
        return Perturbed(_explanation_map(x[start:stop], p.relevance[start:stop], normalize), rows)

    bar = progress_bar(2 * -(-n // chunk), "confidence forwards", show=show_progress)
    try:
        clean_out = forward_in_chunks(forward_func, x, p.args, chunk_size=chunk, bar=bar)
        targets = _resolve_target(target, n, clean_out, score)
        clean = _score(clean_out, targets, everyone, score, x.dtype)
        explained = run_jobs(
            forward_func, x, targets, p.args, n, build, chunk_size=chunk, score=score, bar=bar
        )
    finally:
        bar.close()
    return clean, explained


def average_drop(
    forward_func: Callable[..., Any],
    inputs: Tensor,
    attributions: Tensor,
    target: Any = None,
    additional_forward_args: Any = None,
    *,
    score: MetricScore = "probability",
    normalize: bool = True,
    relative: bool = True,
    max_examples_per_batch: int | None = DEFAULT_MAX_EXAMPLES_PER_BATCH,
    show_progress: bool = False,
) -> Tensor:
    """Drop in confidence per example: ``max(0, Y - O) / Y`` (lower is better).

    The explanation map keeps the part of the image the attribution points at:
    ``E = s(L) * x`` with ``s`` the per-example min-max normalisation of the attribution
    (summed over channels, broadcast over the input channels; see the ``normalize`` option).
    ``Y`` is the model's score of the target on the image, ``O`` on ``E``.

    The paper's numbers are data set means in percent: ``Average Drop % = 100 * mean_i
    max(0, Y_i - O_i) / Y_i`` and ``% Increase in Confidence = 100 * mean_i 1[Y_i < O_i]``,
    over the images of the test set, ``c`` the predicted class and ``Y``, ``O`` its softmax
    score. Here, as in ``captum.metrics``, each example gets its own value (a fraction, not a
    percentage); take the mean (and multiply by 100) over the data set, e.g. with
    :func:`summarize` or ``captum-medcam evaluate``, whose summary holds the mean.

    pytorch-grad-cam's ``DropInConfidence`` and ``IncreaseInConfidence``
    (``metrics/cam_mult_image.py``) are per example too; its drop is the absolute
    ``max(0, Y - O)``, not divided by ``Y`` (``relative=False`` here), and it multiplies the
    image by the map as given (``normalize=False``; its CAMs come already scaled to
    ``[0, 1]``). With those options and the same score (its ``ClassifierOutputSoftmaxTarget``
    is ``score="probability"``, ``ClassifierOutputTarget`` is ``"logit"``) the values are
    equal.

    References:
        Chattopadhay, Sarkar, Howlader, Balasubramanian. "Grad-CAM++: Generalized
        Gradient-based Visual Explanations for Deep Convolutional Networks". WACV 2018,
        section 5.1. arXiv:1710.11063.

    Args:
        forward_func: the model, called as ``forward_func(inputs, *additional_forward_args)``.
            Its mode is left as it is (call ``model.eval()`` first).
        inputs: ``(N, C, *S)`` with 1 to 3 spatial dims, in the units the model takes (the
            map multiplies them, so 0 should mean "no signal", e.g. intensities scaled to
            ``[0, 1]`` rather than standardised to mean 0). Not modified.
        attributions: ``(N, 1, *S)`` or ``(N, C, *S)`` at input resolution (upsample a
            layer-resolution CAM first).
        target: the class to score, as in Captum; None takes the class predicted on the
            image (the paper).
        additional_forward_args: further model arguments, as in Captum.
        score: ``"probability"`` (softmax of the target; the paper), ``"sigmoid"`` (one label
            of a multi-label head) or ``"logit"``.
        normalize: min-max normalise each map before multiplying (the paper); False uses it
            as it is.
        max_examples_per_batch: inputs per forward pass (None: all at once).
        show_progress: a progress bar over the forward passes.
        relative: divide by ``Y`` (the paper); False gives ``max(0, Y - O)``
            (pytorch-grad-cam's ``DropInConfidence``).

    Returns:
        ``(N,)`` in the inputs' dtype: the paper's Average Drop % is ``100 * values.mean()``.

    Raises:
        TypeError: inputs or attributions that are not floating tensors.
        ValueError: shapes that do not match (a layer-resolution map must be upsampled
            first), a ``score`` other than the three above (0/1 correctness has no relative
            drop), a target out of range.
        ValueError: also, with ``relative=True``, a clean score ``Y <= 0``.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(64, 3)).eval()
        >>> x = torch.rand(2, 1, 4, 4, 4)
        >>> drop = average_drop(model, x, x)
        >>> drop.shape, bool(((drop >= 0) & (drop <= 1)).all())
        (torch.Size([2]), True)
    """
    check_bool(relative, "relative")
    clean, explained = _confidences(
        forward_func,
        inputs,
        attributions,
        target,
        additional_forward_args,
        score=score,
        normalize=normalize,
        max_examples_per_batch=max_examples_per_batch,
        show_progress=show_progress,
    )
    drop = (clean - explained).clamp(min=0)
    if not relative:
        return drop
    if not bool((clean > 0).all()):
        bad = int((clean <= 0).nonzero()[0, 0])
        raise ValueError(
            f"a relative drop divides by the clean score, but example {bad} scores "
            f"{float(clean[bad]):g} with score={score!r}: use score='probability' or 'sigmoid' "
            f"(positive), or relative=False"
        )
    return drop / clean


def increase_in_confidence(
    forward_func: Callable[..., Any],
    inputs: Tensor,
    attributions: Tensor,
    target: Any = None,
    additional_forward_args: Any = None,
    *,
    score: MetricScore = "probability",
    normalize: bool = True,
    max_examples_per_batch: int | None = DEFAULT_MAX_EXAMPLES_PER_BATCH,
    show_progress: bool = False,
) -> Tensor:
    """Increase in confidence per example: 1 where ``O > Y``, else 0 (higher is better).

    The explanation map keeps the part of the image the attribution points at:
    ``E = s(L) * x`` with ``s`` the per-example min-max normalisation of the attribution
    (summed over channels, broadcast over the input channels; see the ``normalize`` option).
    ``Y`` is the model's score of the target on the image, ``O`` on ``E``.

    The map ``E``, how the paper aggregates the values (a data-set mean in percent) and how
    they compare with pytorch-grad-cam's ``IncreaseInConfidence`` (equal with
    ``normalize=False`` and the same score) are as in :func:`average_drop`.

    References:
        Chattopadhay, Sarkar, Howlader, Balasubramanian. "Grad-CAM++: Generalized
        Gradient-based Visual Explanations for Deep Convolutional Networks". WACV 2018,
        section 5.1. arXiv:1710.11063.

    Args:
        forward_func: the model, called as ``forward_func(inputs, *additional_forward_args)``.
            Its mode is left as it is (call ``model.eval()`` first).
        inputs: ``(N, C, *S)`` with 1 to 3 spatial dims, in the units the model takes (the
            map multiplies them, so 0 should mean "no signal", e.g. intensities scaled to
            ``[0, 1]`` rather than standardised to mean 0). Not modified.
        attributions: ``(N, 1, *S)`` or ``(N, C, *S)`` at input resolution (upsample a
            layer-resolution CAM first).
        target: the class to score, as in Captum; None takes the class predicted on the
            image (the paper).
        additional_forward_args: further model arguments, as in Captum.
        score: ``"probability"`` (softmax of the target; the paper), ``"sigmoid"`` (one label
            of a multi-label head) or ``"logit"``.
        normalize: min-max normalise each map before multiplying (the paper); False uses it
            as it is.
        max_examples_per_batch: inputs per forward pass (None: all at once).
        show_progress: a progress bar over the forward passes.

    Returns:
        ``(N,)`` of 0 and 1 in the inputs' dtype: the paper's % Increase in Confidence is
        ``100 * values.mean()``.

    Raises:
        TypeError: inputs or attributions that are not floating tensors.
        ValueError: shapes that do not match (a layer-resolution map must be upsampled
            first), a ``score`` other than the three above (0/1 correctness has no relative
            drop), a target out of range.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(64, 3)).eval()
        >>> x = torch.rand(2, 1, 4, 4, 4)
        >>> increase_in_confidence(model, x, x).shape
        torch.Size([2])
    """
    clean, explained = _confidences(
        forward_func,
        inputs,
        attributions,
        target,
        additional_forward_args,
        score=score,
        normalize=normalize,
        max_examples_per_batch=max_examples_per_batch,
        show_progress=show_progress,
    )
    return (explained > clean).to(clean.dtype)
