"""ScoreCAM / ScoreCAM3D: closed forms, the official per-channel loop, invariances, errors."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from captum_medcam import ScoreCAM, ScoreCAM3D
from tests.conftest import CONV, GAP, assert_unchanged, hook_count, model_state, small_cnn

MODES = {1: "linear", 2: "bilinear", 3: "trilinear"}


def official_score_cam(model, layer, x, cls, *, align_corners=False, relu=True):
    """The official Score-CAM code (haofanwang/Score-CAM), one example, N-D."""
    saved = {}
    handle = layer.register_forward_hook(lambda m, i, o: saved.setdefault("a", o.detach()))
    with torch.no_grad():
        model(x)
    handle.remove()
    acts = saved["a"]
    total = torch.zeros(1, 1, *x.shape[2:], dtype=x.dtype)
    for k in range(acts.shape[1]):
        up = F.interpolate(
            acts[:, k : k + 1],
            size=x.shape[2:],
            mode=MODES[x.dim() - 2],
            align_corners=align_corners,
        )
        if up.max() == up.min():
            continue
        mask = (up - up.min()) / (up.max() - up.min())
        with torch.no_grad():
            prob = F.softmax(model(x * mask), dim=1)[0, cls]
        total += prob * up
    return F.relu(total) if relu else total


class Counter(nn.Module):
    """Counts forward passes and the examples they hold."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.calls = 0
        self.rows = 0

    def forward(self, x):
        self.calls += 1
        self.rows += x.shape[0]
        return self.model(x)


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_equals_official_loop(dims):
    model = small_cnn(dims)
    x = torch.randn(3, 2, *([8] * dims), dtype=torch.float64)
    targets = [0, 2, 1]
    out = ScoreCAM(model, model[4]).attribute(x, target=targets, perturbations_per_eval=3)
    ref = torch.cat(
        [official_score_cam(model, model[4], x[i : i + 1], t) for i, t in enumerate(targets)]
    )
    assert out.shape == (3, 1, *x.shape[2:])
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-6)


def test_closed_form_identity_layer(dims):
    # Layer = the input itself (one channel), head = GAP -> Linear([1, -1]).
    # mask = s(x); logit_0 = mean(x * s(x)); map = ReLU(p_0 * x) with p_0 = sigmoid(2 * logit_0).
    layer = nn.Identity()
    head = nn.Linear(1, 2, bias=False).double()
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0], [-1.0]]))
    model = nn.Sequential(layer, GAP[dims](1), nn.Flatten(), head).eval()
    n = 4**dims
    x = (torch.arange(n, dtype=torch.float64) / (n - 1)).view(1, 1, *([4] * dims))
    m = (x * x).mean()
    p0 = torch.sigmoid(2 * m)
    out = ScoreCAM(model, layer).attribute(x, target=0)
    torch.testing.assert_close(out, p0 * x, rtol=0, atol=1e-12)
    logit = ScoreCAM(model, layer).attribute(x, target=0, score="logit")
    torch.testing.assert_close(logit, m * x, rtol=0, atol=1e-12)
    # With a black baseline the weight is logit(x * s(x)) - logit(0) = m - 0.
    based = ScoreCAM(model, layer).attribute(x, target=0, score="logit", baselines=0.0)
    torch.testing.assert_close(based, m * x, rtol=0, atol=1e-12)
    # Class 1's logit is -m: the map is ReLU(-m * x) = 0.
    assert torch.equal(
        ScoreCAM(model, layer).attribute(x, target=1, score="logit"), torch.zeros_like(x)
    )


def test_batch_invariance_per_sample_targets(dims):
    model = small_cnn(dims)
    x = torch.randn(4, 2, *([8] * dims), dtype=torch.float64)
    targets = torch.tensor([2, 0, 1, 2])
    cam = ScoreCAM(model, model[4])
    batch = cam.attribute(x, target=targets)
    for i in range(4):
        single = cam.attribute(x[i : i + 1], target=int(targets[i]))
        torch.testing.assert_close(batch[i : i + 1], single, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    "variant", [{}, {"channel_softmax": True, "score": "logit"}, {"normalize_at": "layer"}]
)
def test_chunk_invariance(dims, variant):
    model = small_cnn(dims)
    x = torch.randn(2, 2, *([8] * dims), dtype=torch.float64)
    cam = ScoreCAM(model, model[4])
    one = cam.attribute(x, target=[1, 2], perturbations_per_eval=1, **variant)
    many = cam.attribute(x, target=[1, 2], perturbations_per_eval=64, **variant)
    torch.testing.assert_close(one, many, rtol=0, atol=1e-12)


