"""FEM, the feature explanation method, for 1D, 2D and 3D inputs, and ``FEM3D`` for volumes.

The math is one function without hooks, :func:`fem_map`.
"""

from __future__ import annotations

import math
from typing import Any, final

from torch import Tensor

from captum_medcam._core.checks import check_choice, check_finite_float
from captum_medcam.attr._base import VOLUME, CAMBase
from captum_medcam.attr._interop import captum_attribute

__all__ = ["FEM", "FEM3D"]

#: ``"paper"``: the authors' code (binary masks weighted by the channel means);
#: ``"pytorch-grad-cam"``: its ``FEM`` (activations weighted by the fraction of positions
#: above the threshold).
FEM_VARIANTS = ("paper", "pytorch-grad-cam")


def fem_map(acts: Tensor, k: float = 2.0, variant: str = "paper") -> Tensor:
    r"""FEM from a layer's activations: channels' unusually strong positions, weighted.

    For each example and channel ``k`` of ``A`` ``(N, K, *S')``, with ``mu_k`` and
    ``sigma_k`` the mean and the (population, ``ddof=0``) standard deviation of ``A_k`` over
    the ``P = |S'|`` positions, the k-sigma rule gives a binary mask::

        B_k(p) = 1  if  A_k(p) > mu_k + k sigma_k,  else 0

        FEM(p) = sum_k mu_k B_k(p)                     variant="paper" (the authors' code)
        FEM(p) = sum_k mean_q(B_k(q)) A_k(p)           variant="pytorch-grad-cam"

    Fuad et al. weight each channel's binary mask by the channel's mean activation
    (``aggregate_binary_maps`` in their code; the same in Xplique's ``FEM``);
    pytorch-grad-cam 1.5.7 exchanges the roles: it weights the activations by the
    fraction of each channel's positions above the threshold.

    Args:
        acts: ``(N, K, *S')``, 1 to 3 spatial dims.
        k: the number of standard deviations above the mean (2 in the paper and both
            implementations).
        variant: ``"paper"`` (default) or ``"pytorch-grad-cam"``.

    Returns:
        ``(N, 1, *S')`` in the dtype of ``acts``.

    Raises:
        ValueError: ``k`` negative, not finite, or so large that no position can pass the
            threshold: a value exceeds ``mu + k sigma`` only if ``k < sqrt(P - 1)``, so with
            ``P`` positions and ``k >= sqrt(P - 1)`` every mask is empty and the map is
            zero (a 2x2 layer and ``k = 2``); choose a smaller ``k`` or an earlier layer.

    Example:
        >>> import torch
        >>> acts = torch.zeros(1, 2, 3, 3)
        >>> acts[0, 0, 1, 1] = 9.0                       # one outlier in channel 0
        >>> acts[0, 1] = 1.0                             # channel 1 constant: no outlier
        >>> fem_map(acts).flatten()                      # mu_0 = 1 at the outlier
        tensor([0., 0., 0., 0., 1., 0., 0., 0., 0.])
    """
    k = check_finite_float(k, "k", low=0.0)
    check_choice(variant, "variant", FEM_VARIANTS)
    flat = acts.flatten(2)
    positions = flat.shape[-1]
    if k >= math.sqrt(positions - 1):
        raise ValueError(
            f"k={k:g} with {positions} positions in the layer: no activation can exceed its "
            f"channel's mean + k * std unless k < sqrt(positions - 1) = "
            f"{math.sqrt(positions - 1):.3g}, so the map would be zero; choose a smaller k or "
            "a layer with more positions"
        )
    mean = flat.mean(-1, keepdim=True)
    std = flat.std(-1, correction=0, keepdim=True)
    mask = (flat > mean + k * std).to(acts.dtype)
    if variant == "paper":
        cam = (mean * mask).sum(1, keepdim=True)
    else:
        cam = (mask.mean(-1, keepdim=True) * flat).sum(1, keepdim=True)
    return cam.view(acts.shape[0], 1, *acts.shape[2:])


