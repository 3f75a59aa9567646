"""LayerCAM for 1D, 2D and 3D inputs, and ``LayerCAM3D`` for volumes."""

from __future__ import annotations

from typing import final

import torch.nn.functional as F
from torch import Tensor

from captum_medcam.attr._base import VOLUME
from captum_medcam.attr._gradient import GradientCAMBase

__all__ = ["LayerCAM", "LayerCAM3D"]


def layercam_weights(acts: Tensor, grads: Tensor, scores: Tensor) -> Tensor:
    r"""LayerCAM element-wise weights ``ReLU(g_k(p))``.

    Returns:
        ``(N, K, *S')``.

    Example:
        >>> import torch
        >>> layercam_weights(torch.ones(1, 1, 2), torch.tensor([[[1.5, -1.0]]]), torch.zeros(1))
        tensor([[[1.5000, 0.0000]]])
    """
    del acts, scores
    return F.relu(grads)


class LayerCAM(GradientCAMBase):
    r"""LayerCAM: activations weighted element-wise by their positive gradients.

    For activations ``A`` ``(N, K, *S')`` and ``g = dS_c/dA``::

        L = Up(ReLU(sum_k ReLU(g_k) * A_k))       (element-wise product)

    Unlike Grad-CAM, the weights are not averaged over positions, which keeps the maps of
    shallow layers sharp; the paper fuses maps of several layers, which is a sum of maps
    from several ``LayerCAM`` objects resized to the input.

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
        Jiang, Zhang, Hou, Cheng, Wei. "LayerCAM: Exploring Hierarchical Class Activation
        Maps for Localization". IEEE Transactions on Image Processing 30, 5875-5888, 2021.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from captum_medcam import LayerCAM
        >>> model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(),
        ...                       nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)).eval()
        >>> LayerCAM(model, model[1]).attribute(torch.randn(2, 1, 16, 16), target=[0, 2]).shape
        torch.Size([2, 1, 16, 16])
    """

    def _weights(self, acts: Tensor, grads: Tensor, scores: Tensor) -> Tensor:
        return layercam_weights(acts, grads, scores)


@final
class LayerCAM3D(LayerCAM):
    r"""LayerCAM for volumes: ``(N, C, D, H, W)`` in, ``(N, 1, D, H, W)`` out.

    :class:`LayerCAM` (see there for the formula) with 5-D input required and the map
    always upsampled trilinearly to the input volume (``align_corners=False``);
    ``upsample``, ``interpolate_mode`` and ``align_corners`` are fixed (passing one is a
    ``TypeError``).

    References:
        Jiang et al. "LayerCAM: Exploring Hierarchical Class Activation Maps for
        Localization". IEEE TIP 2021.

    Example:
        >>> import torch
        >>> from monai.networks.nets import resnet10
        >>> from captum_medcam import LayerCAM3D
        >>> net = resnet10(spatial_dims=3, n_input_channels=1, num_classes=2).eval()
        >>> LayerCAM3D(net, net.layer3).attribute(torch.randn(1, 1, 32, 32, 32), target=1).shape
        torch.Size([1, 1, 32, 32, 32])
    """

    fixed_output = VOLUME
