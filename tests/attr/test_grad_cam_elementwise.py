"""Grad-CAM element-wise: ReLU per channel and position before the sum."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from captum_medcam import GradCAMElementWise, HiResCAM
from captum_medcam.attr._cam import weighted_sum
from captum_medcam.attr._grad_cam_elementwise import gradcam_elementwise_weights
from tests.conftest import gap_linear, small_cnn


def test_weighted_sum_is_the_sum_of_positive_products_exactly() -> None:
    g = torch.Generator().manual_seed(0)
    acts = torch.randn(2, 5, 4, 3, generator=g, dtype=torch.float64)
    grads = torch.randn(2, 5, 4, 3, generator=g, dtype=torch.float64)
    w = gradcam_elementwise_weights(acts, grads, torch.zeros(2))
    expected = F.relu(grads * acts).sum(1, keepdim=True)
    torch.testing.assert_close(weighted_sum(w, acts), expected, rtol=0, atol=0)


def _inputs(dims: int, n: int = 3, size: int = 8, channels: int = 2, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, channels, *([size] * dims), generator=g, dtype=torch.float64)


def test_gap_linear_closed_form(dims: int) -> None:
    """conv -> GAP -> Linear: g_k = W[c, k] / P, so L = sum_k ReLU(W[c, k] A_k) / P."""
    model = gap_linear(dims)
    x = _inputs(dims)
    target = [0, 2, 1]
    with torch.no_grad():
        acts = model[0](x)
    w = model[-1].weight[target].view(3, -1, *([1] * dims))
    expected = F.relu(w * acts).sum(1, keepdim=True) / math.prod(acts.shape[2:])
    got = GradCAMElementWise(model, model[0]).attribute(x, target=target, upsample=False)
    torch.testing.assert_close(got, expected)
    # HiResCAM sums the signed products: the maps differ where a channel counts against
    hires = HiResCAM(model, model[0]).attribute(
        x, target=target, upsample=False, relu_attributions=False
    )
    assert bool((got >= hires - 1e-12).all()) and not torch.allclose(got, F.relu(hires))


@pytest.mark.parametrize("dims", [2, 3])
def test_agrees_with_pytorch_grad_cam(dims: int) -> None:
    """pytorch-grad-cam's GradCAMElementWise, compared after its own min-max and resize
    (``scale_cam_image`` applied to our map at layer resolution): the only differences are
    its float32 NumPy arithmetic and its ``1e-7`` in the min-max denominator."""
    pgc = pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.utils.image import scale_cam_image
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model = small_cnn(dims)
    x = _inputs(dims)
    target = [2, 0, 1]
    with pgc.GradCAMElementWise(model=model, target_layers=[model[4]]) as peer:
        theirs = peer(input_tensor=x, targets=[ClassifierOutputTarget(t) for t in target])
        ours = GradCAMElementWise(model, model[4]).attribute(x, target=target, upsample=False)
        size = tuple(reversed(x.shape[2:]))
        ours_scaled = peer.aggregate_multi_layers(
            [scale_cam_image(ours[:, 0].numpy(), size)[:, None]]
        )
    assert theirs.max() > 0.99
    torch.testing.assert_close(
        torch.from_numpy(ours_scaled), torch.from_numpy(theirs), rtol=0, atol=1e-5
    )
