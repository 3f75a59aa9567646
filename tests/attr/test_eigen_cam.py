"""Eigen-CAM, EigenGrad-CAM and KPCA-CAM: closed forms, the sign rule, the peer's functions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from captum_medcam.attr._eigen_cam import (
    KERNELS,
    kernel_matrix,
    kernel_principal_component_map,
    largest_entry_positive,
    orient,
    principal_component_map,
)

SHAPES = {1: (7,), 2: (4, 5), 3: (3, 4, 2)}


def rank_one(dims: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Activations ``A_k(p) = u(p) v_k`` with ``u >= 0``: ``(1, 3, *S)``, ``u``, ``v``."""
    g = torch.Generator().manual_seed(seed)
    u = torch.rand(SHAPES[dims], generator=g, dtype=torch.float64)
    v = torch.rand(3, generator=g, dtype=torch.float64) + 0.1
    return (v.view(3, *([1] * dims)) * u).unsqueeze(0), u, v


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_rank_one_activations_give_their_component(dims):
    """``X = u v^T``: ``s_1 = |u| |v|``, ``u_1 = u / |u|``, so the map is ``|v| u``; centred,
    ``|v| (u - mean u)``, oriented like the channel sum ``(u - mean u) sum(v)``."""
    acts, u, v = rank_one(dims)
    torch.testing.assert_close(principal_component_map(acts)[0, 0], v.norm() * u)
    centred = v.norm() * (u - u.mean())
    torch.testing.assert_close(principal_component_map(acts, center=True)[0, 0], centred)
    # the other rule: the largest entry positive
    if centred.flatten()[centred.abs().argmax()] < 0:
        centred = -centred
    got = principal_component_map(acts, center=True, sign="largest_entry")
    torch.testing.assert_close(got[0, 0], centred)


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_the_channel_sum_rule(dims):
    """The map's inner product with the channel sum of the decomposed matrix is positive, so
    the map of ``-x`` is minus the map of ``x``; the loadings then sum to a positive number."""
    g = torch.Generator().manual_seed(dims)
    x = torch.randn(4, 6, *SHAPES[dims], generator=g, dtype=torch.float64)
    for center in (False, True):
        maps = principal_component_map(x, center=center)
        rows = x.flatten(2).transpose(1, 2)
        if center:
            rows = rows - rows.mean(1, keepdim=True)
        assert bool(((maps.flatten(1) * rows.sum(-1)).sum(1) > 0).all())
        torch.testing.assert_close(principal_component_map(-x, center=center), -maps)
        loadings = torch.linalg.lstsq(rows, maps.flatten(1).unsqueeze(-1)).solution
        assert bool((loadings.sum((1, 2)) > 0).all())


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_the_largest_entry_rule(dims):
    """The map's entry of largest magnitude is positive: the map is a property of the data up
    to its sign, so ``-x`` gives the same map."""
    g = torch.Generator().manual_seed(dims)
    x = torch.randn(4, 6, *SHAPES[dims], generator=g, dtype=torch.float64)
    for center in (False, True):
        maps = principal_component_map(x, center=center, sign="largest_entry")
        flat = maps.flatten(1)
        assert bool((flat.gather(1, flat.abs().argmax(1, keepdim=True)) > 0).all())
        again = principal_component_map(-x, center=center, sign="largest_entry")
        torch.testing.assert_close(again, maps)


def test_the_largest_entry_rule_breaks_ties_by_the_first_entry():
    maps = torch.tensor([[[-2.0, 1.0, 2.0]], [[0.0, 0.0, 0.0]], [[1.0, -3.0, 0.5]]])
    expected = torch.tensor([[[2.0, -1.0, -2.0]], [[0.0, 0.0, 0.0]], [[-1.0, 3.0, -0.5]]])
    torch.testing.assert_close(largest_entry_positive(maps), expected)


