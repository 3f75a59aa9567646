"""HiResCAM for 1D, 2D and 3D inputs, and ``HiResCAM3D`` for volumes."""

from __future__ import annotations

from typing import final

from torch import Tensor

from captum_medcam.attr._base import VOLUME
from captum_medcam.attr._gradient import GradientCAMBase

__all__ = ["HiResCAM", "HiResCAM3D"]


def hirescam_weights(acts: Tensor, grads: Tensor, scores: Tensor) -> Tensor:
    r"""HiResCAM element-wise weights ``g_k(p)`` (no averaging).

    Returns:
        ``(N, K, *S')``, the gradients themselves.
    """
    del acts, scores
    return grads


class HiResCAM(GradientCAMBase):
    r"""HiResCAM: activations times their gradients, element-wise, summed over channels.

    For activations ``A`` ``(N, K, *S')`` and ``g = dS_c/dA``::

        L = Up(ReLU(sum_k g_k * A_k))             (element-wise product)

    Grad-CAM averages ``g_k`` over positions first; HiResCAM does not, so for a model whose
    score is linear in ``A`` after the layer, the map sums exactly to the score's part that
    passes through the layer. The paper's map is signed: ``relu_attributions=False`` keeps
    the sign; the default applies ReLU like the other methods here and pytorch-grad-cam.

    The map is computed at layer resolution, then resized to the input (linear, bilinear or
    trilinear by the number of spatial dims, ``align_corners=False``). It is not normalised.
    One forward pass and the gradient of the target scores with respect to the layer only;
    works under ``torch.no_grad()``. Transformers: ``reshape_transform=`` (see
    :mod:`captum_medcam.reshapes`).

    Args:
        forward_func: the model, or a function of ``(inputs, *additional_forward_args)``.
        layer: the module whose output (or input) the map explains.
        device_ids: as in Captum, for ``DataParallel`` models.
        reshape_transform: None, or a callable turning the layer's output into
            ``(N, C', *S')``.

    References:
        Draelos, Carin. "Use HiResCAM instead of Grad-CAM for faithful explanations of
        convolutional neural networks". 2020. arXiv:2011.08891.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from captum_medcam import HiResCAM
        >>> model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(),
        ...                       nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)).eval()
        >>> HiResCAM(model, model[1]).attribute(torch.randn(2, 1, 16, 16), target=[0, 2]).shape
        torch.Size([2, 1, 16, 16])
    """

    def _weights(self, acts: Tensor, grads: Tensor, scores: Tensor) -> Tensor:
        return hirescam_weights(acts, grads, scores)


@final
class HiResCAM3D(HiResCAM):
    r"""HiResCAM for volumes: ``(N, C, D, H, W)`` in, ``(N, 1, D, H, W)`` out.

    :class:`HiResCAM` (see there for the formula) with 5-D input required and the map
    always upsampled trilinearly to the input volume (``align_corners=False``);
    ``upsample``, ``interpolate_mode`` and ``align_corners`` are fixed (passing one is a
    ``TypeError``).

    References:
        Draelos, Carin. "Use HiResCAM instead of Grad-CAM for faithful explanations of
        convolutional neural networks". 2020. arXiv:2011.08891.

    Example:
        >>> import torch
        >>> from monai.networks.nets import resnet10
        >>> from captum_medcam import HiResCAM3D
        >>> net = resnet10(spatial_dims=3, n_input_channels=1, num_classes=2).eval()
        >>> HiResCAM3D(net, net.layer4).attribute(torch.randn(1, 1, 32, 32, 32), target=1).shape
        torch.Size([1, 1, 32, 32, 32])
    """

    fixed_output = VOLUME
