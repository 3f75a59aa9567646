"""Localization metrics: hand-made maps and masks with known answers, in 2D and 3D."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from captum_medcam.metrics import (
    attribution_dice,
    attribution_iou,
    energy_pointing_game,
    pointing_game,
    relevance_rank_accuracy,
)
from captum_medcam.metrics._localization import dilate_mask

SIZE = 8


def empty_map(dims: int, n: int = 1, channels: int = 1) -> torch.Tensor:
    return torch.zeros(n, channels, *([SIZE] * dims), dtype=torch.float64)


def empty_mask(dims: int, n: int = 1) -> torch.Tensor:
    return torch.zeros(n, 1, *([SIZE] * dims), dtype=torch.bool)


def at(dims: int, *coords: int) -> tuple[int, ...]:
    """A spatial position: the given coordinates, padded with 4 for the remaining dims."""
    return (*coords, *([4] * (dims - len(coords))))


# --- pointing game ---------------------------------------------------------------------------


def test_pointing_game_hit_and_miss(dims: int) -> None:
    maps = empty_map(dims, n=2)
    maps[(0, 0, *at(dims, 2, 2))] = 5.0  # inside the mask
    maps[(1, 0, *at(dims, 6, 6))] = 5.0  # outside
    masks = empty_mask(dims)
    masks[(0, 0, *at(dims, 2, 2))] = True
    masks[(0, 0, *at(dims, 2, 3))] = True
    assert pointing_game(maps, masks).tolist() == [1.0, 0.0]


def test_pointing_game_tolerance_is_euclidean(dims: int) -> None:
    masks = empty_mask(dims)
    masks[(0, 0, *at(dims, 2, 2))] = True
    straight = empty_map(dims)
    straight[(0, 0, *at(dims, 2, 4))] = 1.0  # distance 2 along one axis
    diagonal = empty_map(dims)
    diagonal[(0, 0, *at(dims, 3, 3))] = 1.0  # distance sqrt(2)
    assert pointing_game(straight, masks, tolerance=1.99).item() == 0.0
    assert pointing_game(straight, masks, tolerance=2).item() == 1.0
    # Chebyshev distance would be 1; the Euclidean distance is sqrt(2) = 1.414
    assert pointing_game(diagonal, masks, tolerance=1).item() == 0.0
    assert pointing_game(diagonal, masks, tolerance=1.42).item() == 1.0


def test_pointing_game_ties_need_every_maximum_inside(dims: int) -> None:
    masks = empty_mask(dims)
    masks[(0, 0, 1)] = True  # a slab
    maps = empty_map(dims, n=3)
    maps[(0, 0, *at(dims, 1, 1))] = 2.0
    maps[(0, 0, *at(dims, 1, 5))] = 2.0  # both maxima inside
    maps[(1, 0, *at(dims, 1, 1))] = 2.0
    maps[(1, 0, *at(dims, 6, 1))] = 2.0  # one of the two outside
    # example 2 is constant: every voxel is a maximum
    assert pointing_game(maps, masks).tolist() == [1.0, 0.0, 0.0]


def test_pointing_game_sums_channels(dims: int) -> None:
    maps = empty_map(dims, channels=2)
    maps[(0, 0, *at(dims, 1, 1))] = 3.0  # largest single value, outside
    maps[(0, 0, *at(dims, 5, 5))] = 2.0
    maps[(0, 1, *at(dims, 5, 5))] = 2.0  # largest sum (4), inside
    masks = empty_mask(dims)
    masks[(0, 0, *at(dims, 5, 5))] = True
    assert pointing_game(maps, masks).item() == 1.0


def test_dilate_mask_equals_brute_force_distance(dims: int) -> None:
    g = torch.Generator().manual_seed(0)
    masks = torch.rand(2, 1, *([SIZE] * dims), generator=g) > 0.97
    masks[0, 0].view(-1)[3] = True  # at least one voxel each
    masks[1, 0].view(-1)[-5] = True
    grid = torch.stack(torch.meshgrid(*[torch.arange(SIZE)] * dims, indexing="ij"), -1).reshape(
        -1, dims
    )
    for tolerance in (0, 1, 1.5, 2.3, 3):
        out = dilate_mask(masks, tolerance)
        for i in range(2):
            points = grid[masks[i, 0].reshape(-1)].double()
            dist = torch.cdist(grid.double(), points).amin(1)
            assert torch.equal(out[i, 0].reshape(-1), dist <= tolerance)


# --- energy-based pointing game --------------------------------------------------------------


def test_energy_pointing_game_closed_form(dims: int) -> None:
    maps = empty_map(dims, n=2)
    maps[(0, 0, *at(dims, 1, 1))] = 3.0  # inside
    maps[(0, 0, *at(dims, 1, 2))] = -4.0  # inside but negative: no energy
    maps[(0, 0, *at(dims, 6, 6))] = 1.0  # outside
    maps[1] = 1.0  # uniform: the mask's volume fraction
    masks = empty_mask(dims)
    masks[(0, 0, 1)] = True
    share = energy_pointing_game(maps, masks)
    assert share[0].item() == pytest.approx(3.0 / 4.0)
    assert share[1].item() == pytest.approx(1.0 / SIZE)


def test_energy_pointing_game_without_positive_energy_is_nan(dims: int) -> None:
    maps = -torch.ones_like(empty_map(dims))
    masks = empty_mask(dims)
    masks[(0, 0, 1)] = True
    assert math.isnan(energy_pointing_game(maps, masks).item())


# --- relevance rank accuracy -----------------------------------------------------------------


def test_relevance_rank_accuracy_closed_form(dims: int) -> None:
    # mask of 4 voxels; the 4 largest values: 3 inside, 1 outside
    masks = empty_mask(dims)
    inside = [at(dims, 1, j) for j in range(4)]
    for p in inside:
        masks[(0, 0, *p)] = True
    maps = empty_map(dims)
    for value, p in zip((9.0, 8.0, 6.0), inside[:3], strict=True):
        maps[(0, 0, *p)] = value
    maps[(0, 0, *at(dims, 5, 5))] = 7.0
    maps[(0, 0, *inside[3])] = -1.0  # last mask voxel ranks below the zero background
    assert relevance_rank_accuracy(maps, masks).item() == pytest.approx(3 / 4)


def test_relevance_rank_accuracy_shares_ties(dims: int) -> None:
    masks = empty_mask(dims)
    masks[(0, 0, 1)] = True  # a slab of SIZE**(dims-1) voxels
    k = SIZE ** (dims - 1)
    total = SIZE**dims
    constant = empty_map(dims)
    assert relevance_rank_accuracy(constant, masks).item() == pytest.approx(k / total)
    # one top voxel inside, the rest tied: 1 + (k - 1) * (k - 1) / (total - 1) expected hits
    maps = empty_map(dims)
    maps[(0, 0, *at(dims, 1, 0))] = 1.0
    expected = (1 + (k - 1) * (k - 1) / (total - 1)) / k
    assert relevance_rank_accuracy(maps, masks).item() == pytest.approx(expected)


def test_relevance_rank_accuracy_equals_definition_without_ties(dims: int) -> None:
    g = torch.Generator().manual_seed(1)
    maps = torch.randn(3, 2, *([SIZE] * dims), generator=g, dtype=torch.float64)
    masks = torch.rand(3, 1, *([SIZE] * dims), generator=g) > 0.7
    ours = relevance_rank_accuracy(maps, masks)
    flat = maps.sum(1).flatten(1)
    for i in range(3):
        m = masks[i].flatten()
        top = flat[i].argsort(descending=True)[: int(m.sum())]
        assert ours[i].item() == pytest.approx(m[top].double().mean().item())


# --- IoU and Dice ----------------------------------------------------------------------------


def test_iou_and_dice_at_threshold(dims: int) -> None:
    maps = empty_map(dims)
    maps[(0, 0, 1)] = 1.0  # slab 1: selected
    maps[(0, 0, 2)] = 0.5  # slab 2: selected at threshold 0.4, not at 0.5
    masks = empty_mask(dims)
    masks[(0, 0, 2)] = True
    masks[(0, 0, 3)] = True
    # threshold 0.4: B = slabs 1, 2; M = slabs 2, 3: IoU 1/3, Dice 1/2
    assert attribution_iou(maps, masks, threshold=0.4).item() == pytest.approx(1 / 3)
    assert attribution_dice(maps, masks, threshold=0.4).item() == pytest.approx(1 / 2)
    # the threshold is strict: at 0.5 only slab 1 is selected, which misses the mask
    assert attribution_iou(maps, masks, threshold=0.5).item() == 0.0
    # the empty selection scores 0, not NaN
    assert attribution_dice(maps, masks, threshold=2.0).item() == 0.0


def test_iou_top_k_percent_and_per_example_threshold(dims: int) -> None:
    maps = empty_map(dims, n=2)
    masks = empty_mask(dims)
    masks[(0, 0, 0)] = True  # slab 0: 1/SIZE of the volume
    for i, scale in enumerate((1.0, 10.0)):
        for j in range(SIZE):
            maps[(i, 0, j)] = scale * (SIZE - j)  # slab 0 largest
    percent = 100 / SIZE  # exactly one slab
    assert attribution_iou(maps, masks, top_k_percent=percent).tolist() == [1.0, 1.0]
    # two slabs: B = slabs 0, 1: IoU 1/2, Dice 2/3
    assert attribution_iou(maps, masks, top_k_percent=2 * percent).tolist() == pytest.approx(
        [0.5, 0.5]
    )
    assert attribution_dice(maps, masks, top_k_percent=2 * percent).tolist() == pytest.approx(
        [2 / 3] * 2
    )
    # 15 % of each map's own maximum
    relative = 0.8 * maps.flatten(1).amax(1)  # keeps the slabs with SIZE - j > 0.8 SIZE
    expected = 1 / sum(1 for j in range(SIZE) if SIZE - j > 0.8 * SIZE)
    assert attribution_iou(maps, masks, threshold=relative).tolist() == pytest.approx(
        [expected] * 2
    )


def test_dice_is_twice_iou_over_one_plus_iou(dims: int) -> None:
    g = torch.Generator().manual_seed(2)
    maps = torch.randn(4, 1, *([SIZE] * dims), generator=g, dtype=torch.float64)
    masks = torch.rand(4, 1, *([SIZE] * dims), generator=g) > 0.5
    iou = attribution_iou(maps, masks, top_k_percent=30)
    assert torch.allclose(attribution_dice(maps, masks, top_k_percent=30), 2 * iou / (1 + iou))


# --- shared behaviour ------------------------------------------------------------------------

METRICS = {
    "pointing": pointing_game,
    "pointing_tol": lambda a, m, **k: pointing_game(a, m, tolerance=2, **k),
    "energy": energy_pointing_game,
    "rank": relevance_rank_accuracy,
    "iou": lambda a, m, **k: attribution_iou(a, m, top_k_percent=20, **k),
    "dice": lambda a, m, **k: attribution_dice(a, m, threshold=0.5, **k),
}


@pytest.mark.parametrize("name", list(METRICS))
def test_batch_invariance_and_shared_masks(dims: int, name: str) -> None:
    metric = METRICS[name]
    g = torch.Generator().manual_seed(3)
    maps = torch.randn(3, 2, *([SIZE] * dims), generator=g, dtype=torch.float64)
    masks = torch.rand(3, 1, *([SIZE] * dims), generator=g) > 0.8
    batch = metric(maps, masks)
    assert batch.shape == (3,) and batch.dtype == torch.float64
    for i in range(3):
        assert torch.equal(batch[i : i + 1], metric(maps[i : i + 1], masks[i : i + 1]))
    shared = metric(maps, masks[:1])
    assert torch.equal(shared, metric(maps, masks[:1].expand(3, -1, *masks.shape[2:])))
    # 0/1 float masks are read as bool masks
    assert torch.equal(batch, metric(maps, masks.float()))


@pytest.mark.parametrize("name", list(METRICS))
def test_empty_mask_raises_or_gives_nan(dims: int, name: str) -> None:
    metric = METRICS[name]
    maps = torch.rand(2, 1, *([SIZE] * dims), generator=torch.Generator().manual_seed(4))
    masks = empty_mask(dims, n=2)
    masks[(0, 0, 1)] = True
    with pytest.raises(ValueError, match=r"examples \[1\] are empty"):
        metric(maps, masks)
    with pytest.raises(ValueError, match="shared mask is empty"):
        metric(maps, masks[1:])
    out = metric(maps, masks, empty_mask="nan")
    assert not math.isnan(out[0].item()) and math.isnan(out[1].item())
    assert out.dtype == maps.dtype  # float32 in, float32 out


def test_errors_name_the_problem() -> None:
    maps = torch.rand(2, 1, 6, 6)
    masks = torch.ones(2, 1, 6, 6, dtype=torch.bool)
    with pytest.raises(ValueError, match=r"masks.unsqueeze\(1\)"):
        pointing_game(maps, masks[:, 0])
    with pytest.raises(ValueError, match="upsampled"):
        pointing_game(maps, torch.ones(2, 1, 12, 12, dtype=torch.bool))
    with pytest.raises(ValueError, match="one per example"):
        pointing_game(maps, torch.ones(3, 1, 6, 6, dtype=torch.bool))
    with pytest.raises(ValueError, match="binary"):
        pointing_game(maps, masks.long() * 2)
    with pytest.raises(TypeError, match="floating point"):
        pointing_game(maps.long(), masks)
    with pytest.raises(TypeError, match=r"torch\.Tensor"):
        pointing_game(maps.numpy(), masks)
    with pytest.raises(ValueError, match="NaN"):
        pointing_game(maps.masked_fill(masks, math.nan), masks)
    with pytest.raises(ValueError, match=">= 0"):
        pointing_game(maps, masks, tolerance=-1)
    with pytest.raises(ValueError, match="exactly one"):
        attribution_iou(maps, masks)
    with pytest.raises(ValueError, match="exactly one"):
        attribution_iou(maps, masks, threshold=0.5, top_k_percent=10)
    with pytest.raises(ValueError, match=r"\(0, 100\]"):
        attribution_iou(maps, masks, top_k_percent=0)
    with pytest.raises(ValueError, match="one value per example"):
        attribution_iou(maps, masks, threshold=torch.zeros(3))
    with pytest.raises(ValueError, match="empty_mask"):
        pointing_game(maps, masks, empty_mask="zero")


def test_metatensor_inputs_and_1d() -> None:
    from monai.data import MetaTensor

    maps = torch.zeros(1, 1, 10)
    maps[0, 0, 3] = 1.0
    masks = torch.zeros(1, 1, 10, dtype=torch.bool)
    masks[0, 0, 2:5] = True
    out = {name: metric(MetaTensor(maps), MetaTensor(masks)) for name, metric in METRICS.items()}
    assert all(type(v) is torch.Tensor for v in out.values())
    assert out["pointing"].item() == 1.0 and out["energy"].item() == 1.0


@pytest.mark.parametrize("tolerance", [0, 2])
def test_pointing_game_matches_loop_over_maxima(dims: int, tolerance: int) -> None:
    """All maxima within ``tolerance`` of the mask, checked voxel by voxel."""
    g = torch.Generator().manual_seed(5)
    maps = torch.randint(0, 4, (6, 1, *([SIZE] * dims)), generator=g).double()  # many ties
    masks = torch.rand(6, 1, *([SIZE] * dims), generator=g) > 0.6
    ours = pointing_game(maps, masks, tolerance=tolerance)
    for i in range(6):
        mask_points = masks[i, 0].nonzero().double()
        maxima = (maps[i, 0] == maps[i, 0].max()).nonzero().double()
        hit = all(torch.cdist(p[None], mask_points).min() <= tolerance for p in maxima)
        assert ours[i].item() == float(hit)


def test_all_metrics_are_in_unit_interval(dims: int) -> None:
    g = torch.Generator().manual_seed(6)
    maps = torch.randn(5, 1, *([SIZE] * dims), generator=g)
    masks = torch.rand(5, 1, *([SIZE] * dims), generator=g) > 0.5
    for name, metric in METRICS.items():
        out = metric(maps, masks)
        assert bool(((out >= 0) & (out <= 1)).all()), name


def test_combinations_do_not_touch_inputs() -> None:
    maps = torch.randn(2, 2, 6, 6, 6)
    masks = torch.rand(2, 1, 6, 6, 6) > 0.5
    before = maps.clone(), masks.clone()
    for (_, metric), empty in itertools.product(METRICS.items(), ("raise", "nan")):
        metric(maps, masks, empty_mask=empty)
    assert torch.equal(maps, before[0]) and torch.equal(masks, before[1])
