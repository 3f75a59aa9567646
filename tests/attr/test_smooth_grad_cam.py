"""Smooth Grad-CAM++: the weights from averaged derivatives, against Grad-CAM++ and torchcam."""

from __future__ import annotations

import torch

from captum_medcam.attr._grad_cam_plusplus import gradcam_plusplus_weights
from captum_medcam.attr._smooth_grad_cam import smooth_gradcam_plusplus_weights


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
