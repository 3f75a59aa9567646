"""CRM / CRM3D: closed form on GAP-Linear models, the per-position loop, invariances, errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from captum_medcam import CRM, CRM3D
from captum_medcam._core.spatial import resize
from tests.conftest import CONV, GAP, assert_unchanged, gap_linear, hook_count, model_state


def conv_head_model(dims: int, seed: int = 0) -> nn.Sequential:
    """conv -> ReLU -> conv -> ReLU | conv 1x1 -> ReLU -> flatten -> linear: a head that is
    not GAP -> Linear (it depends on where things are, and is non-linear)."""
    torch.manual_seed(seed)
    return (
        nn.Sequential(
            CONV[dims](2, 4, 3, padding=1),
            nn.ReLU(),
            CONV[dims](4, 5, 3, stride=2, padding=1),
            nn.ReLU(),
            CONV[dims](5, 3, 1),
            nn.Tanh(),
            nn.Flatten(),
            nn.Linear(3 * 4**dims, 3),
        )
        .double()
        .eval()
    )


def loop_crm(model: nn.Sequential, split: int, x: torch.Tensor, target=None, baseline=0.0):
    """The definition, one position at a time: run the head on the layer's output with all
    channels at that position set to the baseline."""
    head = model[split + 1 :]
    with torch.no_grad():
        acts = model[: split + 1](x)
        clean = head(acts)
        base = torch.as_tensor(baseline, dtype=x.dtype).expand_as(acts)
        flat = acts.flatten(2)
        maps = torch.zeros(x.shape[0], 1, flat.shape[2], dtype=x.dtype)
        for p in range(flat.shape[2]):
            removed = flat.clone()
            removed[:, :, p] = base.flatten(2)[:, :, p]
            change = clean - head(removed.view_as(acts))
            for i in range(x.shape[0]):
                if target is None:
                    maps[i, 0, p] = change[i].pow(2).sum()
                else:
                    maps[i, 0, p] = change[i, target[i]] ** 2
    return maps.view(x.shape[0], 1, *acts.shape[2:])


def cams(model: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """CAM of every class, ``(N, K, *S')``, for conv -> GAP -> linear."""
    with torch.no_grad():
        acts = model[0](x)
    return torch.einsum("ck,nk...->nc...", model[3].weight, acts)


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "definition"])
def test_closed_form_gap_linear(dims, fast):
    """CRM = sum_c (CAM_c / |S'|)^2; class-selective = (CAM_t / |S'|)^2; the bias cancels."""
    model = gap_linear(dims)
    assert model[3].bias.abs().min() > 0
    x = torch.randn(3, 2, *[6] * dims, dtype=torch.float64)
    crm = CRM(model, model[0], fc_layer=model[3] if fast else None)
    cam = cams(model, x) / 6**dims
    combined = crm.attribute(x, upsample=False)
    torch.testing.assert_close(combined, cam.pow(2).sum(1, keepdim=True))
    target = [2, 0, 1]
    selective = crm.attribute(x, target=target, upsample=False)
    torch.testing.assert_close(
        selective, torch.stack([cam[i, t] ** 2 for i, t in enumerate(target)]).unsqueeze(1)
    )
    # the combined map is the sum of the class-selective ones
    total = sum(crm.attribute(x, target=c, upsample=False) for c in range(3))
    torch.testing.assert_close(combined, total)


def test_fast_path_equals_definition_with_baseline(dims):
    """A nonzero per-channel baseline: (1/|S'|) sum_k W[c,k] (A_k(p) - b_k), both paths."""
    model = gap_linear(dims, channels=4)
    x = torch.randn(2, 2, *[5] * dims, dtype=torch.float64)
    base = torch.tensor([0.3, -1.0, 0.0, 2.0], dtype=torch.float64).view(1, 4, *[1] * dims)
    fast = CRM(model, model[0], fc_layer=model[3]).attribute(x, target=[1, 2], baselines=base)
    slow = CRM(model, model[0]).attribute(
        x, target=[1, 2], baselines=base, perturbations_per_eval=3
    )
    torch.testing.assert_close(fast, slow)
    with torch.no_grad():
        acts = model[0](x)
    change = torch.einsum("ck,nk...->nc...", model[3].weight, acts - base) / 5**dims
    expected = torch.stack([change[0, 1], change[1, 2]]).unsqueeze(1).pow(2)
    torch.testing.assert_close(
        CRM(model, model[0]).attribute(x, target=[1, 2], baselines=base, upsample=False), expected
    )


