"""XGrad-CAM for 1D, 2D and 3D inputs, and ``XGradCAM3D`` for volumes."""

from __future__ import annotations

from typing import final

import torch
from torch import Tensor

from captum_medcam.attr._base import VOLUME
from captum_medcam.attr._gradient import GradientCAMBase, spatial_sum

__all__ = ["XGradCAM", "XGradCAM3D"]


def xgradcam_weights(acts: Tensor, grads: Tensor, scores: Tensor) -> Tensor:
    r"""XGrad-CAM channel weights ``w_k = sum_p A_k(p) / (sum_q A_k(q)) * g_k(p)``.

    A channel whose activations sum to 0 gets weight 0.

    Returns:
        ``(N, K)``.

    Example:
        >>> import torch
        >>> acts, grads = torch.tensor([[[1.0, 3.0], [0.0, 0.0]]]), torch.ones(1, 2, 2)
        >>> xgradcam_weights(acts, grads, torch.zeros(1))
        tensor([[1., 0.]])
    """
    del scores
    total = spatial_sum(acts)
    nonzero = total != 0
    share = torch.where(nonzero, acts / torch.where(nonzero, total, torch.ones_like(total)), 0.0)
    return (share * grads).flatten(2).sum(-1)


class XGradCAM(GradientCAMBase):
    r"""XGrad-CAM: gradients weighted by each position's share of the channel's activation.

    For activations ``A`` ``(N, K, *S')`` and ``g = dS_c/dA``::

        w_k = sum_p (A_k(p) / sum_q A_k(q)) g_k(p)      (0 where sum_q A_k(q) = 0)
        L   = Up(ReLU(sum_k w_k A_k))

    The weights that satisfy the paper's sensitivity and conservation axioms.

    The map is computed at layer resolution, ReLU is applied there (``relu_attributions=False``
    for the signed map), then it is resized to the input (linear, bilinear or trilinear by
    the number of spatial dims, ``align_corners=False``). It is not normalised. One forward
    pass and the gradient of the target scores with respect to the layer only; works under
    ``torch.no_grad()``. Transformers: ``reshape_transform=`` (see
    :mod:`captum_medcam.reshapes`).

    Args:
        forward_func: the model, or a function of ``(inputs, *additional_forward_args)``.
        layer: the module whose output (or input) the map explains.
        device_ids: as in Captum, for ``DataParallel`` models.
        reshape_transform: None, or a callable turning the layer's output into
            ``(N, C', *S')``.

    References:
        Fu, Hu, Dong, Guo, Gao, Li. "Axiom-based Grad-CAM: Towards Accurate Visualization
        and Explanation of CNNs". BMVC 2020. arXiv:2008.02312.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from captum_medcam import XGradCAM
        >>> model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(),
        ...                       nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)).eval()
        >>> XGradCAM(model, model[1]).attribute(torch.randn(2, 1, 16, 16), target=[0, 2]).shape
        torch.Size([2, 1, 16, 16])
    """

    def _weights(self, acts: Tensor, grads: Tensor, scores: Tensor) -> Tensor:
        return xgradcam_weights(acts, grads, scores)


@final
class XGradCAM3D(XGradCAM):
    r"""XGrad-CAM for volumes: ``(N, C, D, H, W)`` in, ``(N, 1, D, H, W)`` out.

    :class:`XGradCAM` (see there for the formula) with 5-D input required and the map
    always upsampled trilinearly to the input volume (``align_corners=False``);
    ``upsample``, ``interpolate_mode`` and ``align_corners`` are fixed (passing one is a
    ``TypeError``).

    References:
        Fu et al. "Axiom-based Grad-CAM: Towards Accurate Visualization and Explanation of
        CNNs". BMVC 2020. arXiv:2008.02312.

    Example:
        >>> import torch
        >>> from monai.networks.nets import resnet10
        >>> from captum_medcam import XGradCAM3D
        >>> net = resnet10(spatial_dims=3, n_input_channels=1, num_classes=2).eval()
        >>> XGradCAM3D(net, net.layer4).attribute(torch.randn(1, 1, 32, 32, 32), target=1).shape
        torch.Size([1, 1, 32, 32, 32])
    """

    fixed_output = VOLUME
