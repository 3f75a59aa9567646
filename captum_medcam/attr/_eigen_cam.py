"""Eigen-CAM, EigenGrad-CAM and KPCA-CAM: the first principal component of a layer, 1D/2D/3D.

Each example's layer tensor ``(K, *S')`` is read as a matrix ``X`` of ``|S'|`` positions
(rows) by ``K`` channels (columns). The map is the projection of every position on the
first principal direction of ``X`` (Eigen-CAM), of ``X`` after a kernel (KPCA-CAM), or of the
gradient-times-activation matrix (EigenGrad-CAM). The math is in small functions without
hooks, written once for any number of spatial dims.

Sign convention. A principal direction is defined up to its sign (``X = U S V^T`` and
``(-U) S (-V)^T`` are both SVDs), and LAPACK picks either. Here the sign is fixed so that
**the entry of largest magnitude of each map is positive** (the first such entry when
several tie). This is scikit-learn's ``svd_flip`` rule, which its ``KernelPCA`` (hence
pytorch-grad-cam's KPCA-CAM) applies, and the sign correction of Seg-Eigen-CAM (Chung and
Ying 2025, eq. 13). For non-negative activations (after a ReLU) without centring, the
first direction has entries of one sign, so the rule makes the whole map non-negative.
"""

from __future__ import annotations

import torch
from torch import Tensor

from captum_medcam._core.checks import check_choice, check_finite_float

__all__: list[str] = []

#: The kernels of KPCA-CAM (scikit-learn's names and formulas, as pytorch-grad-cam uses them).
KERNELS = ("linear", "poly", "rbf", "sigmoid", "cosine")


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
        maps: ``(N, 1, *S')``.

    Returns:
        ``(N, 1, *S')``, each map multiplied by +1 or -1.
    """
    flat = maps.flatten(1)
    peak = flat.gather(1, flat.abs().argmax(1, keepdim=True))
    sign = torch.where(peak < 0, -1.0, 1.0).to(maps.dtype)
    return maps * sign.view(-1, *([1] * (maps.dim() - 1)))


def principal_component_map(x: Tensor, *, center: bool = False) -> Tensor:
    r"""The projection of each position on the first principal direction of the layer.

    With ``X`` the ``(|S'|, K)`` matrix of one example (positions by channels) and
    ``X = U S V^T`` its SVD, the map is ``X v_1 = s_1 u_1`` (Muhammad and Yeasin 2020,
    eq. 4: the projection on the first right singular vector), with the sign fixed by
    :func:`largest_entry_positive`. ``center=True`` first subtracts each channel's mean
    over positions, as pytorch-grad-cam's ``get_2d_projection`` does; the map then sums to
    zero over positions.

    Args:
        x: ``(N, K, *S')`` activations (Eigen-CAM) or gradients times activations
            (EigenGrad-CAM), 1 to 3 spatial dims.
        center: centre each channel over positions before the SVD.

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
    rows = _as_rows(x, center)
    _, _, vh = torch.linalg.svd(rows, full_matrices=False)
    projection = rows @ vh[:, 0, :].unsqueeze(-1)  # (N, |S'|, 1)
    return largest_entry_positive(projection.reshape(n, 1, *spatial))


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
) -> Tensor:
    r"""The first kernel principal component of the positions (KPCA-CAM).

    For one example, ``X`` ``(|S'|, K)`` (channels centred over positions when ``center``,
    as pytorch-grad-cam's ``get_2d_projection_kernel`` does before calling scikit-learn's
    ``KernelPCA(n_components=1)``), ``G = k(X, X)`` the kernel matrix and
    ``G_c = (I - 1/P) G (I - 1/P)`` its double-centred form (``P = |S'|``)::

        G_c alpha_1 = lambda_1 alpha_1     (largest eigenvalue, |alpha_1| = 1)
        map         = sqrt(max(lambda_1, 0)) alpha_1

    which is ``KernelPCA.fit_transform``'s first column, with the sign fixed by
    :func:`largest_entry_positive` (scikit-learn's ``svd_flip``, the same rule). With the
    linear kernel the map equals :func:`principal_component_map` with ``center=True``.

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

    Returns:
        ``(N, 1, *S')`` in the dtype of ``x``.
    """
    check_choice(kernel, "kernel", KERNELS)
    if gamma is not None:
        check_finite_float(gamma, "gamma", low=0.0)
    check_finite_float(degree, "degree", low=0.0)
    check_finite_float(coef0, "coef0")
    n, _, *spatial = x.shape
    rows = _as_rows(x, center)
    gram = kernel_matrix(rows, kernel, gamma=gamma, degree=degree, coef0=coef0)
    gram = gram - gram.mean(1, keepdim=True)
    gram = gram - gram.mean(2, keepdim=True)
    gram = (gram + gram.transpose(1, 2)) / 2  # exactly symmetric for eigh
    values, vectors = torch.linalg.eigh(gram)
    projection = vectors[..., -1] * values[:, -1:].clamp_min(0).sqrt()
    return largest_entry_positive(projection.reshape(n, 1, *spatial))
