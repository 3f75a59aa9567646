"""Finer-CAM: the reference classes and the objective by hand, and the peers' FinerCAM."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from captum_medcam import FinerCAM, GradCAM, LayerCAM, XGradCAM
from captum_medcam.attr._finer_cam import finer_references, finer_scores
from tests.conftest import gap_linear, small_cnn


def test_references_are_the_closest_logits_without_the_target() -> None:
    z = torch.tensor([[5.0, 4.5, 0.0, 5.2, 3.0], [1.0, 1.0, 1.0, -2.0, 0.9]], dtype=torch.float64)
    refs = finer_references(z, torch.tensor([0, 1]), 3)
    # row 0: distances to 5.0 are 0.5, 5.0, 0.2, 2.0; row 1: ties at 0 broken by index
    assert refs.tolist() == [[3, 1, 4], [0, 2, 4]]
    assert finer_references(z[:, :2], torch.tensor([0, 1]), 3).tolist() == [[1], [0]]


def test_objective_by_hand() -> None:
    z = torch.tensor([[2.0, 1.0, 0.5, -1.0]], dtype=torch.float64)
    t, refs = torch.tensor([0]), torch.tensor([[1, 2]])
    p = z.softmax(1)[0]
    weighted = (p[1] * (2.0 - 0.7 * 1.0) + p[2] * (2.0 - 0.7 * 0.5)) / (p[1] + p[2])
    torch.testing.assert_close(finer_scores(z, t, refs, 0.7), weighted.view(1))
    torch.testing.assert_close(
        finer_scores(z, t, refs, 0.6, "uniform"),
        torch.tensor([2.0 - 0.6 * 0.75], dtype=torch.float64),
    )


def test_probability_weights_stay_in_the_graph() -> None:
    """The gradient includes the derivative of the reference weights, as in the peers."""
    z = torch.tensor([[2.0, 1.0, 0.5, -1.0]], dtype=torch.float64, requires_grad=True)
    t, refs = torch.tensor([0]), torch.tensor([[1, 2]])
    (grad,) = torch.autograd.grad(finer_scores(z, t, refs, 1.0).sum(), z)
    zd = z.detach().clone().requires_grad_(True)
    p = zd.softmax(1)[0]
    peer = (p[1] * (zd[0, 0] - zd[0, 1]) + p[2] * (zd[0, 0] - zd[0, 2])) / (p[1] + p[2] + 1e-9)
    (expected,) = torch.autograd.grad(peer, zd)
    torch.testing.assert_close(grad, expected)
    assert grad[0, 1] != -grad[0, 2]  # not the gradient with the weights held constant


def _inputs(dims: int, n: int = 3, size: int = 8, channels: int = 2, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, channels, *([size] * dims), generator=g, dtype=torch.float64)


def test_gap_linear_closed_form(dims: int) -> None:
    """conv -> GAP -> Linear, uniform weights: g_k = (W[c] - alpha mean_{d in R} W[d])_k / P,
    so Finer-CAM (Grad-CAM base) is CAM of the contrasted head weights over P."""
    model = gap_linear(dims, classes=5)
    x = _inputs(dims)
    target = [0, 2, 1]
    with torch.no_grad():
        acts = model[0](x)
        z = model(x)
    refs = finer_references(z, torch.tensor(target), 2)
    w = model[-1].weight
    contrast = w[target] - 0.6 * w[refs].mean(1)  # (N, K)
    expected = (contrast.view(3, -1, *([1] * dims)) * acts).sum(1, keepdim=True)
    expected = expected / math.prod(acts.shape[2:])
    got = FinerCAM(model, model[0]).attribute(
        x,
        target=target,
        alpha=0.6,
        num_references=2,
        reference_weights="uniform",
        upsample=False,
        relu_attributions=False,
    )
    torch.testing.assert_close(got, expected)


@pytest.mark.parametrize(
    ("base", "cls"), [("gradcam", GradCAM), ("layercam", LayerCAM), ("xgradcam", XGradCAM)]
)
def test_no_contrast_is_the_base_method(base: str, cls: type) -> None:
    model = small_cnn(2)
    x = _inputs(2)
    got = FinerCAM(model, model[3], base_method=base).attribute(
        x, target=[0, 2, 1], alpha=0.0, reference_weights="uniform"
    )
    torch.testing.assert_close(got, cls(model, model[3]).attribute(x, target=[0, 2, 1]))


def test_agrees_with_pytorch_grad_cam() -> None:
    """pytorch-grad-cam's FinerCAM at its defaults (Grad-CAM, alpha 1, references of rank
    1-3 by distance, softmax-weighted; the target is the predicted class), compared after its
    own min-max and resize (``scale_cam_image`` on our map at layer resolution)."""
    pgc = pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.utils.image import scale_cam_image

    model = small_cnn(2, classes=6)
    x = _inputs(2)
    predicted = model(x).argmax(1).tolist()
    peer = pgc.FinerCAM(model=model, target_layers=[model[4]])
    with peer:
        theirs = peer(x, targets=None)
        ours = FinerCAM(model, model[4]).attribute(x, target=predicted, upsample=False)
        ours_scaled = peer.base_cam.aggregate_multi_layers(
            [scale_cam_image(ours[:, 0].numpy(), (8, 8))[:, None]]
        )
    assert theirs.max() > 0.99
    torch.testing.assert_close(
        torch.from_numpy(ours_scaled), torch.from_numpy(theirs), rtol=0, atol=1e-5
    )


def test_agrees_with_torchcam(dims: int) -> None:
    """torchcam 0.5's FinerCAM (Grad-CAM, gamma 0.6, three references, uniform mean), at
    layer resolution after its min-max ``(L - min) / (max + 1e-8)``."""
    torchcam = pytest.importorskip("torchcam.methods")
    model = small_cnn(dims, classes=6)
    x = _inputs(dims)
    target = [2, 0, 5]
    with torchcam.FinerCAM(model, model[4], input_shape=tuple(x.shape[1:])) as extractor:
        scores = model(x)
        (theirs,) = extractor(class_idx=target, scores=scores)
    ours = FinerCAM(model, model[4]).attribute(
        x, target=target, alpha=0.6, reference_weights="uniform", upsample=False
    )[:, 0]
    flat = ours.flatten(1)
    lo = flat.amin(1, keepdim=True)
    scaled = ((flat - lo) / ((flat - lo).amax(1, keepdim=True) + 1e-8)).view_as(ours)
    assert theirs.max() > 0.99
    torch.testing.assert_close(scaled, theirs, rtol=0, atol=1e-10)


def test_errors() -> None:
    model = small_cnn(2)
    x = _inputs(2)
    cam = FinerCAM(model, model[3])
    with pytest.raises(ValueError, match="alpha must be"):
        cam.attribute(x, target=0, alpha=-1.0)
    with pytest.raises(ValueError, match="num_references must be"):
        cam.attribute(x, target=0, num_references=0)
    with pytest.raises(ValueError, match="reference_weights must be"):
        cam.attribute(x, target=0, reference_weights="softmax")
    with pytest.raises(ValueError, match="one class index per example"):
        cam.attribute(x, target=(0,))
    with pytest.raises(ValueError, match="base_method must be"):
        FinerCAM(model, model[3], base_method="scorecam")
    one = nn.Sequential(model, nn.Linear(3, 1)).double().eval()
    with pytest.raises(ValueError, match="K >= 2"):
        FinerCAM(one, model[3]).attribute(x, target=0)
