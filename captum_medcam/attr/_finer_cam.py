"""Finer-CAM: explain the target's score relative to the classes most similar to it.

Zhang, Gu, Chowdhury, Mai, Carlyn, Berger-Wolf, Su, Chao. "Finer-CAM: Spotting the
Difference Reveals Finer Details for Visual Explanation". CVPR 2025, arXiv:2501.11309; as
pytorch-grad-cam's ``FinerCAM`` (the authors' code) and torchcam 0.5's ``FinerCAM``.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

__all__: list[str] = []

#: How the reference classes are combined: weighted by their softmax probabilities
#: (pytorch-grad-cam and the authors' code) or uniformly (torchcam).
ReferenceWeights = Literal["probability", "uniform"]
REFERENCE_WEIGHTS: tuple[str, ...] = ("probability", "uniform")


def finer_references(output: Tensor, targets: Tensor, num_references: int) -> Tensor:
    """The ``num_references`` classes whose logits are closest to the target's, per example.

    Closest means the smallest ``|z_k - z_c|``; the target itself is never a reference, and
    ties are broken by the lower class index. pytorch-grad-cam sorts all classes (the target,
    at distance 0, first) and takes ranks 1, 2, 3; torchcam takes the ``topk`` smallest
    distances with the target excluded: the same classes when no two logits tie.

    Args:
        output: ``(N, K)`` logits, ``K >= 2``.
        targets: ``(N,)`` class indices.
        num_references: at most ``K - 1`` references are taken.

    Returns:
        ``(N, T)`` long, ``T = min(num_references, K - 1)``, closest first.
    """
    z = output.detach()
    rows = torch.arange(z.shape[0], device=z.device)
    distance = (z - z[rows, targets].unsqueeze(1)).abs()
    distance[rows, targets] = torch.inf
    count = min(num_references, z.shape[1] - 1)
    return distance.argsort(dim=1, stable=True)[:, :count]


def finer_scores(
    output: Tensor,
    targets: Tensor,
    references: Tensor,
    alpha: float = 1.0,
    reference_weights: str = "probability",
) -> Tensor:
    r"""The Finer-CAM objective per example, ``(N,)``.

    With logits ``z``, target ``c`` and references ``d in R``::

        "probability":  U = sum_{d in R} p_d (z_c - alpha z_d) / sum_{d in R} p_d,
                        p = softmax(z)       (pytorch-grad-cam's FinerWeightedTarget)
        "uniform":      U = z_c - alpha * mean_{d in R} z_d          (torchcam, alpha = gamma)

    ``p_d / sum_R p_d`` is computed as the softmax of the references' logits alone (the same
    number, without pytorch-grad-cam's ``+ 1e-9`` in the denominator and without underflow);
    like the peers' code, the weights stay in the graph, so the gradient includes their
    derivative.

    Args:
        output: ``(N, K)`` logits.
        targets: ``(N,)`` class indices.
        references: ``(N, T)`` class indices (see :func:`finer_references`).
        alpha: the comparison strength.
        reference_weights: ``"probability"`` or ``"uniform"``.
    """
    target_logit = output.gather(1, targets.view(-1, 1))
    reference_logits = output.gather(1, references)
    contrast = target_logit - alpha * reference_logits
    if reference_weights == "uniform":
        return contrast.mean(1)
    return (reference_logits.softmax(1) * contrast).sum(1)
