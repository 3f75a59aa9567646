"""FullGrad: completeness, the effective bias of batch norm, the post-processing, and
pytorch-grad-cam's FullGrad."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from captum_medcam import FullGrad, FullGrad3D
from captum_medcam.attr._full_grad import (
    bias_modules,
    effective_bias,
    full_gradients,
    fullgrad_map,
    fullgrad_postprocess,
)
from tests.conftest import CONV, MAXPOOL, assert_unchanged, model_state

BATCHNORM = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
GAP = {1: nn.AdaptiveAvgPool1d, 2: nn.AdaptiveAvgPool2d, 3: nn.AdaptiveAvgPool3d}


def bn_cnn(dims: int, seed: int = 0, inplace: bool = True) -> nn.Sequential:
    """conv -> BN -> ReLU -> maxpool -> conv -> BN -> ReLU -> GAP -> linear -> BN1d -> ReLU ->
    linear, float64, eval, with running statistics that are not the identity."""
    torch.manual_seed(seed)
    model = nn.Sequential(
        CONV[dims](2, 4, 3, padding=1),
        BATCHNORM[dims](4),
        nn.ReLU(inplace=inplace),
        MAXPOOL[dims](2),
        CONV[dims](4, 6, 3, padding=1),
        BATCHNORM[dims](6),
        nn.ReLU(inplace=inplace),
        GAP[dims](1),
        nn.Flatten(),
        nn.Linear(6, 5),
        nn.BatchNorm1d(5),
        nn.ReLU(),
        nn.Linear(5, 3),
    ).double()
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 2)
            m.bias.data.uniform_(-1, 1)
    return model.eval()


def _inputs(dims: int, n: int = 3, size: int = 8, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 2, *([size] * dims), generator=g, dtype=torch.float64)


def test_effective_bias_of_batch_norm() -> None:
    bn = bn_cnn(2)[1]
    x = torch.randn(3, 4, 5, 5, dtype=torch.float64)
    with torch.no_grad():
        b = effective_bias(bn)
        assert b is not None
        scale = bn.weight / (bn.running_var + bn.eps).sqrt()
        torch.testing.assert_close(bn(x), x * scale.view(1, -1, 1, 1) + b.view(1, -1, 1, 1))
    plain = nn.BatchNorm2d(4, affine=False).double().eval()
    plain.running_mean.fill_(2.0)
    expected = torch.full((4,), -2.0 / (1 + plain.eps) ** 0.5, dtype=torch.float64)
    torch.testing.assert_close(effective_bias(plain), expected)
    assert effective_bias(nn.BatchNorm2d(4, track_running_stats=False)) is None
    assert effective_bias(nn.Conv2d(1, 2, 3, bias=False)) is None
    assert effective_bias(nn.ReLU()) is None


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_completeness(dims: int) -> None:
    """f_c(x) = sum(grad_x f_c * x) + sum over bias layers of sum(grad_z f_c * b), exactly, for
    a ReLU network with batch norm in eval mode (and in-place ReLUs after the captured
    outputs)."""
    model = bn_cnn(dims)
    x = _inputs(dims)
    target = [0, 2, 1]
    modules = bias_modules(model)
    assert len(modules) == 7  # 2 conv, 2 BN, 2 linear, 1 BN1d
    full = full_gradients(model, modules, x, target)
    with torch.no_grad():
        scores = model(x)[torch.arange(3), target]
    torch.testing.assert_close(full.scores, scores)
    total = (full.input_gradient * x).flatten(1).sum(1)
    total = total + sum(g.flatten(1).sum(1) for g in full.bias_gradients)
    torch.testing.assert_close(total, scores, rtol=1e-12, atol=1e-12)
    assert full.channel_first == [True, True, True, True, False, True, False]
    assert sum(h for m in model.modules() for h in (len(m._forward_hooks),)) == 0


def test_postprocess_per_sample_and_per_channel() -> None:
    t = torch.tensor([[[-1.0, 3.0], [2.0, 2.0]]], dtype=torch.float64)  # (1, 2, 2)
    torch.testing.assert_close(
        fullgrad_postprocess(t, "sample"),
        torch.tensor([[[0.0, 1.0], [0.5, 0.5]]], dtype=torch.float64),
    )
    torch.testing.assert_close(
        fullgrad_postprocess(t, "channel"),
        torch.tensor([[[0.0, 1.0], [0.0, 0.0]]], dtype=torch.float64),  # constant -> 0
    )


def test_map_by_hand(dims: int) -> None:
    model = bn_cnn(dims)
    x = _inputs(dims)
    full = full_gradients(model, bias_modules(model), x, 1)

    def psi(t: torch.Tensor) -> torch.Tensor:
        flat = t.abs().flatten(1)
        lo, hi = flat.amin(1, keepdim=True), flat.amax(1, keepdim=True)
        return ((flat - lo) / (hi - lo)).view_as(t).sum(1, keepdim=True)

    mode = {2: "bilinear", 3: "trilinear"}[dims]
    expected = psi(full.input_gradient * x)
    for g in full.bias_gradients[:4]:
        expected = expected + torch.nn.functional.interpolate(
            psi(g), size=x.shape[2:], mode=mode, align_corners=True
        )
    got = fullgrad_map(x, full, normalize="sample", align_corners=True)
    torch.testing.assert_close(got, expected)


def test_class_is_the_decomposition_map(dims: int) -> None:
    model = bn_cnn(dims)
    before = model_state(model)
    x = _inputs(dims)
    full = full_gradients(model, bias_modules(model), x, [0, 2, 1])
    for normalize in ("sample", "channel"):
        got = FullGrad(model).attribute(x, target=[0, 2, 1], normalize=normalize)
        torch.testing.assert_close(got, fullgrad_map(x, full, normalize=normalize))
    assert_unchanged(model, before)


def test_agrees_with_pytorch_grad_cam(monkeypatch: pytest.MonkeyPatch) -> None:
    """pytorch-grad-cam's FullGrad (2D: Conv2d and BatchNorm2d biases, psi per channel,
    OpenCV resize, min-max of the sum) against ``normalize="channel"`` min-max normalised.

    Its ``psi`` divides by ``max + 1e-7``, which moves channels whose largest value is
    small (1e-6 to 1e-4 here) by up to 0.2%; with that epsilon put into our ``psi`` the maps
    agree to float32 precision, so the epsilon is the whole difference."""
    pgc = pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from captum_medcam.attr import _full_grad

    model = bn_cnn(2, inplace=False).float()
    x = _inputs(2, size=16).float()
    target = [2, 0, 1]
    with pgc.FullGrad(model=model, target_layers=[]) as peer:
        theirs = torch.from_numpy(
            peer(input_tensor=x, targets=[ClassifierOutputTarget(t) for t in target])
        )

    def minmax(maps: torch.Tensor, eps: float = 0.0) -> torch.Tensor:
        flat = maps.flatten(1)
        flat = flat - flat.amin(1, keepdim=True)
        return (flat / (flat.amax(1, keepdim=True) + eps)).view(maps.shape[0], *maps.shape[2:])

    ours = minmax(FullGrad(model).attribute(x, target=target, normalize="channel"))
    assert 1e-4 < (ours - theirs).abs().max() < 1e-2

    def psi_with_eps(t: torch.Tensor, normalize: str = "sample") -> torch.Tensor:
        flat = t.abs().flatten(2)
        flat = flat - flat.amin(-1, keepdim=True)
        return (flat / (flat.amax(-1, keepdim=True) + 1e-7)).view_as(t)

    monkeypatch.setattr(_full_grad, "fullgrad_postprocess", psi_with_eps)
    ours = minmax(FullGrad(model).attribute(x, target=target, normalize="channel"), 1e-7)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=2e-6)


def test_model_must_be_a_module_and_options_are_checked() -> None:
    model = bn_cnn(2)
    with pytest.raises(TypeError, match=r"torch\.nn\.Module"):
        FullGrad(lambda t: model(t))
    with pytest.raises(ValueError, match="normalize must be"):
        FullGrad(model).attribute(_inputs(2), target=0, normalize="layer")
    with pytest.raises(TypeError, match="unexpected keyword argument 'interpolate_mode'"):
        FullGrad3D(model).attribute(_inputs(3), target=0, interpolate_mode="nearest")
