"""Finer-CAM for 1D, 2D and 3D inputs, and ``FinerCAM3D`` for volumes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, final

import torch
from captum.attr import GradientAttribution
from torch import Tensor, nn

from captum_medcam._core.checks import check_choice, check_finite_float, check_positive_int
from captum_medcam.attr._base import VOLUME, CAMBase
from captum_medcam.attr._derivatives import LayerDerivatives, objective_cam
from captum_medcam.attr._grad_cam import gradcam_weights
from captum_medcam.attr._grad_cam_plusplus import gradcam_plusplus_weights
from captum_medcam.attr._hires_cam import hirescam_weights
from captum_medcam.attr._interop import captum_attribute
from captum_medcam.attr._layer_cam import layercam_weights
from captum_medcam.attr._reshape import ReshapeTransform
from captum_medcam.attr._xgrad_cam import xgradcam_weights

__all__ = ["FinerCAM", "FinerCAM3D"]

#: How the reference classes are combined: weighted by their softmax probabilities
#: (pytorch-grad-cam and the authors' code) or uniformly (torchcam).
REFERENCE_WEIGHTS: tuple[str, ...] = ("probability", "uniform")

#: The gradient CAMs whose weights Finer-CAM can use, by name (Grad-CAM++ without the
#: factor ``exp(S)``, which has no meaning for a contrast of scores; torchcam drops it too).
BASE_WEIGHTS: dict[str, Callable[[Tensor, Tensor, Tensor], Tensor]] = {
    "gradcam": gradcam_weights,
    "gradcampp": lambda a, g, s: gradcam_plusplus_weights(a, g, s, exp_score=False),
    "layercam": layercam_weights,
    "hirescam": hirescam_weights,
    "xgradcam": xgradcam_weights,
}


def finer_references(output: Tensor, targets: Tensor, num_references: int) -> Tensor:
    """The ``num_references`` classes whose logits are closest to the target's, per example.

    Closest means the smallest ``|z_k - z_c|``; the target itself is never a reference, and
    ties are broken by the lower class index. pytorch-grad-cam sorts all classes (the target,
    at distance 0, first) and takes ranks 1, 2, 3; torchcam takes the ``topk`` smallest
    distances with the target excluded: the same classes when no two logits tie.

    Args:
        output: ``(N, K)`` logits, ``K >= 2``.
        targets: ``(N,)`` class indices.
        num_references: at most ``K - 1`` references are taken.

    Returns:
        ``(N, T)`` long, ``T = min(num_references, K - 1)``, closest first.

    Example:
        >>> import torch
        >>> z = torch.tensor([[5.0, 4.5, 0.0, 5.2, 3.0]])
        >>> finer_references(z, torch.tensor([0]), 3)  # distances 0.5, 5, 0.2, 2
        tensor([[3, 1, 4]])
    """
    z = output.detach()
    rows = torch.arange(z.shape[0], device=z.device)
    distance = (z - z[rows, targets].unsqueeze(1)).abs()
    distance[rows, targets] = torch.inf
    count = min(num_references, z.shape[1] - 1)
    return distance.argsort(dim=1, stable=True)[:, :count]


def finer_scores(
    output: Tensor,
    targets: Tensor,
    references: Tensor,
    alpha: float = 1.0,
    reference_weights: str = "probability",
) -> Tensor:
    r"""The Finer-CAM objective per example, ``(N,)``.

    With logits ``z``, target ``c`` and references ``d in R``::

        "probability":  U = sum_{d in R} p_d (z_c - alpha z_d) / sum_{d in R} p_d,
                        p = softmax(z)       (pytorch-grad-cam's FinerWeightedTarget)
        "uniform":      U = z_c - alpha * mean_{d in R} z_d          (torchcam, alpha = gamma)

    ``p_d / sum_R p_d`` is computed as the softmax of the references' logits alone (the same
    number, without pytorch-grad-cam's ``+ 1e-9`` in the denominator and without underflow);
    like the peers' code, the weights stay in the graph, so the gradient includes their
    derivative.

    Args:
        output: ``(N, K)`` logits.
        targets: ``(N,)`` class indices.
        references: ``(N, T)`` class indices (see :func:`finer_references`).
        alpha: the comparison strength.
        reference_weights: ``"probability"`` or ``"uniform"``.

    Returns:
        ``(N,)``.

    Example:
        >>> import torch
        >>> z = torch.tensor([[2.0, 1.0, 1.0]])
        >>> finer_scores(z, torch.tensor([0]), torch.tensor([[1, 2]]), 0.5)  # 2 - 0.5 * 1
        tensor([1.5000])
    """
    target_logit = output.gather(1, targets.view(-1, 1))
    reference_logits = output.gather(1, references)
    contrast = target_logit - alpha * reference_logits
    if reference_weights == "uniform":
        return contrast.mean(1)
    return (reference_logits.softmax(1) * contrast).sum(1)


class FinerCAM(CAMBase, GradientAttribution):
    r"""Finer-CAM: a gradient CAM of the target's score relative to the most similar classes.

    With logits ``z``, target ``c`` and the ``T`` reference classes ``R`` whose logits are
    closest to ``z_c`` (``num_references``, the target excluded), the base method (Grad-CAM
    by default) is applied to the gradient of the contrast::

        "probability":  U = sum_{d in R} p_d (z_c - alpha z_d) / sum_{d in R} p_d,  p = softmax(z)
        "uniform":      U = z_c - alpha * mean_{d in R} z_d
        L = Up(ReLU(sum_k w_k A_k)),   w from the base method with g = dU/dA

    Features shared by the target and the classes it is confused with cancel, and what
    tells them apart remains. Defaults follow pytorch-grad-cam's ``FinerCAM`` (the authors'
    code): Grad-CAM, ``alpha=1``, three references weighted by their softmax probabilities,
    the weights kept in the graph (so the gradient includes theirs). torchcam 0.5's
    ``FinerCAM`` is ``reference_weights="uniform"`` with ``alpha=0.6`` (its ``gamma``). With
    ``alpha=0`` and uniform weights the map is the base method's.

    Differences from the peers: pytorch-grad-cam picks the target as the closest class to
    itself (rank 0 of the sorted distances, so a tie can pick another class) and the
    references as ranks 1 to 3, adds ``1e-9`` to the denominator, and min-max normalises and
    resizes the map with OpenCV; torchcam normalises per example at layer resolution. Here
    the target is Captum's ``target``, never chosen by the distances, ties between
    references are broken by the lower class index, and the map is not normalised.

    Args:
        forward_func: the model, or a function of ``(inputs, *additional_forward_args)``
            returning class logits ``(N, K)`` with ``K >= 2``.
        layer: the module whose output (or input) the map explains.
        device_ids: as in Captum, for ``DataParallel`` models.
        reshape_transform: None, or a callable turning the layer's output into
            ``(N, C', *S')``.
        base_method: the weights: ``"gradcam"`` (default), ``"gradcampp"`` (without the
            factor ``exp(S)``), ``"layercam"``, ``"hirescam"`` or ``"xgradcam"``.

    References:
        Zhang, Gu, Chowdhury, Mai, Carlyn, Berger-Wolf, Su, Chao. "Finer-CAM: Spotting the
        Difference Reveals Finer Details for Visual Explanation". CVPR 2025.
        arXiv:2501.11309.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from captum_medcam import FinerCAM
        >>> model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(),
        ...                       nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5)).eval()
        >>> FinerCAM(model, model[1]).attribute(torch.randn(2, 1, 16, 16), target=[0, 2]).shape
        torch.Size([2, 1, 16, 16])
    """

    def __init__(
        self,
        forward_func: Callable[..., Tensor],
        layer: nn.Module,
        device_ids: list[int] | None = None,
        *,
        reshape_transform: ReshapeTransform | None = None,
        base_method: str = "gradcam",
    ) -> None:
        super().__init__(forward_func, layer, device_ids, reshape_transform=reshape_transform)
        self.base_method = check_choice(base_method, "base_method", tuple(BASE_WEIGHTS))

    @captum_attribute
    def attribute(
        self,
        inputs: Tensor,
        target: Any = None,
        additional_forward_args: Any = None,
        *,
        alpha: float = 1.0,
        num_references: int = 3,
        reference_weights: str = "probability",
        relu_attributions: bool = True,
        attribute_to_layer_input: bool = False,
        upsample: bool = True,
        interpolate_mode: str | None = None,
        align_corners: bool = False,
    ) -> Tensor:
        """Compute Finer-CAM maps.

        Args:
            inputs: ``(N, C, *S)`` with 1 to 3 spatial dims (5-D for ``FinerCAM3D``),
                floating point, a tensor or a MONAI ``MetaTensor``.
            target: the class to explain, as in Captum: an int, or a tensor or list with
                one entry per example.
            additional_forward_args: further arguments of the model, as in Captum.
            alpha: the comparison strength (1, as pytorch-grad-cam; torchcam uses 0.6).
            num_references: how many of the closest classes to compare with (at most
                ``K - 1`` are used).
            reference_weights: ``"probability"`` (default) or ``"uniform"``.
            relu_attributions: apply ReLU to the map at layer resolution (default True).
            attribute_to_layer_input: use the layer's input instead of its output.
            upsample: return maps at input resolution ``(N, 1, *S)``; False returns them at
                layer resolution ``(N, 1, *S')``. Not taken by ``FinerCAM3D``.
            interpolate_mode: ``None`` picks linear/bilinear/trilinear by the number of
                spatial dims. Not taken by ``FinerCAM3D`` (trilinear).
            align_corners: passed to the linear interpolation. Not taken by ``FinerCAM3D``
                (False).

        Returns:
            Maps ``(N, 1, *S)`` (or ``(N, 1, *S')``) on the inputs' device and dtype; a
            ``MetaTensor`` input gives a ``MetaTensor`` with its metadata.

        Raises:
            TypeError: inputs not a floating tensor; a target or an option of the wrong
                type; a model that returns a tuple or a dict.
            ValueError: wrong input dims, NaN/inf inputs, a target that is not one class
                per example or out of range, a model output that is not ``(N, K)`` with
                ``K >= 2``, a negative or non-finite ``alpha``, ``num_references < 1``, an
                unknown ``reference_weights``, and the layer errors of the other CAMs.
            RuntimeError: called under ``torch.inference_mode()``.
        """
        alpha = check_finite_float(alpha, "alpha", low=0.0)
        count = check_positive_int(num_references, "num_references")
        weighting = check_choice(reference_weights, "reference_weights", REFERENCE_WEIGHTS)
        base = BASE_WEIGHTS[self.base_method]

        def objective(output: Tensor, targets: Any) -> Tensor:
            if output.dim() != 2 or output.shape[1] < 2:
                raise ValueError(
                    "Finer-CAM compares the target with other classes: the model must return "
                    f"class logits (N, K) with K >= 2, got output of shape {tuple(output.shape)}"
                )
            if not isinstance(targets, Tensor):
                raise ValueError(
                    "Finer-CAM needs one class index per example as target (an int, a list or "
                    f"a tensor), got {target!r}"
                )
            refs = finer_references(output, targets, count)
            return finer_scores(output, targets, refs, alpha, weighting)

        def weights(d: LayerDerivatives) -> Tensor:
            return base(d.activations, d.gradients, d.scores)

        return objective_cam(
            self,
            inputs,
            target,
            additional_forward_args,
            objective,
            weights,
            relu_attributions=relu_attributions,
            attribute_to_layer_input=attribute_to_layer_input,
            output=self._output(upsample, interpolate_mode, align_corners),
            method="Finer-CAM",
        )


@final
class FinerCAM3D(FinerCAM):
    r"""Finer-CAM for volumes: ``(N, C, D, H, W)`` in, ``(N, 1, D, H, W)`` out.

    :class:`FinerCAM` (see there for the formula, the base methods and the reference
    options) with 5-D input required and the map always upsampled trilinearly to the input
    volume (``align_corners=False``); ``upsample``, ``interpolate_mode`` and
    ``align_corners`` are fixed (passing one is a ``TypeError``).

    References:
        Zhang et al. "Finer-CAM: Spotting the Difference Reveals Finer Details for Visual
        Explanation". CVPR 2025. arXiv:2501.11309.

    Example:
        >>> import torch
        >>> from monai.networks.nets import resnet10
        >>> from captum_medcam import FinerCAM3D
        >>> net = resnet10(spatial_dims=3, n_input_channels=1, num_classes=4).eval()
        >>> FinerCAM3D(net, net.layer4).attribute(torch.randn(1, 1, 32, 32, 32), target=1).shape
        torch.Size([1, 1, 32, 32, 32])
    """

    fixed_output = VOLUME
