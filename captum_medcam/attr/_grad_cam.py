"""Grad-CAM for 1D, 2D and 3D inputs, and ``GradCAM3D`` for volumes."""

from __future__ import annotations

from typing import final

from torch import Tensor

from captum_medcam.attr._base import VOLUME
from captum_medcam.attr._gradient import GradientCAMBase

__all__ = ["GradCAM", "GradCAM3D"]


def gradcam_weights(acts: Tensor, grads: Tensor, scores: Tensor) -> Tensor:
    r"""Grad-CAM channel weights ``w_k = mean_p g_k(p)``, as Captum's ``LayerGradCam``.

    Args:
        acts: ``(N, K, *S')`` (unused).
        grads: ``(N, K, *S')``, the gradient of the target score.
        scores: ``(N,)`` (unused).

    Returns:
        ``(N, K)``.

    Example:
        >>> import torch
        >>> gradcam_weights(torch.ones(1, 2, 2), torch.tensor([[[1.0, 3.0], [0.0, -2.0]]]), torch.zeros(1))
        tensor([[ 2., -1.]])
    """
    del acts, scores
    return grads.flatten(2).mean(-1)


class GradCAM(GradientCAMBase):
    r"""Grad-CAM: channel weights from the mean gradient of the target score.

    For activations ``A`` ``(N, K, *S')`` and ``g = dS_c/dA``::

        w_k = mean_p g_k(p)
        L   = Up(ReLU(sum_k w_k A_k))     Up: linear / bilinear / trilinear, align_corners=False

    At layer resolution (``upsample=False``) the map is Captum's ``LayerGradCam``, bit for bit
    (the tests compare with ``torch.equal``), with ``relu_attributions=True`` by default as in
    the paper (Captum's default is False). What this class adds to Captum's: the map at input
    resolution by default (Captum's is at layer resolution, and its default interpolation is
    nearest, which does not fit a volume), a ``MetaTensor`` input gives a ``MetaTensor``
    output with its metadata, targets and layers are checked with clear errors, it works
    under ``torch.no_grad()`` and with frozen parameters, and the gradient stops at the layer.
    The map is not normalised (normalising is a display step).

    Transformers: pass ``reshape_transform=`` to the constructor, a callable that turns the
    layer's output (tokens ``(N, T, E)``, channel-last Swin maps) into ``(N, C, *grid)``;
    ready-made ones for torchvision's and MONAI's ViTs, UNETR and SwinUNETR are in
    :mod:`captum_medcam.reshapes`. The map is then Captum's formula on the reshaped
    activations and gradients (Captum's class has no reshape).

    Args:
        forward_func: the model, or a function of ``(inputs, *additional_forward_args)``.
        layer: the module whose output (or input) the map explains.
        device_ids: as in Captum, for ``DataParallel`` models.
        reshape_transform: None, or a callable turning the layer's output into
            ``(N, C', *S')``.

    References:
        Selvaraju, Cogswell, Das, Vedantam, Parikh, Batra. "Grad-CAM: Visual Explanations
        from Deep Networks via Gradient-based Localization". ICCV 2017. arXiv:1610.02391.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from captum.attr import LayerGradCam
        >>> from captum_medcam import GradCAM
        >>> model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(),
        ...                       nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)).eval()
        >>> x = torch.randn(2, 1, 16, 16)
        >>> GradCAM(model, model[1]).attribute(x, target=[0, 2]).shape
        torch.Size([2, 1, 16, 16])
        >>> low = GradCAM(model, model[1]).attribute(x, target=[0, 2], upsample=False)
        >>> torch.equal(low, LayerGradCam(model, model[1]).attribute(x, [0, 2], relu_attributions=True))
        True
    """

    def _weights(self, acts: Tensor, grads: Tensor, scores: Tensor) -> Tensor:
        return gradcam_weights(acts, grads, scores)


@final
class GradCAM3D(GradCAM):
    r"""Grad-CAM for volumes: Captum's ``LayerGradCam``, upsampled trilinearly to the input.

    :class:`GradCAM` (see there for the formula) with the contract a volume pipeline needs:
    ``(N, C, D, H, W)`` in, ``(N, 1, D, H, W)`` out, upsampled trilinearly with
    ``align_corners=False``; the map equals Captum's
    ``LayerAttribution.interpolate(LayerGradCam(...).attribute(...), size, "trilinear")`` bit
    for bit. ``upsample``, ``interpolate_mode`` and ``align_corners`` are fixed (passing one
    is a ``TypeError``); use :class:`GradCAM` for maps at layer resolution.

    References:
        Selvaraju et al. "Grad-CAM: Visual Explanations from Deep Networks via
        Gradient-based Localization". ICCV 2017. arXiv:1610.02391.

    Example:
        >>> import torch
        >>> from monai.networks.nets import resnet10
        >>> from captum_medcam import GradCAM3D
        >>> net = resnet10(spatial_dims=3, n_input_channels=1, num_classes=2).eval()
        >>> GradCAM3D(net, net.layer4).attribute(torch.randn(2, 1, 32, 32, 32), target=[0, 1]).shape
        torch.Size([2, 1, 32, 32, 32])
    """

    fixed_output = VOLUME