@pytest.mark.parametrize("target", [None, [0, 2]], ids=["combined", "selective"])
def test_definition_equals_loop_on_nonlinear_head(dims, target):
    model = conv_head_model(dims)
    x = torch.randn(2, 2, *[8] * dims, dtype=torch.float64)
    got = CRM(model, model[3]).attribute(x, target=target, upsample=False, perturbations_per_eval=5)
    torch.testing.assert_close(got, loop_crm(model, 3, x, target))
    base = 0.7
    got = CRM(model, model[3]).attribute(x, target=target, upsample=False, baselines=base)
    torch.testing.assert_close(got, loop_crm(model, 3, x, target, baseline=base))


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "definition"])
def test_batch_and_chunk_invariance(dims, fast):
    model = gap_linear(dims) if fast else conv_head_model(dims)
    layer, fc = (model[0], model[3]) if fast else (model[3], None)
    x = torch.randn(3, 2, *[8] * dims, dtype=torch.float64)
    target = torch.tensor([1, 0, 2])
    crm = CRM(model, layer, fc_layer=fc)
    batch = crm.attribute(x, target=target, perturbations_per_eval=1)
    for i in range(3):
        alone = crm.attribute(x[i : i + 1], target=int(target[i]), perturbations_per_eval=7)
        torch.testing.assert_close(batch[i : i + 1], alone)
    torch.testing.assert_close(crm.attribute(x, target=target, perturbations_per_eval=1000), batch)


def test_perturbed_copies_are_bounded_and_head_only(dims):
    """The head sees at most perturbations_per_eval * N copies per forward; the layers before
    the layer run once per example in each chunk, not once per copy."""
    model = conv_head_model(dims)
    x = torch.randn(2, 2, *[8] * dims, dtype=torch.float64)
    before, after = [], []
    handles = [
        model[0].register_forward_hook(lambda m, i, o: before.append(o.shape[0])),
        model[4].register_forward_hook(lambda m, i, o: after.append(o.shape[0])),
    ]
    try:
        CRM(model, model[3]).attribute(x, perturbations_per_eval=3)
    finally:
        for h in handles:
            h.remove()
    positions = 4**dims
    assert max(after[1:]) <= 3 * 2
    assert sum(after[1:]) == 2 * positions
    assert max(before) <= 2


def test_upsample_and_3d_entry_point():
    model = gap_linear(3)
    x = torch.randn(2, 2, 6, 8, 10, dtype=torch.float64)
    crm = CRM(model, model[0], fc_layer=model[3])
    low = crm.attribute(x, target=[0, 1], upsample=False)
    up = crm.attribute(x, target=[0, 1])
    assert up.shape == (2, 1, 6, 8, 10)
    torch.testing.assert_close(up, resize(low, (6, 8, 10), "trilinear"))
    vol = CRM3D(model, model[0], fc_layer=model[3]).attribute(x, target=[0, 1])
    torch.testing.assert_close(vol, up)
    with pytest.raises(ValueError, match="5-D"):
        CRM3D(model, model[0]).attribute(x[:, :, 0])


def test_output_at_input_resolution_when_layer_is_smaller(dims):
    model = conv_head_model(dims)
    x = torch.randn(1, 2, *[8] * dims, dtype=torch.float64)
    low = CRM(model, model[3]).attribute(x, upsample=False)
    assert low.shape == (1, 1, *[4] * dims)
    up = CRM(model, model[3]).attribute(x, interpolate_mode="nearest")
    torch.testing.assert_close(up, F.interpolate(low, size=x.shape[2:], mode="nearest"))


def test_monai_resnet18_fast_equals_definition():
    from monai.networks.nets import resnet18

    torch.manual_seed(0)
    net = resnet18(spatial_dims=3, n_input_channels=1, num_classes=3, widen_factor=0.25)
    net = net.double().eval()
    x = torch.randn(2, 1, 24, 24, 24, dtype=torch.float64)
    before = model_state(net)
    fast = CRM3D(net, net.layer4, fc_layer=net.fc)
    slow = CRM3D(net, net.layer4)
    for target in (None, [2, 1]):
        a = fast.attribute(x, target=target)
        b = slow.attribute(x, target=target, perturbations_per_eval=4)
        assert a.shape == (2, 1, 24, 24, 24)
        assert a.abs().max() > 0
        torch.testing.assert_close(a, b)
    assert_unchanged(net, before)


class CovariateHead(nn.Module):
    """A GAP head plus a per-example covariate: the covariate must follow its example."""

    def __init__(self, dims: int) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.conv = CONV[dims](2, 3, 3, padding=1)
        self.act = nn.ReLU()
        self.pool = GAP[dims](1)
        self.fc = nn.Linear(3, 2)

    def forward(self, x, covariate):
        h = self.pool(self.act(self.conv(x))).flatten(1)
        return self.fc(h) * covariate.unsqueeze(1)


def test_additional_forward_args_follow_their_example(dims):
    model = CovariateHead(dims).double().eval()
    x = torch.randn(3, 2, *[4] * dims, dtype=torch.float64)
    cov = torch.tensor([1.0, -2.0, 5.0], dtype=torch.float64)
    got = CRM(model, model.act).attribute(
        x, additional_forward_args=(cov,), upsample=False, perturbations_per_eval=2
    )
    with torch.no_grad():
        acts = model.act(model.conv(x))
    change = (
        torch.einsum("ck,nk...->nc...", model.fc.weight, acts)
        / 4**dims
        * cov.view(3, 1, *[1] * dims)
    )
    torch.testing.assert_close(got, change.pow(2).sum(1, keepdim=True))


