"""The stages of a class activation map, each a small function without hooks.

A CAM is ``activations -> channel weights -> weighted sum -> (ReLU) -> (resize)``. The
methods compute the weights; the weighted sum is here and the resizing in
:mod:`captum_medcam._core.spatial`, each written once for 1, 2 or 3 spatial dims.
"""

from __future__ import annotations

from torch import Tensor


def weighted_sum(weights: Tensor, activations: Tensor) -> Tensor:
    """``sum_k w[n, k] * A[n, k]``.

    Args:
        weights: ``(N, K)`` channel weights, or ``(N, K, *S')`` for element-wise weights
            (HiResCAM, LayerCAM).
        activations: ``(N, K, *S')``.

    Returns:
        ``(N, 1, *S')``.
    """
    if weights.dim() == 2:
        weights = weights.view(*weights.shape, *([1] * (activations.dim() - 2)))
    return (weights * activations).sum(1, keepdim=True)
