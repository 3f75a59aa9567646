"""Shapley-CAM: the Hessian-vector product in closed form, and pytorch-grad-cam's ShapleyCAM."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from captum_medcam.attr._derivatives import layer_derivatives
from captum_medcam.attr._shapley_cam import rest_scores, shapley_cam_weights, shapley_objective
from tests.conftest import gap_linear


def _inputs(dims: int, n: int = 3, size: int = 6, channels: int = 2, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, channels, *([size] * dims), generator=g, dtype=torch.float64)


def test_rest_is_logit_plus_log_probability() -> None:
    z = torch.tensor([[1.0, 2.0, -1.0], [0.5, 0.0, 3.0]], dtype=torch.float64)
    t = torch.tensor([1, 0])
    expected = z[[0, 1], t] + z.log_softmax(1)[[0, 1], t]
    torch.testing.assert_close(rest_scores(z, t), expected)
    with pytest.raises(ValueError, match='score="logit"'):
        rest_scores(z[:, :1], torch.tensor([0, 0]))


def test_hessian_vector_product_of_rest_on_gap_linear(dims: int) -> None:
    """conv -> GAP -> Linear with U = 2 z_c - logsumexp(z), z = W m + b, m = mean_p A:

    g_k(p)    = (2 W_c - p^T W)_k / P
    (H A)_k(p) = -(W^T (diag(p) - p p^T) W m)_k / P     (the same at every position)
    """
    model = gap_linear(dims)
    x = _inputs(dims)
    target = [0, 2, 1]
    d = layer_derivatives(
        model, model[0], x, target, shapley_objective("rest"), hessian_vector_product=True
    )
    with torch.no_grad():
        acts = model[0](x)
        z = model(x)
    w = model[-1].weight
    positions = math.prod(acts.shape[2:])
    m = acts.flatten(2).mean(-1)  # (N, K)
    p = z.softmax(1)  # (N, classes)
    shape = (-1, w.shape[1], *([1] * dims))
    grad = (2 * w[target] - p @ w) / positions
    cov = torch.diag_embed(p) - p.unsqueeze(2) * p.unsqueeze(1)  # (N, classes, classes)
    hvp = -torch.einsum("ck,ncd,de,ne->nk", w, cov, w, m) / positions
    assert d.hvp is not None
    torch.testing.assert_close(d.gradients, grad.view(shape).expand_as(acts))
    torch.testing.assert_close(d.hvp, hvp.view(shape).expand_as(acts))
    torch.testing.assert_close(
        shapley_cam_weights(d.activations, d.gradients, d.hvp), grad - 0.5 * hvp
    )


def test_logit_of_a_network_linear_after_the_layer_has_no_hessian(dims: int) -> None:
    model = gap_linear(dims)
    d = layer_derivatives(
        model, model[0], _inputs(dims), 1, shapley_objective("logit"), hessian_vector_product=True
    )
    assert d.hvp is not None and torch.equal(d.hvp, torch.zeros_like(d.hvp))


def test_hessian_vector_product_is_that_of_autograd_per_example() -> None:
    """H A of a network with smooth activations, against torch.autograd.functional.hvp on
    one example at a time (the Hessian of the batch sum is block-diagonal)."""
    torch.manual_seed(0)
    head = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.SiLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 5),
    ).double()
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.Tanh(), head).double().eval()
    x = _inputs(2, n=2)
    target = [3, 1]
    d = layer_derivatives(
        model, model[1], x, target, shapley_objective("rest"), hessian_vector_product=True
    )
    assert d.hvp is not None
    for i, t in enumerate(target):
        a = d.activations[i : i + 1]

        def utility(acts: torch.Tensor, t: int = t) -> torch.Tensor:
            return rest_scores(head(acts), torch.tensor([t])).sum()

        _, expected = torch.autograd.functional.hvp(utility, a, a)
        torch.testing.assert_close(d.hvp[i : i + 1], expected)
