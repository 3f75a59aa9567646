"""CNN Fixations: networks whose fixations are known by construction, the rules, errors."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from captum_medcam import CNNFixations
from captum_medcam.attr._fixations import _remove_outliers, fixation_density
from tests.conftest import CONV, GAP, MAXPOOL, assert_unchanged, model_state

AVGPOOL = {1: nn.AvgPool1d, 2: nn.AvgPool2d, 3: nn.AvgPool3d}


def peaked_conv(dims: int, cin: int, cout: int, **kw) -> nn.Module:
    """A 3-wide conv with weight 1 at the centre, 0.1 elsewhere, no bias: a strong voxel
    stays the strongest and stays where it is."""
    conv = CONV[dims](cin, cout, 3, bias=False, **kw)
    with torch.no_grad():
        conv.weight.fill_(0.1)
        conv.weight[(slice(None), slice(None), *[1] * dims)] = 1.0
    return conv


def strong_voxel_inputs(dims: int, where: list[tuple[int, ...]], size: int = 12, channels: int = 1):
    torch.manual_seed(0)
    x = 0.01 * torch.rand(len(where), channels, *[size] * dims, dtype=torch.float64)
    for i, q in enumerate(where):
        x[(i, slice(None), *q)] = 10.0
    return x


def positive_linear(fin: int, fout: int) -> nn.Linear:
    torch.manual_seed(1)
    fc = nn.Linear(fin, fout)
    with torch.no_grad():
        fc.weight.uniform_(0.9, 1.1)
    return fc


def gap_net(dims: int) -> nn.Sequential:
    return (
        nn.Sequential(
            peaked_conv(dims, 1, 2, padding=1),
            getattr(nn, f"BatchNorm{dims}d")(2),
            nn.ReLU(inplace=True),
            MAXPOOL[dims](2),
            nn.Sequential(peaked_conv(dims, 2, 3, padding=1), nn.ReLU()),
            GAP[dims](1),
            nn.Flatten(),
            positive_linear(3, 2),
        )
        .double()
        .eval()
    )


def flatten_net(dims: int, size: int = 12) -> nn.Sequential:
    """No global pooling: the FC layer sees the flattened map (the single-argmax rule)."""
    return (
        nn.Sequential(
            peaked_conv(dims, 1, 2, padding=1),
            nn.ReLU(),
            AVGPOOL[dims](2),
            peaked_conv(dims, 2, 2, padding=1, stride=2),
            nn.ReLU(),
            nn.Flatten(),
            nn.Dropout(0.5),
            positive_linear(2 * (size // 4) ** dims, 3),
            nn.ReLU(),
            positive_linear(3, 2),
        )
        .double()
        .eval()
    )


@pytest.mark.parametrize("net", [gap_net, flatten_net])
def test_one_strong_voxel_is_the_fixation(dims, net):
    model = net(dims)
    # flatten_net maps back through a stride-2 conv (to the window's centre, an even index)
    # and a 2-pool: multiples of 4 are recovered exactly
    where = [tuple([4] * dims), tuple([8, 4, 0][:dims])]
    x = strong_voxel_inputs(dims, where)
    before = model_state(model)
    fix = CNNFixations(model)
    for target in (0, 1):
        points = fix.fixations(x, target=target)
        for p, q in zip(points, where, strict=True):
            assert p.tolist() == [list(q)]
    assert_unchanged(model, before)
    # batch invariance with per-sample targets
    batch = fix.fixations(x, target=[1, 0])
    for i, t in enumerate([1, 0]):
        assert torch.equal(batch[i], fix.fixations(x[i : i + 1], target=t)[0])


def test_positive_contributions_select_channels(dims):
    """GAP -> FC: channels with a positive a_i W[j, i] are kept; each goes to the argmax of
    its map. Channel k of the 1x1 conv sees only input channel k."""
    conv = CONV[dims](3, 3, 1, bias=False)
    fc = nn.Linear(3, 2)
    with torch.no_grad():
        conv.weight.zero_()
        for k in range(3):
            conv.weight[(k, k, *[0] * dims)] = 1.0
        fc.weight.copy_(torch.tensor([[1.0, -1.0, 2.0], [-1.0, 1.0, -0.5]]))
        fc.bias.fill_(5.0)
    model = nn.Sequential(conv, nn.ReLU(), GAP[dims](1), nn.Flatten(), fc).double().eval()
    spots = [tuple([1] * dims), tuple([5] * dims), tuple([3] + [6] * (dims - 1))]
    x = 0.01 * torch.rand(1, 3, *[8] * dims, dtype=torch.float64)
    for k, q in enumerate(spots):
        x[(0, k, *q)] = 4.0
    fix = CNNFixations(model)
    assert fix.fixations(x, target=0)[0].tolist() == sorted([list(spots[0]), list(spots[2])])
    assert fix.fixations(x, target=1)[0].tolist() == [list(spots[1])]


def test_grouped_conv_picks_within_the_group(dims):
    conv = CONV[dims](2, 2, 1, groups=2, bias=False)
    fc = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        conv.weight.fill_(1.0)
        fc.weight.copy_(torch.tensor([[1.0, -1.0], [-1.0, 1.0]]))
    model = nn.Sequential(conv, GAP[dims](1), nn.Flatten(), fc).double().eval()
    x = torch.zeros(1, 2, *[6] * dims, dtype=torch.float64)
    x[(0, 0, *[1] * dims)] = 3.0  # strong in channel 0, at 1
    x[(0, 1, *[4] * dims)] = 1.0  # weaker in channel 1, at 4
    assert CNNFixations(model).fixations(x, target=1)[0].tolist() == [[4] * dims]
    assert CNNFixations(model).fixations(x, target=0)[0].tolist() == [[1] * dims]


class ViewHead(nn.Module):
    def __init__(self, dims: int) -> None:
        super().__init__()
        self.conv = CONV[dims](1, 2, 3, padding=1)
        self.pool = GAP[dims](1)
        self.fc = nn.Linear(2, 2)

    def forward(self, x):
        return self.fc(self.pool(self.conv(x)).view(x.shape[0], -1))


class DataDependent(nn.Module):
    def __init__(self, dims: int) -> None:
        super().__init__()
        self.head = nn.Sequential(GAP[dims](1), nn.Flatten(), nn.Linear(1, 2))

    def forward(self, x):
        if x.sum() > 0:  # control flow on a tensor value: torch.fx cannot trace it
            x = -x
        return self.head(x)


def test_untraceable_models_raise_naming_the_module(dims):
    x = torch.randn(1, 1, *[8] * dims, dtype=torch.float64)
    upsample = nn.Sequential(
        CONV[dims](1, 2, 3, padding=1),
        nn.Upsample(scale_factor=2),
        GAP[dims](1),
        nn.Flatten(),
        nn.Linear(2, 2),
    )
    cases = [
        (upsample.double().eval(), r"Upsample \(1\)"),
        (DataDependent(dims).double().eval(), r"torch\.fx.*DataDependent"),
    ]
    for model, name in cases:
        before = model_state(model)
        with pytest.raises(NotImplementedError, match=name):
            CNNFixations(model).fixations(x, target=0)
        assert_unchanged(model, before)
    with pytest.raises(ValueError, match="sum_rule"):
        CNNFixations(upsample).fixations(x, target=0, sum_rule="max")


def test_view_in_forward_is_a_reshape(dims):
    model = ViewHead(dims).double().eval()
    with torch.no_grad():
        model.conv.weight.zero_()
        model.conv.weight[(slice(None), 0, *[1] * dims)] = 1.0
        model.fc.weight.fill_(1.0)
    where = tuple([2, 5, 3][:dims])
    x = strong_voxel_inputs(dims, [where], size=8)
    assert CNNFixations(model).fixations(x, target=0)[0].tolist() == [list(where)]


# --------------------------------------------------------------------------------------
# Residual sums and dense concatenations
# --------------------------------------------------------------------------------------


def selector(dims: int, cin: int, pick: int) -> nn.Module:
    """A 1x1 convolution that copies input channel ``pick``."""
    conv = CONV[dims](cin, 1, 1, bias=False)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[(0, pick, *[0] * dims)] = 1.0
    return conv


class TwoBranches(nn.Module):
    """``out = a + b``: ``a`` is input channel 0, ``b`` a 3-wide max pool of channel 1. The
    branches map a point of the sum to different input voxels when channel 1's strong voxel
    is next to channel 0's."""

    def __init__(self, dims: int) -> None:
        super().__init__()
        self.a = selector(dims, 2, 0)
        self.b = nn.Sequential(selector(dims, 2, 1), MAXPOOL[dims](3, stride=1, padding=1))
        self.head = nn.Sequential(
            {1: nn.AdaptiveMaxPool1d, 2: nn.AdaptiveMaxPool2d, 3: nn.AdaptiveMaxPool3d}[dims](1),
            nn.Flatten(),
            positive_linear(1, 2),
        )

    def forward(self, x):
        return self.head(self.a(x) + self.b(x))


