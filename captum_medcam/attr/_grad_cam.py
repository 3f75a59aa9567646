"""The Grad-CAM family for 1D, 2D and 3D inputs, with 3D entry points for volumes.

``GradCAM3D`` and ``GuidedGradCAM3D`` delegate to Captum's ``LayerGradCam`` and
``GuidedGradCam`` and add what volumes need (trilinear upsampling to the input, clear
errors, MetaTensor metadata). Grad-CAM++, LayerCAM, HiResCAM and XGrad-CAM share one
pipeline: one forward that captures the layer, the gradient of the target scores with
respect to the layer only (never a full backward pass), a weight function, the weighted
sum, ReLU and the resize to the input. A new gradient CAM is a weight function.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, cast, final

import torch
import torch.nn.functional as F
from captum.attr import (
    GradientAttribution,
    GuidedBackprop,
    GuidedGradCam,
    LayerAttribution,
    LayerGradCam,
)
from torch import Tensor, nn

from captum_medcam._core.checks import (
    check_flags,
    check_forward_and_layer,
    check_inputs,
    check_target_type,
    format_additional_args,
    warn_if_training,
)
from captum_medcam._core.meta import unwrap_meta, wrap_meta
from captum_medcam._core.spatial import interpolation_mode, resize
from captum_medcam._core.targets import per_sample_target, select_target
from captum_medcam.attr._cam import weighted_sum
from captum_medcam.attr._hooks import checked_forward, forward_with_capture
from captum_medcam.attr._interop import captum_attribute
from captum_medcam.attr._reshape import ReshapeTransform, apply_reshape, check_reshape_transform

__all__ = [
    "GradCAM3D",
    "GradCAMPlusPlus",
    "GradCAMPlusPlus3D",
    "GuidedGradCAM3D",
    "HiResCAM",
    "HiResCAM3D",
    "LayerCAM",
    "LayerCAM3D",
    "XGradCAM",
    "XGradCAM3D",
]

#: A weight function: ``(activations (N, K, *S'), gradients (N, K, *S'), scores (N,))`` to
#: channel weights ``(N, K)`` or element-wise weights ``(N, K, *S')``.
WeightFn = Callable[[Tensor, Tensor, Tensor], Tensor]


# --------------------------------------------------------------------------------------
# Gradient to the layer only
# --------------------------------------------------------------------------------------


def _check_grad_mode() -> None:
    if torch.is_inference_mode_enabled():
        raise RuntimeError(
            "gradient CAMs need autograd, which torch.inference_mode() switches off for good; "
            "call the attribution outside inference_mode (torch.no_grad() is fine: gradients "
            "are turned on locally, as in Captum)"
        )


def _grad_ready(x: Tensor) -> Tensor:
    """A copy of ``x`` that requires grad and shares its storage; ``x`` is left as it was.

    The copy makes the layer's activations part of the autograd graph also when every
    parameter is frozen. Only the gradient to the layer is computed, so nothing upstream
    of the layer is differentiated. Inference tensors (made under ``inference_mode``) are
    cloned first, as autograd cannot record them.
    """
    x = x.detach()
    if x.is_inference():
        x = x.clone()
    return x.requires_grad_(True)


def _not_on_path(layer: nn.Module, attribute_to_layer_input: bool) -> str:
    return (
        f"the target scores do not depend on the {'input' if attribute_to_layer_input else 'output'} "
        f"of layer {type(layer).__name__} (a DataParallel model split over several devices "
        "is not supported by the gradient CAMs); choose a layer on the path to the output"
    )


def layer_gradients(
    forward_func: Callable[..., Any],
    layer: nn.Module,
    inputs: Tensor,
    target: Any,
    args: tuple[Any, ...] = (),
    *,
    attribute_to_layer_input: bool = False,
    device_ids: list[int] | None = None,
    reshape_transform: ReshapeTransform | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """One forward pass and the gradient of the target scores with respect to the layer.

    ``torch.autograd.grad`` of ``sum_n f_{c_n}(x_n)`` with respect to the captured
    activations: the backward stops at the layer, and each example's gradient is that of
    its own score (examples do not interact in an eval-mode model). Gradients are turned on
    locally, so this works under ``torch.no_grad()``.

    Args:
        forward_func: the model or a function of ``(inputs, *args)``.
        layer: the module whose output (or input) is differentiated.
        inputs: ``(N, C, *S)``.
        target: a Captum target (see :func:`per_sample_target`).
        args: additional forward arguments.
        attribute_to_layer_input: use the layer's input instead of its output.
        device_ids: as in Captum, for ``DataParallel`` models.
        reshape_transform: None, or a callable applied to the activations and to their
            gradient (as in pytorch-grad-cam) to give ``(N, K, *S')``; for a reshape that
            rearranges or selects elements, the reshaped gradient is the gradient with
            respect to the reshaped activations.

    Returns:
        ``(scores, activations, gradients)``, detached: scores ``(N,)`` and activations and
        gradients ``(N, K, *S')`` in the dtype of ``inputs``.

    Raises:
        RuntimeError: called under ``torch.inference_mode()``.
        ValueError: a target that does not fit the output; a layer whose activations do
            not influence the target scores.
    """
    _check_grad_mode()
    n = inputs.shape[0]
    with torch.enable_grad():
        output, acts = forward_with_capture(
            forward_func,
            layer,
            _grad_ready(inputs),
            args,
            attribute_to_layer_input=attribute_to_layer_input,
            device_ids=device_ids,
        )
        targets = per_sample_target(target, n, output)
        scores = select_target(output, targets, torch.arange(n, device=output.device))
        grads = None
        if acts.requires_grad:
            (grads,) = torch.autograd.grad(scores.sum(), acts, allow_unused=True)
    if grads is None:
        raise ValueError(_not_on_path(layer, attribute_to_layer_input))
    dtype = inputs.dtype
    acts = apply_reshape(reshape_transform, acts.detach(), n)
    grads = apply_reshape(reshape_transform, grads, n)
    return scores.detach().to(dtype), acts.to(dtype), grads.to(dtype)


# --------------------------------------------------------------------------------------
# Weight functions: one per method, no hooks
# --------------------------------------------------------------------------------------


def _spatial_sum(t: Tensor) -> Tensor:
    """``(N, K, *S')`` -> ``(N, K, 1, ..., 1)``: the sum over positions, broadcastable."""
    return t.flatten(2).sum(-1).view(*t.shape[:2], *([1] * (t.dim() - 2)))


def gradcam_plusplus_weights(
    acts: Tensor, grads: Tensor, scores: Tensor, exp_score: bool = True
) -> Tensor:
    r"""Grad-CAM++ channel weights, the paper's closed form for ``Y_c = exp(S_c)``.

    With ``g = dS_c/dA`` and a piecewise linear network, the derivatives of ``exp(S_c)``
    are ``exp(S_c) g^n``, and the ``exp(S_c)`` factors of eq. 19 cancel::

        alpha_k(p) = g_k(p)^2 / (2 g_k(p)^2 + sum_q A_k(q) g_k(p)^3)     (0 where the
                                                                           denominator is 0)
        w_k        = exp(S_c) * sum_p alpha_k(p) ReLU(g_k(p))

    Args:
        acts: ``(N, K, *S')``.
        grads: ``(N, K, *S')``, the gradient of the score ``S_c`` (not of ``exp(S_c)``).
        scores: ``(N,)``, the scores ``S_c``.
        exp_score: keep the factor ``exp(S_c) = dY_c/dS_c`` of the paper's weights. False
            drops this positive per-example factor, as pytorch-grad-cam does; the maps then
            differ only by that factor.

    Returns:
        ``(N, K)``.

    Raises:
        ValueError: ``exp(S_c)`` overflows or underflows to 0 in the dtype, which would
            give an infinite or an all-zero map (use ``exp_score=False``).
    """
    g2 = grads.square()
    denom = 2 * g2 + _spatial_sum(acts) * g2 * grads
    nonzero = denom != 0
    alpha = torch.where(nonzero, g2 / torch.where(nonzero, denom, torch.ones_like(denom)), 0.0)
    weights = (alpha * F.relu(grads)).flatten(2).sum(-1)
    if not exp_score:
        return weights
    factor = scores.exp()
    if not bool((torch.isfinite(factor) & (factor > 0)).all()):
        raise ValueError(
            f"exp of the target score is out of the range of {scores.dtype} (scores from "
            f"{scores.min().item():.4g} to {scores.max().item():.4g}); pass exp_score=False to "
            "drop the positive per-example factor exp(S_c) (the normalised map is the same)"
        )
    return weights * factor.unsqueeze(1)


def gradcam_weights(acts: Tensor, grads: Tensor, scores: Tensor) -> Tensor:
    r"""Grad-CAM channel weights ``w_k = mean_p g_k(p)``, as Captum's ``LayerGradCam``.

    Returns:
        ``(N, K)``.
    """
    del acts, scores
    return grads.flatten(2).mean(-1)


def xgradcam_weights(acts: Tensor, grads: Tensor, scores: Tensor) -> Tensor:
    r"""XGrad-CAM channel weights ``w_k = sum_p A_k(p) / (sum_q A_k(q)) * g_k(p)``.

    A channel whose activations sum to 0 gets weight 0.

    Returns:
        ``(N, K)``.
    """
    del scores
    total = _spatial_sum(acts)
    nonzero = total != 0
    share = torch.where(nonzero, acts / torch.where(nonzero, total, torch.ones_like(total)), 0.0)
    return (share * grads).flatten(2).sum(-1)


def layercam_weights(acts: Tensor, grads: Tensor, scores: Tensor) -> Tensor:
    r"""LayerCAM element-wise weights ``ReLU(g_k(p))``; returns ``(N, K, *S')``."""
    del acts, scores
    return F.relu(grads)


def hirescam_weights(acts: Tensor, grads: Tensor, scores: Tensor) -> Tensor:
    r"""HiResCAM element-wise weights ``g_k(p)`` (no averaging); returns ``(N, K, *S')``."""
    del acts, scores
    return grads


# --------------------------------------------------------------------------------------
# The shared pipeline
# --------------------------------------------------------------------------------------


class _GradientCAM(LayerAttribution, GradientAttribution):
    """Shared pipeline of the gradient CAMs; use the public classes."""

    def __init__(
        self,
        forward_func: Callable[..., Tensor],
        layer: nn.Module,
        device_ids: list[int] | None = None,
        *,
        reshape_transform: ReshapeTransform | None = None,
    ) -> None:
        check_forward_and_layer(forward_func, layer, device_ids)
        LayerAttribution.__init__(self, forward_func, layer, device_ids)
        GradientAttribution.__init__(self, forward_func)
        self.reshape_transform = check_reshape_transform(reshape_transform)

    @property
    def multiplies_by_inputs(self) -> bool:
        return False

    def _gradient_cam(
        self,
        inputs: Tensor,
        target: Any,
        additional_forward_args: Any,
        weight_fn: WeightFn,
        *,
        relu_attributions: bool,
        attribute_to_layer_input: bool,
        upsample: bool,
        interpolate_mode: str | None,
        align_corners: bool,
        spatial_dims: int | None,
    ) -> Tensor:
        original = inputs
        x = check_inputs(unwrap_meta(inputs), spatial_dims=spatial_dims)
        check_target_type(target)
        check_flags(
            relu_attributions=relu_attributions,
            attribute_to_layer_input=attribute_to_layer_input,
            upsample=upsample,
            align_corners=align_corners,
        )
        mode = interpolation_mode(x.dim() - 2, interpolate_mode)
        warn_if_training(self.forward_func, self.layer)
        scores, acts, grads = layer_gradients(
            self.forward_func,
            self.layer,
            x,
            target,
            format_additional_args(additional_forward_args),
            attribute_to_layer_input=attribute_to_layer_input,
            device_ids=self.device_ids,
            reshape_transform=self.reshape_transform,
        )
        if acts.dim() != x.dim():
            raise ValueError(
                f"the layer's activations have shape {tuple(acts.shape)} but a CAM needs "
                f"(N, channels, *spatial) with the {x.dim() - 2} spatial dims of the inputs "
                f"{tuple(x.shape)}; choose a convolutional layer, or pass reshape_transform= "
                "(captum_medcam.reshapes) for a transformer's tokens"
            )
        cam = weighted_sum(weight_fn(acts, grads, scores), acts)
        if relu_attributions:
            cam = F.relu(cam)
        if not upsample:
            return cam
        return wrap_meta(resize(cam, x.shape[2:], mode, align_corners), original)


_DOC_PIPELINE = """
    The map is computed at layer resolution, ReLU is applied there (as in the paper; pass
    ``relu_attributions=False`` for the signed map), then it is resized to the input
    (linear, bilinear or trilinear by the number of spatial dims, ``align_corners=False``).
    It is not normalised (normalising is a display step). One forward pass and the gradient
    of the target scores with respect to the layer only; works under ``torch.no_grad()``.

    Transformers: pass ``reshape_transform=`` to the constructor, a callable that turns the
    layer's output (tokens ``(N, T, E)``, channel-last Swin maps) into ``(N, C, *grid)``;
    ready-made ones for torchvision's and MONAI's ViTs, UNETR and SwinUNETR are in
    :mod:`captum_medcam.reshapes`.
"""

_DOC_ARGS = """
        Args:
            inputs: ``(N, C, *S)`` with 1 to 3 spatial dims, floating point, a tensor or a
                MONAI ``MetaTensor``.
            target: the class to explain, as in Captum: an int, a tuple, a tensor or list
                with one entry per example, or None when the model returns one score per
                example. Each example's map uses the gradient of its own target's score.
            additional_forward_args: further arguments of the model, as in Captum."""

_DOC_ARGS_TAIL = """
            relu_attributions: apply ReLU to the map (default True, as in the paper).
            attribute_to_layer_input: use the layer's input instead of its output.
            upsample: return maps at input resolution ``(N, 1, *S)``; False returns them at
                layer resolution ``(N, 1, *S')``.
            interpolate_mode: ``None`` picks linear/bilinear/trilinear by the number of
                spatial dims; ``"nearest"`` and ``"area"`` also work.
            align_corners: passed to the linear interpolation.

        Returns:
            Maps ``(N, 1, *S)`` (or ``(N, 1, *S')`` with ``upsample=False``) on the inputs'
            device and dtype; a ``MetaTensor`` input gives a ``MetaTensor`` with its
            metadata.

        Raises:
            TypeError: inputs not a floating tensor; a layer that is not a module; a target
                or an option of the wrong type (a string for a bool flag); a model that
                returns a tuple or a dict.
            ValueError: wrong input dims, NaN/inf inputs, a target out of range, a layer not
                reached by the forward pass, called twice in it, with a tuple output or not
                on the path to the output, an interpolation mode that does not fit the
                number of spatial dims.
            RuntimeError: called under ``torch.inference_mode()``.
        """

_DOC_3D = """
        Args:
            inputs: ``(N, C, D, H, W)``, floating point, a tensor or a MONAI ``MetaTensor``.
            target, additional_forward_args, relu_attributions, attribute_to_layer_input:
                as in the N-D class.

        Returns:
            Maps ``(N, 1, D, H, W)`` at input resolution (trilinear, ``align_corners=False``);
            a ``MetaTensor`` input gives a ``MetaTensor`` with the same affine and
            ``applied_operations``.

        Raises:
            ValueError: inputs that are not 5-D, and the errors of the N-D class.
        """


@final
class GradCAMPlusPlus(_GradientCAM):
    __doc__ = (
        r"""Grad-CAM++: channel weights from positive gradients, weighted per position.

    For activations ``A`` ``(N, K, *S')`` and ``g = dS_c/dA``, the closed form of the paper
    (eq. 19) for the exponential of the score ``Y_c = exp(S_c)``::

        alpha_k(p) = g_k(p)^2 / (2 g_k(p)^2 + sum_q A_k(q) g_k(p)^3)   (0 where the
                                                                         denominator is 0)
        w_k        = exp(S_c) * sum_p alpha_k(p) ReLU(g_k(p))
        L          = ReLU(sum_k w_k A_k)

    ``exp_score=False`` drops the per-example factor ``exp(S_c)`` (pytorch-grad-cam). torchcam
    0.5 computes ``alpha`` but never divides (its in-place division acts on a copy); this
    implementation divides, and guards the division where the denominator is 0.
"""
        + _DOC_PIPELINE
        + r"""
    References:
        Chattopadhay, Sarkar, Howlader, Balasubramanian. "Grad-CAM++: Generalized
        Gradient-Based Visual Explanations for Deep Convolutional Networks". WACV 2018.
        arXiv:1710.11063.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from captum_medcam import GradCAMPlusPlus
        >>> model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(),
        ...                       nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)).eval()
        >>> GradCAMPlusPlus(model, model[1]).attribute(torch.randn(2, 1, 16, 16), target=[0, 2]).shape
        torch.Size([2, 1, 16, 16])
    """
    )

    @captum_attribute
    def attribute(
        self,
        inputs: Tensor,
        target: Any = None,
        additional_forward_args: Any = None,
        *,
        exp_score: bool = True,
        relu_attributions: bool = True,
        attribute_to_layer_input: bool = False,
        upsample: bool = True,
        interpolate_mode: str | None = None,
        align_corners: bool = False,
    ) -> Tensor:
        check_flags(exp_score=exp_score)
        return self._gradient_cam(
            inputs,
            target,
            additional_forward_args,
            lambda a, g, s: gradcam_plusplus_weights(a, g, s, exp_score),
            relu_attributions=relu_attributions,
            attribute_to_layer_input=attribute_to_layer_input,
            upsample=upsample,
            interpolate_mode=interpolate_mode,
            align_corners=align_corners,
            spatial_dims=None,
        )

    attribute.__doc__ = (
        """Compute Grad-CAM++ maps.
"""
        + _DOC_ARGS
        + """
            exp_score: keep the paper's factor ``exp(S_c)`` (default); False drops it."""
        + _DOC_ARGS_TAIL
    )


@final
class GradCAMPlusPlus3D(_GradientCAM):
    r"""Grad-CAM++ for volumes: ``(N, C, D, H, W)`` in, ``(N, 1, D, H, W)`` out.

    The computation of :class:`GradCAMPlusPlus` (see there for the formula), with 5-D input
    required and the map always upsampled trilinearly to the input volume.

    References:
        Chattopadhay et al. "Grad-CAM++". WACV 2018. arXiv:1710.11063.

    Example:
        >>> import torch
        >>> from monai.networks.nets import resnet10
        >>> from captum_medcam import GradCAMPlusPlus3D
        >>> net = resnet10(spatial_dims=3, n_input_channels=1, num_classes=2).eval()
        >>> GradCAMPlusPlus3D(net, net.layer4).attribute(torch.randn(1, 1, 32, 32, 32), target=1).shape
        torch.Size([1, 1, 32, 32, 32])
    """

    @captum_attribute
    def attribute(
        self,
        inputs: Tensor,
        target: Any = None,
        additional_forward_args: Any = None,
        *,
        exp_score: bool = True,
        relu_attributions: bool = True,
        attribute_to_layer_input: bool = False,
    ) -> Tensor:
        check_flags(exp_score=exp_score)
        return self._gradient_cam(
            inputs,
            target,
            additional_forward_args,
            lambda a, g, s: gradcam_plusplus_weights(a, g, s, exp_score),
            relu_attributions=relu_attributions,
            attribute_to_layer_input=attribute_to_layer_input,
            upsample=True,
            interpolate_mode="trilinear",
            align_corners=False,
            spatial_dims=3,
        )

    attribute.__doc__ = "Compute Grad-CAM++ maps for volumes.\n" + _DOC_3D.replace(
        "attribute_to_layer_input:", "attribute_to_layer_input, exp_score:"
    )


@final
class LayerCAM(_GradientCAM):
    __doc__ = (
        r"""LayerCAM: activations weighted element-wise by their positive gradients.

    For activations ``A`` ``(N, K, *S')`` and ``g = dS_c/dA``::

        L = ReLU(sum_k ReLU(g_k) * A_k)       (element-wise product)

    Unlike Grad-CAM, the weights are not averaged over positions, which keeps the maps of
    shallow layers sharp; the paper fuses maps of several layers, which is a sum of maps
    from several ``LayerCAM`` objects resized to the input.
"""
        + _DOC_PIPELINE
        + r"""
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
    )

    @captum_attribute
    def attribute(
        self,
        inputs: Tensor,
        target: Any = None,
        additional_forward_args: Any = None,
        *,
        relu_attributions: bool = True,
        attribute_to_layer_input: bool = False,
        upsample: bool = True,
        interpolate_mode: str | None = None,
        align_corners: bool = False,
    ) -> Tensor:
        return self._gradient_cam(
            inputs,
            target,
            additional_forward_args,
            layercam_weights,
            relu_attributions=relu_attributions,
            attribute_to_layer_input=attribute_to_layer_input,
            upsample=upsample,
            interpolate_mode=interpolate_mode,
            align_corners=align_corners,
            spatial_dims=None,
        )

    attribute.__doc__ = "Compute LayerCAM maps.\n" + _DOC_ARGS + _DOC_ARGS_TAIL


@final
class LayerCAM3D(_GradientCAM):
    r"""LayerCAM for volumes: ``(N, C, D, H, W)`` in, ``(N, 1, D, H, W)`` out.

    The computation of :class:`LayerCAM` (see there for the formula), with 5-D input
    required and the map always upsampled trilinearly to the input volume.

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

    @captum_attribute
    def attribute(
        self,
        inputs: Tensor,
        target: Any = None,
        additional_forward_args: Any = None,
        *,
        relu_attributions: bool = True,
        attribute_to_layer_input: bool = False,
    ) -> Tensor:
        return self._gradient_cam(
            inputs,
            target,
            additional_forward_args,
            layercam_weights,
            relu_attributions=relu_attributions,
            attribute_to_layer_input=attribute_to_layer_input,
            upsample=True,
            interpolate_mode="trilinear",
            align_corners=False,
            spatial_dims=3,
        )

    attribute.__doc__ = "Compute LayerCAM maps for volumes.\n" + _DOC_3D


@final
class HiResCAM(_GradientCAM):
    __doc__ = (
        r"""HiResCAM: activations times their gradients, element-wise, summed over channels.

    For activations ``A`` ``(N, K, *S')`` and ``g = dS_c/dA``::

        L = ReLU(sum_k g_k * A_k)             (element-wise product)

    Grad-CAM averages ``g_k`` over positions first; HiResCAM does not, so for a model whose
    score is linear in ``A`` after the layer, the map sums exactly to the score's part that
    passes through the layer. The paper's map is signed: ``relu_attributions=False`` keeps
    the sign; the default applies ReLU like the other methods here and pytorch-grad-cam.
"""
        + _DOC_PIPELINE
        + r"""
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
    )

    @captum_attribute
    def attribute(
        self,
        inputs: Tensor,
        target: Any = None,
        additional_forward_args: Any = None,
        *,
        relu_attributions: bool = True,
        attribute_to_layer_input: bool = False,
        upsample: bool = True,
        interpolate_mode: str | None = None,
        align_corners: bool = False,
    ) -> Tensor:
        return self._gradient_cam(
            inputs,
            target,
            additional_forward_args,
            hirescam_weights,
            relu_attributions=relu_attributions,
            attribute_to_layer_input=attribute_to_layer_input,
            upsample=upsample,
            interpolate_mode=interpolate_mode,
            align_corners=align_corners,
            spatial_dims=None,
        )

    attribute.__doc__ = "Compute HiResCAM maps.\n" + _DOC_ARGS + _DOC_ARGS_TAIL


@final
class HiResCAM3D(_GradientCAM):
    r"""HiResCAM for volumes: ``(N, C, D, H, W)`` in, ``(N, 1, D, H, W)`` out.

    The computation of :class:`HiResCAM` (see there for the formula), with 5-D input
    required and the map always upsampled trilinearly to the input volume.

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

    @captum_attribute
    def attribute(
        self,
        inputs: Tensor,
        target: Any = None,
        additional_forward_args: Any = None,
        *,
        relu_attributions: bool = True,
        attribute_to_layer_input: bool = False,
    ) -> Tensor:
        return self._gradient_cam(
            inputs,
            target,
            additional_forward_args,
            hirescam_weights,
            relu_attributions=relu_attributions,
            attribute_to_layer_input=attribute_to_layer_input,
            upsample=True,
            interpolate_mode="trilinear",
            align_corners=False,
            spatial_dims=3,
        )

    attribute.__doc__ = "Compute HiResCAM maps for volumes.\n" + _DOC_3D


@final
class XGradCAM(_GradientCAM):
    __doc__ = (
        r"""XGrad-CAM: gradients weighted by each position's share of the channel's activation.

    For activations ``A`` ``(N, K, *S')`` and ``g = dS_c/dA``::

        w_k = sum_p (A_k(p) / sum_q A_k(q)) g_k(p)      (0 where sum_q A_k(q) = 0)
        L   = ReLU(sum_k w_k A_k)

    The weights that satisfy the paper's sensitivity and conservation axioms.
"""
        + _DOC_PIPELINE
        + r"""
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
    )

    @captum_attribute
    def attribute(
        self,
        inputs: Tensor,
        target: Any = None,
        additional_forward_args: Any = None,
        *,
        relu_attributions: bool = True,
        attribute_to_layer_input: bool = False,
        upsample: bool = True,
        interpolate_mode: str | None = None,
        align_corners: bool = False,
    ) -> Tensor:
        return self._gradient_cam(
            inputs,
            target,
            additional_forward_args,
            xgradcam_weights,
            relu_attributions=relu_attributions,
            attribute_to_layer_input=attribute_to_layer_input,
            upsample=upsample,
            interpolate_mode=interpolate_mode,
            align_corners=align_corners,
            spatial_dims=None,
        )

    attribute.__doc__ = "Compute XGrad-CAM maps.\n" + _DOC_ARGS + _DOC_ARGS_TAIL


@final
class XGradCAM3D(_GradientCAM):
    r"""XGrad-CAM for volumes: ``(N, C, D, H, W)`` in, ``(N, 1, D, H, W)`` out.

    The computation of :class:`XGradCAM` (see there for the formula), with 5-D input
    required and the map always upsampled trilinearly to the input volume.

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

    @captum_attribute
    def attribute(
        self,
        inputs: Tensor,
        target: Any = None,
        additional_forward_args: Any = None,
        *,
        relu_attributions: bool = True,
        attribute_to_layer_input: bool = False,
    ) -> Tensor:
        return self._gradient_cam(
            inputs,
            target,
            additional_forward_args,
            xgradcam_weights,
            relu_attributions=relu_attributions,
            attribute_to_layer_input=attribute_to_layer_input,
            upsample=True,
            interpolate_mode="trilinear",
            align_corners=False,
            spatial_dims=3,
        )

    attribute.__doc__ = "Compute XGrad-CAM maps for volumes.\n" + _DOC_3D


# --------------------------------------------------------------------------------------
# Grad-CAM and Guided Grad-CAM: Captum's implementations, made to work on volumes
# --------------------------------------------------------------------------------------


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
    the ``ValueError`` that :func:`layer_gradients` raises.
    """

    def check_target(output: Tensor) -> None:
        per_sample_target(target, n, output)

    with checked_forward(forward_func, layer, attribute_to_layer_input, check_target) as forward:
        try:
            yield forward
        except RuntimeError as error:
            if "appears to not have been used in the graph" not in str(error):
                raise
            raise ValueError(_not_on_path(layer, attribute_to_layer_input)) from None


class _CaptumGradCAM(LayerAttribution, GradientAttribution):
    """Shared constructor and checks of the Captum-backed 3D entry points."""

    def __init__(
        self,
        forward_func: Callable[..., Tensor],
        layer: nn.Module,
        device_ids: list[int] | None = None,
        *,
        reshape_transform: ReshapeTransform | None = None,
    ) -> None:
        check_forward_and_layer(forward_func, layer, device_ids)
        LayerAttribution.__init__(self, forward_func, layer, device_ids)
        GradientAttribution.__init__(self, forward_func)
        self.reshape_transform = check_reshape_transform(reshape_transform)

    @property
    def multiplies_by_inputs(self) -> bool:
        return False

    def _prepare(self, inputs: Tensor, target: Any, **flags: bool) -> Tensor:
        _check_grad_mode()
        x = check_inputs(unwrap_meta(inputs), spatial_dims=3)
        check_target_type(target)
        check_flags(**flags)
        warn_if_training(self.forward_func, self.layer)
        return _grad_ready(x)

    def _reshaped_grad_cam(
        self,
        x: Tensor,
        target: Any,
        additional_forward_args: Any,
        attribute_to_layer_input: bool,
        relu_attributions: bool,
    ) -> Tensor:
        """Captum's ``LayerGradCam`` formula on the reshaped layer tensor ``(N, 1, D', H', W')``.

        Captum's class has no reshape; this is its computation (mean gradient per channel,
        weighted sum, ReLU) on ``reshape_transform`` of the activations and gradients.
        """
        scores, acts, grads = layer_gradients(
            self.forward_func,
            self.layer,
            x,
            target,
            format_additional_args(additional_forward_args),
            attribute_to_layer_input=attribute_to_layer_input,
            device_ids=self.device_ids,
            reshape_transform=self.reshape_transform,
        )
        if acts.dim() != 5:
            raise ValueError(
                f"reshape_transform gave {tuple(acts.shape)}; a volume CAM needs "
                "(N, channels, D', H', W')"
            )
        cam = weighted_sum(gradcam_weights(acts, grads, scores), acts)
        return F.relu(cam) if relu_attributions else cam


@final
class GradCAM3D(_CaptumGradCAM):
    r"""Grad-CAM for volumes: Captum's ``LayerGradCam``, upsampled trilinearly to the input.

    For activations ``A`` ``(N, K, D', H', W')`` and ``g = dS_c/dA``::

        w_k = mean_p g_k(p)
        L   = Up(ReLU(sum_k w_k A_k))       Up: trilinear, align_corners=False

    The computation is Captum's ``LayerGradCam`` (gradient to the layer only, no full
    backward pass), with ``relu_attributions=True`` by default as in the paper, followed by
    ``LayerAttribution.interpolate(..., "trilinear")``. What this class adds: 5-D input is
    required and checked, the output is at input resolution ``(N, 1, D, H, W)`` (Captum's is
    at layer resolution, and its default interpolation is nearest), targets are checked with
    clear errors, a MONAI ``MetaTensor`` input gives a ``MetaTensor`` output with its
    metadata, it works under ``torch.no_grad()`` and with frozen parameters, and it raises a
    clear error under ``torch.inference_mode()``. The map is not normalised.

    Transformers: pass ``reshape_transform=`` to the constructor, a callable that turns the
    layer's output (tokens ``(N, T, E)``, channel-last Swin maps) into ``(N, C, *grid)``;
    ready-made ones for torchvision's and MONAI's ViTs, UNETR and SwinUNETR are in
    :mod:`captum_medcam.reshapes`. The reshaped layer's Grad-CAM is Captum's formula
    (mean gradient per channel) on the reshaped activations and gradients, as Captum's class
    has no reshape; without one the result is Captum's, bit for bit.

    References:
        Selvaraju, Cogswell, Das, Vedantam, Parikh, Batra. "Grad-CAM: Visual Explanations
        from Deep Networks via Gradient-based Localization". ICCV 2017. arXiv:1610.02391.

    Example:
        >>> import torch
        >>> from monai.networks.nets import resnet10
        >>> from captum_medcam import GradCAM3D
        >>> net = resnet10(spatial_dims=3, n_input_channels=1, num_classes=2).eval()
        >>> GradCAM3D(net, net.layer4).attribute(torch.randn(2, 1, 32, 32, 32), target=[0, 1]).shape
        torch.Size([2, 1, 32, 32, 32])
    """

    @captum_attribute
    def attribute(
        self,
        inputs: Tensor,
        target: Any = None,
        additional_forward_args: Any = None,
        *,
        relu_attributions: bool = True,
        attribute_to_layer_input: bool = False,
    ) -> Tensor:
        """Compute Grad-CAM maps for volumes.

        Args:
            inputs: ``(N, C, D, H, W)``, floating point, a tensor or a MONAI ``MetaTensor``.
            target: the class to explain, as in Captum: an int, a tuple, a tensor or list
                with one entry per example, or None when the model returns one score per
                example.
            additional_forward_args: further arguments of the model, as in Captum.
            relu_attributions: apply ReLU at layer resolution (default True, the paper's
                Grad-CAM; Captum's default is False).
            attribute_to_layer_input: use the layer's input instead of its output.

        Returns:
            Maps ``(N, 1, D, H, W)`` at input resolution, not normalised.

        Raises:
            TypeError: inputs not a floating tensor, a target or flag of the wrong type, a
                model that returns a tuple or a dict.
            ValueError: inputs that are not 5-D or hold NaN/inf, a target that does not fit
                the model's output, a layer that the forward pass does not reach, calls
                twice, that returns a tuple, or that the target scores do not depend on
                (the checks of the other methods, made around Captum's code).
            RuntimeError: called under ``torch.inference_mode()``.
        """
        x = self._prepare(
            inputs,
            target,
            relu_attributions=relu_attributions,
            attribute_to_layer_input=attribute_to_layer_input,
        )
        if self.reshape_transform is not None:
            cam = self._reshaped_grad_cam(
                x, target, additional_forward_args, attribute_to_layer_input, relu_attributions
            )
            cam = LayerAttribution.interpolate(cam, tuple(x.shape[2:]), "trilinear")
            return wrap_meta(cam, inputs)
        with _captum_checked(
            self.forward_func, self.layer, target, x.shape[0], attribute_to_layer_input
        ) as forward:
            grad_cam = LayerGradCam(forward, self.layer, self.device_ids)
            cam = grad_cam.attribute(
                x,
                target=target,
                additional_forward_args=additional_forward_args,
                attribute_to_layer_input=attribute_to_layer_input,
                relu_attributions=relu_attributions,
            )
        if not isinstance(cam, Tensor) or cam.dim() != 5:
            raise ValueError(
                f"the layer's {'input' if attribute_to_layer_input else 'output'} is not a "
                "volume (N, channels, D', H', W'); choose a 3D convolutional layer"
            )
        cam = LayerAttribution.interpolate(cam.detach(), tuple(x.shape[2:]), "trilinear")
        return wrap_meta(cam, inputs)


@final
class GuidedGradCAM3D(_CaptumGradCAM):
    r"""Guided Grad-CAM for volumes: guided backprop times the upsampled Grad-CAM.

    ::

        L_guided = GuidedBackprop(x) * Up(ReLU(sum_k w_k A_k))      (N, C, D, H, W)

    The computation is Captum's ``GuidedGradCam`` with trilinear upsampling. Captum's class
    defaults to nearest and, given a mode that does not fit 5-D input (``"bilinear"``),
    warns and returns an empty tensor; here such a mode is a ``ValueError`` before anything
    runs. Guided backprop replaces the gradient of every ``nn.ReLU`` module (not of
    ``F.relu`` calls) for the duration of the call, as in Captum; the model is unchanged
    afterwards.

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
            target, additional_forward_args, attribute_to_layer_input: as in
                :meth:`GradCAM3D.attribute`.
            interpolate_mode: how Grad-CAM is upsampled: ``"trilinear"`` (default),
                ``"nearest"``, ``"nearest-exact"`` or ``"area"``.

        Returns:
            Maps ``(N, C, D, H, W)``, one per input channel, as guided backprop.

        Raises:
            ValueError: an interpolation mode that does not work on volumes, and the errors
                of :meth:`GradCAM3D.attribute`.
        """
        x = self._prepare(inputs, target, attribute_to_layer_input=attribute_to_layer_input)
        mode = interpolation_mode(3, interpolate_mode)
        model = cast(nn.Module, self.forward_func)  # checked in __init__
        if self.reshape_transform is not None:
            # Captum's GuidedGradCam, with its Grad-CAM taken on the reshaped layer tensor.
            cam = self._reshaped_grad_cam(
                x, target, additional_forward_args, attribute_to_layer_input, True
            )
            with warnings.catch_warnings():
                warnings.filterwarnings(
                    "ignore", message="Setting backward hooks on ReLU", category=UserWarning
                )
                guided_backprop = GuidedBackprop(model).attribute(
                    x, target=target, additional_forward_args=additional_forward_args
                )
            cam = LayerAttribution.interpolate(cam, tuple(x.shape[2:]), mode)
            return wrap_meta((guided_backprop * cam).detach(), inputs)
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
        return wrap_meta(result.detach(), inputs)
