"""AOPC: Samek et al.'s loop, closed forms, regions, noise, invariances, errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from captum_medcam.metrics import (
    aopc,
    aopc_curve,
    normal_noise_baseline,
    region_labels,
    uniform_noise_baseline,
)
from tests.conftest import small_cnn

SHAPES = {2: (7, 9), 3: (5, 6, 4)}


def samek_loop(model, x, attr, labels, n_regions, substrate, reduction, morf):
    """Samek et al.'s region perturbation for one example, written step by step."""
    flat_attr, flat_lab = attr.sum(1).flatten(), labels.flatten()
    regions = sorted(set(flat_lab.tolist()))
    rel = []
    for r in regions:
        vals = flat_attr[flat_lab == r]
        rel.append(float(vals.mean() if reduction == "mean" else vals.sum()))
    # stable: among equal relevances the smaller region label first, in both orders
    ordered = sorted(range(len(regions)), key=lambda j: (-rel[j] if morf else rel[j], j))
    c = int(model(x).argmax(1))
    xk = x.clone()
    scores = [model(xk).softmax(1)[0, c]]
    for j in ordered[:n_regions]:
        where = (labels == regions[j]).view(1, 1, *x.shape[2:]).expand_as(x)
        xk = torch.where(where, substrate, xk)
        scores.append(model(xk).softmax(1)[0, c])
    s = torch.stack(scores)
    return s, (s[0] - s).sum() / (n_regions + 1)


