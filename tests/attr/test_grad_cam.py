"""Tests of the Grad-CAM family: closed forms, Captum equivalence, pytorch-grad-cam agreement."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from captum.attr import GuidedGradCam, LayerAttribution, LayerGradCam
from torch import nn

from captum_medcam import (
    GradCAM,
    GradCAM3D,
    GradCAMPlusPlus,
    GradCAMPlusPlus3D,
    GuidedGradCAM3D,
    HiResCAM,
    HiResCAM3D,
    LayerCAM,
    LayerCAM3D,
    XGradCAM,
    XGradCAM3D,
)
from captum_medcam._core.spatial import resize
from captum_medcam.attr._grad_cam import gradcam_weights
from captum_medcam.attr._grad_cam_plusplus import gradcam_plusplus_weights
from captum_medcam.attr._gradient import GradientCAMBase
from tests.conftest import assert_unchanged, gap_linear, model_state, small_cnn

ND = [GradCAM, GradCAMPlusPlus, LayerCAM, HiResCAM, XGradCAM]
VOLUME = [GradCAM3D, GuidedGradCAM3D, GradCAMPlusPlus3D, LayerCAM3D, HiResCAM3D, XGradCAM3D]


def _inputs(dims: int, n: int = 3, size: int = 8, channels: int = 2, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, channels, *([size] * dims), generator=g, dtype=torch.float64)


# ----------------------------------------------------------------------------- Captum


@pytest.mark.parametrize("relu", [True, False])
def test_gradcam3d_is_captum_layer_gradcam_then_trilinear(relu: bool) -> None:
    model = small_cnn(3)
    x = _inputs(3)
    ours = GradCAM3D(model, model[3]).attribute(x, target=[0, 2, 1], relu_attributions=relu)
    ref = LayerGradCam(model, model[3]).attribute(x, target=[0, 2, 1], relu_attributions=relu)
    ref = LayerAttribution.interpolate(ref, tuple(x.shape[2:]), "trilinear")
    assert ours.shape == (3, 1, 8, 8, 8)
    assert torch.equal(ours, ref)
    if not relu:
        assert (ours < 0).any()  # the signed map is really signed on this model


@pytest.mark.parametrize("relu", [True, False])
@pytest.mark.parametrize("dims", [1, 2, 3])
def test_gradcam_is_captum_layer_gradcam_bit_for_bit(dims: int, relu: bool) -> None:
    """At layer resolution GradCAM is Captum's LayerGradCam exactly, on a ReLU layer and on
    the conv before it (signed activations), in float64 and float32; upsampled, it is
    Captum's map interpolated linearly."""
    for dtype in (torch.float64, torch.float32):
        model = small_cnn(dims).to(dtype)
        x = _inputs(dims).to(dtype)
        for layer in (model[3], model[4]):
            ours = GradCAM(model, layer).attribute(
                x, target=[1, 0, 2], upsample=False, relu_attributions=relu
            )
            ref = LayerGradCam(model, layer).attribute(x, target=[1, 0, 2], relu_attributions=relu)
            assert ours.shape == (3, 1, *([4] * dims))
            assert torch.equal(ours, ref)
            up = GradCAM(model, layer).attribute(x, target=[1, 0, 2], relu_attributions=relu)
            mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[dims]
            assert torch.equal(up, LayerAttribution.interpolate(ref, tuple(x.shape[2:]), mode))
        if not relu:
            assert (ours < 0).any()  # the signed map is really signed on this model


def test_the_weight_function_is_the_method() -> None:
    """A gradient CAM is its weight function: a subclass naming Grad-CAM's weights is
    GradCAM, and one with other weights gives another map."""

    class Mine(GradientCAMBase):
        def _weights(self, acts, grads, scores):
            return gradcam_weights(acts, grads, scores)

    class Doubled(GradientCAMBase):
        def _weights(self, acts, grads, scores):
            return 2 * gradcam_weights(acts, grads, scores)

    model = small_cnn(2)
    x = _inputs(2)
    expected = GradCAM(model, model[3]).attribute(x, target=[1, 0, 2], relu_attributions=False)
    torch.testing.assert_close(
        Mine(model, model[3]).attribute(x, target=[1, 0, 2], relu_attributions=False),
        expected,
        rtol=0,
        atol=0,
    )
    torch.testing.assert_close(
        Doubled(model, model[3]).attribute(x, target=[1, 0, 2], relu_attributions=False),
        2 * expected,
    )
    with pytest.raises(NotImplementedError, match="GradientCAMBase defines no weight"):
        GradientCAMBase(model, model[3]).attribute(x, target=0)


