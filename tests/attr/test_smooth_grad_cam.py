"""Smooth Grad-CAM++: the weights from averaged derivatives, against Grad-CAM++ and torchcam."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from captum.attr import NoiseTunnel
from torch import nn

from captum_medcam import GradCAMPlusPlus, SmoothGradCAMPlusPlus
from captum_medcam.attr._cam import weighted_sum
from captum_medcam.attr._derivatives import layer_derivatives, score_objective
from captum_medcam.attr._grad_cam_plusplus import gradcam_plusplus_weights
from captum_medcam.attr._smooth_grad_cam import smooth_gradcam_plusplus_weights
from tests.conftest import small_cnn


def test_one_copy_is_grad_cam_plus_plus() -> None:
    g = torch.Generator().manual_seed(0)
    acts = torch.rand(2, 4, 5, 5, generator=g, dtype=torch.float64)
    grads = torch.randn(2, 4, 5, 5, generator=g, dtype=torch.float64)
    g2 = grads.square()
    torch.testing.assert_close(
        smooth_gradcam_plusplus_weights(acts, grads, g2, g2 * grads),
        gradcam_plusplus_weights(acts, grads, torch.zeros(2), exp_score=False),
        rtol=1e-14,
        atol=1e-15,
    )


def test_averages_before_alpha() -> None:
    """Two copies with gradients 1 and -1 at one position: D1 = 0, D2 = 1, D3 = 0, so
    alpha = 1/2 but ReLU(D1) = 0; a copy alone gives 1 / (2 + sum A) and 0."""
    acts = torch.tensor([[[1.0, 2.0]]], dtype=torch.float64)  # (1, 1, 2), sum A = 3
    grads = torch.tensor([[[[1.0, 2.0]]], [[[-1.0, 2.0]]]], dtype=torch.float64)  # (2, 1, 1, 2)
    d1, d2, d3 = grads.mean(0), (grads**2).mean(0), (grads**3).mean(0)
    w = smooth_gradcam_plusplus_weights(acts, d1, d2, d3)
    # position 0: ReLU(D1) = 0; position 1: D1 = 2, D2 = 4, D3 = 8 -> alpha = 4 / (8 + 24)
    torch.testing.assert_close(w, torch.tensor([[4 / 32 * 2]], dtype=torch.float64))


def test_zero_denominator_gives_zero() -> None:
    acts = torch.tensor([[[-1.0, -1.0]]], dtype=torch.float64)
    d = torch.ones(1, 1, 2, dtype=torch.float64)
    assert torch.equal(
        smooth_gradcam_plusplus_weights(acts, d, d, d), torch.zeros(1, 1, dtype=torch.float64)
    )


def _inputs(dims: int, n: int = 3, size: int = 8, channels: int = 2, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, channels, *([size] * dims), generator=g, dtype=torch.float64)


@pytest.mark.parametrize("exp_score", [True, False])
def test_without_noise_is_grad_cam_plus_plus(dims: int, exp_score: bool) -> None:
    model = small_cnn(dims)
    x = _inputs(dims)
    target = [0, 2, 1]
    got = SmoothGradCAMPlusPlus(model, model[3]).attribute(
        x, target=target, stdevs=0.0, nt_samples=3, exp_score=exp_score
    )
    expected = GradCAMPlusPlus(model, model[3]).attribute(x, target=target, exp_score=exp_score)
    torch.testing.assert_close(got, expected)


def _paper_by_hand(model: nn.Module, layer: nn.Module, x, target, noises, sigma):
    """The paper's definition from the derivatives at each noisy copy (exp_score=True)."""
    logit = score_objective("logit")
    d1 = d2 = d3 = 0.0
    for e in noises:
        d = layer_derivatives(model, layer, x + sigma * e, target, logit)
        factor = d.scores.exp().view(-1, *([1] * (x.dim() - 1)))
        d1 = d1 + factor * d.gradients
        d2 = d2 + factor * d.gradients**2
        d3 = d3 + factor * d.gradients**3
    acts = layer_derivatives(model, layer, x, target, logit).activations
    m = len(noises)
    w = smooth_gradcam_plusplus_weights(acts, d1 / m, d2 / m, d3 / m)
    return F.relu(weighted_sum(w, acts))