def test_the_channel_sum_rule_falls_back_to_the_largest_entry():
    """Channels that cancel (channel sum 0 at every position) decide nothing: the largest
    entry does. A channel sum orthogonal to the component does the same."""
    projection = torch.tensor([[1.0, -3.0, 0.5], [1.0, 2.0, -1.0]], dtype=torch.float64)
    rows = torch.zeros(2, 3, 2, dtype=torch.float64)
    rows[0, :, 0], rows[0, :, 1] = torch.tensor([1.0, 2.0, 3.0]), -torch.tensor([1.0, 2.0, 3.0])
    rows[1, :, 0] = torch.tensor([1.0, 0.0, 1.0])  # inner product 1 - 1 = 0
    torch.testing.assert_close(orient(projection, rows), largest_entry_positive(projection))
    rows[1, :, 0] = torch.tensor([0.0, 0.0, -1.0])  # inner product 1 > 0 decides: keep
    torch.testing.assert_close(orient(projection, rows)[1], projection[1])
    with pytest.raises(ValueError, match="sign must be"):
        orient(projection, rows, "positive")


def test_non_negative_activations_give_a_non_negative_map():
    """Without centring, the first direction of a non-negative matrix has entries of one
    sign (Perron-Frobenius), so the rule makes the whole map non-negative."""
    x = torch.rand(5, 8, 6, 6, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    assert bool((principal_component_map(x) >= 0).all())


def test_the_map_is_the_projection_on_the_top_eigenvector_of_the_covariance():
    """Another route to the same number: ``eigh`` of ``X^T X`` instead of the SVD."""
    x = torch.randn(3, 5, 4, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    for center in (False, True):
        rows = x.flatten(2).transpose(1, 2)
        if center:
            rows = rows - rows.mean(1, keepdim=True)
        _, vectors = torch.linalg.eigh(rows.transpose(1, 2) @ rows)
        expected = orient((rows @ vectors[..., -1:]).squeeze(-1), rows)
        torch.testing.assert_close(principal_component_map(x, center=center).flatten(1), expected)


def test_batch_invariance_of_the_functions():
    x = torch.randn(4, 6, 5, 5, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    whole = principal_component_map(x)
    kernel = kernel_principal_component_map(x, "rbf")
    for i in range(4):
        torch.testing.assert_close(principal_component_map(x[i : i + 1]), whole[i : i + 1])
        torch.testing.assert_close(
            kernel_principal_component_map(x[i : i + 1], "rbf"), kernel[i : i + 1]
        )


def test_pytorch_grad_cam_projection_is_ours_up_to_its_arbitrary_sign():
    """``get_2d_projection`` centres and takes LAPACK's sign; ours is that map or its
    negative, and exactly the map its sign correction (Seg-Eigen-CAM) gives."""
    from pytorch_grad_cam.utils.svd_on_activations import (
        get_2d_projection,
        get_2d_projection_with_sign_correction,
    )

    x = torch.relu(torch.randn(6, 8, 7, 7, generator=torch.Generator().manual_seed(5)))
    x = x.double()
    ours = principal_component_map(x, center=True)[:, 0].numpy()
    theirs = get_2d_projection(x.numpy())
    for a, b in zip(ours, theirs, strict=True):
        assert np.allclose(a, b, atol=1e-5) or np.allclose(a, -b, atol=1e-5)
    corrected = get_2d_projection_with_sign_correction(x.numpy())
    largest = principal_component_map(x, center=True, sign="largest_entry")[:, 0].numpy()
    np.testing.assert_allclose(largest, corrected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("kernel", KERNELS)
def test_kernel_pca_equals_pytorch_grad_cam(kernel):
    """pytorch-grad-cam's ``get_2d_projection_kernel`` (scikit-learn's ``KernelPCA``),
    sign included: both use scikit-learn's ``svd_flip`` rule. It returns float32."""
    from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection_kernel

    x = torch.relu(torch.randn(3, 8, 6, 6, generator=torch.Generator().manual_seed(6))).double()
    for gamma in (None, 0.3):
        ours = kernel_principal_component_map(x, kernel, gamma=gamma, sign="largest_entry")
        theirs = get_2d_projection_kernel(x.numpy(), kernel, gamma)
        tol = 2e-6 * np.abs(theirs).max()
        np.testing.assert_allclose(ours[:, 0].numpy(), theirs, atol=tol, rtol=0)
        by_sum = kernel_principal_component_map(x, kernel, gamma=gamma)[:, 0].numpy()
        for a, b in zip(by_sum, theirs, strict=True):  # the default rule: up to sign
            assert np.allclose(a, b, atol=tol) or np.allclose(a, -b, atol=tol)


def test_kernel_pca_with_more_positions_than_scikit_learns_dense_limit():
    """Over 200 positions scikit-learn switches to ARPACK; the component is the same."""
    from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection_kernel

    x = torch.relu(torch.randn(1, 6, 16, 15, generator=torch.Generator().manual_seed(7))).double()
    ours = kernel_principal_component_map(x, "rbf", sign="largest_entry")[:, 0].numpy()
    theirs = get_2d_projection_kernel(x.numpy(), "rbf")
    np.testing.assert_allclose(ours, theirs, atol=2e-6 * np.abs(theirs).max(), rtol=0)


def test_linear_kernel_pca_is_centred_eigen_cam():
    x = torch.randn(3, 5, 4, 3, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    for sign in ("channel_sum", "largest_entry"):
        torch.testing.assert_close(
            kernel_principal_component_map(x, "linear", sign=sign),
            principal_component_map(x, center=True, sign=sign),
        )


@pytest.mark.parametrize("dims", [1, 2])
def test_kernel_pca_of_two_positions(dims):
    """Two positions ``a, b``: the centred kernel is ``(k_aa + k_bb - 2 k_ab) / 4 [[1, -1],
    [-1, 1]]``, so the map is ``sqrt(k_aa + k_bb - 2 k_ab) / 2 (1, -1)``; the entries tie in
    magnitude; the channel sums (3 and 2) make the first positive."""
    a = torch.tensor([1.0, 0.0, 2.0], dtype=torch.float64)
    b = torch.tensor([0.0, 1.0, 1.0], dtype=torch.float64)
    x = torch.stack([a, b], 1).view(1, 3, *((1, 2) if dims == 2 else (2,)))
    gamma = 0.5
    k_ab = math.exp(-gamma * float((a - b).square().sum()))
    value = math.sqrt(2 - 2 * k_ab) / 2
    got = kernel_principal_component_map(x, "rbf", gamma=gamma, center=False).flatten()
    torch.testing.assert_close(got, torch.tensor([value, -value], dtype=torch.float64))


def test_kernel_matrix_formulas():
    rows = torch.tensor([[[1.0, 2.0], [0.0, -1.0], [0.0, 0.0]]], dtype=torch.float64)
    dots = rows @ rows.transpose(1, 2)
    g = 0.5  # 1 / K
    torch.testing.assert_close(kernel_matrix(rows, "linear"), dots)
    torch.testing.assert_close(
        kernel_matrix(rows, "poly", degree=2, coef0=0.5), (g * dots + 0.5) ** 2
    )
    torch.testing.assert_close(kernel_matrix(rows, "sigmoid"), torch.tanh(g * dots + 1))
    squares = torch.cdist(rows, rows).square()
    torch.testing.assert_close(kernel_matrix(rows, "rbf", gamma=2.0), torch.exp(-2.0 * squares))
    cosine = kernel_matrix(rows, "cosine")
    assert cosine[0, 0, 1].item() == pytest.approx(-2 / math.sqrt(5))
    assert cosine[0, 2].abs().sum().item() == 0.0  # a zero row has cosine 0, as in scikit-learn


def test_kernel_pca_rejects_bad_options():
    x = torch.randn(1, 3, 4, 4)
    with pytest.raises(ValueError, match="kernel must be"):
        kernel_principal_component_map(x, "gaussian")
    with pytest.raises(ValueError, match="gamma must be >= 0"):
        kernel_principal_component_map(x, "rbf", gamma=-1.0)
    with pytest.raises(ValueError, match="sign must be"):
        kernel_principal_component_map(x, "rbf", sign="svd_flip")
    with pytest.raises(TypeError, match="degree must be a real number"):
        kernel_principal_component_map(x, "poly", degree="3")  # type: ignore[arg-type]
