"""Guided Grad-CAM for volumes: Captum's ``GuidedGradCam``, made to work on 5-D inputs."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, cast, final

from captum.attr import GradientAttribution, GuidedBackprop, GuidedGradCam, LayerAttribution
from torch import Tensor, nn

from captum_medcam._core.targets import per_sample_target
from captum_medcam.attr._base import CAMBase, CAMOutput
from captum_medcam.attr._derivatives import check_grad_mode, grad_ready, not_on_path
from captum_medcam.attr._grad_cam import gradcam_weights
from captum_medcam.attr._gradient import gradient_layer_map
from captum_medcam.attr._hooks import checked_forward
from captum_medcam.attr._interop import captum_attribute
from captum_medcam.attr._reshape import ReshapeTransform

__all__ = ["GuidedGradCAM3D"]


@contextmanager
def _captum_checked(
    forward_func: Callable[..., Any],
    layer: nn.Module,
    target: Any,
    n: int,
    attribute_to_layer_input: bool,
) -> Iterator[Callable[..., Any]]:
    """Run Captum's code with the layer, output and target checks of the other methods.

    Every forward pass Captum makes goes through :func:`checked_forward` (the layer is
    reached, called once, returns one tensor; the model returns a tensor; the target fits
    it), and autograd's error for a layer that the target scores do not depend on becomes
    the ``ValueError`` that the gradient CAMs raise.
    """

    def check_target(output: Tensor) -> None:
        per_sample_target(target, n, output)

    with checked_forward(forward_func, layer, attribute_to_layer_input, check_target) as forward:
        try:
            yield forward
        except RuntimeError as error:
            if "appears to not have been used in the graph" not in str(error):
                raise
            raise ValueError(not_on_path(layer, attribute_to_layer_input)) from None


@final
class GuidedGradCAM3D(CAMBase, GradientAttribution):
    r"""Guided Grad-CAM for volumes: guided backprop times the upsampled Grad-CAM.

    ::

        L_guided = GuidedBackprop(x) * Up(ReLU(sum_k w_k A_k))      (N, C, D, H, W)

    The computation is Captum's ``GuidedGradCam`` with trilinear upsampling. Captum's class
    defaults to nearest and, given a mode that does not fit 5-D input (``"bilinear"``),
    warns and returns an empty tensor; here such a mode is a ``ValueError`` before anything
    runs. Guided backprop replaces the gradient of every ``nn.ReLU`` module (not of
    ``F.relu`` calls) for the duration of the call, as in Captum; the model is unchanged
    afterwards. With ``reshape_transform`` the Grad-CAM factor is :class:`GradCAM`'s on the
    reshaped layer (Captum's class has no reshape).

    Args:
        forward_func: the model, a ``torch.nn.Module`` (guided backprop acts on its ReLU
            modules).
        layer: the module whose output (or input) the Grad-CAM factor explains.
        device_ids: as in Captum, for ``DataParallel`` models.
        reshape_transform: None, or a callable turning the layer's output into
            ``(N, C', D', H', W')`` (see :mod:`captum_medcam.reshapes`).

    Raises:
        TypeError: ``forward_func`` is not an ``nn.Module``, and the errors of the other
            CAMs' constructors.

    References:
        Selvaraju et al. "Grad-CAM: Visual Explanations from Deep Networks via
        Gradient-based Localization". ICCV 2017. arXiv:1610.02391.
        Springenberg, Dosovitskiy, Brox, Riedmiller. "Striving for Simplicity: The All
        Convolutional Net". ICLR Workshops 2015. arXiv:1412.6806.

    Example:
        >>> import torch
        >>> from monai.networks.nets import resnet10
        >>> from captum_medcam import GuidedGradCAM3D
        >>> net = resnet10(spatial_dims=3, n_input_channels=1, num_classes=2).eval()
        >>> GuidedGradCAM3D(net, net.layer4).attribute(torch.randn(1, 1, 32, 32, 32), target=1).shape
        torch.Size([1, 1, 32, 32, 32])
    """

    def __init__(
        self,
        forward_func: nn.Module,
        layer: nn.Module,
        device_ids: list[int] | None = None,
        *,
        reshape_transform: ReshapeTransform | None = None,
    ) -> None:
        if not isinstance(forward_func, nn.Module):
            raise TypeError(
                "GuidedGradCAM3D needs the model as a torch.nn.Module (guided backprop acts on "
                f"its ReLU modules), got {type(forward_func).__name__}"
            )
        super().__init__(forward_func, layer, device_ids, reshape_transform=reshape_transform)

    @captum_attribute
    def attribute(
        self,
        inputs: Tensor,
        target: Any = None,
        additional_forward_args: Any = None,
        *,
        interpolate_mode: str = "trilinear",
        attribute_to_layer_input: bool = False,
    ) -> Tensor:
        """Compute Guided Grad-CAM maps for volumes.

        Args:
            inputs: ``(N, C, D, H, W)``, floating point, a tensor or a MONAI ``MetaTensor``.
            target: the class to explain, as in Captum: an int, a tuple, a tensor or list
                with one entry per example, or None when the model returns one score per
                example.
            additional_forward_args: further arguments of the model, as in Captum.
            interpolate_mode: how Grad-CAM is upsampled: ``"trilinear"`` (default),
                ``"nearest"``, ``"nearest-exact"`` or ``"area"``.
            attribute_to_layer_input: use the layer's input instead of its output.

        Returns:
            Maps ``(N, C, D, H, W)``, one per input channel, as guided backprop.

        Raises:
            TypeError: inputs not a floating tensor, a target or flag of the wrong type, a
                model that returns a tuple or a dict.
            ValueError: inputs that are not 5-D or hold NaN/inf, a target that does not fit
                the model's output, a layer that the forward pass does not reach, calls
                twice, that returns a tuple, or that the target scores do not depend on, an
                interpolation mode that does not work on volumes.
            RuntimeError: called under ``torch.inference_mode()``.
        """
        check_grad_mode()
        output = CAMOutput(interpolate_mode=interpolate_mode, spatial_dims=3)
        x, mode = self._check_call(
            inputs, target, output, attribute_to_layer_input=attribute_to_layer_input
        )
        x = grad_ready(x)
        model = cast(nn.Module, self.forward_func)  # checked in __init__
        if self.reshape_transform is not None:
            # Captum's GuidedGradCam, with its Grad-CAM taken on the reshaped layer tensor.
            cam = gradient_layer_map(
                self,
                x,
                target,
                additional_forward_args,
                gradcam_weights,
                relu_attributions=True,
                attribute_to_layer_input=attribute_to_layer_input,
            )
            with warnings.catch_warnings():
                warnings.filterwarnings(
                    "ignore", message="Setting backward hooks on ReLU", category=UserWarning
                )
                guided_backprop = GuidedBackprop(model).attribute(
                    x, target=target, additional_forward_args=additional_forward_args
                )
            cam = LayerAttribution.interpolate(cam, tuple(x.shape[2:]), mode)
            return self._finish((guided_backprop * cam).detach(), x, inputs, output, mode)
        with (
            _captum_checked(model, self.layer, target, x.shape[0], attribute_to_layer_input),
            warnings.catch_warnings(),
        ):
            # Captum announces its temporary ReLU hooks; they are removed in its finally.
            warnings.filterwarnings(
                "ignore", message="Setting backward hooks on ReLU", category=UserWarning
            )
            guided = GuidedGradCam(model, self.layer, self.device_ids)
            result = guided.attribute(
                x,
                target=target,
                additional_forward_args=additional_forward_args,
                interpolate_mode=mode,
                attribute_to_layer_input=attribute_to_layer_input,
            )
        if not isinstance(result, Tensor) or result.shape != x.shape:
            raise ValueError(
                f"Captum's GuidedGradCam gave no map of the input's shape {tuple(x.shape)}: "
                "the layer's output is not a volume (N, channels, D', H', W')"
            )
        return self._finish(result.detach(), x, inputs, output, mode)
