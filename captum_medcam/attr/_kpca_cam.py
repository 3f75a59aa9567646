"""KPCA-CAM for 1D, 2D and 3D inputs, and ``KPCACAM3D`` for volumes."""

from __future__ import annotations

from typing import Any, final

from torch import Tensor

from captum_medcam._core.checks import check_choice, check_finite_float
from captum_medcam.attr._base import VOLUME, CAMBase
from captum_medcam.attr._eigen_cam import KERNELS, SIGN_RULES, kernel_principal_component_map
from captum_medcam.attr._interop import captum_attribute

__all__ = ["KPCACAM", "KPCACAM3D"]


class KPCACAM(CAMBase):
    r"""KPCA-CAM: the first kernel principal component of the layer's positions.

    For each example, with ``X`` the ``(P, K)`` matrix of the activations (``P = |S'|``
    positions by ``K`` channels; each channel centred over the positions when ``center``),
    ``G = k(X, X)`` the kernel between positions and ``G_c`` its double-centred form::

        G_c alpha_1 = lambda_1 alpha_1                (largest eigenvalue, |alpha_1| = 1)
        L           = Up(ReLU(sqrt(lambda_1) alpha_1))   reshaped to (1, *S')

    the first column of scikit-learn's ``KernelPCA(n_components=1).fit_transform(X)``, which is
    what pytorch-grad-cam's ``KPCA_CAM`` computes. Kernels (scikit-learn's formulas, ``gamma``
    defaulting to ``1 / K``): ``"linear"``, ``"poly"`` ``(gamma <a, b> + coef0) ** degree``,
    ``"rbf"`` ``exp(-gamma |a - b|^2)``, ``"sigmoid"`` ``tanh(gamma <a, b> + coef0)`` (the
    default, as pytorch-grad-cam) and ``"cosine"``. With the linear kernel the map is
    :class:`EigenCAM`'s with ``center=True``. Class-agnostic: no gradient, no class.

    The defaults follow pytorch-grad-cam 1.5.7 (kernel ``"sigmoid"``, ``gamma=None``,
    ``degree=3``, ``coef0=1``, channels centred first) except for the sign: scikit-learn
    makes the entry of largest magnitude positive (``svd_flip``), a numerical convention;
    here the map agrees with the channel sum of the activations by default (positive where
    the layer responds more, see :class:`EigenCAM`), and ``sign="largest_entry"`` gives
    scikit-learn's sign, hence pytorch-grad-cam's map exactly. Other differences:
    the eigendecomposition is ``torch.linalg.eigh`` in the inputs' dtype on their device
    (scikit-learn uses NumPy on the CPU, and ARPACK from a random start above 200
    positions, which finds the same component); the map is not min-max normalised and is
    resized by ``F.interpolate`` (pytorch-grad-cam: OpenCV in 2D, SciPy's spline ``zoom`` in
    3D). Memory and time grow as ``P^2`` and ``P^3`` per example, small for a CNN's last
    block (``P`` from 8 to a few hundred).

    Args:
        forward_func: the model, or a function of ``(inputs, *additional_forward_args)``.
        layer: the module whose output (or input) the map explains.
        device_ids: as in Captum, for ``DataParallel`` models.
        reshape_transform: None, or a callable turning the layer's output into
            ``(N, C', *S')`` (a transformer's tokens: see :mod:`captum_medcam.reshapes`).

    References:
        Karmani, Sivakaran, Prasad, Ali, Yang, Tang. "KPCA-CAM: Visual Explainability of
        Deep Computer Vision Models using Kernel PCA". 2024. arXiv:2410.00267.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from captum_medcam import KPCACAM
        >>> model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(),
        ...                       nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)).eval()
        >>> KPCACAM(model, model[1]).attribute(torch.randn(2, 1, 12, 12), kernel="rbf").shape
        torch.Size([2, 1, 12, 12])
    """

    @captum_attribute
    def attribute(
        self,
        inputs: Tensor,
        target: Any = None,
        additional_forward_args: Any = None,
        *,
        kernel: str = "sigmoid",
        gamma: float | None = None,
        degree: float = 3.0,
        coef0: float = 1.0,
        center: bool = True,
        sign: str = "channel_sum",
        relu_attributions: bool = True,
        attribute_to_layer_input: bool = False,
        upsample: bool = True,
        interpolate_mode: str | None = None,
        align_corners: bool = False,
    ) -> Tensor:
        """Compute KPCA-CAM maps.

        Args:
            inputs: ``(N, C, *S)`` with 1 to 3 spatial dims (5-D ``(N, C, D, H, W)`` for
                :class:`KPCACAM3D`), floating point, a tensor or a MONAI ``MetaTensor``.
            target: accepted, so that the method is called like every other (Captum's
                ``NoiseTunnel`` and metrics, the evaluation pipeline, MONAI handlers pass
                one), and checked against the model's output when given; the map does not
                depend on it (class-agnostic; pytorch-grad-cam also takes and ignores it).
            additional_forward_args: further arguments of the model, as in Captum.
            kernel: ``"linear"``, ``"poly"``, ``"rbf"``, ``"sigmoid"`` (default) or
                ``"cosine"``.
            gamma: coefficient of the poly, rbf and sigmoid kernels (>= 0); None uses
                ``1 / channels``.
            degree: degree of the poly kernel (default 3).
            coef0: constant of the poly and sigmoid kernels (default 1).
            center: subtract each channel's mean over the positions before the kernel
                (default True, as pytorch-grad-cam).
            sign: how the component's sign is fixed: ``"channel_sum"`` (default; the map
                agrees with the channel sum of the activations) or ``"largest_entry"``
                (scikit-learn's and pytorch-grad-cam's).
            relu_attributions: apply ReLU to the map at layer resolution (default True, as
                pytorch-grad-cam).
            attribute_to_layer_input: use the layer's input instead of its output.
            upsample: return maps at input resolution ``(N, 1, *S)``; False returns them at
                layer resolution ``(N, 1, *S')``. Not taken by :class:`KPCACAM3D`.
            interpolate_mode: ``None`` picks linear/bilinear/trilinear by the number of
                spatial dims; ``"nearest"`` and ``"area"`` also work. Not taken by
                :class:`KPCACAM3D` (always trilinear).
            align_corners: passed to the linear interpolation. Not taken by
                :class:`KPCACAM3D` (always False).

        Returns:
            Maps ``(N, 1, *S)`` (or ``(N, 1, *S')`` with ``upsample=False``) on the inputs'
            device and dtype; a ``MetaTensor`` input gives a ``MetaTensor`` with its
            metadata.

        Raises:
            TypeError: inputs not a floating tensor; a target or an option of the wrong type;
                a model that returns a tuple or a dict; an output keyword passed to
                :class:`KPCACAM3D`.
            ValueError: an unknown kernel or sign rule, a negative ``gamma`` or ``degree``;
                wrong input dims, NaN/inf inputs, a target that does not fit the model's
                output, a layer not reached by the forward pass, called twice in it or with
                a tuple output, an interpolation mode that does not fit the number of
                spatial dims.
        """
        check_choice(kernel, "kernel", KERNELS)
        check_choice(sign, "sign", SIGN_RULES)
        if gamma is not None:
            check_finite_float(gamma, "gamma", low=0.0)
        check_finite_float(degree, "degree", low=0.0)
        check_finite_float(coef0, "coef0")
        return self._activation_cam(
            inputs,
            target,
            additional_forward_args,
            lambda acts: kernel_principal_component_map(
                acts, kernel, gamma=gamma, degree=degree, coef0=coef0, center=center, sign=sign
            ),
            output=self._output(upsample, interpolate_mode, align_corners),
            relu_attributions=relu_attributions,
            attribute_to_layer_input=attribute_to_layer_input,
            method="KPCA-CAM",
            center=center,
        )


@final
class KPCACAM3D(KPCACAM):
    r"""KPCA-CAM for volumes: ``(N, C, D, H, W)`` in, ``(N, 1, D, H, W)`` out.

    :class:`KPCACAM` (see there for the formula, the kernels and the sign rule) with 5-D
    input required and the map always upsampled trilinearly to the input volume
    (``align_corners=False``); ``upsample``, ``interpolate_mode`` and ``align_corners`` are
    fixed (passing one is a ``TypeError``).

    References:
        Karmani et al. "KPCA-CAM: Visual Explainability of Deep Computer Vision Models using
        Kernel PCA". 2024. arXiv:2410.00267.

    Example:
        >>> import torch
        >>> from monai.networks.nets import resnet10
        >>> from captum_medcam import KPCACAM3D
        >>> net = resnet10(spatial_dims=3, n_input_channels=1, num_classes=2).eval()
        >>> KPCACAM3D(net, net.layer4).attribute(torch.randn(2, 1, 32, 32, 32)).shape
        torch.Size([2, 1, 32, 32, 32])
    """

    fixed_output = VOLUME
