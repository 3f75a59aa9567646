"""EigenGrad-CAM for 1D, 2D and 3D inputs, and ``EigenGradCAM3D`` for volumes."""

from __future__ import annotations

from typing import Any, final

import torch.nn.functional as F
from captum.attr import GradientAttribution
from torch import Tensor

from captum_medcam._core.checks import check_choice, format_additional_args
from captum_medcam.attr._base import VOLUME, CAMBase
from captum_medcam.attr._eigen_cam import SIGN_RULES, principal_component_map
from captum_medcam.attr._gradient import layer_gradients
from captum_medcam.attr._interop import captum_attribute

__all__ = ["EigenGradCAM", "EigenGradCAM3D"]


class EigenGradCAM(CAMBase, GradientAttribution):
    r"""EigenGrad-CAM: the first principal direction of gradients times activations.

    For each example, with ``A`` ``(K, *S')`` the activations, ``g = dS_c/dA`` the gradient
    of the target's score and ``X`` the ``(|S'|, K)`` matrix of ``g * A`` (element-wise;
    positions by channels) with first right singular vector ``v_1``::

        L = Up(ReLU(X v_1))                  reshaped to (1, *S'); Up: linear / bilinear /
                                             trilinear, align_corners=False

    Eigen-CAM (:class:`EigenCAM`) on HiResCAM's element-wise products instead of the
    activations, so the map depends on the class. The method is pytorch-grad-cam's
    ``EigenGradCAM`` (it has no paper of its own). As in :class:`EigenCAM`, the default
    projects the matrix as it is (Eigen-CAM's equations) and ``center=True`` subtracts each
    channel's mean first, as pytorch-grad-cam does. The sign is fixed so that the map
    agrees with the channel sum of ``g * A``, which is HiResCAM's map (``sign=
    "channel_sum"``), or so that its largest entry is positive (``"largest_entry"``), where
    pytorch-grad-cam keeps LAPACK's sign. The other differences from pytorch-grad-cam are
    those listed in :class:`EigenCAM`.

    One forward pass and the gradient of the target scores with respect to the layer only;
    works under ``torch.no_grad()``.

    Args:
        forward_func: the model, or a function of ``(inputs, *additional_forward_args)``.
        layer: the module whose output (or input) the map explains.
        device_ids: as in Captum, for ``DataParallel`` models.
        reshape_transform: None, or a callable turning the layer's output into
            ``(N, C', *S')`` (applied to the activations and to their gradient).

    References:
        Muhammad, Yeasin. "Eigen-CAM: Class Activation Map using Principal Components".
        IJCNN 2020. arXiv:2008.00299 (the projection); pytorch-grad-cam's ``EigenGradCAM``
        (gradients times activations).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from captum_medcam import EigenGradCAM
        >>> model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(),
        ...                       nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)).eval()
        >>> EigenGradCAM(model, model[1]).attribute(torch.randn(2, 1, 16, 16), target=[0, 2]).shape
        torch.Size([2, 1, 16, 16])
    """

    @captum_attribute
    def attribute(
        self,
        inputs: Tensor,
        target: Any = None,
        additional_forward_args: Any = None,
        *,
        center: bool = False,
        sign: str = "channel_sum",
        relu_attributions: bool = True,
        attribute_to_layer_input: bool = False,
        upsample: bool = True,
        interpolate_mode: str | None = None,
        align_corners: bool = False,
    ) -> Tensor:
        """Compute EigenGrad-CAM maps.

        Args:
            inputs: ``(N, C, *S)`` with 1 to 3 spatial dims (5-D ``(N, C, D, H, W)`` for
                :class:`EigenGradCAM3D`), floating point, a tensor or a MONAI ``MetaTensor``.
            target: the class to explain, as in Captum: an int, a tuple, a tensor or list
                with one entry per example, or None when the model returns one score per
                example. Each example's map uses the gradient of its own target's score.
            additional_forward_args: further arguments of the model, as in Captum.
            center: subtract each channel's mean over the positions before the SVD
                (pytorch-grad-cam); default False (Eigen-CAM's equations).
            sign: how the component's sign is fixed: ``"channel_sum"`` (default; the map
                agrees with HiResCAM's ``sum_k g_k A_k``) or ``"largest_entry"`` (the map's
                largest entry is positive).
            relu_attributions: apply ReLU to the map at layer resolution (default True, as
                pytorch-grad-cam).
            attribute_to_layer_input: use the layer's input instead of its output.
            upsample: return maps at input resolution ``(N, 1, *S)``; False returns them at
                layer resolution ``(N, 1, *S')``. Not taken by :class:`EigenGradCAM3D`.
            interpolate_mode: ``None`` picks linear/bilinear/trilinear by the number of
                spatial dims; ``"nearest"`` and ``"area"`` also work. Not taken by
                :class:`EigenGradCAM3D` (always trilinear).
            align_corners: passed to the linear interpolation. Not taken by
                :class:`EigenGradCAM3D` (always False).

        Returns:
            Maps ``(N, 1, *S)`` (or ``(N, 1, *S')`` with ``upsample=False``) on the inputs'
            device and dtype; a ``MetaTensor`` input gives a ``MetaTensor`` with its
            metadata.

        Raises:
            TypeError: inputs not a floating tensor; a target or an option of the wrong type;
                a model that returns a tuple or a dict; an output keyword passed to
                :class:`EigenGradCAM3D`.
            ValueError: an unknown sign rule; wrong input dims, NaN/inf inputs, a target out
                of range, a layer not reached by the forward pass, called twice in it, with
                a tuple output or not on the path to the output, an interpolation mode that
                does not fit the number of spatial dims.
            RuntimeError: called under ``torch.inference_mode()``.
        """
        check_choice(sign, "sign", SIGN_RULES)
        output = self._output(upsample, interpolate_mode, align_corners)
        x, mode = self._check_call(
            inputs,
            target,
            output,
            center=center,
            relu_attributions=relu_attributions,
            attribute_to_layer_input=attribute_to_layer_input,
        )
        _, acts, grads = layer_gradients(
            self.forward_func,
            self.layer,
            x,
            target,
            format_additional_args(additional_forward_args),
            attribute_to_layer_input=attribute_to_layer_input,
            device_ids=self.device_ids,
            reshape_transform=self.reshape_transform,
        )
        self._check_activations(acts, x, "EigenGrad-CAM")
        cam = principal_component_map(grads * acts, center=center, sign=sign)
        if relu_attributions:
            cam = F.relu(cam)
        return self._finish(cam, x, inputs, output, mode)


@final
class EigenGradCAM3D(EigenGradCAM):
    r"""EigenGrad-CAM for volumes: ``(N, C, D, H, W)`` in, ``(N, 1, D, H, W)`` out.

    :class:`EigenGradCAM` (see there for the formula and the sign rule) with 5-D input
    required and the map always upsampled trilinearly to the input volume
    (``align_corners=False``); ``upsample``, ``interpolate_mode`` and ``align_corners`` are
    fixed (passing one is a ``TypeError``).

    References:
        Muhammad, Yeasin. "Eigen-CAM: Class Activation Map using Principal Components".
        IJCNN 2020. arXiv:2008.00299; pytorch-grad-cam's ``EigenGradCAM``.

    Example:
        >>> import torch
        >>> from monai.networks.nets import resnet10
        >>> from captum_medcam import EigenGradCAM3D
        >>> net = resnet10(spatial_dims=3, n_input_channels=1, num_classes=2).eval()
        >>> EigenGradCAM3D(net, net.layer4).attribute(torch.randn(2, 1, 32, 32, 32), target=1).shape
        torch.Size([2, 1, 32, 32, 32])
    """

    fixed_output = VOLUME