@pytest.mark.parametrize(
    "method", [GradCAM3D, GradCAMPlusPlus3D, LayerCAM3D, HiResCAM3D, XGradCAM3D]
)
@pytest.mark.parametrize(
    "option", [{"upsample": False}, {"interpolate_mode": "nearest"}, {"align_corners": True}]
)
def test_volume_entry_points_fix_the_output_options(method, option) -> None:
    """A volume entry point takes no output options, as before the N-D class existed: the
    keyword is a TypeError that names the N-D class to use instead."""
    model = small_cnn(3)
    before = model_state(model)
    nd = method.__mro__[1].__name__
    with pytest.raises(
        TypeError, match=f"unexpected keyword argument '{next(iter(option))}'.*{nd}"
    ):
        method(model, model[3]).attribute(_inputs(3), target=0, **option)
    assert_unchanged(model, before)
    assert issubclass(method, getattr(__import__("captum_medcam"), nd))


def test_guided_gradcam3d_is_captum_with_trilinear() -> None:
    model = small_cnn(3)
    x = _inputs(3)
    ours = GuidedGradCAM3D(model, model[3]).attribute(x, target=[0, 2, 1])
    with pytest.warns(UserWarning, match="backward hooks on ReLU"):
        ref = GuidedGradCam(model, model[3]).attribute(
            x.clone().requires_grad_(), target=[0, 2, 1], interpolate_mode="trilinear"
        )
    assert ours.shape == x.shape
    assert torch.equal(ours, ref)
    assert ours.abs().sum() > 0


def test_guided_gradcam3d_mode_that_cannot_work_is_an_error() -> None:
    model = small_cnn(3)
    before = model_state(model)
    with pytest.raises(ValueError, match="'bilinear' does not work on 3-D maps"):
        GuidedGradCAM3D(model, model[3]).attribute(
            _inputs(3), target=0, interpolate_mode="bilinear"
        )
    assert_unchanged(model, before)
    with pytest.raises(TypeError, match=r"torch\.nn\.Module"):
        GuidedGradCAM3D(lambda t: model(t), model[3])


# ----------------------------------------------------------------------------- closed forms


def _cam_parts(model: nn.Sequential, x: torch.Tensor, layer_index: int, target: list[int]):
    """Layer activations A, the score S, the head weights W[c] and the positions P."""
    with torch.no_grad():
        acts = model[: layer_index + 1](x)
        scores = model(x)[torch.arange(x.shape[0]), target]
    w = model[-1].weight[target]  # (N, K)
    positions = math.prod(acts.shape[2:])
    return acts, scores, w, positions


def _expand(w: torch.Tensor, acts: torch.Tensor) -> torch.Tensor:
    return w.view(*w.shape, *([1] * (acts.dim() - 2)))


def test_gap_linear_gradient_cams_are_cam_over_positions(dims: int) -> None:
    """For conv -> GAP -> Linear, dS/dA_k = W[c, k] / P everywhere: Grad-CAM, HiResCAM and
    XGrad-CAM equal CAM / P; LayerCAM keeps the positive weights only."""
    model = gap_linear(dims)
    x = _inputs(dims)
    target = [0, 2, 1]
    acts, _scores, w, p = _cam_parts(model, x, 0, target)
    cam = (_expand(w, acts) * acts).sum(1, keepdim=True)
    for method in (GradCAM, HiResCAM, XGradCAM):
        got = method(model, model[0]).attribute(
            x, target=target, upsample=False, relu_attributions=False
        )
        torch.testing.assert_close(got, cam / p, rtol=1e-10, atol=1e-12)
    got = LayerCAM(model, model[0]).attribute(
        x, target=target, upsample=False, relu_attributions=False
    )
    torch.testing.assert_close(got, (_expand(F.relu(w), acts) * acts).sum(1, keepdim=True) / p)
    if dims == 3:
        got = GradCAM3D(model, model[0]).attribute(x, target=target)
        torch.testing.assert_close(got, resize(F.relu(cam / p), x.shape[2:], "trilinear"))