@pytest.mark.parametrize("order", ["morf", "lerf"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_equals_samek_loop(dims: int, order: str, reduction: str) -> None:
    shape = SHAPES[dims]
    model = small_cnn(dims, in_channels=2)
    torch.manual_seed(0)
    x = torch.randn(2, 2, *shape, dtype=torch.float64)
    attr = torch.randn(2, 2, *shape, dtype=torch.float64)
    size = 3 if dims == 2 else 2  # partial patches at the borders: mean and sum differ
    noise = normal_noise_baseline(0.0, 0.1, generator=torch.Generator().manual_seed(1))
    substrate = noise(x)
    curve = aopc_curve(
        model,
        x,
        attr,
        region_size=size,
        n_regions=6,
        order=order,
        reduction=reduction,
        baselines=substrate,
        max_examples_per_batch=4,
    )
    values = aopc(
        model,
        x,
        attr,
        region_size=size,
        n_regions=6,
        order=order,
        reduction=reduction,
        baselines=substrate,
    )
    labels = region_labels(x, size)
    for k in range(2):
        ref, ref_aopc = samek_loop(
            model,
            x[k : k + 1],
            attr[k : k + 1],
            labels[k],
            6,
            substrate[k : k + 1],
            reduction,
            order == "morf",
        )
        torch.testing.assert_close(curve.scores[k], ref)
        torch.testing.assert_close(values[k], ref_aopc)
    assert torch.equal(curve.x, torch.arange(7, dtype=torch.float64))


def test_closed_form_linear_model(dims: int) -> None:
    # Logit 0 = sum(x); deleting (zero baseline) a region lowers it by the region's sum.
    shape = SHAPES[dims]
    torch.manual_seed(1)
    x = torch.rand(1, 1, *shape, dtype=torch.float64) + 0.5

    class SumModel(nn.Module):
        def forward(self, t: torch.Tensor) -> torch.Tensor:
            s = t.flatten(1).sum(1)
            return torch.stack([s, -s], 1)

    model = SumModel().eval()
    labels = region_labels(x, 2).flatten()
    sums = torch.zeros(int(labels.max()) + 1, dtype=torch.float64).scatter_add_(
        0, labels, x.flatten()
    )
    drops = torch.cat(
        [torch.zeros(1, dtype=torch.float64), sums.sort(descending=True).values.cumsum(0)]
    )
    values = aopc(model, x, x, 0, region_size=2, reduction="sum", baselines=0.0, score="logit")
    torch.testing.assert_close(values, drops.mean().view(1))
    lerf = aopc(
        model, x, x, 0, region_size=2, reduction="sum", baselines=0.0, score="logit", order="lerf"
    )
    assert float(values) > float(lerf)


def test_feature_mask_equals_grid_and_labels_need_not_be_contiguous(dims: int) -> None:
    shape = SHAPES[dims]
    model = small_cnn(dims, in_channels=1)
    torch.manual_seed(2)
    x = torch.randn(2, 1, *shape, dtype=torch.float64)
    attr = torch.randn(2, 1, *shape, dtype=torch.float64)
    grid = aopc(model, x, attr, region_size=2, baselines=0.0)
    mask = region_labels(x[:1], 2).unsqueeze(1) * 7 + 3  # shared by all examples
    torch.testing.assert_close(aopc(model, x, attr, feature_mask=mask, baselines=0.0), grid)


def test_per_example_masks_with_different_region_counts() -> None:
    model = small_cnn(2, in_channels=1)
    torch.manual_seed(3)
    x = torch.randn(2, 1, 6, 6, dtype=torch.float64)
    attr = torch.randn(2, 1, 6, 6, dtype=torch.float64)
    mask = torch.stack([region_labels(x[:1], 3)[0], region_labels(x[:1], 2)[0] + 10]).unsqueeze(1)
    both = aopc_curve(model, x, attr, feature_mask=mask, baselines=0.0)
    assert both.scores.shape == (2, 5)  # L = the smaller count (4 regions of 3x3)
    for k in range(2):
        one = aopc_curve(
            model,
            x[k : k + 1],
            attr[k : k + 1],
            feature_mask=mask[k : k + 1],
            n_regions=4,
            baselines=0.0,
        )
        torch.testing.assert_close(both.scores[k], one.scores[0])
    with pytest.raises(ValueError, match="between 1 and the number of regions \\(4\\)"):
        aopc(model, x, attr, feature_mask=mask, n_regions=5)


def test_noise_with_generator_is_reproducible(dims: int) -> None:
    shape = SHAPES[dims]
    model = small_cnn(dims, in_channels=1)
    torch.manual_seed(4)
    x = torch.randn(2, 1, *shape, dtype=torch.float64)

    def run(seed: int) -> torch.Tensor:
        noise = uniform_noise_baseline(generator=torch.Generator().manual_seed(seed))
        return aopc(model, x, x, region_size=2, baselines=noise)

    torch.testing.assert_close(run(0), run(0))
    assert not torch.equal(run(0), run(1))


def test_batch_and_chunk_invariance(dims: int) -> None:
    shape = SHAPES[dims]
    model = small_cnn(dims, in_channels=1)
    torch.manual_seed(5)
    x = torch.randn(3, 1, *shape, dtype=torch.float64)
    attr = torch.randn(3, 1, *shape, dtype=torch.float64)
    target = torch.tensor([1, 0, 2])
    full = aopc(model, x, attr, target, region_size=2, baselines=0.5, max_examples_per_batch=None)
    torch.testing.assert_close(
        aopc(model, x, attr, target, region_size=2, baselines=0.5, max_examples_per_batch=1), full
    )
    for k in range(3):
        one = aopc(
            model, x[k : k + 1], attr[k : k + 1], target[k : k + 1], region_size=2, baselines=0.5
        )
        torch.testing.assert_close(one, full[k : k + 1])


def test_region_labels_grid() -> None:
    labels = region_labels(torch.zeros(1, 1, 3, 5), (2, 3))
    expected = torch.tensor([[0, 0, 0, 1, 1], [0, 0, 0, 1, 1], [2, 2, 2, 3, 3]])
    assert torch.equal(labels[0], expected)


def test_errors() -> None:
    model = small_cnn(3, in_channels=1)
    x = torch.randn(1, 1, 8, 8, 8, dtype=torch.float64)
    with pytest.raises(
        ValueError,
        match=r"region_size \(9, 9, 9\) must be between 1 and the input's spatial shape \(8, 8, 8\)",
    ):
        aopc(model, x, x, region_size=9)
    # the default 9 shrinks to an input that is smaller: one 8^3 region
    assert aopc_curve(model, x, x, baselines=0.0).scores.shape == (1, 2)
    with pytest.raises(ValueError, match="3 ints"):
        aopc(model, x, x, region_size=(2, 2))
    with pytest.raises(ValueError, match="either region_size or feature_mask"):
        aopc(model, x, x, region_size=2, feature_mask=torch.zeros(1, 1, 8, 8, 8, dtype=torch.long))
    with pytest.raises(TypeError, match="integer tensor"):
        aopc(model, x, x, feature_mask=torch.zeros(1, 1, 8, 8, 8))
    with pytest.raises(ValueError, match="does not broadcast"):
        aopc(model, x, x, feature_mask=torch.zeros(1, 1, 4, 8, 8, dtype=torch.long))
    with pytest.raises(ValueError, match="order must be 'morf' or 'lerf'"):
        aopc(model, x, x, region_size=2, order="random")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="reduction must be"):
        aopc(model, x, x, region_size=2, reduction="max")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="n_regions must be >= 1"):
        aopc(model, x, x, region_size=2, n_regions=0)
    with pytest.raises(ValueError, match="n_regions must be between 1"):
        aopc(model, x, x, region_size=2, n_regions=10**6)
    with pytest.raises(ValueError, match="score must be"):
        aopc(model, x, x, region_size=2, score="accuracy")  # type: ignore[arg-type]
