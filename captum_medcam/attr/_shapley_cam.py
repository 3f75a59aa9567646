"""Shapley-CAM for 1D, 2D and 3D inputs, and ``ShapleyCAM3D`` for volumes."""

from __future__ import annotations

from typing import Any, final

import torch
from captum.attr import GradientAttribution
from torch import Tensor

from captum_medcam._core.checks import check_choice
from captum_medcam._core.targets import select_target
from captum_medcam.attr._base import VOLUME, CAMBase
from captum_medcam.attr._derivatives import (
    LayerDerivatives,
    Objective,
    objective_cam,
    score_objective,
)
from captum_medcam.attr._interop import captum_attribute

__all__ = ["ShapleyCAM", "ShapleyCAM3D"]

#: What Shapley-CAM differentiates: the paper's ReST utility, the target's logit, or its
#: softmax probability.
SHAPLEY_SCORES: tuple[str, ...] = ("rest", "logit", "probability")


def shapley_cam_weights(acts: Tensor, grads: Tensor, hvp: Tensor) -> Tensor:
    r"""Shapley-CAM channel weights ``w_k = mean_p (g_k(p) - 1/2 (H A)_k(p))``.

    The second-order Taylor expansion of the utility ``U`` around the activations gives the
    channel's Shapley value ``sum_p A_k(p) (g_k(p) - 1/2 (H A)_k(p))``; the CAM weight is the
    mean over positions of ``g - H A / 2``, as in the paper's code and pytorch-grad-cam.

    Args:
        acts: ``(N, K, *S')`` (unused: the pipeline applies the weights to them).
        grads: ``(N, K, *S')``, ``g = dU/dA``.
        hvp: ``(N, K, *S')``, ``H A`` with ``H = d^2 U / dA^2``.

    Returns:
        ``(N, K)``.

    Example:
        >>> import torch
        >>> grads, hvp = torch.tensor([[[1.0, 3.0]]]), torch.tensor([[[2.0, 2.0]]])
        >>> shapley_cam_weights(torch.ones(1, 1, 2), grads, hvp)  # mean of (0, 2)
        tensor([[1.]])
    """
    del acts
    return (grads - 0.5 * hvp).flatten(2).mean(-1)


def rest_scores(output: Tensor, targets: Any) -> Tensor:
    r"""The ReST utility ``U = z_c + log softmax(z)_c = 2 z_c - logsumexp(z)``, ``(N,)``.

    pytorch-grad-cam's ``ClassifierOutputReST``: the logit minus the cross-entropy of the
    target class, which uses both the pre- and the post-softmax score.

    Args:
        output: ``(N, K)`` logits with ``K >= 2``.
        targets: one class index per example, a long tensor ``(N,)``.

    Raises:
        ValueError: an output that is not ``(N, K)`` with ``K >= 2``, or targets that are
            not one class index per example.

    Example:
        >>> import torch
        >>> z = torch.tensor([[0.0, 0.0]])
        >>> rest_scores(z, torch.tensor([1]))  # 0 + log(1/2)
        tensor([-0.6931])
    """
    if output.dim() != 2 or output.shape[1] < 2:
        raise ValueError(
            f'score="rest" needs class logits (N, K) with K >= 2, got output of shape '
            f'{tuple(output.shape)}; use score="logit" for a model with one output'
        )
    if not isinstance(targets, Tensor):
        raise ValueError('score="rest" needs one class index per example as target')
    rows = torch.arange(output.shape[0], device=output.device)
    return 2 * select_target(output, targets, rows) - output.logsumexp(1)


def shapley_objective(score: str) -> Objective:
    """The objective ``(output, per-sample targets) -> (N,)`` for a Shapley-CAM ``score``."""
    return rest_scores if score == "rest" else score_objective(score)


def _weights(d: LayerDerivatives) -> Tensor:
    assert d.hvp is not None  # asked for below
    return shapley_cam_weights(d.activations, d.gradients, d.hvp)


