"""Approximate Score-CAM (``max_channels``): the exact map at full budget, a closed form
with known channel statistics, invariances, fewer forwards, and argument errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from captum_medcam import ScoreCAM, ScoreCAM3D
from captum_medcam.attr._score_cam import select_channels
from tests.conftest import GAP, small_cnn

# Five channels of known mean a_k and standard deviation b_k: channel 3 is constant and
# channel 4 is a copy of channel 0 (one shared mask). Top 3 by variance: {0, 4, 2}; by
# mean: {3, 1, 2}.
MEANS = [0.5, 2.0, 1.0, 3.0, 0.5]
STDS = [2.0, 0.5, 1.5, 0.0, 2.0]
TOP3 = {"variance": [0, 4, 2], "mean": [3, 1, 2]}


class Counter(nn.Module):
    """Counts the examples that pass through the model."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.rows = 0

    def forward(self, x):
        self.rows += x.shape[0]
        return self.model(x)


def known_channels(dims: int, seed: int = 0) -> torch.Tensor:
    """One example ``(1, 5, *S)`` whose channels have the means and stds above."""
    g = torch.Generator().manual_seed(seed)
    shape = [5] * dims
    rows = []
    for k, (a, b) in enumerate(zip(MEANS, STDS, strict=True)):
        if k == 4:
            rows.append(rows[0])
            continue
        p = torch.randn(shape, generator=g, dtype=torch.float64)
        p = (p - p.mean()) / p.std(correction=0)
        rows.append(a + b * p)
    return torch.stack(rows).unsqueeze(0)


def head_model(dims: int) -> nn.Sequential:
    """identity (the layer) -> GAP -> Linear(5, 3): the layer's output is the input."""
    torch.manual_seed(1)
    return nn.Sequential(nn.Identity(), GAP[dims](1), nn.Flatten(), nn.Linear(5, 3)).double().eval()


def closed_form(model, x, cls, chosen, *, channel_softmax, baseline):
    """sum over the chosen channels of w_k * A_k, with the layer = the input (no resize)."""
    scores = {}
    for k in chosen:
        a = x[:, k : k + 1]
        constant = bool(a.max() == a.min())
        if constant and not channel_softmax:
            continue
        mask = torch.zeros_like(a) if constant else (a - a.min()) / (a.max() - a.min())
        with torch.no_grad():
            s = model(x * mask).softmax(1)[0, cls]
            if baseline is not None:
                s = s - model(torch.full_like(x, baseline)).softmax(1)[0, cls]
        scores[k] = s
    if channel_softmax:  # over the chosen channels only
        w = torch.softmax(torch.stack([scores[k] for k in chosen]), 0)
        scores = dict(zip(chosen, w, strict=True))
    total = sum(scores[k] * x[:, k : k + 1] for k in scores)
    return torch.relu(total)


@pytest.mark.parametrize("criterion", ["variance", "mean"])
@pytest.mark.parametrize("channel_softmax", [False, True])
@pytest.mark.parametrize("baseline", [None, 0.0])
def test_closed_form_sum_over_selected_channels(dims, criterion, channel_softmax, baseline):
    model = head_model(dims)
    x = known_channels(dims)
    out = ScoreCAM(model, model[0]).attribute(
        x,
        target=2,
        max_channels=3,
        channel_criterion=criterion,
        channel_softmax=channel_softmax,
        baselines=baseline,
    )
    ref = closed_form(
        model, x, 2, TOP3[criterion], channel_softmax=channel_softmax, baseline=baseline
    )
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)
    # A budget given as a fraction: ceil(0.5 * 5) = 3 channels.
    half = ScoreCAM(model, model[0]).attribute(
        x,
        target=2,
        max_channels=0.5,
        channel_criterion=criterion,
        channel_softmax=channel_softmax,
        baselines=baseline,
    )
    torch.testing.assert_close(half, out, rtol=0, atol=0)


def test_select_channels_ranks_per_example_and_breaks_ties_by_index():
    acts = torch.zeros(2, 4, 3)
    acts[0] = torch.tensor([[1.0, 1, 1], [0, 2, 4], [0, 2, 4], [5, 5, 5]])  # vars 0, 8/3 x2, 0
    acts[1] = torch.tensor([[0.0, 0, 3], [1, 1, 1], [0, 0, 0], [0, 3, 0]])  # means 1, 1, 0, 1
    by_var = select_channels(acts, 1, "variance")
    assert by_var[0].tolist() == [False, True, False, False]  # tie 1 vs 2: the lower index
    by_mean = select_channels(acts, 2, "mean")
    assert by_mean[0].tolist() == [False, True, False, True]  # means 1, 2, 2, 5: 3 then 1
    assert by_mean[1].tolist() == [True, True, False, False]  # tie 0, 1, 3: the lowest two
    assert select_channels(acts, 9, "mean").all()
    assert select_channels(acts, 0.01, "variance").sum(1).tolist() == [1, 1]


