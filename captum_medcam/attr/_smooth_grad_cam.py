"""Smooth Grad-CAM++: Grad-CAM++ with its derivatives averaged over noisy copies of the input.

Omeiza, Speakman, Cintas, Weldemariam. "Smooth Grad-CAM++: An Enhanced Inference Level
Visualization Technique for Deep Convolutional Neural Network Models". IntelliSys 2019,
arXiv:1908.01224.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

__all__: list[str] = []


def smooth_gradcam_plusplus_weights(acts: Tensor, d1: Tensor, d2: Tensor, d3: Tensor) -> Tensor:
    r"""Smooth Grad-CAM++ channel weights from averaged derivatives.

    With ``D_p`` the ``p``-th derivative of ``Y_c`` with respect to the activations,
    averaged over the noisy copies (``D_p = mean_m exp(S_m) g_m^p`` for the paper's
    ``Y_c = exp(S_c)``, or ``mean_m g_m^p`` without the exponential)::

        alpha_k(p) = D_2,k(p) / (2 D_2,k(p) + sum_q A_k(q) D_3,k(p))   (0 where the
                                                                        denominator is 0)
        w_k        = sum_p alpha_k(p) ReLU(D_1,k(p))

    The averages are taken before ``alpha`` is formed; a mean of Grad-CAM++ maps over the
    same noisy copies (Captum's ``NoiseTunnel`` around :class:`GradCAMPlusPlus`) is a
    different map. With one copy and no noise this is Grad-CAM++'s closed form.

    Args:
        acts: ``(N, K, *S')``, the activations of the clean input.
        d1, d2, d3: ``(N, K, *S')``, the averaged first, second and third derivatives.

    Returns:
        ``(N, K)``.
    """
    total = acts.flatten(2).sum(-1).view(*acts.shape[:2], *([1] * (acts.dim() - 2)))
    denom = 2 * d2 + total * d3
    nonzero = denom != 0
    alpha = d2.where(nonzero, 0.0) / denom.where(nonzero, 1.0)
    return (alpha * F.relu(d1)).flatten(2).sum(-1)
