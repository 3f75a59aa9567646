"""Smooth Grad-CAM++ for 1D, 2D and 3D inputs, and ``SmoothGradCAMPlusPlus3D`` for volumes."""

from __future__ import annotations

from typing import Any, final

import torch
import torch.nn.functional as F
from captum.attr import GradientAttribution
from torch import Tensor

from captum_medcam._core.checks import (
    DEFAULT_SEED,
    check_finite_float,
    check_positive_int,
    format_additional_args,
    make_generator,
)
from captum_medcam.attr._base import VOLUME, CAMBase
from captum_medcam.attr._cam import weighted_sum
from captum_medcam.attr._derivatives import layer_derivatives, score_objective
from captum_medcam.attr._grad_cam_plusplus import exp_score_factor
from captum_medcam.attr._interop import captum_attribute

__all__ = ["SmoothGradCAMPlusPlus", "SmoothGradCAMPlusPlus3D"]


def smooth_gradcam_plusplus_weights(acts: Tensor, d1: Tensor, d2: Tensor, d3: Tensor) -> Tensor:
    r"""Smooth Grad-CAM++ channel weights from averaged derivatives.

    With ``D_p`` the ``p``-th derivative of ``Y_c`` with respect to the activations,
    averaged over the noisy copies (``D_p = mean_m exp(S_m) g_m^p`` for the paper's
    ``Y_c = exp(S_c)``, or ``mean_m g_m^p`` without the exponential)::

        alpha_k(p) = D_2,k(p) / (2 D_2,k(p) + sum_q A_k(q) D_3,k(p))   (0 where the
                                                                        denominator is 0)
        w_k        = sum_p alpha_k(p) ReLU(D_1,k(p))

    The averages are taken before ``alpha`` is formed; a mean of Grad-CAM++ maps over the
    same noisy copies (Captum's ``NoiseTunnel`` around :class:`GradCAMPlusPlus`) is a
    different map. With one copy and no noise this is Grad-CAM++'s closed form.

    Args:
        acts: ``(N, K, *S')``, the activations of the clean input.
        d1, d2, d3: ``(N, K, *S')``, the averaged first, second and third derivatives.

    Returns:
        ``(N, K)``.

    Example:
        >>> import torch
        >>> acts = torch.tensor([[[1.0, 2.0]]])                 # sum A = 3
        >>> g = torch.tensor([[[[1.0, 2.0]]], [[[-1.0, 2.0]]]])  # two copies
        >>> d1, d2, d3 = g.mean(0), g.pow(2).mean(0), g.pow(3).mean(0)
        >>> smooth_gradcam_plusplus_weights(acts, d1, d2, d3)  # 0 + 4 / (8 + 3 * 8) * 2
        tensor([[0.2500]])
    """
    total = acts.flatten(2).sum(-1).view(*acts.shape[:2], *([1] * (acts.dim() - 2)))
    denom = 2 * d2 + total * d3
    nonzero = denom != 0
    alpha = d2.where(nonzero, 0.0) / denom.where(nonzero, 1.0)
    return (alpha * F.relu(d1)).flatten(2).sum(-1)