def test_constant_and_duplicate_channels_share_forwards(dims):
    # Channels: 0 constant, 1..3 power-of-two multiples of relu(x) (scaling by 2 is exact in
    # floating point, so their normalised masks are bitwise equal), 4 = relu(-x).
    class Fan(nn.Module):
        def forward(self, x):
            r = F.relu(x)
            return torch.cat([torch.ones_like(x), r, 2 * r, 4 * r, F.relu(-x)], dim=1)

    fan = Fan()
    model = Counter(nn.Sequential(fan, GAP[dims](1), nn.Flatten(), nn.Linear(5, 3).double())).eval()
    x = torch.randn(1, 1, *([6] * dims), dtype=torch.float64)
    out = ScoreCAM(model, fan).attribute(x, target=1, perturbations_per_eval=1)
    assert model.calls == 1 + 2  # the clean forward + one per distinct non-constant mask
    ref = official_score_cam(model.model, fan, x, 1)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)


def test_all_constant_maps_give_a_zero_map_without_forwards(dims):
    # A layer whose maps are 1 voxel (MONAI ResNet layer4 on a small input): no mask exists.
    conv = CONV[dims](2, 4, 3, padding=1).double()
    pool = GAP[dims](1)
    model = Counter(nn.Sequential(conv, pool, nn.Flatten(), nn.Linear(4, 3).double())).eval()
    x = torch.randn(2, 2, *([6] * dims), dtype=torch.float64)
    out = ScoreCAM(model, pool).attribute(x, target=0)
    assert model.calls == 1
    assert torch.equal(out, torch.zeros(2, 1, *x.shape[2:], dtype=torch.float64))
    soft = ScoreCAM(model, pool).attribute(
        x, target=0, channel_softmax=True, relu_attributions=False
    )
    assert soft.shape == out.shape and torch.isfinite(soft).all()


def test_channel_softmax_matches_per_channel_definition(dims):
    # Paper's Algorithm 1: w = softmax_k(logit(x * H_k) - logit(0)); the baseline cancels.
    model = small_cnn(dims)
    layer = model[4]
    x = torch.randn(1, 2, *([8] * dims), dtype=torch.float64)
    saved = {}
    h = layer.register_forward_hook(lambda m, i, o: saved.setdefault("a", o))
    with torch.no_grad():
        model(x)
    h.remove()
    acts = saved["a"]
    logits = []
    for k in range(acts.shape[1]):
        up = F.interpolate(acts[:, k : k + 1], size=x.shape[2:], mode=MODES[dims])
        span = up.max() - up.min()
        mask = (up - up.min()) / span if span > 0 else torch.zeros_like(up)
        with torch.no_grad():
            logits.append(model(x * mask)[0, 2])
    w = torch.softmax(torch.stack(logits), 0)
    ref = F.relu(
        F.interpolate(
            (w.view(1, -1, *([1] * dims)) * acts).sum(1, keepdim=True),
            size=x.shape[2:],
            mode=MODES[dims],
        )
    )
    out = ScoreCAM(model, layer).attribute(
        x, target=2, score="logit", baselines=0.0, channel_softmax=True
    )
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-10)