def test_closed_forms_through_a_relu_mask(dims: int) -> None:
    """Layer = the conv before a ReLU -> GAP -> Linear: dS/dA_k(p) = W[c, k] / P * [A_k(p) > 0].

    Each method's map is then a closed form of A, W and S, derived by hand here, without
    autograd.
    """
    model = small_cnn(dims)
    x = _inputs(dims)
    target = [0, 2, 1]
    acts, scores, w, p = _cam_parts(model, x, 3, target)
    we = _expand(w, acts)
    positive = F.relu(acts)
    sum_a = acts.flatten(2).sum(-1)  # (N, K)
    n_pos = (acts > 0).flatten(2).sum(-1).to(acts.dtype)

    def signed(method, **kw):
        return method(model, model[3]).attribute(
            x, target=target, upsample=False, relu_attributions=False, **kw
        )

    def combine(weights: torch.Tensor) -> torch.Tensor:
        return (_expand(weights, acts) * acts).sum(1, keepdim=True)

    torch.testing.assert_close(signed(HiResCAM), (we * positive).sum(1, keepdim=True) / p)
    torch.testing.assert_close(signed(LayerCAM), (F.relu(we) * positive).sum(1, keepdim=True) / p)
    torch.testing.assert_close(
        signed(XGradCAM), combine(w / p * positive.flatten(2).sum(-1) / sum_a)
    )
    pp = (
        n_pos * F.relu(w / p) / (2 + sum_a * w / p)
    )  # sum_p alpha * ReLU(g), alpha = 1 / (2 + sum A g)
    torch.testing.assert_close(signed(GradCAMPlusPlus), combine(pp * scores.exp().unsqueeze(1)))
    torch.testing.assert_close(signed(GradCAMPlusPlus, exp_score=False), combine(pp))


def test_gradcam_plusplus_guards_a_zero_denominator() -> None:
    acts = torch.tensor([[[-1.0, -1.0], [0.5, 0.5], [1.0, 2.0]]], dtype=torch.float64)  # (1, 3, 2)
    grads = torch.tensor([[[1.0, 1.0], [0.0, 0.0], [1.0, -1.0]]], dtype=torch.float64)
    w = gradcam_plusplus_weights(acts, grads, torch.zeros(1, dtype=torch.float64))
    # channel 0: 2 g^2 + sum A g^3 = 2 - 2 = 0 -> alpha = 0; channel 1: g = 0;
    # channel 2: alpha = 1 / (2 + 3 * 1) at the position with g = 1, ReLU(g) = 0 at the other.
    torch.testing.assert_close(w, torch.tensor([[0.0, 0.0, 1 / 5]], dtype=torch.float64))


@pytest.mark.parametrize("score", [100.0, -110.0])
def test_gradcam_plusplus_exp_out_of_range_is_a_clear_error(score: float) -> None:
    """exp(100) is inf and exp(-110) is 0 in float32: an infinite or an all-zero map."""
    acts = torch.ones(1, 2, 3)
    with pytest.raises(ValueError, match="exp_score=False"):
        gradcam_plusplus_weights(acts, acts, torch.tensor([score]))
    w = gradcam_plusplus_weights(acts, acts, torch.tensor([score]), exp_score=False)
    assert torch.isfinite(w).all() and (w > 0).all()


# ----------------------------------------------------------------------------- batches, modes


def _volume_model():
    return small_cnn(3)


