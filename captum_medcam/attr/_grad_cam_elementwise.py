"""Grad-CAM element-wise: the positive part of gradient times activation, summed over channels.

pytorch-grad-cam's ``GradCAMElementWise``: ``L = sum_k ReLU(g_k(p) A_k(p))``, with the ReLU
taken per channel and position before the channel sum (Grad-CAM takes it after).
"""

from __future__ import annotations

from torch import Tensor

__all__: list[str] = []


def gradcam_elementwise_weights(acts: Tensor, grads: Tensor, scores: Tensor) -> Tensor:
    r"""Element-wise weights ``w_k(p) = g_k(p) * [g_k(p) A_k(p) > 0]``.

    With these weights the weighted sum is ``sum_k w_k(p) A_k(p) = sum_k ReLU(g_k(p) A_k(p))``
    exactly (the product ``g A`` is kept where it is positive and is 0 elsewhere), so the
    shared pipeline (weighted sum, ReLU, resize) gives the element-wise map.

    Args:
        acts: ``(N, K, *S')``.
        grads: ``(N, K, *S')``, the gradient of the target score.
        scores: ``(N,)``, unused.

    Returns:
        ``(N, K, *S')``.
    """
    del scores
    return grads * ((grads * acts) > 0).to(grads.dtype)
