"""CNN Fixations: networks whose fixations are known by construction, the rules, errors."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from captum_medcam import CNNFixations
from captum_medcam.attr._fixations import _remove_outliers, fixation_density
from tests.conftest import CONV, GAP, MAXPOOL, assert_unchanged, hook_count, model_state

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


class Residual(nn.Module):
    def __init__(self, dims: int) -> None:
        super().__init__()
        self.conv = CONV[dims](2, 2, 3, padding=1)

    def forward(self, x):
        return x + self.conv(x)


class ViewHead(nn.Module):
    def __init__(self, dims: int) -> None:
        super().__init__()
        self.conv = CONV[dims](1, 2, 3, padding=1)
        self.pool = GAP[dims](1)
        self.fc = nn.Linear(2, 2)

    def forward(self, x):
        return self.fc(self.pool(self.conv(x)).view(x.shape[0], -1))


def test_untraceable_models_raise_naming_the_module(dims):
    x = torch.randn(1, 1, *[8] * dims, dtype=torch.float64)
    residual = nn.Sequential(
        CONV[dims](1, 2, 3, padding=1), Residual(dims), GAP[dims](1), nn.Flatten(), nn.Linear(2, 2)
    )
    residual = residual.double().eval()
    cases = [
        (residual, r"Residual \(1\)"),
        (ViewHead(dims).double().eval(), r"Linear \(fc\)"),
        (
            nn.Sequential(
                CONV[dims](1, 2, 3, padding=1),
                nn.Upsample(scale_factor=2),
                GAP[dims](1),
                nn.Flatten(),
                nn.Linear(2, 2),
            )
            .double()
            .eval(),
            r"Upsample \(1\)",
        ),
    ]
    for model, name in cases:
        before = model_state(model)
        with pytest.raises(NotImplementedError, match=name):
            CNNFixations(model).fixations(x, target=0)
        assert_unchanged(model, before)


def test_monai_resnet_is_refused_with_the_block_named():
    from monai.networks.nets import resnet10

    net = resnet10(spatial_dims=3, n_input_channels=1, num_classes=2, widen_factor=0.25).eval()
    with pytest.raises(NotImplementedError, match=r"ResNetBlock \(layer1\.0\)"):
        CNNFixations(net).attribute(torch.randn(1, 1, 16, 16, 16), target=0)
    assert hook_count(net) == 0


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