def test_matches_pytorch_grad_cam_variant():
    pgc = pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.utils.image import scale_cam_image
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model = small_cnn(2).float()
    x = torch.randn(2, 2, 16, 16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pgc.ScoreCAM(model=model, target_layers=[model[4]]) as theirs:
            ref = theirs(
                input_tensor=x, targets=[ClassifierOutputTarget(1), ClassifierOutputTarget(2)]
            )
    ours = ScoreCAM(model, model[4]).attribute(
        x, target=[1, 2], score="logit", channel_softmax=True, align_corners=True, upsample=False
    )
    # pytorch-grad-cam min-max scales and resizes each map, then min-max scales once more.
    ours = scale_cam_image(scale_cam_image(ours[:, 0].numpy(), (16, 16)))
    assert ref.shape == ours.shape == (2, 16, 16)
    assert abs(ref - ours).max() < 1e-4


def test_upsample_false_layer_resolution_and_relu_off(dims):
    model = small_cnn(dims)
    x = torch.randn(2, 2, *([8] * dims), dtype=torch.float64)
    cam = ScoreCAM(model, model[4])
    low = cam.attribute(x, target=0, upsample=False, relu_attributions=False)
    assert low.shape == (2, 1, *([4] * dims))
    full = cam.attribute(x, target=0, relu_attributions=False)
    torch.testing.assert_close(full, F.interpolate(low, size=x.shape[2:], mode=MODES[dims]))
    torch.testing.assert_close(cam.attribute(x, target=0), F.relu(full))


def test_attribute_to_layer_input_uses_the_layers_input(dims):
    model = small_cnn(dims)
    x = torch.randn(1, 2, *([8] * dims), dtype=torch.float64)
    # model[5] (GAP) receives model[4]'s output: both give the same map.
    a = ScoreCAM(model, model[5]).attribute(x, target=1, attribute_to_layer_input=True)
    b = ScoreCAM(model, model[4]).attribute(x, target=1)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_additional_forward_args_follow_their_example():
    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = small_cnn(2)

        def forward(self, x, scale):
            return self.net(x) * scale.view(-1, 1)

    model = Scaled().eval()
    x = torch.randn(3, 2, 8, 8, dtype=torch.float64)
    scale = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    cam = ScoreCAM(model, model.net[4])
    batch = cam.attribute(
        x, target=1, additional_forward_args=(scale,), score="logit", perturbations_per_eval=2
    )
    for i in range(3):
        one = cam.attribute(
            x[i : i + 1], target=1, additional_forward_args=(scale[i : i + 1],), score="logit"
        )
        torch.testing.assert_close(batch[i : i + 1], one, rtol=0, atol=1e-12)


def test_single_logit_model_uses_sigmoid_and_target_none():
    conv = nn.Conv2d(1, 3, 3, padding=1).double()
    model = nn.Sequential(
        conv, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 1).double()
    ).eval()
    x = torch.randn(2, 1, 8, 8, dtype=torch.float64)
    prob = ScoreCAM(model, model[1]).attribute(x)
    # Equivalent two-class model whose softmax equals the sigmoid of the single logit.
    two = nn.Linear(3, 2).double()
    with torch.no_grad():
        two.weight.copy_(torch.cat([model[4].weight, torch.zeros_like(model[4].weight)]))
        two.bias.copy_(torch.cat([model[4].bias, torch.zeros_like(model[4].bias)]))
    model2 = nn.Sequential(*list(model)[:4], two).eval()
    torch.testing.assert_close(
        prob, ScoreCAM(model2, model2[1]).attribute(x, target=0), rtol=0, atol=1e-12
    )


def test_score_cam_3d_contract_and_metatensor():
    from monai.data import MetaTensor

    model = small_cnn(3)
    affine = torch.diag(torch.tensor([2.0, 3.0, 4.0, 1.0], dtype=torch.float64))
    x = MetaTensor(
        torch.randn(2, 2, 8, 8, 8, dtype=torch.float64),
        affine=affine,
        meta={"filename_or_obj": "ct.nii.gz"},
    )
    out = ScoreCAM3D(model, model[4]).attribute(x, target=[0, 1])
    assert isinstance(out, MetaTensor)
    assert out.shape == (2, 1, 8, 8, 8)
    torch.testing.assert_close(out.affine, x.affine)
    assert out.meta["filename_or_obj"] == "ct.nii.gz"
    plain = ScoreCAM(model, model[4]).attribute(x.as_tensor(), target=[0, 1])
    torch.testing.assert_close(out.as_tensor(), plain, rtol=0, atol=0)
    with pytest.raises(
        ValueError, match=r"must be 5-D \(N, C, D, H, W\), got shape \(2, 2, 8, 8\)"
    ):
        ScoreCAM3D(small_cnn(2), small_cnn(2)[4]).attribute(
            torch.randn(2, 2, 8, 8, dtype=torch.float64), target=0
        )


def test_hooks_and_model_untouched_on_success_and_error(dims):
    model = small_cnn(dims)
    before = model_state(model)
    x = torch.randn(2, 2, *([8] * dims), dtype=torch.float64)
    ScoreCAM(model, model[4]).attribute(x, target=1)
    assert_unchanged(model, before)
    with pytest.raises(ValueError, match="out of range"):
        ScoreCAM(model, model[4]).attribute(x, target=7)
    assert_unchanged(model, before)

    class Boom(Exception):
        pass

    def failing(inp):
        model(inp)
        raise Boom

    with pytest.raises(Boom):
        ScoreCAM(failing, model[4]).attribute(x, target=1)
    assert hook_count(model) == 0