def test_fast_path_checks_the_head(dims):
    model = conv_head_model(dims)
    with pytest.raises(ValueError, match="in_features"):
        CRM(model, model[3], fc_layer=model[7]).attribute(
            torch.randn(1, 2, *[8] * dims, dtype=torch.float64)
        )
    with pytest.raises(TypeError, match=r"nn\.Linear"):
        CRM(model, model[3], fc_layer=model[4])
    # GAP -> Linear with a softmax after it: CRM's scores are the model's outputs
    soft = nn.Sequential(*gap_linear(dims), nn.Softmax(1)).eval()
    x = torch.randn(2, 2, *[5] * dims, dtype=torch.float64)
    with pytest.raises(ValueError, match="softmax"):
        CRM(soft, soft[0], fc_layer=soft[3]).attribute(x)
    # the definition handles it
    assert CRM(soft, soft[0]).attribute(x).shape == (2, 1, *[5] * dims)
    # a head with max pooling instead of average pooling
    torch.manual_seed(0)
    maxhead = (
        nn.Sequential(
            CONV[dims](2, 3, 3, padding=1),
            nn.AdaptiveMaxPool3d(1) if dims == 3 else nn.AdaptiveMaxPool2d(1),
            nn.Flatten(),
            nn.Linear(3, 2),
        )
        .double()
        .eval()
    )
    before = model_state(maxhead)
    with pytest.raises(ValueError, match="global average"):
        CRM(maxhead, maxhead[0], fc_layer=maxhead[3]).attribute(x)
    assert_unchanged(maxhead, before)


def test_model_unchanged_and_no_hooks_left_also_on_error(dims):
    model = conv_head_model(dims)
    before = model_state(model)
    x = torch.randn(2, 2, *[8] * dims, dtype=torch.float64)
    CRM(model, model[3]).attribute(x, target=1)
    assert_unchanged(model, before)
    with pytest.raises(ValueError, match="out of range"):
        CRM(model, model[3]).attribute(x, target=7)
    assert_unchanged(model, before)

    class Boom(nn.Module):
        def __init__(self):
            super().__init__()
            self.calls = 0

        def forward(self, a):
            self.calls += 1
            if self.calls > 1:
                raise RuntimeError("boom")
            return a

    boom = Boom()
    net = nn.Sequential(model[:4], boom, model[4:]).eval()
    with pytest.raises(RuntimeError, match="boom"):
        CRM(net, net[0]).attribute(x)
    assert hook_count(net) == 0


def test_bad_input():
    model = gap_linear(2)
    crm = CRM(model, model[0], fc_layer=model[3])
    x = torch.randn(2, 2, 6, 6, dtype=torch.float64)
    with pytest.raises(ValueError, match="perturbations_per_eval"):
        CRM(model, model[0]).attribute(x, perturbations_per_eval=0)
    with pytest.raises(ValueError, match="NaN"):
        crm.attribute(torch.full_like(x, float("nan")))
    with pytest.raises(TypeError, match="floating"):
        crm.attribute(x.long())
    with pytest.raises(ValueError, match="broadcast"):
        crm.attribute(x, baselines=torch.zeros(3, dtype=torch.float64))
    with pytest.raises(TypeError, match="baselines"):
        crm.attribute(x, baselines="zero")
    with pytest.raises(ValueError, match="integer class targets"):
        crm.attribute(x, target=[(0,), (1,)])
    with pytest.raises(ValueError, match="convolutional"):
        CRM(model, model[2]).attribute(x)
    with pytest.raises(TypeError, match="Module"):
        CRM(model, "layer4")
    with pytest.raises(ValueError, match="bilinear"):
        CRM(gap_linear(3), gap_linear(3)[0]).attribute(
            torch.randn(1, 2, 4, 4, 4, dtype=torch.float64), interpolate_mode="bilinear"
        )


def test_training_mode_warns_and_is_kept():
    model = gap_linear(2).train()
    with pytest.warns(UserWarning, match="training mode"):
        CRM(model, model[0], fc_layer=model[3]).attribute(
            torch.randn(1, 2, 4, 4, dtype=torch.float64)
        )
    assert model.training


def test_metatensor_keeps_metadata():
    from monai.data import MetaTensor

    model = gap_linear(3)
    affine = torch.diag(torch.tensor([2.0, 2.0, 3.0, 1.0], dtype=torch.float64))
    x = MetaTensor(torch.randn(1, 2, 6, 6, 6, dtype=torch.float64), affine=affine)
    out = CRM3D(model, model[0], fc_layer=model[3]).attribute(x, target=0)
    assert isinstance(out, MetaTensor)
    torch.testing.assert_close(out.affine.double(), affine)
