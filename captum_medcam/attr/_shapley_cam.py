"""Shapley-CAM: channel weights from the gradient and the Hessian-vector product.

Cai. "CAMs as Shapley Value-based Explainers". The Visual Computer 2025, arXiv:2501.06261;
as pytorch-grad-cam 1.5.7's ``ShapleyCAM``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch
from torch import Tensor

from captum_medcam._core.targets import class_scores, select_target

__all__: list[str] = []

#: What Shapley-CAM differentiates: the paper's ReST utility (the logit plus the log
#: softmax probability of the target), the logit, or the softmax probability.
ShapleyScore = Literal["rest", "logit", "probability"]
SHAPLEY_SCORES: tuple[str, ...] = ("rest", "logit", "probability")


def shapley_cam_weights(acts: Tensor, grads: Tensor, hvp: Tensor) -> Tensor:
    r"""Shapley-CAM channel weights ``w_k = mean_p (g_k(p) - 1/2 (H A)_k(p))``.

    The second-order Taylor expansion of the utility around the activations gives each
    channel's Shapley value as ``sum_p A_k(p) (g_k(p) - 1/2 (H A)_k(p))``; the CAM weight is
    the mean over positions of ``g - H A / 2``, as in the paper's code and
    pytorch-grad-cam.

    Args:
        acts: ``(N, K, *S')``, unused (the weights are applied to them by the pipeline).
        grads: ``(N, K, *S')``, ``g = dU/dA``.
        hvp: ``(N, K, *S')``, ``H A`` with ``H = d^2 U / dA^2``.

    Returns:
        ``(N, K)``.
    """
    del acts
    return (grads - 0.5 * hvp).flatten(2).mean(-1)


def rest_scores(output: Tensor, targets: Any) -> Tensor:
    r"""The ReST utility ``U = z_c + log softmax(z)_c = 2 z_c - logsumexp(z)``, ``(N,)``.

    pytorch-grad-cam's ``ClassifierOutputReST``: the logit minus the cross-entropy of the
    target class.

    Args:
        output: ``(N, K)`` logits with ``K >= 2``.
        targets: one class index per example (a long tensor ``(N,)``).

    Raises:
        ValueError: an output that is not ``(N, K)`` with ``K >= 2``.
    """
    if output.dim() != 2 or output.shape[1] < 2:
        raise ValueError(
            f'score="rest" needs class logits (N, K) with K >= 2, got output of shape '
            f'{tuple(output.shape)}; use score="logit" for a model with one output'
        )
    rows = targets_index(output)
    logit = select_target(output, targets, rows)
    return 2 * logit - output.logsumexp(1)


def targets_index(output: Tensor) -> Tensor:
    """``arange(N)`` on the output's device, the rows that :func:`select_target` reads."""
    return torch.arange(output.shape[0], device=output.device)


def shapley_objective(score: str) -> Callable[[Tensor, Any], Tensor]:
    """The objective ``(output, per-sample targets) -> (N,)`` for a :data:`ShapleyScore`."""
    if score == "rest":
        return rest_scores

    def objective(output: Tensor, targets: Any) -> Tensor:
        return class_scores(output, targets, targets_index(output), score)  # type: ignore[arg-type]

    return objective