@pytest.mark.parametrize("method", ND + VOLUME)
def test_batch_invariance_with_per_sample_targets(method) -> None:
    """Each example's map is its own: MONAI's GradCAM mixes the batch's classes here."""
    dims = 3 if method in VOLUME else 2
    model = small_cnn(dims)
    x = _inputs(dims)
    target = [2, 0, 1]
    layer = model[3]
    batch = method(model, layer).attribute(x, target=target)
    for i, t in enumerate(target):
        alone = method(model, layer).attribute(x[i : i + 1], target=t)
        torch.testing.assert_close(batch[i : i + 1], alone, rtol=1e-10, atol=1e-12)
    other = method(model, layer).attribute(x, target=[1, 2, 0])
    assert not torch.allclose(batch, other)  # the target matters: the test can fail


@pytest.mark.parametrize("method", VOLUME)
def test_no_grad_frozen_params_and_unchanged_model(method) -> None:
    model = _volume_model()
    x = _inputs(3)
    expected = method(model, model[3]).attribute(x, target=[0, 1, 2])
    frozen = copy.deepcopy(model).requires_grad_(False)
    before = model_state(frozen)
    with torch.no_grad():
        got = method(frozen, frozen[3]).attribute(x, target=[0, 1, 2])
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-14)
    assert_unchanged(frozen, before)
    assert all(p.grad is None for p in model.parameters())
    assert not x.requires_grad


@pytest.mark.parametrize("method", VOLUME)
def test_inference_mode_is_a_clear_error(method) -> None:
    model = _volume_model()
    with torch.inference_mode(), pytest.raises(RuntimeError, match="inference_mode"):
        method(model, model[3]).attribute(_inputs(3), target=0)
    with torch.inference_mode():
        x = _inputs(3)
    assert (
        method(model, model[3]).attribute(x, target=0).shape[0] == 3
    )  # an inference tensor is fine


@pytest.mark.parametrize("method", VOLUME)
def test_in_place_relu_model(method) -> None:
    """MONAI's DenseNet121 applies ReLU(inplace=True) to the output of norm5, the CAM layer."""
    from monai.networks.nets import DenseNet121

    torch.manual_seed(2)
    net = DenseNet121(
        spatial_dims=3,
        in_channels=1,
        out_channels=2,
        init_features=4,
        growth_rate=4,
        block_config=(1, 1),
    ).eval()
    plain = copy.deepcopy(net)
    for m in plain.modules():
        if isinstance(m, nn.ReLU):
            m.inplace = False
    x = torch.randn(2, 1, 24, 24, 24)
    before = model_state(net)
    got = method(net, net.features.norm5).attribute(x, target=[0, 1])
    ref = method(plain, plain.features.norm5).attribute(x, target=[0, 1])
    torch.testing.assert_close(got, ref)
    assert got.abs().sum() > 0
    assert_unchanged(net, before)


class _CountBackward(torch.autograd.Function):
    calls = 0

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        _CountBackward.calls += 1
        return grad


class _Counter(nn.Module):
    def forward(self, x):
        return _CountBackward.apply(x)


@pytest.mark.parametrize("method", VOLUME)
def test_gradient_stops_at_the_layer(method) -> None:
    model = _volume_model()
    counted = nn.Sequential(*model[:3], _Counter(), *model[3:]).eval()  # before the layer
    _CountBackward.calls = 0
    method(counted, counted[4]).attribute(_inputs(3), target=1)
    expected = 1 if method is GuidedGradCAM3D else 0  # guided backprop is an input gradient
    assert _CountBackward.calls == expected


def test_metatensor_metadata_is_kept() -> None:
    from monai.data import MetaTensor

    model = _volume_model()
    affine = torch.diag(torch.tensor([2.0, 3.0, 4.0, 1.0], dtype=torch.float64))
    x = MetaTensor(_inputs(3), affine=affine)
    for method in VOLUME:
        out = method(model, model[3]).attribute(x, target=0)
        assert isinstance(out, MetaTensor)
        assert torch.equal(out.affine, affine)


# ----------------------------------------------------------------------------- errors, hooks


