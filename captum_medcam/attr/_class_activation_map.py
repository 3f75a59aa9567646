"""CAM, the original class activation map, for 1D, 2D and 3D inputs, and ``CAM3D`` for volumes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, final

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from captum_medcam._core.checks import format_additional_args
from captum_medcam._core.targets import per_sample_target
from captum_medcam.attr._base import VOLUME, CAMBase
from captum_medcam.attr._cam import weighted_sum
from captum_medcam.attr._head import check_fc_layer, check_gap_linear_head, forward_with_head
from captum_medcam.attr._interop import captum_attribute
from captum_medcam.attr._reshape import ReshapeTransform

__all__ = ["CAM", "CAM3D"]

#: What to use instead of CAM when the head is not ``GAP -> Linear``.
_OTHER_HEADS = (
    "CAM is defined for that head only; for other heads use GradCAM, which equals CAM "
    "divided by the number of layer positions on a GAP -> Linear head"
)


def cam_weights(fc_weight: Tensor, targets: Tensor) -> Tensor:
    """CAM's channel weights: the rows of the linear layer for each example's class.

    Args:
        fc_weight: ``(K_classes, K)``, the weight of the ``nn.Linear`` after global average
            pooling.
        targets: ``(N,)`` class indices.

    Returns:
        ``(N, K)``.

    Example:
        >>> import torch
        >>> cam_weights(torch.tensor([[1.0, 2.0], [3.0, -4.0]]), torch.tensor([1, 0, 1]))
        tensor([[ 3., -4.],
                [ 1.,  2.],
                [ 3., -4.]])
    """
    return fc_weight.index_select(0, targets.to(fc_weight.device))


def _cam_targets(target: Any, n: int, output: Tensor) -> Tensor:
    """One class index per example, checked against the model's output ``(N, K)``."""
    targets = per_sample_target(target, n, output)
    if targets is None:  # one score per example: the linear layer has one row
        return torch.zeros(n, dtype=torch.long, device=output.device)
    if not isinstance(targets, Tensor):
        raise ValueError(
            f"CAM needs one class index per example (a row of fc_layer), got target={target!r}; "
            "the model's output must be shaped (N, classes)"
        )
    return targets