class SmoothGradCAMPlusPlus(CAMBase, GradientAttribution):
    r"""Smooth Grad-CAM++: Grad-CAM++ with its derivatives averaged over noisy inputs.

    For ``M = nt_samples`` copies ``x_m = x + stdevs * e_m`` (``e_m`` standard normal), the
    score's gradients ``g_m = dS_c/dA`` at ``x_m`` and the activations ``A`` of the clean
    input, the paper averages the derivatives of ``Y_c = exp(S_c)`` before forming
    Grad-CAM++'s coefficients::

        D_p        = mean_m exp(S_c(x_m)) g_m^p                    (p = 1, 2, 3)
        alpha_k(p) = D_2,k(p) / (2 D_2,k(p) + sum_q A_k(q) D_3,k(p))   (0 where the
                                                                        denominator is 0)
        w_k        = sum_p alpha_k(p) ReLU(D_1,k(p))
        L          = Up(ReLU(sum_k w_k A_k))

    ``exp_score=False`` averages the plain powers ``g_m^p`` (torchcam). With ``stdevs=0``
    (or one copy of the clean input) this is :class:`GradCAMPlusPlus` with the same
    ``exp_score``.

    **This is not the mean of Grad-CAM++ maps over noisy inputs.** That variant (the
    reimplementation at yiskw713/SmoothGradCAMplusplus, and what "SmoothGrad around a CAM"
    means in Captum) is Captum's ``NoiseTunnel`` around :class:`GradCAMPlusPlus`::

        NoiseTunnel(GradCAMPlusPlus(model, layer)).attribute(
            x, nt_type="smoothgrad", nt_samples=4, stdevs=0.3, target=target)

    It forms ``alpha`` and the map on each noisy copy and averages the maps (taken with
    each copy's own activations); here the derivatives are averaged first and combined with
    the clean input's activations, so a channel whose gradient changes sign between copies
    loses weight.

    Noise: one ``e_m`` per copy, shared by the examples of a batch and drawn from
    ``generator`` (an int seed, default 0, or a ``torch.Generator``), so the same call gives
    the same map and each example's map does not depend on the batch it is in. The copies
    run one after the other, each a forward pass and the gradient to the layer for the whole
    batch, plus one forward pass for the clean activations.

    Differences from torchcam 0.5's ``SmoothGradCAMpp`` (same defaults ``nt_samples=4``,
    ``stdevs=0.3``): torchcam sums ``A(q) D_3(q)`` over the positions in the denominator
    (the paper has ``sum_q A(q)`` times ``D_3`` at the position), takes the ReLU of the last
    copy's gradient instead of ``D_1`` and the last copy's activations in the weighted sum,
    drops ``exp(S)``, adds ``1e-8`` to the denominator, and draws new noise per example from
    torch's global generator.

    Args:
        forward_func: the model, or a function of ``(inputs, *additional_forward_args)``.
        layer: the module whose output (or input) the map explains.
        device_ids: as in Captum, for ``DataParallel`` models.
        reshape_transform: None, or a callable turning the layer's output into
            ``(N, C', *S')``.

    References:
        Omeiza, Speakman, Cintas, Weldemariam. "Smooth Grad-CAM++: An Enhanced Inference
        Level Visualization Technique for Deep Convolutional Neural Network Models".
        IntelliSys 2019. arXiv:1908.01224.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from captum_medcam import GradCAMPlusPlus, SmoothGradCAMPlusPlus
        >>> model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(),
        ...                       nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)).eval()
        >>> x = torch.randn(2, 1, 16, 16)
        >>> SmoothGradCAMPlusPlus(model, model[1]).attribute(x, target=[0, 2]).shape
        torch.Size([2, 1, 16, 16])
        >>> no_noise = SmoothGradCAMPlusPlus(model, model[1]).attribute(x, target=[0, 2], stdevs=0.0)
        >>> torch.allclose(no_noise, GradCAMPlusPlus(model, model[1]).attribute(x, target=[0, 2]))
        True
    """

    @captum_attribute
    def attribute(
        self,
        inputs: Tensor,
        target: Any = None,
        additional_forward_args: Any = None,
        *,
        nt_samples: int = 4,
        stdevs: float = 0.3,
        generator: int | torch.Generator = DEFAULT_SEED,
        exp_score: bool = True,
        relu_attributions: bool = True,
        attribute_to_layer_input: bool = False,
        upsample: bool = True,
        interpolate_mode: str | None = None,
        align_corners: bool = False,
    ) -> Tensor:
        """Compute Smooth Grad-CAM++ maps.

        Args:
            inputs: ``(N, C, *S)`` with 1 to 3 spatial dims (5-D for
                ``SmoothGradCAMPlusPlus3D``), floating point, a tensor or a MONAI
                ``MetaTensor``.
            target: the class to explain, as in Captum: an int, a tuple, a tensor or list
                with one entry per example, or None when the model returns one score per
                example.
            additional_forward_args: further arguments of the model, as in Captum.
            nt_samples: the number of noisy copies ``M`` (Captum's name; torchcam's
                ``num_samples``).
            stdevs: the standard deviation of the Gaussian noise, in the inputs' units
                (Captum's name; torchcam's ``std``).
            generator: an int seed or a ``torch.Generator`` for the noise.
            exp_score: average the derivatives of ``exp(S_c)`` (default, the paper);
                False averages the powers of the score's gradient.
            relu_attributions: apply ReLU to the map at layer resolution (default True).
            attribute_to_layer_input: use the layer's input instead of its output.
            upsample: return maps at input resolution ``(N, 1, *S)``; False returns them at
                layer resolution ``(N, 1, *S')``. Not taken by ``SmoothGradCAMPlusPlus3D``.
            interpolate_mode: ``None`` picks linear/bilinear/trilinear by the number of
                spatial dims. Not taken by ``SmoothGradCAMPlusPlus3D`` (trilinear).
            align_corners: passed to the linear interpolation. Not taken by
                ``SmoothGradCAMPlusPlus3D`` (False).

        Returns:
            Maps ``(N, 1, *S)`` (or ``(N, 1, *S')``) on the inputs' device and dtype; a
            ``MetaTensor`` input gives a ``MetaTensor`` with its metadata.

        Raises:
            TypeError: inputs not a floating tensor; a target or an option of the wrong
                type (``generator`` not an int or a ``torch.Generator``); a model that
                returns a tuple or a dict.
            ValueError: wrong input dims, NaN/inf inputs, a target out of range,
                ``nt_samples < 1``, a negative ``stdevs``, ``exp(S)`` out of the dtype's
                range (use ``exp_score=False``), and the layer errors of the other CAMs.
            RuntimeError: called under ``torch.inference_mode()``.
        """
        output = self._output(upsample, interpolate_mode, align_corners)
        x, mode = self._check_call(
            inputs,
            target,
            output,
            exp_score=exp_score,
            relu_attributions=relu_attributions,
            attribute_to_layer_input=attribute_to_layer_input,
        )
        samples = check_positive_int(nt_samples, "nt_samples")
        sigma = check_finite_float(stdevs, "stdevs", low=0.0)
        gen = make_generator(generator)
        args = format_additional_args(additional_forward_args)
        logit = score_objective("logit")
        d1 = d2 = d3 = torch.zeros((), dtype=x.dtype, device=x.device)
        for _ in range(samples):
            noise = torch.randn(x.shape[1:], generator=gen, device=gen.device, dtype=x.dtype)
            d = layer_derivatives(
                self.forward_func,
                self.layer,
                x + sigma * noise.to(x.device),
                target,
                logit,
                args,
                attribute_to_layer_input=attribute_to_layer_input,
                device_ids=self.device_ids,
                reshape_transform=self.reshape_transform,
            )
            self._check_activations(d.activations, x, "Smooth Grad-CAM++")
            g = d.gradients
            if exp_score:
                g = g * exp_score_factor(
                    d.scores,
                    where=" on a noisy copy",
                    fallback="average the powers of the score's gradient instead",
                ).view(-1, *([1] * (g.dim() - 1)))
                g2, g3 = g * d.gradients, g * d.gradients.square()
            else:
                g2 = g.square()
                g3 = g2 * g
            d1, d2, d3 = d1 + g, d2 + g2, d3 + g3
        _, acts = self._capture(
            x, args, attribute_to_layer_input=attribute_to_layer_input, method="Smooth Grad-CAM++"
        )
        weights = smooth_gradcam_plusplus_weights(acts, d1 / samples, d2 / samples, d3 / samples)
        cam = weighted_sum(weights, acts)
        if relu_attributions:
            cam = F.relu(cam)
        return self._finish(cam, x, inputs, output, mode)


