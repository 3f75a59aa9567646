"""CAM, Eigen-CAM, EigenGrad-CAM, KPCA-CAM and FEM as classes: each equals its function on
the captured layer, and every one keeps the guarantees of the other CAMs (batch invariance,
model unchanged and no hook left also on errors, 3D entry points, clear errors)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import captum_medcam
from captum_medcam import CAM, FEM, KPCACAM, EigenCAM, EigenGradCAM, GradCAM
from captum_medcam._core.spatial import resize
from captum_medcam.attr._eigen_cam import kernel_principal_component_map, principal_component_map
from captum_medcam.attr._fem import fem_map
from tests.conftest import assert_unchanged, hook_count, model_state, small_cnn

#: N-D class -> its volume entry point; the options each is called with in these tests.
CLASSES = {
    "CAM": ("CAM3D", {}),
    "EigenCAM": ("EigenCAM3D", {"center": True}),
    "EigenGradCAM": ("EigenGradCAM3D", {}),
    "KPCACAM": ("KPCACAM3D", {"kernel": "rbf"}),
    "FEM": ("FEM3D", {"k": 1.0}),
}
SIZE = {1: (16,), 2: (8, 8), 3: (8, 8, 8)}


def make(name: str, net: nn.Sequential, layer: nn.Module | None = None):
    cls = getattr(captum_medcam, name)
    layer = net[4] if layer is None else layer
    if name.startswith("CAM"):
        return cls(net, layer, fc_layer=[m for m in net if isinstance(m, nn.Linear)][-1])
    return cls(net, layer)


def inputs(dims: int, n: int = 3, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 2, *SIZE[dims], generator=g, dtype=torch.float64)


def expected_layer_map(name: str, net: nn.Sequential, x: torch.Tensor, target: list[int]):
    """The method's function on the layer's activations, computed here by hand."""
    with torch.enable_grad():
        acts = net[:5](x).detach().requires_grad_(True)
        out = net[5:](acts)
        (grads,) = torch.autograd.grad(out[torch.arange(len(target)), target].sum(), acts)
    acts = acts.detach()
    if name == "CAM":
        return torch.einsum("nk,nk...->n...", net[7].weight[target], acts).unsqueeze(1)
    if name == "EigenCAM":
        return torch.relu(principal_component_map(acts, center=True))
    if name == "EigenGradCAM":
        return torch.relu(principal_component_map(grads * acts))
    if name == "KPCACAM":
        return torch.relu(kernel_principal_component_map(acts, "rbf"))
    return fem_map(acts, k=1.0)


@pytest.mark.parametrize("name", CLASSES)
@pytest.mark.parametrize("dims", [1, 2, 3])
def test_each_class_is_its_function_on_the_layer(name, dims):
    net = small_cnn(dims)
    x = inputs(dims)
    target = [0, 2, 1]
    options = CLASSES[name][1]
    want = expected_layer_map(name, net, x, target)
    got = make(name, net).attribute(x, target=target, upsample=False, **options)
    torch.testing.assert_close(got, want)
    assert bool(want.abs().sum() > 0)
    full = make(name, net).attribute(x, target=target, **options)
    torch.testing.assert_close(full, resize(want, x.shape[2:]))


@pytest.mark.parametrize("name", CLASSES)
def test_batch_invariance(name, dims):
    net = small_cnn(dims)
    x = inputs(dims, n=4, seed=1)
    target = [2, 0, 1, 2]
    method = make(name, net)
    options = CLASSES[name][1]
    whole = method.attribute(x, target=target, **options)
    for i in range(4):
        alone = method.attribute(x[i : i + 1], target=target[i], **options)
        torch.testing.assert_close(alone, whole[i : i + 1])


@pytest.mark.parametrize("name", CLASSES)
def test_volume_entry_point_is_the_nd_class_with_trilinear_upsampling(name):
    net = small_cnn(3)
    x = inputs(3, n=2)
    volume_name, options = CLASSES[name]
    got = make(volume_name, net).attribute(x, target=[1, 0], **options)
    want = make(name, net).attribute(
        x, target=[1, 0], interpolate_mode="trilinear", align_corners=False, **options
    )
    torch.testing.assert_close(got, want)
    with pytest.raises(TypeError, match="upsample"):
        make(volume_name, net).attribute(x, target=[1, 0], upsample=False)
    with pytest.raises(ValueError, match="5-D"):
        make(volume_name, small_cnn(2)).attribute(inputs(2), target=0)


@pytest.mark.parametrize("name", CLASSES)
def test_model_unchanged_and_no_hooks_left_also_on_error(name, dims):
    net = small_cnn(dims)
    before = model_state(net)
    x = inputs(dims)
    make(name, net).attribute(x, target=1, **CLASSES[name][1])
    assert_unchanged(net, before)
    with pytest.raises(ValueError, match="out of range"):
        make(name, net).attribute(x, target=7)
    assert_unchanged(net, before)
    with pytest.raises(ValueError, match="not reached"):
        make(name, net, layer=nn.ReLU().eval()).attribute(x, target=1)
    assert_unchanged(net, before)

    class Boom(nn.Module):
        def forward(self, a):
            raise RuntimeError("boom")

    broken = nn.Sequential(*net[:5], Boom(), *net[5:]).eval()
    with pytest.raises(RuntimeError, match="boom"):
        make(name, broken).attribute(x, target=1)
    assert hook_count(broken) == 0


@pytest.mark.parametrize("name", ["EigenCAM", "KPCACAM", "FEM"])
def test_class_agnostic_methods_check_the_target_and_ignore_it(name):
    net = small_cnn(2)
    x = inputs(2)
    method = make(name, net)
    options = CLASSES[name][1]
    plain = method.attribute(x, **options)
    for target in (0, [2, 1, 0], torch.tensor([1, 1, 2])):
        torch.testing.assert_close(method.attribute(x, target=target, **options), plain)
    with pytest.raises(ValueError, match="out of range"):
        method.attribute(x, target=3, **options)
    with pytest.raises(TypeError, match="target"):
        method.attribute(x, target="cat", **options)


@pytest.mark.parametrize("name", ["CAM", "EigenCAM", "KPCACAM", "FEM"])
def test_gradient_free_methods_work_under_inference_mode(name):
    net = small_cnn(2)
    x = inputs(2)
    method = make(name, net)
    want = method.attribute(x, target=[0, 1, 2], **CLASSES[name][1])
    with torch.inference_mode():
        got = method.attribute(x, target=[0, 1, 2], **CLASSES[name][1])
    torch.testing.assert_close(got.clone(), want)


def test_eigen_grad_cam_refuses_inference_mode_and_uses_the_target():
    net = small_cnn(2)
    x = inputs(2)
    with torch.inference_mode(), pytest.raises(RuntimeError, match="inference_mode"):
        EigenGradCAM(net, net[4]).attribute(x, target=0)
    a = EigenGradCAM(net, net[4]).attribute(x, target=0)
    b = EigenGradCAM(net, net[4]).attribute(x, target=1)
    assert not torch.allclose(a, b)


def test_cam_closed_form_and_grad_cam():
    """conv -> ReLU -> GAP -> Linear: ``sum_p CAM_c(p) = |S'| (f_c(x) - b_c)``, and Grad-CAM's
    weights are ``W[c] / |S'|``, so Grad-CAM is CAM over the number of positions."""
    net = small_cnn(3)
    x = inputs(3)
    target = [2, 0, 1]
    cam = CAM(net, net[4], fc_layer=net[7]).attribute(x, target=target, upsample=False)
    positions = cam[0, 0].numel()
    with torch.no_grad():
        scores = net(x)[torch.arange(3), target]
    torch.testing.assert_close(cam.flatten(1).sum(1), positions * (scores - net[7].bias[target]))
    grad_cam = GradCAM(net, net[4]).attribute(
        x, target=target, relu_attributions=False, upsample=False
    )
    torch.testing.assert_close(cam / positions, grad_cam)
    relu = CAM(net, net[4], fc_layer=net[7]).attribute(
        x, target=target, upsample=False, relu_attributions=True
    )
    torch.testing.assert_close(relu, cam.clamp_min(0))


