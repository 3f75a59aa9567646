"""Grad-CAM++ for 1D, 2D and 3D inputs, and ``GradCAMPlusPlus3D`` for volumes."""

from __future__ import annotations

from typing import Any, final

import torch
import torch.nn.functional as F
from torch import Tensor

from captum_medcam._core.checks import check_flags
from captum_medcam.attr._base import VOLUME
from captum_medcam.attr._gradient import GradientCAMBase, spatial_sum
from captum_medcam.attr._interop import captum_attribute

__all__ = ["GradCAMPlusPlus", "GradCAMPlusPlus3D"]


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

    Example:
        >>> import torch
        >>> acts, grads = torch.ones(1, 1, 2), torch.tensor([[[1.0, 0.0]]])
        >>> gradcam_plusplus_weights(acts, grads, torch.zeros(1))  # alpha = 1 / (2 + 2)
        tensor([[0.2500]])
    """
    g2 = grads.square()
    denom = 2 * g2 + spatial_sum(acts) * g2 * grads
    nonzero = denom != 0
    alpha = torch.where(nonzero, g2 / torch.where(nonzero, denom, torch.ones_like(denom)), 0.0)
    weights = (alpha * F.relu(grads)).flatten(2).sum(-1)
    if not exp_score:
        return weights
    return weights * exp_score_factor(scores).unsqueeze(1)


def exp_score_factor(
    scores: Tensor,
    *,
    where: str = "",
    fallback: str = "drop the positive per-example factor exp(S_c) (the normalised map is "
    "the same)",
) -> Tensor:
    """``exp(S_c)`` ``(N,)`` for Grad-CAM++ and Smooth Grad-CAM++; a ``ValueError`` (naming
    ``where`` it happened and what ``exp_score=False`` does instead, ``fallback``) where it
    is not a finite positive number of the scores' dtype."""
    factor = scores.exp()
    if not bool((torch.isfinite(factor) & (factor > 0)).all()):
        raise ValueError(
            f"exp of the target score is out of the range of {scores.dtype}{where} (scores "
            f"from {scores.min().item():.4g} to {scores.max().item():.4g}); pass "
            f"exp_score=False to {fallback}"
        )
    return factor


class GradCAMPlusPlus(GradientCAMBase):
    r"""Grad-CAM++: channel weights from positive gradients, weighted per position.

    For activations ``A`` ``(N, K, *S')`` and ``g = dS_c/dA``, the closed form of the paper
    (eq. 19) for the exponential of the score ``Y_c = exp(S_c)``::

        alpha_k(p) = g_k(p)^2 / (2 g_k(p)^2 + sum_q A_k(q) g_k(p)^3)   (0 where the
                                                                         denominator is 0)
        w_k        = exp(S_c) * sum_p alpha_k(p) ReLU(g_k(p))
        L          = Up(ReLU(sum_k w_k A_k))

    ``exp_score=False`` drops the per-example factor ``exp(S_c)`` (pytorch-grad-cam). torchcam
    0.5 computes ``alpha`` but never divides (its in-place division acts on a copy); this
    implementation divides, and guards the division where the denominator is 0.

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
        """Compute Grad-CAM++ maps.

        Args:
            inputs: ``(N, C, *S)`` with 1 to 3 spatial dims (5-D for
                :class:`GradCAMPlusPlus3D`), floating point, a tensor or a ``MetaTensor``.
            target: the class to explain, as in Captum: an int, a tuple, a tensor or list
                with one entry per example, or None when the model returns one score per
                example.
            additional_forward_args: further arguments of the model, as in Captum.
            exp_score: keep the paper's factor ``exp(S_c)`` (default); False drops it.
            relu_attributions: apply ReLU to the map at layer resolution (default True).
            attribute_to_layer_input: use the layer's input instead of its output.
            upsample: return maps at input resolution ``(N, 1, *S)``; False returns them at
                layer resolution ``(N, 1, *S')``. Not taken by :class:`GradCAMPlusPlus3D`.
            interpolate_mode: ``None`` picks linear/bilinear/trilinear by the number of
                spatial dims; ``"nearest"`` and ``"area"`` also work. Not taken by
                :class:`GradCAMPlusPlus3D`.
            align_corners: passed to the linear interpolation. Not taken by
                :class:`GradCAMPlusPlus3D`.

        Returns:
            Maps ``(N, 1, *S)`` (or ``(N, 1, *S')`` with ``upsample=False``) on the inputs'
            device and dtype; a ``MetaTensor`` input gives a ``MetaTensor``.

        Raises:
            TypeError: inputs not a floating tensor; a target or an option of the wrong
                type; an output keyword passed to :class:`GradCAMPlusPlus3D`.
            ValueError: wrong input dims, NaN/inf inputs, a target out of range, a layer not
                reached or not on the path to the output, an interpolation mode that does
                not fit the inputs, ``exp(S_c)`` out of the dtype's range.
            RuntimeError: called under ``torch.inference_mode()``.
        """
        check_flags(exp_score=exp_score)
        return self._gradient_cam(
            inputs,
            target,
            additional_forward_args,
            lambda a, g, s: gradcam_plusplus_weights(a, g, s, exp_score),
            relu_attributions=relu_attributions,
            attribute_to_layer_input=attribute_to_layer_input,
            output=self._output(upsample, interpolate_mode, align_corners),
        )


@final
class GradCAMPlusPlus3D(GradCAMPlusPlus):
    r"""Grad-CAM++ for volumes: ``(N, C, D, H, W)`` in, ``(N, 1, D, H, W)`` out.

    :class:`GradCAMPlusPlus` (see there for the formula and ``exp_score``) with 5-D input
    required and the map always upsampled trilinearly to the input volume
    (``align_corners=False``); ``upsample``, ``interpolate_mode`` and ``align_corners`` are
    fixed (passing one is a ``TypeError``).

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

    fixed_output = VOLUME