def test_is_the_paper_definition_and_not_the_mean_of_maps() -> None:
    """The class averages the derivatives over the noisy copies (one noise per copy, drawn
    from the seed and shared by the batch); NoiseTunnel around GradCAMPlusPlus (the recipe
    for the map-averaging variant) averages Grad-CAM++ maps over the same copies, which is a
    different map."""
    model = small_cnn(2)
    x = _inputs(2)
    target = [0, 2, 1]
    sigma, m = 0.5, 3
    gen = torch.Generator().manual_seed(7)
    noises = [torch.randn(x.shape[1:], generator=gen, dtype=x.dtype) for _ in range(m)]
    got = SmoothGradCAMPlusPlus(model, model[3]).attribute(
        x, target=target, nt_samples=m, stdevs=sigma, generator=7, upsample=False
    )
    torch.testing.assert_close(got, _paper_by_hand(model, model[3], x, target, noises, sigma))
    maps = [
        GradCAMPlusPlus(model, model[3]).attribute(x + sigma * e, target=target, upsample=False)
        for e in noises
    ]
    mean_of_maps = torch.stack(maps).mean(0)
    assert not torch.allclose(got / got.amax(), mean_of_maps / mean_of_maps.amax(), atol=1e-2)


def test_noise_tunnel_recipe_is_the_mean_of_grad_cam_plus_plus_maps() -> None:
    model = small_cnn(2)
    x = _inputs(2, n=2)
    target = [0, 2]
    torch.manual_seed(3)
    smoothed = NoiseTunnel(GradCAMPlusPlus(model, model[3])).attribute(
        x, nt_type="smoothgrad", nt_samples=4, stdevs=0.3, target=target
    )
    torch.manual_seed(3)  # Captum draws the noise of all copies at once, per example
    noisy = x.repeat_interleave(4, 0) + torch.normal(0, torch.tensor(0.3).repeat(8, 2, 8, 8))
    maps = GradCAMPlusPlus(model, model[3]).attribute(noisy, target=[0] * 4 + [2] * 4)
    torch.testing.assert_close(smoothed, maps.view(2, 4, 1, 8, 8).mean(1))


def test_the_seed_fixes_the_noise() -> None:
    model = small_cnn(2)
    x = _inputs(2)
    cam = SmoothGradCAMPlusPlus(model, model[3])
    first = cam.attribute(x, target=0)
    assert torch.equal(first, cam.attribute(x, target=0))
    assert not torch.allclose(first, cam.attribute(x, target=0, generator=1))
    gen = torch.Generator().manual_seed(0)
    assert torch.equal(first, cam.attribute(x, target=0, generator=gen))
    assert not torch.allclose(first, cam.attribute(x, target=0, generator=gen))  # advanced


def test_exp_out_of_range_is_a_clear_error() -> None:
    model = small_cnn(2)
    big = nn.Sequential(model, nn.Linear(3, 3)).double().eval()
    with torch.no_grad():
        big[1].weight.copy_(torch.eye(3))
        big[1].bias.fill_(1000.0)
    cam = SmoothGradCAMPlusPlus(big, model[3])
    with pytest.raises(ValueError, match="exp_score=False"):
        cam.attribute(_inputs(2), target=0)
    assert torch.isfinite(cam.attribute(_inputs(2), target=0, exp_score=False)).all()


def test_agrees_with_torchcam_once_its_differences_are_reproduced() -> None:
    """torchcam 0.5's SmoothGradCAMpp on the same noise (drawn from torch's global generator
    per example, as it does): equal to the definition here once its four differences are
    put in: plain powers (no exp), ``sum_q A(q) D_3(q)`` in the denominator (plus ``1e-8``),
    ReLU of the last copy's gradient, and the last copy's activations in the weighted sum.
    Without them the maps differ."""
    torchcam = pytest.importorskip("torchcam.methods")
    model = small_cnn(2)
    x = _inputs(2)
    target = [0, 2, 1]
    layer = model[4]
    m, std = 4, 0.3
    with torchcam.SmoothGradCAMpp(
        model, layer, num_samples=m, std=std, input_shape=tuple(x.shape[1:])
    ) as extractor:
        model(x)
        torch.manual_seed(5)
        (theirs,) = extractor(class_idx=target, normalized=False)
    torch.manual_seed(5)
    normal = torch.distributions.normal.Normal(0, std)
    noises = [normal.sample(x.size()) for _ in range(m)]
    logit = score_objective("logit")
    clean = layer_derivatives(model, layer, x, target, logit)
    copies = [layer_derivatives(model, layer, x + e, target, logit) for e in noises]
    g = torch.stack([c.gradients for c in copies])
    g2, g3 = (g**2).mean(0), (g**3).mean(0)
    last = copies[-1]
    total = (g3 * clean.activations).flatten(2).sum(-1)[..., None, None]  # torchcam's sum
    alpha = g2 / (2 * g2 + total + 1e-8)
    w = (alpha * F.relu(last.gradients)).flatten(2).sum(-1)
    reproduced = F.relu(weighted_sum(w, last.activations))[:, 0]
    torch.testing.assert_close(reproduced, theirs, rtol=1e-12, atol=1e-14)
    w_paper = smooth_gradcam_plusplus_weights(clean.activations, g.mean(0), g2, g3)
    paper = F.relu(weighted_sum(w_paper, clean.activations))[:, 0]
    assert not torch.allclose(paper, theirs, rtol=1e-3)