class FEM(CAMBase):
    r"""FEM, the feature explanation method: each channel's unusually strong positions.

    For each example and channel ``k`` of the activations ``A`` ``(K, *S')``, with ``mu_k``
    and ``sigma_k`` the mean and the population standard deviation of ``A_k`` over the
    positions, the k-sigma rule keeps the positions above ``mu_k + k sigma_k``::

        B_k(p) = 1  if  A_k(p) > mu_k + k sigma_k,  else 0
        L      = Up(ReLU(sum_k mu_k B_k))            variant="paper" (default)
        L      = Up(ReLU(sum_k mean_q(B_k(q)) A_k))   variant="pytorch-grad-cam"

    Written by Fuad et al. for 3D CNNs (video action recognition). Class-agnostic: no
    gradient, no class; one forward pass, works under ``torch.no_grad()`` and
    ``torch.inference_mode()``. The default follows the authors' code, which weights each
    channel's binary mask by the channel's mean (so does Xplique's ``FEM``);
    pytorch-grad-cam 1.5.7 exchanges the roles, weighting the activations by the fraction
    of each channel's positions above the threshold, and ``variant="pytorch-grad-cam"``
    computes that (equal to it to rounding, before its min-max normalisation and resize).
    The authors divide the map by its maximum and pytorch-grad-cam min-max normalises it;
    here it is not normalised (a display step). A threshold that no value can pass (``k >=
    sqrt(P - 1)`` for ``P`` positions, e.g. ``k = 2`` on a 2x2 layer) is an error, not an
    all-zero map.

    Args:
        forward_func: the model, or a function of ``(inputs, *additional_forward_args)``.
        layer: the module whose output (or input) the map explains.
        device_ids: as in Captum, for ``DataParallel`` models.
        reshape_transform: None, or a callable turning the layer's output into
            ``(N, C', *S')`` (a transformer's tokens: see :mod:`captum_medcam.reshapes`).

    References:
        Fuad, Martin, Giot, Bourqui, Benois-Pineau, Zemmari. "Features Understanding in 3D
        CNNs for Actions Recognition in Video". IPTA 2020. doi:10.1109/IPTA50016.2020.9286629.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from captum_medcam import FEM
        >>> model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(),
        ...                       nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)).eval()
        >>> FEM(model, model[1]).attribute(torch.randn(2, 1, 16, 16), k=2.0).shape
        torch.Size([2, 1, 16, 16])
    """

    @captum_attribute
    def attribute(
        self,
        inputs: Tensor,
        target: Any = None,
        additional_forward_args: Any = None,
        *,
        k: float = 2.0,
        variant: str = "paper",
        relu_attributions: bool = True,
        attribute_to_layer_input: bool = False,
        upsample: bool = True,
        interpolate_mode: str | None = None,
        align_corners: bool = False,
    ) -> Tensor:
        """Compute FEM maps.

        Args:
            inputs: ``(N, C, *S)`` with 1 to 3 spatial dims (5-D ``(N, C, D, H, W)`` for
                :class:`FEM3D`), floating point, a tensor or a MONAI ``MetaTensor``.
            target: accepted, so that the method is called like every other (Captum's
                ``NoiseTunnel`` and metrics, the evaluation pipeline, MONAI handlers pass
                one), and checked against the model's output when given; the map does not
                depend on it (class-agnostic; pytorch-grad-cam also takes and ignores it).
            additional_forward_args: further arguments of the model, as in Captum.
            k: standard deviations above the channel's mean (default 2, as the paper).
            variant: ``"paper"`` (default) or ``"pytorch-grad-cam"``, see above.
            relu_attributions: apply ReLU to the map at layer resolution (default True, as
                pytorch-grad-cam; a no-op for non-negative activations).
            attribute_to_layer_input: use the layer's input instead of its output.
            upsample: return maps at input resolution ``(N, 1, *S)``; False returns them at
                layer resolution ``(N, 1, *S')``. Not taken by :class:`FEM3D`.
            interpolate_mode: ``None`` picks linear/bilinear/trilinear by the number of
                spatial dims; ``"nearest"`` and ``"area"`` also work. Not taken by
                :class:`FEM3D` (always trilinear).
            align_corners: passed to the linear interpolation. Not taken by :class:`FEM3D`
                (always False).

        Returns:
            Maps ``(N, 1, *S)`` (or ``(N, 1, *S')`` with ``upsample=False``) on the inputs'
            device and dtype; a ``MetaTensor`` input gives a ``MetaTensor`` with its
            metadata.

        Raises:
            TypeError: inputs not a floating tensor; a target or an option of the wrong type;
                a model that returns a tuple or a dict; an output keyword passed to
                :class:`FEM3D`.
            ValueError: a negative ``k`` or one that no activation can pass, an unknown
                variant; wrong input dims, NaN/inf inputs, a target that does not fit the
                model's output, a layer not reached by the forward pass, called twice in it
                or with a tuple output, an interpolation mode that does not fit the number
                of spatial dims.
        """
        check_finite_float(k, "k", low=0.0)
        check_choice(variant, "variant", FEM_VARIANTS)
        return self._activation_cam(
            inputs,
            target,
            additional_forward_args,
            lambda acts: fem_map(acts, k, variant),
            output=self._output(upsample, interpolate_mode, align_corners),
            relu_attributions=relu_attributions,
            attribute_to_layer_input=attribute_to_layer_input,
            method="FEM",
        )


@final
class FEM3D(FEM):
    r"""FEM for volumes: ``(N, C, D, H, W)`` in, ``(N, 1, D, H, W)`` out.

    :class:`FEM` (see there for the formula and the variants) with 5-D input required and
    the map always upsampled trilinearly to the input volume (``align_corners=False``);
    ``upsample``, ``interpolate_mode`` and ``align_corners`` are fixed (passing one is a
    ``TypeError``).

    References:
        Fuad, Martin, Giot, Bourqui, Benois-Pineau, Zemmari. "Features Understanding in 3D
        CNNs for Actions Recognition in Video". IPTA 2020. doi:10.1109/IPTA50016.2020.9286629.

    Example:
        >>> import torch
        >>> from monai.networks.nets import resnet10
        >>> from captum_medcam import FEM3D
        >>> net = resnet10(spatial_dims=3, n_input_channels=1, num_classes=2).eval()
        >>> FEM3D(net, net.layer4).attribute(torch.randn(2, 1, 32, 32, 32)).shape
        torch.Size([2, 1, 32, 32, 32])
    """

    fixed_output = VOLUME
