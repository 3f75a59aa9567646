"""AblationCAM / AblationCAM3D: closed form, the paper's per-channel loop, pytorch-grad-cam,
invariances, errors."""

from __future__ import annotations

import copy
import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from captum_medcam import AblationCAM, AblationCAM3D
from captum_medcam.attr._ablation_cam import ablate_channels, ablation_weights
from tests.conftest import CONV, assert_unchanged, gap_linear, hook_count, model_state, small_cnn

MODES = {1: "linear", 2: "bilinear", 3: "trilinear"}


def paper_loop(model, layer, x, cls, *, relu=True, relative=True):
    """The paper's definition, one example: zero channel k at the layer, one forward each."""
    saved = {}
    handle = layer.register_forward_hook(lambda m, i, o: saved.setdefault("a", o.detach()))
    with torch.no_grad():
        y = model(x)[0, cls]
    handle.remove()
    acts = saved["a"]
    total = torch.zeros(1, 1, *acts.shape[2:], dtype=x.dtype)
    for k in range(acts.shape[1]):

        def zero(m, i, o, k=k):
            o = o.clone()
            o[:, k] = 0
            return o

        h = layer.register_forward_hook(zero)
        with torch.no_grad():
            yk = model(x)[0, cls]
        h.remove()
        w = (y - yk) / y if relative else y - yk
        total += w * acts[:, k : k + 1]
    total = F.relu(total) if relu else total  # at layer resolution, as pytorch-grad-cam
    return F.interpolate(total, size=x.shape[2:], mode=MODES[x.dim() - 2], align_corners=False)