class ShapleyCAM(CAMBase, GradientAttribution):
    r"""Shapley-CAM: channel weights from the gradient and the Hessian-vector product.

    For activations ``A`` ``(N, K, *S')``, a utility ``U`` of the model's output, its
    gradient ``g = dU/dA`` and Hessian ``H = d^2 U / dA^2``::

        w_k = mean_p (g_k(p) - 1/2 (H A)_k(p))
        L   = Up(ReLU(sum_k w_k A_k))

    ``A_k (g_k - H A / 2)`` summed over positions is the second-order estimate of channel
    ``k``'s Shapley value for the utility. The default utility is the paper's ReST,
    ``U = z_c + log softmax(z)_c`` (``score="rest"``); ``score="logit"`` differentiates the
    logit, as pytorch-grad-cam's ``ShapleyCAM`` does with its default target
    (``ClassifierOutputTarget``), and ``score="probability"`` the softmax probability. For a
    network that is piecewise linear after the layer (ReLU, max pooling, linear layers),
    ``H`` of the logit is 0 and the map is Grad-CAM's; the Hessian term comes from the
    softmax in ReST or from smooth activations (SiLU, GELU) after the layer.

    ``H A`` is computed as pytorch-grad-cam does: the gradient with ``create_graph=True``,
    differentiated once more along ``A`` (one forward and two backward passes to the layer,
    never to the input). Differences from pytorch-grad-cam: it requires gradients for the
    input and differentiates the whole network, works on NumPy arrays, ReLUs and min-max
    normalises the map per example and resizes it with OpenCV (2D) or a spline zoom (3D).

    The map is computed at layer resolution, ReLU is applied there
    (``relu_attributions=False`` for the signed map), then it is resized to the input. It is
    not normalised. Transformers: ``reshape_transform=`` (see :mod:`captum_medcam.reshapes`),
    applied to the activations, the gradient and ``H A``, as pytorch-grad-cam does.

    Args:
        forward_func: the model, or a function of ``(inputs, *additional_forward_args)``.
        layer: the module whose output (or input) the map explains.
        device_ids: as in Captum, for ``DataParallel`` models.
        reshape_transform: None, or a callable turning the layer's output into
            ``(N, C', *S')``.

    References:
        Cai. "CAMs as Shapley Value-based Explainers". The Visual Computer 2025.
        arXiv:2501.06261.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from captum_medcam import ShapleyCAM
        >>> model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(),
        ...                       nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)).eval()
        >>> ShapleyCAM(model, model[1]).attribute(torch.randn(2, 1, 16, 16), target=[0, 2]).shape
        torch.Size([2, 1, 16, 16])
    """

    @captum_attribute
    def attribute(
        self,
        inputs: Tensor,
        target: Any = None,
        additional_forward_args: Any = None,
        *,
        score: str = "rest",
        relu_attributions: bool = True,
        attribute_to_layer_input: bool = False,
        upsample: bool = True,
        interpolate_mode: str | None = None,
        align_corners: bool = False,
    ) -> Tensor:
        """Compute Shapley-CAM maps.

        Args:
            inputs: ``(N, C, *S)`` with 1 to 3 spatial dims (5-D for ``ShapleyCAM3D``),
                floating point, a tensor or a MONAI ``MetaTensor``.
            target: the class to explain, as in Captum: an int, or a tensor or list with
                one entry per example (None only with ``score="logit"`` for a model that
                returns one score per example).
            additional_forward_args: further arguments of the model, as in Captum.
            score: the utility: ``"rest"`` (default, the paper), ``"logit"``
                (pytorch-grad-cam's default target) or ``"probability"``.
            relu_attributions: apply ReLU to the map at layer resolution (default True).
            attribute_to_layer_input: use the layer's input instead of its output.
            upsample: return maps at input resolution ``(N, 1, *S)``; False returns them at
                layer resolution ``(N, 1, *S')``. Not taken by ``ShapleyCAM3D``.
            interpolate_mode: ``None`` picks linear/bilinear/trilinear by the number of
                spatial dims. Not taken by ``ShapleyCAM3D`` (trilinear).
            align_corners: passed to the linear interpolation. Not taken by
                ``ShapleyCAM3D`` (False).

        Returns:
            Maps ``(N, 1, *S)`` (or ``(N, 1, *S')``) on the inputs' device and dtype; a
            ``MetaTensor`` input gives a ``MetaTensor`` with its metadata.

        Raises:
            TypeError: inputs not a floating tensor; a target or an option of the wrong
                type; a model that returns a tuple or a dict.
            ValueError: wrong input dims, NaN/inf inputs, a target out of range, an unknown
                ``score``, ``score="rest"`` on a model with one output, a layer not reached
                by the forward pass, called twice in it, or not on the path to the output.
            RuntimeError: called under ``torch.inference_mode()``.
        """
        check_choice(score, "score", SHAPLEY_SCORES)
        return objective_cam(
            self,
            inputs,
            target,
            additional_forward_args,
            shapley_objective(score),
            _weights,
            relu_attributions=relu_attributions,
            attribute_to_layer_input=attribute_to_layer_input,
            output=self._output(upsample, interpolate_mode, align_corners),
            hessian_vector_product=True,
            method="Shapley-CAM",
        )


@final
class ShapleyCAM3D(ShapleyCAM):
    r"""Shapley-CAM for volumes: ``(N, C, D, H, W)`` in, ``(N, 1, D, H, W)`` out.

    :class:`ShapleyCAM` (see there for the formula and the ``score`` options) with 5-D
    input required and the map always upsampled trilinearly to the input volume
    (``align_corners=False``); ``upsample``, ``interpolate_mode`` and ``align_corners`` are
    fixed (passing one is a ``TypeError``).

    References:
        Cai. "CAMs as Shapley Value-based Explainers". The Visual Computer 2025.
        arXiv:2501.06261.

    Example:
        >>> import torch
        >>> from monai.networks.nets import resnet10
        >>> from captum_medcam import ShapleyCAM3D
        >>> net = resnet10(spatial_dims=3, n_input_channels=1, num_classes=2).eval()
        >>> ShapleyCAM3D(net, net.layer4).attribute(torch.randn(1, 1, 32, 32, 32), target=1).shape
        torch.Size([1, 1, 32, 32, 32])
    """

    fixed_output = VOLUME