class CAM(CAMBase):
    r"""CAM, the class activation map: the layer's channels weighted by the class's row of the
    linear layer that follows global average pooling.

    For a model whose head is ``layer -> global average pooling -> fc_layer`` (weight ``W``
    ``(classes, K)``, as in ResNets and DenseNets) and activations ``A`` ``(N, K, *S')``::

        M_c = sum_k W[c, k] A_k                        (1, *S')
        L   = Up(M_c)                                  Up: linear / bilinear / trilinear

    so that ``sum_p M_c(p) = |S'| (f_c(x) - b_c)``: the map spreads the class score (less the
    bias) over the positions. On such a head Grad-CAM's weights are ``W[c, k] / |S'|``, so
    Grad-CAM is CAM divided by the number of positions; CAM needs no gradient (one forward
    pass, works under ``torch.no_grad()`` and ``torch.inference_mode()``).

    The head is checked at every call (``fc_layer``'s input must be the spatial mean of the
    layer's output, and its output the model's output); anything else is a ``ValueError``,
    with the same checks as CRM's fast path. The default follows the paper and torchcam:
    no ReLU (``relu_attributions=True`` keeps the positive part) and no bias. torchcam's
    ``CAM`` returns the map at layer resolution, min-max normalised; here it is resized to
    the input (``upsample=False`` keeps the layer's resolution) and not normalised (a
    display step). With the same normalisation the maps are torchcam's to rounding (the
    tests compare them).

    Args:
        forward_func: the model, or a function of ``(inputs, *additional_forward_args)``
            returning ``fc_layer``'s output ``(N, classes)``.
        layer: the module whose output is pooled into ``fc_layer`` (MONAI ResNet:
            ``net.layer4``).
        device_ids: as in Captum, for ``DataParallel`` models.
        fc_layer: the ``nn.Linear`` after global average pooling (MONAI ResNet: ``net.fc``).
        reshape_transform: None, or a callable turning the layer's output into
            ``(N, C', *S')``.

    Raises:
        TypeError: ``fc_layer`` is not an ``nn.Linear``, and the errors of the other methods'
            constructors.

    References:
        Zhou, Khosla, Lapedriza, Oliva, Torralba. "Learning Deep Features for
        Discriminative Localization". CVPR 2016. arXiv:1512.04150.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from captum_medcam import CAM, GradCAM
        >>> model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(),
        ...                       nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)).eval()
        >>> x = torch.randn(2, 1, 16, 16)
        >>> cam = CAM(model, model[1], fc_layer=model[4]).attribute(x, target=[0, 2])
        >>> grad_cam = GradCAM(model, model[1]).attribute(x, target=[0, 2], relu_attributions=False)
        >>> cam.shape, torch.allclose(cam / 256, grad_cam, atol=1e-6)
        (torch.Size([2, 1, 16, 16]), True)
    """

    def __init__(
        self,
        forward_func: Callable[..., Tensor],
        layer: nn.Module,
        device_ids: list[int] | None = None,
        *,
        fc_layer: nn.Linear,
        reshape_transform: ReshapeTransform | None = None,
    ) -> None:
        super().__init__(forward_func, layer, device_ids, reshape_transform=reshape_transform)
        self.fc_layer = check_fc_layer(fc_layer, _OTHER_HEADS)

    @captum_attribute
    def attribute(
        self,
        inputs: Tensor,
        target: Any = None,
        additional_forward_args: Any = None,
        *,
        relu_attributions: bool = False,
        upsample: bool = True,
        interpolate_mode: str | None = None,
        align_corners: bool = False,
    ) -> Tensor:
        """Compute CAM maps.

        Args:
            inputs: ``(N, C, *S)`` with 1 to 3 spatial dims (5-D ``(N, C, D, H, W)`` for
                :class:`CAM3D`), floating point, a tensor or a MONAI ``MetaTensor``.
            target: the class to explain, as in Captum: an int, or a tensor or list with one
                class per example (a row of ``fc_layer``); None when the model returns one
                score per example.
            additional_forward_args: further arguments of the model, as in Captum.
            relu_attributions: apply ReLU to the map at layer resolution (default False, as
                the paper and torchcam).
            upsample: return maps at input resolution ``(N, 1, *S)``; False returns them at
                layer resolution ``(N, 1, *S')``. Not taken by :class:`CAM3D`.
            interpolate_mode: ``None`` picks linear/bilinear/trilinear by the number of
                spatial dims; ``"nearest"`` and ``"area"`` also work. Not taken by
                :class:`CAM3D` (always trilinear).
            align_corners: passed to the linear interpolation. Not taken by :class:`CAM3D`
                (always False).

        Returns:
            Maps ``(N, 1, *S)`` (or ``(N, 1, *S')`` with ``upsample=False``) on the inputs'
            device and dtype; a ``MetaTensor`` input gives a ``MetaTensor`` with its
            metadata.

        Raises:
            TypeError: inputs not a floating tensor; a target or an option of the wrong type;
                a model that returns a tuple or a dict; an output keyword passed to
                :class:`CAM3D`.
            ValueError: a head that is not ``layer -> global average pooling -> fc_layer``
                with the model's output; a target out of range or not a class index; wrong
                input dims, NaN/inf inputs, a layer not reached by the forward pass or
                called twice in it, an interpolation mode that does not fit the number of
                spatial dims.
        """
        output = self._output(upsample, interpolate_mode, align_corners)
        x, mode = self._check_call(inputs, target, output, relu_attributions=relu_attributions)
        with torch.no_grad():
            scores, acts, fc_input = forward_with_head(
                self.forward_func,
                self.layer,
                self.fc_layer,
                x,
                format_additional_args(additional_forward_args),
                device_ids=self.device_ids,
                reshape_transform=self.reshape_transform,
            )
            self._check_activations(acts, x, "CAM")
            check_gap_linear_head(self.fc_layer, acts, fc_input, scores, _OTHER_HEADS)
            targets = _cam_targets(target, x.shape[0], scores)
            weights = cam_weights(self.fc_layer.weight.detach(), targets).to(acts)
            cam = weighted_sum(weights, acts)
        if relu_attributions:
            cam = F.relu(cam)
        return self._finish(cam, x, inputs, output, mode)


@final
class CAM3D(CAM):
    r"""CAM for volumes: ``(N, C, D, H, W)`` in, ``(N, 1, D, H, W)`` out.

    :class:`CAM` (see there for the formula and the head it needs) with 5-D input required
    and the map always upsampled trilinearly to the input volume (``align_corners=False``);
    ``upsample``, ``interpolate_mode`` and ``align_corners`` are fixed (passing one is a
    ``TypeError``).

    References:
        Zhou, Khosla, Lapedriza, Oliva, Torralba. "Learning Deep Features for
        Discriminative Localization". CVPR 2016. arXiv:1512.04150.

    Example:
        >>> import torch
        >>> from monai.networks.nets import resnet10
        >>> from captum_medcam import CAM3D
        >>> net = resnet10(spatial_dims=3, n_input_channels=1, num_classes=2).eval()
        >>> CAM3D(net, net.layer4, fc_layer=net.fc).attribute(torch.randn(2, 1, 32, 32, 32), target=1).shape
        torch.Size([2, 1, 32, 32, 32])
    """

    fixed_output = VOLUME