@final
class SmoothGradCAMPlusPlus3D(SmoothGradCAMPlusPlus):
    r"""Smooth Grad-CAM++ for volumes: ``(N, C, D, H, W)`` in, ``(N, 1, D, H, W)`` out.

    :class:`SmoothGradCAMPlusPlus` (see there for the formula, the noise and how it differs
    from ``NoiseTunnel`` around :class:`GradCAMPlusPlus3D`) with 5-D input required and the
    map always upsampled trilinearly to the input volume (``align_corners=False``);
    ``upsample``, ``interpolate_mode`` and ``align_corners`` are fixed (passing one is a
    ``TypeError``). Each noisy copy costs one forward pass and the gradient to the layer.

    References:
        Omeiza et al. "Smooth Grad-CAM++". IntelliSys 2019. arXiv:1908.01224.

    Example:
        >>> import torch
        >>> from monai.networks.nets import resnet10
        >>> from captum_medcam import SmoothGradCAMPlusPlus3D
        >>> net = resnet10(spatial_dims=3, n_input_channels=1, num_classes=2).eval()
        >>> cam = SmoothGradCAMPlusPlus3D(net, net.layer4)
        >>> cam.attribute(torch.randn(1, 1, 32, 32, 32), target=1, nt_samples=2).shape
        torch.Size([1, 1, 32, 32, 32])
    """

    fixed_output = VOLUME
