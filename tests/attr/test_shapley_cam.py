"""Shapley-CAM: the Hessian-vector product in closed form, and pytorch-grad-cam's ShapleyCAM."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from captum_medcam import GradCAM, ShapleyCAM
from captum_medcam.attr._derivatives import layer_derivatives
from captum_medcam.attr._shapley_cam import rest_scores, shapley_cam_weights, shapley_objective
from tests.conftest import CONV, GAP, MAXPOOL, gap_linear, small_cnn


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


def smooth_cnn(dims: int, seed: int = 0) -> nn.Sequential:
    """conv -> SiLU -> conv -> SiLU -> maxpool -> conv -> GELU -> GAP -> linear: smooth
    activations after the layer (index 3), so the logit has a Hessian too."""
    torch.manual_seed(seed)
    return (
        nn.Sequential(
            CONV[dims](2, 4, 3, padding=1),
            nn.SiLU(),
            CONV[dims](4, 6, 3, padding=1),
            nn.SiLU(),
            MAXPOOL[dims](2),
            CONV[dims](6, 6, 3, padding=1),
            nn.GELU(),
            GAP[dims](1),
            nn.Flatten(),
            nn.Linear(6, 4),
        )
        .double()
        .eval()
    )


def test_class_is_the_closed_form_on_gap_linear(dims: int) -> None:
    model = gap_linear(dims)
    x = _inputs(dims)
    target = [0, 2, 1]
    d = layer_derivatives(
        model, model[0], x, target, shapley_objective("rest"), hessian_vector_product=True
    )
    assert d.hvp is not None
    w = shapley_cam_weights(d.activations, d.gradients, d.hvp)
    expected = (w.view(*w.shape, *([1] * dims)) * d.activations).sum(1, keepdim=True)
    got = ShapleyCAM(model, model[0]).attribute(
        x, target=target, upsample=False, relu_attributions=False
    )
    torch.testing.assert_close(got, expected)


def test_logit_of_a_relu_network_is_grad_cam(dims: int) -> None:
    model = small_cnn(dims)
    x = _inputs(dims)
    target = [0, 2, 1]
    got = ShapleyCAM(model, model[3]).attribute(x, target=target, score="logit")
    torch.testing.assert_close(got, GradCAM(model, model[3]).attribute(x, target=target))
    rest = ShapleyCAM(model, model[3]).attribute(x, target=target)
    assert not torch.allclose(rest, got)  # ReST's softmax term adds a Hessian


@pytest.mark.parametrize("score", ["rest", "logit"])
@pytest.mark.parametrize("dims", [2, 3])
def test_agrees_with_pytorch_grad_cam(score: str, dims: int) -> None:
    """pytorch-grad-cam's ShapleyCAM with ClassifierOutputReST (the paper) or its default
    ClassifierOutputTarget, on a network with smooth activations after the layer, compared
    after its own min-max and resize (``scale_cam_image`` on our map at layer resolution)."""
    pgc = pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.utils.image import scale_cam_image
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputReST, ClassifierOutputTarget

    model = smooth_cnn(dims)
    x = _inputs(dims, size=8)
    target = [2, 0, 3]
    peer_target = ClassifierOutputReST if score == "rest" else ClassifierOutputTarget
    with pgc.ShapleyCAM(model=model, target_layers=[model[3]]) as peer:
        theirs = peer(input_tensor=x, targets=[peer_target(t) for t in target])
        ours = ShapleyCAM(model, model[3]).attribute(x, target=target, score=score, upsample=False)
        size = tuple(reversed(x.shape[2:]))
        ours_scaled = peer.aggregate_multi_layers(
            [scale_cam_image(ours[:, 0].numpy(), size)[:, None]]
        )
    d = layer_derivatives(
        model, model[3], x, target, shapley_objective(score), hessian_vector_product=True
    )
    assert d.hvp is not None and d.hvp.abs().max() > 1e-4  # the Hessian term is there
    assert theirs.max() > 0.99
    torch.testing.assert_close(
        torch.from_numpy(ours_scaled), torch.from_numpy(theirs), rtol=0, atol=1e-5
    )


def test_score_errors() -> None:
    model = small_cnn(2)
    x = _inputs(2)
    with pytest.raises(ValueError, match="score must be"):
        ShapleyCAM(model, model[3]).attribute(x, target=0, score="loss")
    one = nn.Sequential(model, nn.Linear(3, 1)).double().eval()
    with pytest.raises(ValueError, match='score="logit"'):
        ShapleyCAM(one, model[3]).attribute(x, target=0)
    assert ShapleyCAM(one, model[3]).attribute(x, score="logit").shape == (3, 1, 6, 6)