@pytest.mark.parametrize("skip, branch", [(10.0, 4.0), (10.0, 20.0)])
def test_residual_sum_follows_the_larger_branch_or_both(dims, skip, branch):
    model = TwoBranches(dims).double().eval()
    p = tuple([4] * dims)
    q = tuple([5] + [4] * (dims - 1))  # next to p
    x = 0.01 * torch.rand(1, 2, *[10] * dims, dtype=torch.float64)
    x[(0, 0, *p)] = skip
    x[(0, 1, *q)] = branch
    fix = CNNFixations(model)
    # the sum peaks at p (skip + branch there); the larger addend decides the branch
    larger = fix.fixations(x, target=0, outlier_radius=None)[0].tolist()
    assert larger == [list(p) if skip > branch else list(q)]
    both = fix.fixations(x, target=0, outlier_radius=None, sum_rule="both")[0].tolist()
    assert both == sorted([list(p), list(q)])


class BasicBlock(nn.Module):
    """A ResNet basic block: ``relu(bn(conv(relu(bn(conv(x))))) + x)``."""

    def __init__(self, dims: int, channels: int) -> None:
        super().__init__()
        bn = getattr(nn, f"BatchNorm{dims}d")
        self.conv1 = peaked_conv(dims, channels, channels, padding=1)
        self.bn1 = bn(channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = peaked_conv(dims, channels, channels, padding=1)
        self.bn2 = bn(channels)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += x  # in place, as torchvision's and MONAI's blocks do
        return self.relu(out)


def residual_net(dims: int) -> nn.Sequential:
    return (
        nn.Sequential(
            peaked_conv(dims, 1, 2, padding=1),
            nn.ReLU(),
            BasicBlock(dims, 2),
            MAXPOOL[dims](2),
            BasicBlock(dims, 2),
            GAP[dims](1),
            nn.Flatten(),
            positive_linear(2, 2),
        )
        .double()
        .eval()
    )


@pytest.mark.parametrize("sum_rule", ["larger", "both"])
def test_residual_network_fixation_is_the_strong_voxel(dims, sum_rule):
    model = residual_net(dims)
    where = [tuple([4] * dims), tuple([8, 2, 6][:dims])]  # even: recovered through the pool
    x = strong_voxel_inputs(dims, where)
    before = model_state(model)
    fix = CNNFixations(model)
    for target in (0, 1):
        points = fix.fixations(x, target=target, sum_rule=sum_rule)
        assert [p.tolist() for p in points] == [[list(q)] for q in where]
    assert_unchanged(model, before)


class DenseLayer(nn.Module):
    """``cat([x, conv(x)], 1)`` as DenseNet's dense layers."""

    def __init__(self, dims: int) -> None:
        super().__init__()
        self.conv = selector(dims, 2, 1)

    def forward(self, x):
        return torch.cat([x, self.conv(x)], 1)


def test_concatenation_sends_each_channel_to_its_input(dims):
    fc = nn.Linear(3, 2)
    with torch.no_grad():
        fc.weight.copy_(torch.tensor([[1.0, -1.0, -1.0], [-1.0, -1.0, 1.0]]))
    model = nn.Sequential(DenseLayer(dims), GAP[dims](1), nn.Flatten(), fc).double().eval()
    p, q = tuple([1] * dims), tuple([6, 3, 5][:dims])
    x = 0.01 * torch.rand(1, 2, *[8] * dims, dtype=torch.float64)
    x[(0, 0, *p)] = 5.0
    x[(0, 1, *q)] = 5.0
    fix = CNNFixations(model)
    assert fix.fixations(x, target=0)[0].tolist() == [list(p)]  # channel 0: x itself
    assert fix.fixations(x, target=1)[0].tolist() == [list(q)]  # channel 2: the new features


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet18", "densenet121"])
def test_monai_resnet18_and_densenet121_3d(name):
    from monai.networks.nets import DenseNet121, resnet18

    torch.manual_seed(0)
    if name == "resnet18":
        net = resnet18(spatial_dims=3, n_input_channels=1, num_classes=2, widen_factor=0.25)
        net = net.eval()
        size = 16
    else:  # four poolings and transitions need 32 voxels
        net = DenseNet121(spatial_dims=3, in_channels=1, out_channels=2).eval()
        size = 32
    x = torch.rand(2, 1, size, size, size)
    before = model_state(net)
    fix = CNNFixations(net)
    larger = fix.fixations(x, target=[0, 1], outlier_radius=None)
    both = fix.fixations(x, target=[0, 1], outlier_radius=None, sum_rule="both")
    for small, big in zip(larger, both, strict=True):
        assert small.shape[0] > 0 and small.shape[1] == 3
        assert bool((small >= 0).all()) and bool((small < size).all())
        assert set(map(tuple, small.tolist())) <= set(map(tuple, big.tolist()))
    one = fix.fixations(x[1:], target=1, outlier_radius=None)
    assert torch.equal(one[0], larger[1])
    assert_unchanged(net, before)


def test_density_map_is_blurred_points():
    points = [
        torch.tensor([[5, 6, 7]]),
        torch.tensor([[2, 2, 2], [9, 9, 9]]),
        torch.zeros(0, 3, dtype=torch.long),
    ]
    size = (12, 12, 12)
    sharp = fixation_density(points, size, 0.0, dtype=torch.float64)
    assert (
        sharp[0, 0, 5, 6, 7] == 1
        and sharp[0].sum() == 1
        and sharp[1].sum() == 2
        and sharp[2].sum() == 0
    )
    sigma = 1.0
    blurred = fixation_density(points, size, sigma, dtype=torch.float64)
    t = torch.arange(-3, 4, dtype=torch.float64)
    g = torch.exp(-0.5 * t**2 / sigma**2)
    g = g / g.sum()
    expected = torch.zeros(size, dtype=torch.float64)
    expected[2:9, 3:10, 4:11] = g.view(-1, 1, 1) * g.view(1, -1, 1) * g.view(1, 1, -1)
    torch.testing.assert_close(blurred[0, 0], expected)
    assert math.isclose(float(blurred[0].sum()), 1.0)
    with pytest.raises(ValueError, match="sigma"):
        fixation_density(points, size, -1.0)


def test_attribute_is_the_density_of_the_fixations(dims):
    model = gap_net(dims)
    x = strong_voxel_inputs(dims, [tuple([4] * dims)])
    fix = CNNFixations(model)
    density = fix.attribute(x, target=0, sigma=1.5)
    assert density.shape == x[:, :1].shape and density.dtype == x.dtype
    points = fix.fixations(x, target=0)
    torch.testing.assert_close(
        density, fixation_density(points, tuple(x.shape[2:]), 1.5, dtype=x.dtype)
    )
    assert density.flatten().argmax() == torch.tensor(x.shape[2:]).new_tensor([4] * dims).dot(
        torch.tensor([12 ** (dims - 1 - d) for d in range(dims)])
    )


def test_outliers_are_removed():
    torch.manual_seed(0)
    cluster = torch.randint(10, 14, (30, 2))
    points = torch.cat([cluster, torch.tensor([[90, 90]])])
    kept = _remove_outliers(points, radius=10.0, fraction=0.05)
    assert kept.shape[0] == 30 and [90, 90] not in kept.tolist()
    assert _remove_outliers(points, radius=200.0, fraction=0.05).shape[0] == 31


def test_bad_input_and_training_mode():
    model = gap_net(2)
    fix = CNNFixations(model)
    x = strong_voxel_inputs(2, [(4, 4)])
    with pytest.raises(TypeError, match=r"nn\.Module"):
        CNNFixations(lambda a: a)
    with pytest.raises(ValueError, match="out of range"):
        fix.fixations(x, target=5)
    with pytest.raises(ValueError, match="integer class targets"):
        fix.fixations(x, target=[(0,)])
    with pytest.raises(ValueError, match="outlier_radius"):
        fix.fixations(x, target=0, outlier_radius=-1)
    with pytest.raises(ValueError, match="outlier_fraction"):
        fix.fixations(x, target=0, outlier_fraction=1.5)
    with pytest.raises(ValueError, match="NaN"):
        fix.attribute(torch.full_like(x, float("nan")), target=0)
    model.train()
    with pytest.warns(UserWarning, match="training mode"):
        fix.fixations(x, target=0)
    assert model.training