def test_training_mode_warns_and_is_not_changed():
    model = small_cnn(2).train()
    x = torch.randn(1, 2, 8, 8, dtype=torch.float64)
    with pytest.warns(UserWarning, match="training mode"):
        ScoreCAM(model, model[4]).attribute(x, target=0)
    assert all(m.training for m in model.modules())


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"inputs": torch.ones(1, 2, 8, 8, dtype=torch.long)}, TypeError, "floating point"),
        ({"inputs": torch.ones(8, 8, dtype=torch.float64)}, ValueError, r"\(N, C, \*spatial\)"),
        (
            {"inputs": torch.full((1, 2, 8, 8), math.nan, dtype=torch.float64)},
            ValueError,
            "NaN or inf",
        ),
        # a 1-tuple is Captum's form of one input (accepted); two inputs are refused
        ({"inputs": (torch.ones(1, 2, 8, 8),) * 2}, TypeError, "single tensor"),
        ({"target": 3}, ValueError, r"target 3 is out of range for a model with 3 outputs"),
        ({"target": None}, ValueError, "target=None"),
        ({"target": [0, 1, 2]}, ValueError, "one per example"),
        ({"target": 1.5}, TypeError, "target"),
        ({"perturbations_per_eval": 0}, ValueError, "perturbations_per_eval must be >= 1, got 0"),
        ({"perturbations_per_eval": 2.0}, TypeError, "perturbations_per_eval"),
        ({"score": "prob"}, ValueError, "score must be"),
        ({"normalize_at": "output"}, ValueError, "normalize_at"),
        ({"interpolate_mode": "trilinear"}, ValueError, "does not work on 2-D maps"),
    ],
)
def test_bad_input(kwargs, error, message):
    model = small_cnn(2)
    args = {"inputs": torch.randn(2, 2, 8, 8, dtype=torch.float64), "target": 0, **kwargs}
    before = model_state(model)
    with pytest.raises(error, match=message):
        ScoreCAM(model, model[4]).attribute(**args)
    assert_unchanged(model, before)


def test_layer_not_reached_and_bad_layer():
    model = small_cnn(2)
    stray = CONV[2](2, 2, 1).double().eval()
    x = torch.randn(1, 2, 8, 8, dtype=torch.float64)
    with pytest.raises(ValueError, match="not reached by the forward pass"):
        ScoreCAM(model, stray).attribute(x, target=0)
    assert hook_count(stray) == 0
    with pytest.raises(TypeError, match=r"layer must be a torch\.nn\.Module"):
        ScoreCAM(model, "layer4")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="choose a convolutional layer"):
        ScoreCAM(model, model[6]).attribute(x, target=0)


def test_progress_bar_does_not_change_result(capsys):
    model = small_cnn(2)
    x = torch.randn(1, 2, 8, 8, dtype=torch.float64)
    cam = ScoreCAM(model, model[4])
    torch.testing.assert_close(
        cam.attribute(x, target=0, show_progress=True), cam.attribute(x, target=0)
    )
    assert "Score-CAM" in capsys.readouterr().err


def test_dtype_and_float32_follow_inputs():
    model = small_cnn(3).float()
    x = torch.randn(1, 2, 8, 8, 8)
    out = ScoreCAM3D(model, model[4]).attribute(x, target=0)
    assert out.dtype == torch.float32 and out.device == x.device


@pytest.mark.parametrize(
    "factory",
    [
        lambda: __import__("monai.networks.nets", fromlist=["x"]).resnet10(
            spatial_dims=3, n_input_channels=1, num_classes=3, widen_factor=0.25
        ),
        lambda: __import__("monai.networks.nets", fromlist=["x"]).resnet18(
            spatial_dims=3, n_input_channels=1, num_classes=3, widen_factor=0.25
        ),
        lambda: __import__("monai.networks.nets", fromlist=["x"]).DenseNet121(
            spatial_dims=3, in_channels=1, out_channels=3, init_features=8, growth_rate=4
        ),
    ],
    ids=["resnet10", "resnet18", "densenet121"],
)
def test_monai_3d_networks(factory):
    torch.manual_seed(0)
    net = factory().eval()
    layer = net.layer3 if hasattr(net, "layer3") else net.features.denseblock3
    x = torch.randn(2, 1, 32, 32, 32)
    before = model_state(net)
    out = ScoreCAM3D(net, layer).attribute(
        x, target=[0, 2], perturbations_per_eval=8, relu_attributions=False
    )
    assert out.shape == (2, 1, 32, 32, 32)
    assert_unchanged(net, before)
    ref = official_score_cam(net, layer, x[1:], 2, relu=False)
    torch.testing.assert_close(out[1:], ref, rtol=1e-4, atol=1e-5)
