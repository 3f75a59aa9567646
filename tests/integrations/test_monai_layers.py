"""Layer helpers, and maps on every family of MONAI's 3D classification networks."""

from __future__ import annotations

import pytest
import torch
from captum.attr import LayerGradCam
from tests.conftest import assert_unchanged, model_state, small_cnn
from monai.data import MetaTensor
from monai.networks import nets
from torch import nn

from captum_medcam import ScoreCAM3D
from captum_medcam.attr._hooks import forward_with_capture
from captum_medcam.integrations.monai import Attributiond, get_layer, list_layers


def test_get_layer_by_dotted_name():
    net = nets.resnet10(spatial_dims=3, n_input_channels=1, num_classes=2, widen_factor=0.25)
    assert get_layer(net, "layer4") is net.layer4
    assert get_layer(net, "layer4.0.conv1") is net.layer4[0].conv1


def test_unknown_layer_lists_close_names():
    net = nets.resnet10(spatial_dims=3, n_input_channels=1, num_classes=2, widen_factor=0.25)
    with pytest.raises(
        ValueError, match=r"ResNet has no layer named 'layr4'; close names: \['layer4'"
    ):
        get_layer(net, "layr4")
    with pytest.raises(ValueError, match=r"top-level modules: \['act', 'avgpool', 'bn1'"):
        get_layer(net, "zzz")
    with pytest.raises(ValueError, match="no layer named ''"):
        get_layer(net, "")
    with pytest.raises(TypeError, match="dotted string"):
        get_layer(net, 4)


def test_list_layers_shapes_and_calls(dims):
    model = small_cnn(dims, in_channels=1)
    shared = nn.ReLU()
    model[1] = shared
    model[4] = shared  # one module called twice: not usable as a CAM layer
    before = model_state(model)
    size = (1, 1) + (8,) * dims
    infos = {i.name: i for i in list_layers(model, size)}
    assert infos["0"].output_shape == (1, 6) + (8,) * dims
    assert infos["3"].output_shape == (1, 8) + (4,) * dims
    assert infos["1"].calls == 2 and infos["0"].calls == 1
    assert infos["3"].type == type(model[3]).__name__
    assert "7" not in infos  # the linear layer has no spatial dims
    assert "7" in {i.name for i in list_layers(model, size, spatial_only=False)}
    # the shapes are those the capture hook sees
    _, acts = forward_with_capture(model, model[3], torch.zeros(size, dtype=torch.float64))
    assert infos["3"].output_shape == tuple(acts.shape)
    assert_unchanged(model, before)


def test_list_layers_removes_hooks_when_forward_raises():
    model = small_cnn(3, in_channels=1)
    with pytest.raises(RuntimeError):
        list_layers(model, (1, 3, 8, 8, 8))  # wrong number of channels
    assert_unchanged(model, model_state(model))
    with pytest.raises(ValueError, match="input_shape"):
        list_layers(model, (8, 8))


NETWORKS = {
    "resnet10": (
        lambda: nets.resnet10(spatial_dims=3, n_input_channels=1, num_classes=2, widen_factor=0.25),
        "layer4",
    ),
    "resnet18": (
        lambda: nets.resnet18(spatial_dims=3, n_input_channels=1, num_classes=2, widen_factor=0.25),
        "layer4",
    ),
    "resnet34": (
        lambda: nets.resnet34(
            spatial_dims=3, n_input_channels=1, num_classes=2, widen_factor=0.125
        ),
        "layer4",
    ),
    "resnet50": (
        lambda: nets.resnet50(
            spatial_dims=3, n_input_channels=1, num_classes=2, widen_factor=0.125
        ),
        "layer4",
    ),
    "densenet121": (
        lambda: nets.DenseNet121(
            spatial_dims=3, in_channels=1, out_channels=2, init_features=8, growth_rate=4
        ),
        "features.denseblock3",
    ),
    "seresnet50": (
        lambda: nets.SEResNet50(spatial_dims=3, in_channels=1, num_classes=2, layers=(1, 1, 1, 1)),
        "layer3",
    ),
    "efficientnet-b0": (
        lambda: nets.EfficientNetBN(
            "efficientnet-b0", spatial_dims=3, in_channels=1, num_classes=2, pretrained=False
        ),
        "_blocks.4",
    ),
}


@pytest.mark.parametrize("name", list(NETWORKS))
def test_maps_on_monai_networks(name):
    """Each family: the layer is found by name, listed with its shape, and Score-CAM and
    LayerGradCam give maps at input resolution with the image's affine."""
    torch.manual_seed(0)
    make, layer_name = NETWORKS[name]
    net = make().eval()
    before = model_state(net)
    layer = get_layer(net, layer_name)
    shapes = {i.name: i.output_shape for i in list_layers(net, (1, 1, 32, 32, 32))}
    assert shapes[layer_name][2:] == (2, 2, 2)
    image = MetaTensor(
        torch.rand(1, 32, 32, 32), affine=torch.diag(torch.tensor([2.0, 2.0, 2.0, 1.0]))
    )
    methods = [LayerGradCam(net, layer)]
    if name in ("resnet10", "densenet121"):  # Score-CAM costs one forward per channel
        methods.append(ScoreCAM3D(net, layer))
    for method in methods:
        out = Attributiond("image", method, target=1)({"image": image})["image_map"]
        assert out.shape == (1, 32, 32, 32)
        assert torch.isfinite(out).all() and out.abs().amax() > 0
        assert torch.equal(out.affine, image.affine)
    assert_unchanged(net, before)
