"""What every CAM promises, for Grad-CAM element-wise, Shapley-CAM, Finer-CAM, FullGrad and
Smooth Grad-CAM++: batch invariance with per-sample targets, the model left as it was (also
after errors and under ``no_grad`` with frozen parameters), clear errors, the volume entry
points' fixed options, and the training-mode warning."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from captum_medcam import (
    FinerCAM,
    FinerCAM3D,
    FullGrad,
    FullGrad3D,
    GradCAMElementWise,
    GradCAMElementWise3D,
    ShapleyCAM,
    ShapleyCAM3D,
    SmoothGradCAMPlusPlus,
    SmoothGradCAMPlusPlus3D,
)
from tests.conftest import assert_unchanged, model_state, small_cnn

ND = [GradCAMElementWise, ShapleyCAM, FinerCAM, SmoothGradCAMPlusPlus, FullGrad]
VOLUME = [GradCAMElementWise3D, ShapleyCAM3D, FinerCAM3D, SmoothGradCAMPlusPlus3D, FullGrad3D]


def _inputs(dims: int, n: int = 3, size: int = 8, channels: int = 2, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, channels, *([size] * dims), generator=g, dtype=torch.float64)


def _make(method: type, model: nn.Module):
    return method(model) if method in (FullGrad, FullGrad3D) else method(model, model[3])


@pytest.mark.parametrize("method", ND + VOLUME)
def test_batch_invariance_with_per_sample_targets(method) -> None:
    dims = 3 if method in VOLUME else 2
    model = small_cnn(dims)
    x = _inputs(dims)
    target = [2, 0, 1]
    batch = _make(method, model).attribute(x, target=target)
    assert batch.shape == (3, 1, *x.shape[2:])
    for i, t in enumerate(target):
        alone = _make(method, model).attribute(x[i : i + 1], target=t)
        torch.testing.assert_close(batch[i : i + 1], alone, rtol=1e-10, atol=1e-12)
    other = _make(method, model).attribute(x, target=[1, 2, 0])
    assert not torch.allclose(batch, other)  # the target matters: the test can fail


@pytest.mark.parametrize("method", VOLUME)
def test_no_grad_frozen_params_and_unchanged_model(method) -> None:
    model = small_cnn(3)
    x = _inputs(3)
    expected = _make(method, model).attribute(x, target=[0, 1, 2])
    frozen = copy.deepcopy(model).requires_grad_(False)
    before = model_state(frozen)
    with torch.no_grad():
        got = _make(method, frozen).attribute(x, target=[0, 1, 2])
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-14)
    assert_unchanged(frozen, before)
    assert all(p.grad is None for p in model.parameters())
    assert not x.requires_grad


@pytest.mark.parametrize("method", VOLUME)
def test_inference_mode_is_a_clear_error(method) -> None:
    model = small_cnn(3)
    with torch.inference_mode(), pytest.raises(RuntimeError, match="inference_mode"):
        _make(method, model).attribute(_inputs(3), target=0)


@pytest.mark.parametrize("method", VOLUME)
def test_bad_input_and_hooks_removed_after_errors(method) -> None:
    model = small_cnn(3)
    before = model_state(model)
    cam = _make(method, model)
    x = _inputs(3)
    with pytest.raises(ValueError, match="out of range"):
        cam.attribute(x, target=7)
    with pytest.raises(ValueError, match="target"):
        cam.attribute(x)
    with pytest.raises(RuntimeError):  # wrong number of input channels: the conv raises
        cam.attribute(_inputs(3, channels=3), target=0)
    with pytest.raises(ValueError, match="5-D"):
        cam.attribute(_inputs(2), target=0)
    with pytest.raises(TypeError, match="floating point"):
        cam.attribute(x.long(), target=0)
    with pytest.raises(ValueError, match="NaN"):
        cam.attribute(x.clone().fill_(math.nan), target=0)
    with pytest.raises(TypeError, match="unexpected keyword argument 'align_corners'"):
        cam.attribute(x, target=0, align_corners=True)
    assert_unchanged(model, before)
    cam.attribute(x, target=0)
    assert_unchanged(model, before)


@pytest.mark.parametrize("method", [m for m in ND if m is not FullGrad])
def test_layer_errors(method) -> None:
    model = small_cnn(3)
    before = model_state(model)
    with pytest.raises(ValueError, match="'bilinear' does not work"):
        method(model, model[3]).attribute(_inputs(3), target=0, interpolate_mode="bilinear")
    with pytest.raises(ValueError, match=r"\(N, channels, \*spatial\)"):
        method(model, model[6]).attribute(_inputs(3), target=0)
    with pytest.raises(ValueError, match="not reached"):
        method(model, nn.ReLU().eval()).attribute(_inputs(3), target=0)
    with pytest.raises(TypeError, match="layer"):
        method(model, "layer4")
    assert_unchanged(model, before)


@pytest.mark.parametrize("method", VOLUME)
def test_training_mode_warns_and_is_left_alone(method) -> None:
    model = small_cnn(3).train()
    with pytest.warns(UserWarning, match="training mode"):
        _make(method, model).attribute(_inputs(3), target=0)
    assert model.training


@pytest.mark.parametrize("method", [m for m in ND if m is not FullGrad])
def test_maps_at_layer_resolution(method) -> None:
    model = small_cnn(2)
    low = method(model, model[3]).attribute(_inputs(2), target=[0, 1, 2], upsample=False)
    assert low.shape == (3, 1, 4, 4)
    assert bool((low >= 0).all())