@pytest.mark.parametrize("method", VOLUME)
def test_bad_input_and_hooks_removed_after_errors(method) -> None:
    model = _volume_model()
    before = model_state(model)
    cam = method(model, model[3])
    x = _inputs(3)
    with pytest.raises(ValueError, match="out of range"):
        cam.attribute(x, target=7)
    with pytest.raises(ValueError, match="target=None"):
        cam.attribute(x)
    with pytest.raises(RuntimeError):  # wrong number of input channels: the conv raises
        cam.attribute(_inputs(3, channels=3), target=0)
    with pytest.raises(ValueError, match="5-D"):
        cam.attribute(_inputs(2), target=0)
    with pytest.raises(TypeError, match="floating point"):
        cam.attribute(x.long(), target=0)
    with pytest.raises(ValueError, match="NaN"):
        cam.attribute(x.clone().fill_(math.nan), target=0)
    assert_unchanged(model, before)
    cam.attribute(x, target=0)
    assert_unchanged(model, before)


@pytest.mark.parametrize("method", ND)
def test_nd_errors(method) -> None:
    model = small_cnn(3)
    before = model_state(model)
    with pytest.raises(ValueError, match="'bilinear' does not work"):
        method(model, model[3]).attribute(_inputs(3), target=0, interpolate_mode="bilinear")
    with pytest.raises(ValueError, match="choose a convolutional layer"):
        method(model, model[6]).attribute(_inputs(3), target=0)
    with pytest.raises(ValueError, match="not reached"):
        method(model, nn.ReLU().eval()).attribute(_inputs(3), target=0)
    with pytest.raises(TypeError, match="layer"):
        method(model, "layer4")
    assert_unchanged(model, before)


def test_training_mode_warns_and_is_left_alone() -> None:
    model = _volume_model().train()
    with pytest.warns(UserWarning, match="training mode"):
        LayerCAM3D(model, model[3]).attribute(_inputs(3), target=0)
    assert model.training


# ----------------------------------------------------------------------------- pytorch-grad-cam


@pytest.mark.parametrize("name", ["GradCAM", "GradCAMPlusPlus", "XGradCAM", "LayerCAM", "HiResCAM"])
def test_agrees_with_pytorch_grad_cam_in_3d(name: str) -> None:
    """pytorch-grad-cam's 3D path, compared after its own min-max and resize.

    Its maps are ReLU'd at layer resolution, min-max normalised per example and resized by
    ``scale_cam_image`` (a cubic spline zoom in 3D); ours are taken at layer resolution and
    passed through the same ``scale_cam_image``, so the comparison tests the maps.
    """
    pgc = pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.utils.image import scale_cam_image
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model = small_cnn(3)
    if name == "GradCAMPlusPlus":  # same logits, gradients 1000x: it adds 1e-6 to ~g^2
        model[3].weight.data.mul_(1e-3)
        model[3].bias.data.mul_(1e-3)
        model[-1].weight.data.mul_(1e3)
    x = _inputs(3)
    target = [2, 0, 1]
    layer = model[4]
    with getattr(pgc, name)(model=model, target_layers=[layer]) as peer:
        theirs = peer(input_tensor=x, targets=[ClassifierOutputTarget(t) for t in target])
        method = {
            "GradCAM": GradCAM,
            "GradCAMPlusPlus": GradCAMPlusPlus,
            "XGradCAM": XGradCAM,
            "LayerCAM": LayerCAM,
            "HiResCAM": HiResCAM,
        }[name]
        ours = method(model, layer).attribute(x, target=target, upsample=False)
        # its own post-processing: min-max + zoom per layer, then clamp + min-max again
        size = (x.shape[-1], x.shape[-2], x.shape[-3])
        ours_scaled = peer.aggregate_multi_layers(
            [scale_cam_image(ours[:, 0].detach().numpy(), size)[:, None]]
        )
    assert theirs.shape == (3, 8, 8, 8)
    assert theirs.max() > 0.99
    torch.testing.assert_close(
        torch.from_numpy(ours_scaled), torch.from_numpy(theirs), rtol=0, atol=1e-5
    )