@pytest.mark.parametrize("channel_softmax", [False, True])
def test_full_budget_equals_exact_bit_for_bit(dims, channel_softmax):
    model = small_cnn(dims)
    x = torch.randn(2, 2, *([8] * dims), dtype=torch.float64)
    cam = ScoreCAM(model, model[4])
    kw = {"target": [0, 2], "channel_softmax": channel_softmax, "baselines": 0.0}
    exact = cam.attribute(x, **kw)
    for max_channels in (8, 100, 1.0, np.int64(8), np.float32(1.0)):
        for criterion in ("variance", "mean"):
            approx = cam.attribute(x, max_channels=max_channels, channel_criterion=criterion, **kw)
            assert torch.equal(approx, exact)


@pytest.mark.parametrize("max_channels", [3, 0.25])
@pytest.mark.parametrize("criterion", ["variance", "mean"])
def test_batch_and_chunk_invariance(dims, max_channels, criterion):
    model = small_cnn(dims)
    x = torch.randn(4, 2, *([8] * dims), dtype=torch.float64)
    targets = torch.tensor([2, 0, 1, 2])
    cam = ScoreCAM(model, model[4])
    kw = {"max_channels": max_channels, "channel_criterion": criterion}
    batch = cam.attribute(x, target=targets, perturbations_per_eval=1, **kw)
    many = cam.attribute(x, target=targets, perturbations_per_eval=64, **kw)
    torch.testing.assert_close(batch, many, rtol=0, atol=1e-12)
    for i in range(4):
        single = cam.attribute(x[i : i + 1], target=int(targets[i]), **kw)
        torch.testing.assert_close(batch[i : i + 1], single, rtol=0, atol=1e-12)
    assert not torch.equal(batch, cam.attribute(x, target=targets))  # it is an approximation


def test_forwards_drop_with_the_budget(dims):
    # The closed-form model: variance top 3 = {0, 4, 2} with 0 and 4 sharing one mask.
    model = Counter(head_model(dims)).eval()
    x = known_channels(dims).expand(3, -1, *([-1] * dims)).contiguous()
    cam = ScoreCAM(model, model.model[0])
    cam.attribute(x, target=1)
    assert model.rows == 3 + 3 * 3  # clean forward + channels 0(=4), 1, 2 (3 constant)
    model.rows = 0
    cam.attribute(x, target=1, max_channels=3)
    assert model.rows == 3 + 3 * 2
    model.rows = 0
    cam.attribute(x, target=1, max_channels=1, channel_criterion="mean")
    assert model.rows == 3  # the top channel by mean is the constant one: no forward at all


def test_score_cam_3d_metatensor_and_reshape_transform():
    from monai.data import MetaTensor

    model = small_cnn(3)
    x = MetaTensor(torch.randn(2, 2, 8, 8, 8, dtype=torch.float64), affine=torch.eye(4) * 2)
    out = ScoreCAM3D(model, model[4]).attribute(x, target=[0, 1], max_channels=0.5)
    assert isinstance(out, MetaTensor)
    torch.testing.assert_close(out.affine, x.affine)
    plain = ScoreCAM(model, model[4]).attribute(x.as_tensor(), target=[0, 1], max_channels=4)
    torch.testing.assert_close(out.as_tensor(), plain, rtol=0, atol=0)

    # The ranking uses the reshaped (N, C, *grid) map: a channel-last layer gives the same
    # map as the channel-first one.
    class ChannelLast(nn.Module):
        def forward(self, a):
            return a.movedim(1, -1)

    last = nn.Sequential(*model[:5], ChannelLast(), nn.Identity())
    net = nn.Sequential(last, _ChannelFirst(), *model[5:]).eval()
    moved = ScoreCAM(net, last[-1], reshape_transform=lambda a: a.movedim(-1, 1)).attribute(
        x.as_tensor(), target=[0, 1], max_channels=4
    )
    torch.testing.assert_close(moved, plain, rtol=0, atol=1e-12)


class _ChannelFirst(nn.Module):
    def forward(self, a):
        return a.movedim(-1, 1)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"max_channels": 0}, ValueError, r"max_channels must be >= 1, got 0"),
        ({"max_channels": -2}, ValueError, r"max_channels must be >= 1"),
        ({"max_channels": 0.0}, ValueError, r"max_channels must be in \(0, 1\], got 0"),
        ({"max_channels": 1.5}, ValueError, r"max_channels must be in \(0, 1\], got 1.5"),
        ({"max_channels": float("nan")}, ValueError, r"max_channels must be a finite number"),
        ({"max_channels": True}, TypeError, r"max_channels must be None \(exact\)"),
        ({"max_channels": "10%"}, TypeError, r"max_channels must be None.*'10%'"),
        ({"max_channels": [3]}, TypeError, r"max_channels must be None.*\[3\]"),
        ({"channel_criterion": "max"}, ValueError, r"channel_criterion must be 'mean' or"),
        ({"channel_criterion": 1}, TypeError, r"channel_criterion must be 'mean' or"),
    ],
)
def test_bad_arguments(kwargs, error, message):
    model = Counter(small_cnn(2)).eval()
    with pytest.raises(error, match=message):
        ScoreCAM(model, model.model[4]).attribute(
            torch.randn(1, 2, 8, 8, dtype=torch.float64), target=0, **kwargs
        )
    assert model.rows == 0  # refused before any forward
