"""Derivatives of any per-example objective with respect to a layer, second order included.

The gradient CAMs differentiate the target's score; Shapley-CAM and Finer-CAM
differentiate other functions of the model's output (the ReST utility, a contrast with
similar classes), and Shapley-CAM also needs the Hessian-vector product ``H A``. One forward
pass captures the layer; the backward stops at it. The gradient CAMs' ``layer_gradients``
and ``GradientCAMBase`` run on :func:`layer_derivatives` and :func:`objective_cam` too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from captum_medcam._core.checks import format_additional_args
from captum_medcam._core.targets import class_scores, per_sample_target, select_target
from captum_medcam.attr._base import CAMBase, CAMOutput
from captum_medcam.attr._cam import weighted_sum
from captum_medcam.attr._hooks import forward_with_capture
from captum_medcam.attr._reshape import ReshapeTransform, apply_reshape

#: An objective: ``(output (N, ...), per-sample targets) -> (N,)``, one value per example,
#: differentiable in ``output``. Per-sample targets are what
#: :func:`~captum_medcam._core.targets.per_sample_target` returns.
Objective = Callable[[Tensor, Any], Tensor]


def check_grad_mode() -> None:
    """Refuse ``torch.inference_mode()``, under which no gradient can be computed."""
    if torch.is_inference_mode_enabled():
        raise RuntimeError(
            "gradient CAMs need autograd, which torch.inference_mode() switches off for good; "
            "call the attribution outside inference_mode (torch.no_grad() is fine: gradients "
            "are turned on locally, as in Captum)"
        )


def grad_ready(x: Tensor) -> Tensor:
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


def not_on_path(layer: nn.Module, attribute_to_layer_input: bool) -> str:
    """The message for a layer that the target scores do not depend on."""
    return (
        f"the target scores do not depend on the {'input' if attribute_to_layer_input else 'output'} "
        f"of layer {type(layer).__name__} (a DataParallel model split over several devices "
        "is not supported by the gradient CAMs); choose a layer on the path to the output"
    )


class LayerDerivatives(NamedTuple):
    """What :func:`layer_derivatives` returns, detached, in the inputs' dtype.

    Attributes:
        scores: ``(N,)``, the objective per example.
        activations: ``(N, K, *S')``, the layer's activations ``A``.
        gradients: ``(N, K, *S')``, ``g = d objective / dA``.
        hvp: ``(N, K, *S')``, the Hessian-vector product ``H A`` with
            ``H = d^2 objective / dA^2``, or None when it was not asked for.
    """

    scores: Tensor
    activations: Tensor
    gradients: Tensor
    hvp: Tensor | None


def layer_derivatives(
    forward_func: Callable[..., Any],
    layer: nn.Module,
    inputs: Tensor,
    target: Any,
    objective: Objective,
    args: tuple[Any, ...] = (),
    *,
    hessian_vector_product: bool = False,
    attribute_to_layer_input: bool = False,
    device_ids: list[int] | None = None,
    reshape_transform: ReshapeTransform | None = None,
) -> LayerDerivatives:
    """One forward pass, the gradient of ``sum_n objective_n`` to the layer and, on request,
    the Hessian-vector product with the activations.

    ``hvp = d/dA <d objective/dA, A>`` with ``A`` held constant, i.e. ``H A``: the gradient
    is taken with ``create_graph=True`` and differentiated once more along ``A``, as
    pytorch-grad-cam's ``ShapleyCAM`` does. Where the gradient does not depend on ``A`` (a
    network that is linear after the layer, with a linear objective), ``H A`` is 0. Examples
    do not interact in an eval-mode model, so the Hessian of the sum is block-diagonal and
    each example gets its own product.

    Args:
        forward_func: the model or a function of ``(inputs, *args)``.
        layer: the module whose output (or input) is differentiated.
        inputs: ``(N, C, *S)``.
        target: a Captum target, passed through :func:`per_sample_target` to ``objective``.
        objective: ``(output, per-sample targets) -> (N,)``.
        args: additional forward arguments.
        hessian_vector_product: also compute ``H A`` (a second backward pass).
        attribute_to_layer_input: use the layer's input instead of its output.
        device_ids: as in Captum, for ``DataParallel`` models.
        reshape_transform: None, or a callable applied to the activations, the gradient and
            ``H A`` (as pytorch-grad-cam does) to give ``(N, K, *S')``.

    Returns:
        A :class:`LayerDerivatives`.

    Raises:
        RuntimeError: called under ``torch.inference_mode()``.
        ValueError: a target that does not fit the output; a layer whose activations do
            not influence the objective.
    """
    check_grad_mode()
    n = inputs.shape[0]
    hvp: Tensor | None = None
    with torch.enable_grad():
        output, acts = forward_with_capture(
            forward_func,
            layer,
            grad_ready(inputs),
            args,
            attribute_to_layer_input=attribute_to_layer_input,
            device_ids=device_ids,
        )
        targets = per_sample_target(target, n, output)
        scores = objective(output, targets)
        grads = None
        if acts.requires_grad and scores.requires_grad:
            (grads,) = torch.autograd.grad(
                scores.sum(), acts, allow_unused=True, create_graph=hessian_vector_product
            )
        if grads is None:
            raise ValueError(not_on_path(layer, attribute_to_layer_input))
        if hessian_vector_product:
            second = None
            if grads.requires_grad:
                (second,) = torch.autograd.grad(
                    grads, acts, grad_outputs=acts.detach(), allow_unused=True
                )
            hvp = torch.zeros_like(acts) if second is None else second
    dtype = inputs.dtype
    acts = apply_reshape(reshape_transform, acts.detach(), n)
    grads = apply_reshape(reshape_transform, grads.detach(), n)
    if hvp is not None:
        hvp = apply_reshape(reshape_transform, hvp.detach(), n).to(dtype)
    return LayerDerivatives(scores.detach().to(dtype), acts.to(dtype), grads.to(dtype), hvp)


def target_score(output: Tensor, targets: Any) -> Tensor:
    """The objective of the gradient CAMs: the target's score (a logit) per example ``(N,)``,
    as Captum's ``LayerGradCam`` differentiates it."""
    return select_target(output, targets, torch.arange(output.shape[0], device=output.device))


def score_objective(score: str) -> Objective:
    """The objective ``(output, per-sample targets) -> (N,)`` of a score kind: the target's
    ``"logit"``, softmax ``"probability"`` or ``"sigmoid"`` (see
    :func:`~captum_medcam._core.targets.class_scores`)."""

    def objective(output: Tensor, targets: Any) -> Tensor:
        rows = torch.arange(output.shape[0], device=output.device)
        return class_scores(output, targets, rows, score)  # type: ignore[arg-type]

    return objective


def objective_cam(
    cam: CAMBase,
    inputs: Tensor,
    target: Any,
    additional_forward_args: Any,
    objective: Objective,
    weights: Callable[[LayerDerivatives], Tensor],
    *,
    relu_attributions: bool,
    attribute_to_layer_input: bool,
    output: CAMOutput,
    hessian_vector_product: bool = False,
    method: str = "a CAM",
) -> Tensor:
    """A gradient CAM of ``objective``: ``Up(ReLU(sum_k w_k A_k))`` with the weights computed
    from :func:`layer_derivatives`.

    The checks, the resize and the metadata are those of :class:`CAMBase`, so these methods
    refuse the same inputs, targets and layers with the same messages as the others.

    Args:
        cam: the attribution object (its model, layer, device ids and reshape).
        inputs: the user's inputs ``(N, C, *S)``, a tensor or a ``MetaTensor``.
        target, additional_forward_args: as in Captum.
        objective: ``(output, per-sample targets) -> (N,)``.
        weights: the derivatives to channel weights ``(N, K)`` or element-wise weights.
        relu_attributions: apply ReLU to the map at layer resolution.
        attribute_to_layer_input: use the layer's input instead of its output.
        output: the output options.
        hessian_vector_product: also compute ``H A``.
        method: the method's name in error messages.

    Returns:
        ``(N, 1, *S)``, or ``(N, 1, *S')`` without upsampling.
    """
    x, mode = cam._check_call(
        inputs,
        target,
        output,
        relu_attributions=relu_attributions,
        attribute_to_layer_input=attribute_to_layer_input,
    )
    out = objective_layer_map(
        cam,
        x,
        target,
        additional_forward_args,
        objective,
        weights,
        relu_attributions=relu_attributions,
        attribute_to_layer_input=attribute_to_layer_input,
        hessian_vector_product=hessian_vector_product,
        method=method,
    )
    return cam._finish(out, x, inputs, output, mode)


def objective_layer_map(
    cam: CAMBase,
    x: Tensor,
    target: Any,
    additional_forward_args: Any,
    objective: Objective,
    weights: Callable[[LayerDerivatives], Tensor],
    *,
    relu_attributions: bool,
    attribute_to_layer_input: bool,
    hessian_vector_product: bool = False,
    method: str = "a CAM",
) -> Tensor:
    """The map of :func:`objective_cam` at layer resolution, ``(N, 1, *S')``:
    ``ReLU(sum_k w_k A_k)`` for checked inputs ``x`` ``(N, C, *S)`` (arguments as there)."""
    d = layer_derivatives(
        cam.forward_func,
        cam.layer,
        x,
        target,
        objective,
        format_additional_args(additional_forward_args),
        hessian_vector_product=hessian_vector_product,
        attribute_to_layer_input=attribute_to_layer_input,
        device_ids=cam.device_ids,
        reshape_transform=cam.reshape_transform,
    )
    cam._check_activations(d.activations, x, method)
    out = weighted_sum(weights(d), d.activations)
    return F.relu(out) if relu_attributions else out
