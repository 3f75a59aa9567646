"""Grad-CAM element-wise for 1D, 2D and 3D inputs, and ``GradCAMElementWise3D`` for volumes."""

from __future__ import annotations

from typing import final

from torch import Tensor

from captum_medcam.attr._base import VOLUME
from captum_medcam.attr._gradient import GradientCAMBase

__all__ = ["GradCAMElementWise", "GradCAMElementWise3D"]


def gradcam_elementwise_weights(acts: Tensor, grads: Tensor, scores: Tensor) -> Tensor:
    r"""Element-wise weights ``w_k(p) = g_k(p) * [g_k(p) A_k(p) > 0]``.

    With these weights the weighted sum is ``sum_k w_k(p) A_k(p) = sum_k ReLU(g_k(p) A_k(p))``
    exactly (the product ``g A`` is kept where it is positive and is 0 elsewhere), so the
    shared pipeline (weighted sum, ReLU, resize) gives the element-wise map.

    Args:
        acts: ``(N, K, *S')``.
        grads: ``(N, K, *S')``, the gradient of the target score.
        scores: ``(N,)`` (unused).

    Returns:
        ``(N, K, *S')``.

    Example:
        >>> import torch
        >>> acts, grads = torch.tensor([[[1.0, -2.0, 3.0]]]), torch.tensor([[[2.0, 1.0, -1.0]]])
        >>> gradcam_elementwise_weights(acts, grads, torch.zeros(1))  # g A = 2, -2, -3
        tensor([[[2., 0., -0.]]])
    """
    del scores
    return grads * ((grads * acts) > 0).to(grads.dtype)


class GradCAMElementWise(GradientCAMBase):
    r"""Grad-CAM element-wise: the positive part of gradient times activation, summed.

    For activations ``A`` ``(N, K, *S')`` and ``g = dS_c/dA``::

        L = Up(sum_k ReLU(g_k(p) A_k(p)))

    pytorch-grad-cam's ``GradCAMElementWise``: the ReLU is taken per channel and position
    before the channel sum (Grad-CAM averages the gradient first, HiResCAM sums the signed
    products), so a channel can only add evidence for the class. The map is non-negative;
    ``relu_attributions`` has nothing left to clip. Differences from pytorch-grad-cam: it
    differentiates the whole network, works on NumPy arrays, min-max normalises the map per
    example and resizes it with OpenCV (2D) or a spline zoom (3D); here the map is not
    normalised and is resized linearly (bilinear / trilinear, ``align_corners=False``).

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
        Gildenblat and contributors. "PyTorch library for CAM methods" (pytorch-grad-cam),
        ``GradCAMElementWise``. GitHub, 2021. https://github.com/jacobgil/pytorch-grad-cam

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from captum_medcam import GradCAMElementWise
        >>> model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(),
        ...                       nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)).eval()
        >>> maps = GradCAMElementWise(model, model[1]).attribute(torch.randn(2, 1, 16, 16), target=[0, 2])
        >>> maps.shape, bool((maps >= 0).all())
        (torch.Size([2, 1, 16, 16]), True)
    """

    def _weights(self, acts: Tensor, grads: Tensor, scores: Tensor) -> Tensor:
        return gradcam_elementwise_weights(acts, grads, scores)


@final
class GradCAMElementWise3D(GradCAMElementWise):
    r"""Grad-CAM element-wise for volumes: ``(N, C, D, H, W)`` in, ``(N, 1, D, H, W)`` out.

    :class:`GradCAMElementWise` (see there for the formula) with 5-D input required and the
    map always upsampled trilinearly to the input volume (``align_corners=False``);
    ``upsample``, ``interpolate_mode`` and ``align_corners`` are fixed (passing one is a
    ``TypeError``).

    References:
        pytorch-grad-cam's ``GradCAMElementWise``. https://github.com/jacobgil/pytorch-grad-cam

    Example:
        >>> import torch
        >>> from monai.networks.nets import resnet10
        >>> from captum_medcam import GradCAMElementWise3D
        >>> net = resnet10(spatial_dims=3, n_input_channels=1, num_classes=2).eval()
        >>> cam = GradCAMElementWise3D(net, net.layer4)
        >>> cam.attribute(torch.randn(1, 1, 32, 32, 32), target=1).shape
        torch.Size([1, 1, 32, 32, 32])
    """

    fixed_output = VOLUME
