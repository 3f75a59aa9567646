"""Grad-CAM element-wise: ReLU per channel and position before the sum."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from captum_medcam.attr._cam import weighted_sum
from captum_medcam.attr._grad_cam_elementwise import gradcam_elementwise_weights


def test_weighted_sum_is_the_sum_of_positive_products_exactly() -> None:
    g = torch.Generator().manual_seed(0)
    acts = torch.randn(2, 5, 4, 3, generator=g, dtype=torch.float64)
    grads = torch.randn(2, 5, 4, 3, generator=g, dtype=torch.float64)
    w = gradcam_elementwise_weights(acts, grads, torch.zeros(2))
    expected = F.relu(grads * acts).sum(1, keepdim=True)
    torch.testing.assert_close(weighted_sum(w, acts), expected, rtol=0, atol=0)
