"""Eigen-CAM for 1D, 2D and 3D inputs, ``EigenCAM3D``, and the principal-component math
that EigenGrad-CAM (``_eigen_grad_cam.py``) and KPCA-CAM (``_kpca_cam.py``) share.

Each example's layer tensor ``(K, *S')`` is read as a matrix ``X`` of ``|S'|`` positions
(rows) by ``K`` channels (columns). The map is the projection of every position on the
first principal direction of ``X`` (Eigen-CAM), of ``X`` after a kernel (KPCA-CAM), or of the
gradient-times-activation matrix (EigenGrad-CAM). The math is in small functions without
hooks, written once for any number of spatial dims.

Sign convention. A principal direction is defined up to its sign (``X = U S V^T`` and
``(-U) S (-V)^T`` are both SVDs), and LAPACK picks either; pytorch-grad-cam keeps LAPACK's
choice, so its Eigen-CAM map is the other side of the component for some inputs. Two
deterministic rules (``sign=``):

- ``"channel_sum"`` (default): the map has a positive inner product with the channel sum
  ``s(p) = sum_k X(p, k)`` of the matrix that is decomposed, so that positive means "more
  of what the layer responds to" (for Eigen-CAM, the total activation; for EigenGrad-CAM,
  HiResCAM's map ``sum_k g_k A_k``). For PCA this is the sign that makes the loadings
  ``v_1`` sum to a positive number, since ``<X v_1, X 1> = s_1^2 sum(v_1)``. For non-negative
  activations without centring the map is then non-negative. When the inner product is 0
  to rounding (``s`` constant, or orthogonal to the component) the second rule decides.
- ``"largest_entry"``: the map's entry of largest magnitude is positive (the first one on
  ties): scikit-learn's ``svd_flip``, which its ``KernelPCA`` (hence pytorch-grad-cam's
  KPCA-CAM) applies, and Seg-Eigen-CAM's sign correction (Chung and Ying 2025, eq. 13).
  It is a numerical convention: on a ResNet-18's ``layer4`` (random weights, 224^2
  inputs) the centred Eigen-CAM map it gives correlates at -0.99 with the total activation.
"""

from __future__ import annotations

from typing import Any, final

import torch
from torch import Tensor

from captum_medcam._core.checks import check_choice, check_finite_float
from captum_medcam.attr._base import VOLUME, CAMBase
from captum_medcam.attr._interop import captum_attribute

__all__ = ["EigenCAM", "EigenCAM3D"]

#: The kernels of KPCA-CAM (scikit-learn's names and formulas, as pytorch-grad-cam uses them).
KERNELS = ("linear", "poly", "rbf", "sigmoid", "cosine")
#: How the sign of a principal component is fixed (see the module's docstring).
SIGN_RULES = ("channel_sum", "largest_entry")