def test_cam_checks_the_head():
    net = small_cnn(2)
    x = inputs(2)
    with pytest.raises(TypeError, match=r"fc_layer must be the torch\.nn\.Linear.*GradCAM"):
        CAM(net, net[4], fc_layer=net[3])
    with pytest.raises(TypeError, match="fc_layer"):
        CAM(net, net[4])  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="in_features"):
        CAM(net, net[1], fc_layer=net[7]).attribute(x, target=0)
    soft = nn.Sequential(*net, nn.Softmax(1)).eval()
    with pytest.raises(ValueError, match="softmax"):
        CAM(soft, soft[4], fc_layer=soft[7]).attribute(x, target=0)
    maxhead = nn.Sequential(*net[:5], nn.AdaptiveMaxPool2d(1), *net[6:]).eval()
    with pytest.raises(ValueError, match="global average"):
        CAM(maxhead, maxhead[4], fc_layer=maxhead[7]).attribute(x, target=0)


def test_cam_targets():
    net = small_cnn(2)
    x = inputs(2)
    cam = CAM(net, net[4], fc_layer=net[7])
    with pytest.raises(ValueError, match="target=None"):
        cam.attribute(x)
    with pytest.raises(ValueError, match="does not index"):
        cam.attribute(x, target=(0, 1))
    single = nn.Sequential(*net[:7], nn.Linear(8, 1)).double().eval()
    one = CAM(single, single[4], fc_layer=single[7]).attribute(x, upsample=False)
    with torch.no_grad():
        acts = single[:5](x)
    torch.testing.assert_close(one[:, 0], torch.einsum("k,nk...->n...", single[7].weight[0], acts))


def test_options_are_checked():
    net = small_cnn(2)
    x = inputs(2)
    with pytest.raises(TypeError, match="center"):
        EigenCAM(net, net[4]).attribute(x, center="yes")
    with pytest.raises(ValueError, match="kernel must be"):
        KPCACAM(net, net[4]).attribute(x, kernel="laplacian")
    with pytest.raises(ValueError, match="gamma must be >= 0"):
        KPCACAM(net, net[4]).attribute(x, gamma=-0.5)
    with pytest.raises(ValueError, match="variant must be"):
        FEM(net, net[4]).attribute(x, variant="xplique")
    with pytest.raises(ValueError, match="k=5 with 16 positions"):
        FEM(net, net[4]).attribute(x, k=5.0)
    with pytest.raises(ValueError, match="convolutional"):
        EigenCAM(net, net[6]).attribute(x)
    with pytest.raises(TypeError, match="relu_attributions"):
        FEM(net, net[4]).attribute(x, relu_attributions=1)


def test_training_mode_warns_and_is_kept():
    net = small_cnn(2).train()
    with pytest.warns(UserWarning, match="training mode"):
        EigenCAM(net, net[4]).attribute(inputs(2))
    assert net.training
