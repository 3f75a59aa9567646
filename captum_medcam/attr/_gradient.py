"""The gradient CAMs' shared stages: the gradient to the layer, and their base class.

Grad-CAM, Grad-CAM++, LayerCAM, HiResCAM and XGrad-CAM share one pipeline: one forward
that captures the layer, the gradient of the target scores with respect to the layer only
(never a full backward pass), a weight function, the weighted sum, ReLU and the resize to
the input. A new gradient CAM is a weight function and a class that names it (see
``_xgrad_cam.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from captum.attr import GradientAttribution
from torch import Tensor, nn

from captum_medcam.attr._base import CAMBase, CAMOutput
from captum_medcam.attr._derivatives import (
    layer_derivatives,
    objective_cam,
    objective_layer_map,
    target_score,
)
from captum_medcam.attr._interop import captum_attribute
from captum_medcam.attr._reshape import ReshapeTransform

#: A weight function: ``(activations (N, K, *S'), gradients (N, K, *S'), scores (N,))`` to
#: channel weights ``(N, K)`` or element-wise weights ``(N, K, *S')``.
WeightFn = Callable[[Tensor, Tensor, Tensor], Tensor]


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

    :func:`~captum_medcam.attr._derivatives.layer_derivatives` with the target's score as
    the objective (one backward pass, no Hessian-vector product).

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

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(),
        ...                       nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)).eval()
        >>> scores, acts, grads = layer_gradients(model, model[1], torch.randn(2, 1, 8, 8), [0, 2])
        >>> scores.shape, acts.shape, grads.shape
        (torch.Size([2]), torch.Size([2, 4, 8, 8]), torch.Size([2, 4, 8, 8]))
    """
    d = layer_derivatives(
        forward_func,
        layer,
        inputs,
        target,
        target_score,
        args,
        attribute_to_layer_input=attribute_to_layer_input,
        device_ids=device_ids,
        reshape_transform=reshape_transform,
    )
    return d.scores, d.activations, d.gradients


def spatial_sum(t: Tensor) -> Tensor:
    """``(N, K, *S')`` -> ``(N, K, 1, ..., 1)``: the sum over positions, broadcastable."""
    return t.flatten(2).sum(-1).view(*t.shape[:2], *([1] * (t.dim() - 2)))


def gradient_layer_map(
    cam: CAMBase,
    x: Tensor,
    target: Any,
    additional_forward_args: Any,
    weights: WeightFn,
    *,
    relu_attributions: bool,
    attribute_to_layer_input: bool,
) -> Tensor:
    """A gradient CAM's map at layer resolution: ``ReLU(sum_k w_k A_k)``, ``(N, 1, *S')``.

    Args:
        cam: the attribution object (its model, layer, device ids and reshape).
        x: checked inputs ``(N, C, *S)``.
        target, additional_forward_args: as in Captum.
        weights: the method's weight function.
        relu_attributions: apply ReLU to the map.
        attribute_to_layer_input: use the layer's input instead of its output.
    """
    return objective_layer_map(
        cam,
        x,
        target,
        additional_forward_args,
        target_score,
        lambda d: weights(d.activations, d.gradients, d.scores),
        relu_attributions=relu_attributions,
        attribute_to_layer_input=attribute_to_layer_input,
    )


class GradientCAMBase(CAMBase, GradientAttribution):
    """The base of the gradient CAMs: a subclass names its weight function in ``_weights``.

    The map is computed at layer resolution, ReLU is applied there (as in the papers; pass
    ``relu_attributions=False`` for the signed map), then it is resized to the input. It is
    not normalised (normalising is a display step). One forward pass and the gradient of the
    target scores with respect to the layer only; works under ``torch.no_grad()``.
    """

    def _weights(self, acts: Tensor, grads: Tensor, scores: Tensor) -> Tensor:
        """The method's weights (see :data:`WeightFn`); every public subclass defines it."""
        raise NotImplementedError(f"{type(self).__name__} defines no weight function")

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
        """Compute the maps.

        Args:
            inputs: ``(N, C, *S)`` with 1 to 3 spatial dims (5-D ``(N, C, D, H, W)`` for a
                volume entry point), floating point, a tensor or a MONAI ``MetaTensor``.
            target: the class to explain, as in Captum: an int, a tuple, a tensor or list
                with one entry per example, or None when the model returns one score per
                example. Each example's map uses the gradient of its own target's score.
            additional_forward_args: further arguments of the model, as in Captum.
            relu_attributions: apply ReLU to the map at layer resolution (default True, as
                in the paper; Captum's ``LayerGradCam`` defaults to False).
            attribute_to_layer_input: use the layer's input instead of its output.
            upsample: return maps at input resolution ``(N, 1, *S)``; False returns them at
                layer resolution ``(N, 1, *S')``. Not taken by a volume entry point.
            interpolate_mode: ``None`` picks linear/bilinear/trilinear by the number of
                spatial dims; ``"nearest"`` and ``"area"`` also work. Not taken by a volume
                entry point (always trilinear).
            align_corners: passed to the linear interpolation. Not taken by a volume entry
                point (always False).

        Returns:
            Maps ``(N, 1, *S)`` (or ``(N, 1, *S')`` with ``upsample=False``) on the inputs'
            device and dtype; a ``MetaTensor`` input gives a ``MetaTensor`` with its
            metadata (affine, ``applied_operations``).

        Raises:
            TypeError: inputs not a floating tensor; a target or an option of the wrong type
                (a string for a bool flag); a model that returns a tuple or a dict; an output
                keyword passed to a volume entry point.
            ValueError: wrong input dims (not 5-D for a volume entry point), NaN/inf inputs,
                a target out of range, a layer not reached by the forward pass, called twice
                in it, with a tuple output or not on the path to the output, an
                interpolation mode that does not fit the number of spatial dims.
            RuntimeError: called under ``torch.inference_mode()``.
        """
        return self._gradient_cam(
            inputs,
            target,
            additional_forward_args,
            self._weights,
            relu_attributions=relu_attributions,
            attribute_to_layer_input=attribute_to_layer_input,
            output=self._output(upsample, interpolate_mode, align_corners),
        )

    def _gradient_cam(
        self,
        inputs: Tensor,
        target: Any,
        additional_forward_args: Any,
        weights: WeightFn,
        *,
        relu_attributions: bool,
        attribute_to_layer_input: bool,
        output: CAMOutput,
    ) -> Tensor:
        """Check the call, compute the map at layer resolution, resize it."""
        return objective_cam(
            self,
            inputs,
            target,
            additional_forward_args,
            target_score,
            lambda d: weights(d.activations, d.gradients, d.scores),
            relu_attributions=relu_attributions,
            attribute_to_layer_input=attribute_to_layer_input,
            output=output,
        )