class Counter(nn.Module):
    """Counts forward passes and the examples they hold."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.model(x)


def test_pure_functions():
    clean = torch.tensor([2.0, -1.0])
    ablated = torch.tensor([[1.0, 2.0], [-2.0, 0.0]])
    torch.testing.assert_close(
        ablation_weights(clean, ablated), torch.tensor([[0.5, 0.0], [-1.0, 1.0]])
    )
    torch.testing.assert_close(
        ablation_weights(clean, ablated, relative=False), torch.tensor([[1.0, 0.0], [1.0, -1.0]])
    )
    with pytest.raises(ValueError, match=r"exactly 0 for example\(s\) \[1\]"):
        ablation_weights(torch.tensor([1.0, 0.0]), ablated)
    acts = torch.arange(12.0).view(2, 3, 2)
    base = torch.full_like(acts, -1.0)
    copies = ablate_channels(acts, base, torch.tensor([1, 0, 1]), torch.tensor([0, 2, 2]))
    expected = acts[[1, 0, 1]].clone()
    expected[0, 0] = expected[1, 2] = expected[2, 2] = -1.0
    assert torch.equal(copies, expected)
    assert torch.equal(acts, torch.arange(12.0).view(2, 3, 2))  # not changed in place


def test_closed_form_gap_linear(dims):
    # layer = conv output A, head = GAP -> Linear(W, b): zeroing channel k lowers the logit by
    # exactly W[c, k] * mean(A_k), so w_k = W[c, k] * mean(A_k) / y_c.
    model = gap_linear(dims)
    x = torch.randn(3, 2, *([6] * dims), dtype=torch.float64)
    targets = torch.tensor([0, 2, 1])
    with torch.no_grad():
        acts = model[0](x)
        y = model(x).gather(1, targets.unsqueeze(1)).squeeze(1)
    drop = model[3].weight[targets] * acts.flatten(2).mean(-1)  # (N, K)
    expected = F.relu((drop / y.unsqueeze(1)).view(3, -1, *([1] * dims)).mul(acts).sum(1, True))
    out = AblationCAM(model, model[0]).attribute(x, target=targets, upsample=False)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)
    raw = AblationCAM(model, model[0]).attribute(
        x, target=targets, upsample=False, relative=False, relu_attributions=False
    )
    torch.testing.assert_close(raw, drop.view(3, -1, *([1] * dims)).mul(acts).sum(1, True))


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_equals_paper_loop_nonlinear_head(dims):
    model = small_cnn(dims)
    x = torch.randn(3, 2, *([8] * dims), dtype=torch.float64)
    targets = [0, 2, 1]
    for layer in (model[1], model[4]):
        out = AblationCAM(model, layer).attribute(x, target=targets, perturbations_per_eval=3)
        ref = torch.cat([paper_loop(model, layer, x[i : i + 1], t) for i, t in enumerate(targets)])
        assert out.shape == (3, 1, *x.shape[2:])
        torch.testing.assert_close(out, ref, rtol=0, atol=1e-10)


def test_batch_and_chunk_invariance(dims):
    model = small_cnn(dims)
    x = torch.randn(4, 2, *([8] * dims), dtype=torch.float64)
    targets = torch.tensor([2, 0, 1, 2])
    cam = AblationCAM(model, model[1])
    batch = cam.attribute(x, target=targets, perturbations_per_eval=1)
    assert torch.equal(batch, cam.attribute(x, target=targets, perturbations_per_eval=5))
    for i in range(4):
        single = cam.attribute(x[i : i + 1], target=int(targets[i]), perturbations_per_eval=100)
        torch.testing.assert_close(batch[i : i + 1], single, rtol=0, atol=1e-12)


def test_dead_channels_cost_no_forward_and_weigh_zero(dims):
    model = small_cnn(dims)
    with torch.no_grad():  # channel 3 of the last conv can never fire
        model[3].weight[3] = 0
        model[3].bias[3] = -1.0
    counted = Counter(model).eval()
    x = torch.randn(1, 2, *([8] * dims), dtype=torch.float64)
    out = AblationCAM(counted, model[4]).attribute(x, target=1, perturbations_per_eval=1)
    with torch.no_grad():
        live = model[:5](x).flatten(2).any(-1).sum().item()
    assert live <= 7
    assert counted.calls == 1 + live  # the clean forward, then one per live channel
    torch.testing.assert_close(out, paper_loop(model, model[4], x, 1), rtol=0, atol=1e-10)


def test_baselines_and_max_channels(dims):
    model = small_cnn(dims)
    x = torch.randn(2, 2, *([8] * dims), dtype=torch.float64)
    cam = AblationCAM(model, model[4])
    # ablating to each channel's own value changes nothing: every weight is 0
    with torch.no_grad():
        acts = model[:5](x)
    assert torch.equal(
        cam.attribute(x, target=0, baselines=acts, relu_attributions=False),
        torch.zeros(2, 1, *x.shape[2:], dtype=x.dtype),
    )
    # all channels kept: the exact map; fewer: fewer forwards
    exact = cam.attribute(x, target=0)
    assert torch.equal(cam.attribute(x, target=0, max_channels=1.0), exact)
    counted = Counter(model).eval()
    AblationCAM(counted, model[4]).attribute(x, target=0, max_channels=2, perturbations_per_eval=1)
    assert counted.calls <= 1 + 2 * 2


def test_matches_pytorch_grad_cam():
    pgc = pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.utils.image import scale_cam_image
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model = small_cnn(2, seed=3).float()
    x = torch.randn(2, 2, 16, 16)
    peer_model = copy.deepcopy(model)  # pytorch-grad-cam swaps the layer in its model
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = pgc.AblationCAM(model=peer_model, target_layers=[peer_model[4]], batch_size=5)
        ref = theirs(input_tensor=x, targets=[ClassifierOutputTarget(1), ClassifierOutputTarget(2)])
        theirs.activations_and_grads.release()
    ours = AblationCAM(model, model[4]).attribute(x, target=[1, 2], upsample=False)
    # pytorch-grad-cam min-max scales and resizes each map, then min-max scales once more.
    ours = scale_cam_image(scale_cam_image(ours[:, 0].numpy(), (16, 16)))
    assert ref.shape == ours.shape == (2, 16, 16)
    assert abs(ref - ours).max() < 1e-4


def test_upsample_false_and_3d_entry_point_with_metatensor():
    monai_data = pytest.importorskip("monai.data")
    model = small_cnn(3)
    x = torch.randn(2, 2, 8, 8, 8, dtype=torch.float64)
    low = AblationCAM(model, model[4]).attribute(
        x, target=1, upsample=False, relu_attributions=False
    )
    assert low.shape == (2, 1, 4, 4, 4)
    meta = monai_data.MetaTensor(x, affine=torch.diag(torch.tensor([2.0, 2.0, 2.0, 1.0])))
    out = AblationCAM3D(model, model[4]).attribute(meta, target=1)
    assert isinstance(out, monai_data.MetaTensor) and out.shape == (2, 1, 8, 8, 8)
    assert torch.equal(out.affine, meta.affine)
    torch.testing.assert_close(
        out.as_tensor(), F.interpolate(F.relu(low), size=(8, 8, 8), mode="trilinear")
    )
    with pytest.raises(TypeError, match="unexpected keyword argument 'upsample'"):
        AblationCAM3D(model, model[4]).attribute(x, target=1, upsample=False)
    with pytest.raises(ValueError, match=r"must be 5-D"):
        AblationCAM3D(small_cnn(2), small_cnn(2)[4]).attribute(
            torch.randn(1, 2, 8, 8, dtype=torch.float64), target=0
        )


def test_additional_forward_args_follow_their_example():
    model = small_cnn(2)

    def forward(x, scale):
        return model(x * scale.view(-1, 1, 1, 1))

    x = torch.randn(3, 2, 8, 8, dtype=torch.float64)
    scale = torch.tensor([1.0, 2.0, -1.0], dtype=torch.float64)
    out = AblationCAM(forward, model[4]).attribute(
        x, target=[0, 1, 2], additional_forward_args=(scale,), perturbations_per_eval=2
    )
    ref = torch.cat(
        [
            AblationCAM(model, model[4]).attribute(x[i : i + 1] * scale[i], target=t)
            for i, t in enumerate([0, 1, 2])
        ]
    )
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-10)


def test_hooks_and_model_untouched_on_success_and_error(dims):
    model = small_cnn(dims)
    before = model_state(model)
    x = torch.randn(2, 2, *([8] * dims), dtype=torch.float64)
    AblationCAM(model, model[4]).attribute(x, target=1)
    assert_unchanged(model, before)
    with pytest.raises(ValueError, match="out of range"):
        AblationCAM(model, model[4]).attribute(x, target=7)
    assert_unchanged(model, before)
    calls = [0]

    class Boom(Exception):
        pass

    def failing(inp):
        calls[0] += 1
        out = model(inp)
        if calls[0] > 1:  # the clean forward passes, the first ablated one fails
            raise Boom
        return out

    with pytest.raises(Boom):
        AblationCAM(failing, model[4]).attribute(x, target=1)
    assert_unchanged(model, before)


def test_training_mode_warns_and_is_not_changed():
    model = small_cnn(2).train()
    x = torch.randn(1, 2, 8, 8, dtype=torch.float64)
    with pytest.warns(UserWarning, match="training mode"):
        AblationCAM(model, model[4]).attribute(x, target=0)
    assert all(m.training for m in model.modules())


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"inputs": torch.ones(1, 2, 8, 8, dtype=torch.long)}, TypeError, "floating point"),
        (
            {"inputs": torch.full((1, 2, 8, 8), math.nan, dtype=torch.float64)},
            ValueError,
            "NaN or inf",
        ),
        ({"target": 3}, ValueError, r"target 3 is out of range for a model with 3 outputs"),
        ({"perturbations_per_eval": 0}, ValueError, "perturbations_per_eval must be >= 1, got 0"),
        ({"score": "prob"}, ValueError, "score must be"),
        ({"relative": 1}, TypeError, "relative"),
        ({"baselines": math.inf}, ValueError, "baselines"),
        ({"baselines": torch.zeros(3)}, ValueError, "per-channel tensor shaped"),
        ({"max_channels": 0}, ValueError, "max_channels"),
        ({"channel_criterion": "max"}, ValueError, "channel_criterion"),
    ],
)
def test_bad_input(kwargs, error, message):
    model = small_cnn(2)
    args = {"inputs": torch.randn(2, 2, 8, 8, dtype=torch.float64), "target": 0, **kwargs}
    before = model_state(model)
    with pytest.raises(error, match=message):
        AblationCAM(model, model[4]).attribute(**args)
    assert_unchanged(model, before)


def test_zero_score_is_refused_with_relative():
    model = gap_linear(2)
    with torch.no_grad():
        model[3].weight.zero_()
        model[3].bias.zero_()
    x = torch.randn(1, 2, 6, 6, dtype=torch.float64)
    with pytest.raises(ValueError, match="relative=False"):
        AblationCAM(model, model[0]).attribute(x, target=0)
    out = AblationCAM(model, model[0]).attribute(x, target=0, relative=False)
    assert torch.equal(out, torch.zeros_like(out))


def test_layer_not_reached_and_not_convolutional():
    model = small_cnn(2)
    stray = CONV[2](2, 2, 1).double().eval()
    x = torch.randn(1, 2, 8, 8, dtype=torch.float64)
    with pytest.raises(ValueError, match="not reached by the forward pass"):
        AblationCAM(model, stray).attribute(x, target=0)
    assert hook_count(stray) == 0
    with pytest.raises(ValueError, match="choose a convolutional layer"):
        AblationCAM(model, model[6]).attribute(x, target=0)


def test_progress_bar_does_not_change_result(capsys):
    model = small_cnn(2)
    x = torch.randn(1, 2, 8, 8, dtype=torch.float64)
    cam = AblationCAM(model, model[4])
    assert torch.equal(cam.attribute(x, target=0, show_progress=True), cam.attribute(x, target=0))
    assert "Ablation-CAM" in capsys.readouterr().err


def test_monai_3d_resnet():
    from monai.networks.nets import resnet10

    torch.manual_seed(0)
    net = resnet10(spatial_dims=3, n_input_channels=1, num_classes=3, widen_factor=0.25).eval()
    x = torch.randn(2, 1, 32, 32, 32)
    before = model_state(net)
    out = AblationCAM3D(net, net.layer3).attribute(
        x, target=[0, 2], perturbations_per_eval=8, relu_attributions=False
    )
    assert out.shape == (2, 1, 32, 32, 32)
    assert_unchanged(net, before)
    ref = paper_loop(net, net.layer3, x[1:], 2, relu=False)
    torch.testing.assert_close(out[1:], ref, rtol=1e-4, atol=1e-5)


def test_tokens_with_reshape_equal_the_grid(dims):
    from captum_medcam.reshapes import TokensToGrid, patch_grid
    from tests.attr.test_reshapes import _grid_model, _TokenModel

    token_model = _TokenModel(dims, cls_token=False).double().eval()
    grid_model = _grid_model(token_model, dims).double().eval()
    x = torch.randn(2, 1, *([8, 6, 4][:dims]), dtype=torch.float64)
    reshape = TokensToGrid(patch_grid(tuple(x.shape[2:]), 2))
    # zeroing feature k of every token is zeroing channel k of the grid
    got = AblationCAM(token_model, token_model.mix, reshape_transform=reshape).attribute(
        x, target=[0, 2], perturbations_per_eval=2
    )
    want = AblationCAM(grid_model, grid_model[1]).attribute(x, target=[0, 2])
    torch.testing.assert_close(got, want)


def test_bfloat16_autocast_keeps_ablation_in_full_precision():
    from captum_medcam import perturbation_options

    model = small_cnn(2).float()
    x = torch.randn(2, 2, 8, 8)
    exact = AblationCAM(model, model[4]).attribute(x, target=[0, 2])
    with perturbation_options(autocast="bfloat16"):
        mixed = AblationCAM(model, model[4]).attribute(x, target=[0, 2])
    # the weights are differences of nearly equal scores: no forward runs in bfloat16
    assert torch.equal(mixed, exact)