def _linalg_dtype(x: Tensor) -> Tensor:
    """``x`` in float32 when its dtype has no SVD or eigh (float16, bfloat16)."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def _as_rows(x: Tensor, center: bool) -> Tensor:
    """``(N, K, *S')`` -> ``(N, |S'|, K)``, each channel centred over positions if asked."""
    rows = x.flatten(2).transpose(1, 2)
    if center:
        rows = rows - rows.mean(1, keepdim=True)
    return rows


def largest_entry_positive(maps: Tensor) -> Tensor:
    """Flip each map so that its entry of largest magnitude is positive.

    Ties in magnitude are settled by the first entry in memory order, as NumPy's and
    PyTorch's ``argmax`` do (scikit-learn's ``svd_flip``). A map that is all zero stays zero.

    Args:
        maps: ``(N, *S')``, one map per example, any number of dims after the first.

    Returns:
        Each map multiplied by +1 or -1, the shape of ``maps``.
    """
    flat = maps.flatten(1)
    peak = flat.gather(1, flat.abs().argmax(1, keepdim=True))
    sign = torch.where(peak < 0, -1.0, 1.0).to(maps.dtype)
    return maps * sign.view(-1, *([1] * (maps.dim() - 1)))


def orient(projection: Tensor, rows: Tensor, sign: str = "channel_sum") -> Tensor:
    """Fix the sign of each example's principal component by one of :data:`SIGN_RULES`.

    Args:
        projection: ``(N, P)``, each example's component over its ``P`` positions.
        rows: ``(N, P, K)``, the matrix that was decomposed (centred when it was).
        sign: ``"channel_sum"`` or ``"largest_entry"`` (see the module's docstring).

    Returns:
        ``(N, P)``, each example's ``projection`` or its negative.
    """
    check_choice(sign, "sign", SIGN_RULES)
    by_largest = largest_entry_positive(projection)
    if sign == "largest_entry":
        return by_largest
    channel_sum = rows.sum(-1)
    inner = (projection * channel_sum).sum(1, keepdim=True)
    scale = projection.norm(dim=1, keepdim=True) * channel_sum.norm(dim=1, keepdim=True)
    decided = inner.abs() > torch.finfo(projection.dtype).eps ** 0.5 * scale
    return torch.where(decided, projection * torch.where(inner < 0, -1.0, 1.0), by_largest)


def principal_component_map(
    x: Tensor, *, center: bool = False, sign: str = "channel_sum"
) -> Tensor:
    r"""The projection of each position on the first principal direction of the layer.

    With ``X`` the ``(|S'|, K)`` matrix of one example (positions by channels) and
    ``X = U S V^T`` its SVD, the map is ``X v_1 = s_1 u_1`` (Muhammad and Yeasin 2020,
    eq. 4: the projection on the first right singular vector), with the sign fixed by
    :func:`orient`. ``center=True`` first subtracts each channel's mean
    over positions, as pytorch-grad-cam's ``get_2d_projection`` does; the map then sums to
    zero over positions.

    Args:
        x: ``(N, K, *S')`` activations (Eigen-CAM) or gradients times activations
            (EigenGrad-CAM), 1 to 3 spatial dims.
        center: centre each channel over positions before the SVD.
        sign: ``"channel_sum"`` (default) or ``"largest_entry"``, see :func:`orient`.

    Returns:
        ``(N, 1, *S')`` in the dtype of ``x``.

    Example:
        >>> import torch
        >>> u = torch.tensor([1.0, 2.0, 0.0, 3.0])     # a rank-1 layer: A_k(p) = u(p) v_k
        >>> v = torch.tensor([0.6, 0.8])                # |v| = 1
        >>> acts = (v[:, None] * u[None, :]).view(1, 2, 2, 2)
        >>> torch.allclose(principal_component_map(acts).flatten(), u)   # s_1 u_1 = |v| u
        True
    """
    n, _, *spatial = x.shape
    rows = _as_rows(_linalg_dtype(x), center)
    _, _, vh = torch.linalg.svd(rows, full_matrices=False)
    projection = (rows @ vh[:, 0, :].unsqueeze(-1)).squeeze(-1)  # (N, |S'|)
    return orient(projection, rows, sign).reshape(n, 1, *spatial).to(x.dtype)


def kernel_matrix(
    rows: Tensor,
    kernel: str = "sigmoid",
    *,
    gamma: float | None = None,
    degree: float = 3.0,
    coef0: float = 1.0,
) -> Tensor:
    r"""The kernel between every pair of positions, scikit-learn's definitions.

    For rows ``a``, ``b`` (channel vectors of two positions) and ``gamma`` (default
    ``1 / K``)::

        linear   <a, b>
        poly     (gamma <a, b> + coef0) ** degree
        rbf      exp(-gamma |a - b|^2)
        sigmoid  tanh(gamma <a, b> + coef0)
        cosine   <a, b> / (|a| |b|)          (a zero row gives 0)

    Args:
        rows: ``(N, P, K)``.
        kernel: one of :data:`KERNELS`.
        gamma, degree, coef0: the kernel's parameters (ignored where it has none).

    Returns:
        ``(N, P, P)``.
    """
    g = 1.0 / rows.shape[-1] if gamma is None else gamma
    if kernel == "cosine":
        norms = rows.norm(dim=-1, keepdim=True)
        rows = rows / torch.where(norms == 0, torch.ones_like(norms), norms)
    dots = rows @ rows.transpose(1, 2)
    if kernel in ("linear", "cosine"):
        return dots
    if kernel == "poly":
        return (g * dots + coef0).pow(degree)
    if kernel == "sigmoid":
        return torch.tanh(g * dots + coef0)
    squares = rows.square().sum(-1)
    distances = (squares.unsqueeze(2) + squares.unsqueeze(1) - 2 * dots).clamp_min(0)
    distances = distances * (1 - torch.eye(rows.shape[1], dtype=rows.dtype, device=rows.device))
    return torch.exp(-g * distances)


def kernel_principal_component_map(
    x: Tensor,
    kernel: str = "sigmoid",
    *,
    gamma: float | None = None,
    degree: float = 3.0,
    coef0: float = 1.0,
    center: bool = True,
    sign: str = "channel_sum",
) -> Tensor:
    r"""The first kernel principal component of the positions (KPCA-CAM).

    For one example, ``X`` ``(|S'|, K)`` (channels centred over positions when ``center``,
    as pytorch-grad-cam's ``get_2d_projection_kernel`` does before calling scikit-learn's
    ``KernelPCA(n_components=1)``), ``G = k(X, X)`` the kernel matrix and
    ``G_c = (I - 1/P) G (I - 1/P)`` its double-centred form (``P = |S'|``)::

        G_c alpha_1 = lambda_1 alpha_1     (largest eigenvalue, |alpha_1| = 1)
        map         = sqrt(max(lambda_1, 0)) alpha_1

    which is ``KernelPCA.fit_transform``'s first column, with the sign fixed by
    :func:`orient`: ``sign="largest_entry"`` is scikit-learn's ``svd_flip``, so that the map
    is pytorch-grad-cam's exactly; the default ``"channel_sum"`` makes the map agree with
    the channel sum of the (centred) activations. With the linear kernel the map equals
    :func:`principal_component_map` with ``center=True`` (and the same ``sign``).

    Memory and time grow as ``P^2`` and ``P^3`` per example (a ``P x P`` kernel and its
    eigendecomposition), which is small for the last block of a CNN (``P = 8`` to ``512``).

    Args:
        x: ``(N, K, *S')``.
        kernel: ``"linear"``, ``"poly"``, ``"rbf"``, ``"sigmoid"`` (default, as
            pytorch-grad-cam's ``KPCA_CAM``) or ``"cosine"``; see :func:`kernel_matrix`.
        gamma: kernel coefficient of poly, rbf and sigmoid; None uses ``1 / K``.
        degree, coef0: of the poly and sigmoid kernels (scikit-learn's defaults 3 and 1,
            which pytorch-grad-cam keeps).
        center: centre each channel over positions before the kernel.
        sign: ``"channel_sum"`` (default) or ``"largest_entry"``, see :func:`orient`.

    Returns:
        ``(N, 1, *S')`` in the dtype of ``x``.
    """
    check_choice(kernel, "kernel", KERNELS)
    if gamma is not None:
        check_finite_float(gamma, "gamma", low=0.0)
    check_finite_float(degree, "degree", low=0.0)
    check_finite_float(coef0, "coef0")
    n, _, *spatial = x.shape
    rows = _as_rows(_linalg_dtype(x), center)
    gram = kernel_matrix(rows, kernel, gamma=gamma, degree=degree, coef0=coef0)
    gram = gram - gram.mean(1, keepdim=True)
    gram = gram - gram.mean(2, keepdim=True)
    gram = (gram + gram.transpose(1, 2)) / 2  # exactly symmetric for eigh
    values, vectors = torch.linalg.eigh(gram)
    projection = vectors[..., -1] * values[:, -1:].clamp_min(0).sqrt()
    return orient(projection, rows, sign).reshape(n, 1, *spatial).to(x.dtype)


class EigenCAM(CAMBase):
    r"""Eigen-CAM: the layer's activations projected on their first principal direction.

    For each example, with ``X`` the ``(|S'|, K)`` matrix of the activations ``A``
    ``(K, *S')`` (positions by channels) and ``v_1`` its first right singular vector::

        L = Up(ReLU(X v_1))                  reshaped to (1, *S'); Up: linear / bilinear /
                                             trilinear, align_corners=False

    The map uses no gradient and no class: it shows what the layer responds to most,
    whatever the prediction (class-agnostic). One forward pass, no backward; works under
    ``torch.no_grad()`` and ``torch.inference_mode()``.

    Defaults follow the paper's equations (Muhammad and Yeasin 2020, eq. 3-4): the SVD of the
    activation matrix as it is. ``center=True`` first subtracts each channel's mean over the
    positions, as pytorch-grad-cam's ``EigenCAM`` does (its comment: "otherwise the image
    returned is negative", which is the sign ambiguity of the SVD). The sign of ``v_1`` is
    fixed so that the map agrees with the channel sum of the activations (``sign=
    "channel_sum"``: positive where the layer responds more; for non-negative activations
    without centring the whole map is then non-negative); ``sign="largest_entry"`` makes
    the map's largest entry positive instead (scikit-learn's ``svd_flip``, Seg-Eigen-CAM's
    correction). pytorch-grad-cam keeps LAPACK's sign, so after its ReLU its map is the
    other side of the component for some inputs. Other differences from pytorch-grad-cam:
    it always applies ReLU, min-max normalises each map and resizes it with OpenCV (2D) or
    SciPy's spline ``zoom`` (3D), computes in NumPy on the CPU, returns float32 and replaces
    NaN activations by 0; here the map is not normalised (a display step), resized by
    ``F.interpolate``, computed in the inputs' dtype on their device, and NaN is not
    hidden. With ``center=True`` and the same
    normalisation and resize, the maps agree with pytorch-grad-cam's to float32 rounding
    wherever its sign agrees (the tests compare them).

    Args:
        forward_func: the model, or a function of ``(inputs, *additional_forward_args)``.
        layer: the module whose output (or input) the map explains.
        device_ids: as in Captum, for ``DataParallel`` models.
        reshape_transform: None, or a callable turning the layer's output into
            ``(N, C', *S')`` (a transformer's tokens: see :mod:`captum_medcam.reshapes`).

    References:
        Muhammad, Yeasin. "Eigen-CAM: Class Activation Map using Principal Components".
        IJCNN 2020. arXiv:2008.00299.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from captum_medcam import EigenCAM
        >>> model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(),
        ...                       nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)).eval()
        >>> maps = EigenCAM(model, model[1]).attribute(torch.randn(2, 1, 16, 16))
        >>> maps.shape, bool((maps >= 0).all())
        (torch.Size([2, 1, 16, 16]), True)
    """

    @captum_attribute
    def attribute(
        self,
        inputs: Tensor,
        target: Any = None,
        additional_forward_args: Any = None,
        *,
        center: bool = False,
        sign: str = "channel_sum",
        relu_attributions: bool = True,
        attribute_to_layer_input: bool = False,
        upsample: bool = True,
        interpolate_mode: str | None = None,
        align_corners: bool = False,
    ) -> Tensor:
        """Compute Eigen-CAM maps.

        Args:
            inputs: ``(N, C, *S)`` with 1 to 3 spatial dims (5-D ``(N, C, D, H, W)`` for
                :class:`EigenCAM3D`), floating point, a tensor or a MONAI ``MetaTensor``.
            target: accepted, so that the method is called like every other (Captum's
                ``NoiseTunnel`` and metrics, the evaluation pipeline, MONAI handlers pass
                one), and checked against the model's output when given; the map does not
                depend on it (class-agnostic; pytorch-grad-cam also takes and ignores it).
            additional_forward_args: further arguments of the model, as in Captum.
            center: subtract each channel's mean over the positions before the SVD
                (pytorch-grad-cam); default False (the paper).
            sign: how the component's sign is fixed: ``"channel_sum"`` (default; the map
                agrees with the channel sum of the activations) or ``"largest_entry"``
                (the map's largest entry is positive).
            relu_attributions: apply ReLU to the map at layer resolution (default True, as
                pytorch-grad-cam; without centring the map is non-negative anyway for
                non-negative activations).
            attribute_to_layer_input: use the layer's input instead of its output.
            upsample: return maps at input resolution ``(N, 1, *S)``; False returns them at
                layer resolution ``(N, 1, *S')``. Not taken by :class:`EigenCAM3D`.
            interpolate_mode: ``None`` picks linear/bilinear/trilinear by the number of
                spatial dims; ``"nearest"`` and ``"area"`` also work. Not taken by
                :class:`EigenCAM3D` (always trilinear).
            align_corners: passed to the linear interpolation. Not taken by
                :class:`EigenCAM3D` (always False).

        Returns:
            Maps ``(N, 1, *S)`` (or ``(N, 1, *S')`` with ``upsample=False``) on the inputs'
            device and dtype; a ``MetaTensor`` input gives a ``MetaTensor`` with its
            metadata.

        Raises:
            TypeError: inputs not a floating tensor; a target or an option of the wrong type;
                a model that returns a tuple or a dict; an output keyword passed to
                :class:`EigenCAM3D`.
            ValueError: an unknown sign rule; wrong input dims, NaN/inf inputs, a target
                that does not fit the model's output, a layer not reached by the forward
                pass, called twice in it or with a tuple output, an interpolation mode that
                does not fit the number of spatial dims.
        """
        check_choice(sign, "sign", SIGN_RULES)
        return self._activation_cam(
            inputs,
            target,
            additional_forward_args,
            lambda acts: principal_component_map(acts, center=center, sign=sign),
            output=self._output(upsample, interpolate_mode, align_corners),
            relu_attributions=relu_attributions,
            attribute_to_layer_input=attribute_to_layer_input,
            method="Eigen-CAM",
            center=center,
        )


@final
class EigenCAM3D(EigenCAM):
    r"""Eigen-CAM for volumes: ``(N, C, D, H, W)`` in, ``(N, 1, D, H, W)`` out.

    :class:`EigenCAM` (see there for the formula and the sign rule) with 5-D input required
    and the map always upsampled trilinearly to the input volume (``align_corners=False``);
    ``upsample``, ``interpolate_mode`` and ``align_corners`` are fixed (passing one is a
    ``TypeError``).

    References:
        Muhammad, Yeasin. "Eigen-CAM: Class Activation Map using Principal Components".
        IJCNN 2020. arXiv:2008.00299.

    Example:
        >>> import torch
        >>> from monai.networks.nets import resnet10
        >>> from captum_medcam import EigenCAM3D
        >>> net = resnet10(spatial_dims=3, n_input_channels=1, num_classes=2).eval()
        >>> EigenCAM3D(net, net.layer4).attribute(torch.randn(2, 1, 32, 32, 32)).shape
        torch.Size([2, 1, 32, 32, 32])
    """

    fixed_output = VOLUME
