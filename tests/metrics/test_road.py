"""ROAD: the noisy linear imputation in closed form and against the authors' imputer, and
the metric against pytorch-grad-cam's ROAD, a step-by-step loop and its invariances."""

from __future__ import annotations

import copy
import itertools

import numpy as np
import pytest
import torch
from torch import nn

from captum_medcam.metrics import noisy_linear_imputation, road, road_curve
from tests.conftest import assert_unchanged, model_state, small_cnn

SHAPES = {1: (23,), 2: (9, 11), 3: (6, 7, 5)}


def interior_mask(shape, seed, share=0.6):
    """A random boolean mask ``(1, 1, *shape)`` that leaves the border voxels kept."""
    g = torch.Generator().manual_seed(seed)
    m = torch.rand(1, 1, *shape, generator=g) < share
    border = torch.zeros(shape, dtype=torch.bool)
    for axis, size in enumerate(shape):
        index = [slice(None)] * len(shape)
        for edge in (0, size - 1):
            index[axis] = edge
            border[tuple(index)] = True
    return m & ~border


def random_mask(shape, seed, share=0.6, n=1):
    g = torch.Generator().manual_seed(seed)
    m = torch.rand(n, 1, *shape, generator=g) < share
    m.view(n, -1)[:, 0] = False  # keep one voxel of each example
    m.view(n, -1)[:, -1] = True  # and remove a corner, so the border rule is exercised
    return m


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_linear_ramp_is_reproduced_inside(dims: int) -> None:
    shape = SHAPES[dims]
    coords = torch.meshgrid(*[torch.arange(s, dtype=torch.float64) for s in shape], indexing="ij")
    ramp = 0.5 + sum((k + 1.5) * c for k, c in enumerate(coords))
    x = torch.stack([ramp, -2 * ramp]).unsqueeze(0)  # (1, 2, *S): two channels
    removed = interior_mask(shape, seed=dims)
    assert bool(removed.any())
    out = noisy_linear_imputation(x, removed, noise=0.0)
    torch.testing.assert_close(out, x, rtol=0, atol=1e-7)


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_constant_image_stays_constant(dims: int) -> None:
    shape = SHAPES[dims]
    x = torch.full((3, 2, *shape), 0.7, dtype=torch.float64)
    x[1] = -4.0
    removed = random_mask(shape, seed=dims, share=0.8, n=3)
    out = noisy_linear_imputation(x, removed, noise=0.0)
    torch.testing.assert_close(out, x, rtol=0, atol=1e-9)


def neighbour_weights(dims: int) -> dict[tuple[int, ...], float]:
    """The stencil written out: 2D 1/6 and 1/12 (the paper's), 3D 1/14, 1/28, 1/56, 1D 1/2."""
    table = {
        1: {1: 1 / 2},
        2: {1: 1 / 6, 2: 1 / 12},
        3: {1: 1 / 14, 2: 1 / 28, 3: 1 / 56},
    }[dims]
    return {
        o: table[sum(map(abs, o))] for o in itertools.product((-1, 0, 1), repeat=dims) if any(o)
    }


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_every_removed_voxel_is_the_mean_of_its_neighbours(dims: int) -> None:
    shape = SHAPES[dims]
    g = torch.Generator().manual_seed(5)
    x = torch.rand(1, 1, *shape, generator=g, dtype=torch.float64)
    removed = random_mask(shape, seed=7, share=0.7)
    out = noisy_linear_imputation(x, removed, noise=0.0)[0, 0]
    weights = neighbour_weights(dims)
    assert abs(sum(weights.values()) - 1) < 1e-12
    checked = 0
    for p in itertools.product(*[range(s) for s in shape]):
        if not removed[(0, 0, *p)]:
            assert out[p] == x[(0, 0, *p)]
            continue
        total = weight = 0.0
        for o, w in weights.items():
            q = tuple(a + b for a, b in zip(p, o, strict=True))
            if all(0 <= c < s for c, s in zip(q, shape, strict=True)):
                total += w * float(out[q])
                weight += w
        assert abs(float(out[p]) - total / weight) < 1e-8
        checked += 1
    assert checked > 10


@pytest.mark.filterwarnings("ignore:__array_wrap__:DeprecationWarning")  # the peer, NumPy 2
def test_equals_the_authors_imputer_2d() -> None:
    """pytorch-grad-cam's NoisyLinearImputer (the authors' code) without noise: the same
    image and mask give the same imputed image (theirs is rounded to float32)."""
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer

    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 12, 15, generator=g)
    for seed, share in ((1, 0.1), (2, 0.5), (3, 0.9)):
        removed = random_mask((12, 15), seed, share)[0, 0]
        theirs = NoisyLinearImputer(noise=0.0)(x, (~removed).float())
        ours = noisy_linear_imputation(x[None].double(), removed[None, None], noise=0.0)[0]
        torch.testing.assert_close(ours, theirs.double(), rtol=0, atol=2e-7)
        ours32 = noisy_linear_imputation(x[None], removed[None, None], noise=0.0)[0]
        torch.testing.assert_close(ours32, theirs, rtol=0, atol=1e-4)


def test_noise_only_on_removed_voxels_and_seeded() -> None:
    x = torch.rand(2, 2, 30, 30, dtype=torch.float64)
    removed = random_mask((30, 30), seed=3, share=0.5, n=2)
    clean = noisy_linear_imputation(x, removed, noise=0.0)
    noisy = noisy_linear_imputation(x, removed, noise=0.05, generator=4)
    again = noisy_linear_imputation(x, removed, noise=0.05, generator=4)
    assert torch.equal(noisy, again)
    diff = noisy - clean
    keep = ~removed.expand_as(x)
    assert bool((diff[keep] == 0).all())
    assert abs(float(diff[~keep].std()) - 0.05) < 0.005
    # a seed gives every example the same field; a generator draws one per example
    both = removed[:1].expand(2, 1, 30, 30)
    same = noisy_linear_imputation(x[:1].expand(2, -1, -1, -1), both, noise=0.05, generator=4)
    assert torch.equal(same[0], same[1])
    gen = torch.Generator().manual_seed(4)
    apart = noisy_linear_imputation(x[:1].expand(2, -1, -1, -1), both, noise=0.05, generator=gen)
    assert not torch.equal(apart[0], apart[1])


def test_imputation_leaves_inputs_alone_and_follows_dtype() -> None:
    x = torch.rand(2, 1, 8, 8)
    copy = x.clone()
    removed = random_mask((8, 8), seed=1, n=2)
    out = noisy_linear_imputation(x, removed)
    assert torch.equal(x, copy)
    assert out.dtype == torch.float32 and out.shape == x.shape
    half = noisy_linear_imputation(x.half(), removed, noise=0.0)
    assert half.dtype == torch.float16


def test_imputation_errors() -> None:
    x = torch.rand(1, 1, 4, 4)
    with pytest.raises(ValueError, match="every voxel"):
        noisy_linear_imputation(x, torch.ones(1, 1, 4, 4, dtype=torch.bool))
    with pytest.raises(TypeError, match="boolean"):
        noisy_linear_imputation(x, torch.ones(1, 1, 4, 4))
    with pytest.raises(ValueError, match="broadcast"):
        noisy_linear_imputation(x, torch.zeros(1, 1, 3, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="noise"):
        noisy_linear_imputation(x, torch.zeros(1, 1, 4, 4, dtype=torch.bool), noise=-1.0)
    with pytest.raises(ValueError, match="max_iter"):
        noisy_linear_imputation(x, torch.zeros(1, 1, 4, 4, dtype=torch.bool), max_iter=0)


def test_max_iter_reached_warns() -> None:
    x = torch.rand(1, 1, 16, 16, dtype=torch.float64)
    removed = random_mask((16, 16), seed=2, share=0.9)
    with pytest.warns(RuntimeWarning, match="max_iter=2"):
        noisy_linear_imputation(x, removed, noise=0.0, max_iter=2)


# --- the metric --------------------------------------------------------------------------


def road_loop(model, x, attr, fractions, order, noise, generator):
    """ROAD written step by step: one example, one fraction at a time."""
    n_vox = attr[0, 0].numel()
    rel = attr.sum(1).flatten()
    ranked = sorted(
        range(n_vox), key=lambda v: (-float(rel[v]) if order == "morf" else float(rel[v]), v)
    )
    c = int(model(x).argmax(1))
    scores = []
    for f in fractions:
        removed = torch.zeros(n_vox, dtype=torch.bool)
        removed[ranked[: int(round(f * n_vox, 9))]] = True
        imputed = noisy_linear_imputation(
            x, removed.view(1, 1, *x.shape[2:]), noise=noise, generator=generator
        )
        scores.append(model(imputed).softmax(1)[0, c])
    return torch.stack(scores)


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("order", ["morf", "lerf"])
def test_curve_equals_step_by_step_loop(dims: int, order: str) -> None:
    shape = {1: (16,), 2: (8, 10), 3: (4, 6, 4)}[dims]
    model = small_cnn(dims)
    torch.manual_seed(0)
    x = torch.randn(3, 2, *shape, dtype=torch.float64)
    attr = torch.randn(3, 1, *shape, dtype=torch.float64)
    fractions = (0.0, 0.25, 0.5, 0.75)
    curve = road_curve(
        model, x, attr, order=order, fractions=fractions, noise=0.1, max_examples_per_batch=5
    )
    assert curve.x.tolist() == list(fractions)
    with torch.no_grad():
        for i in range(3):
            ref = road_loop(model, x[i : i + 1], attr[i : i + 1], fractions, order, 0.1, 0)
            torch.testing.assert_close(curve.scores[i], ref)


@pytest.mark.filterwarnings("ignore:__array_wrap__:DeprecationWarning")  # the peer, NumPy 2
def test_equals_pytorch_grad_cam_road(monkeypatch: pytest.MonkeyPatch) -> None:
    """pytorch-grad-cam's ROAD averages with its noise switched off: 20x20 images, so its
    percentile thresholds remove exactly the voxel counts removed here."""
    import pytorch_grad_cam.metrics.road as pgc_road
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    monkeypatch.setattr(
        pgc_road.NoisyLinearImputer.__init__,
        "__defaults__",
        (0.0, pgc_road.neighbors_weights),
    )
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(16, 3),
    ).eval()
    with torch.no_grad():
        model[-1].weight.mul_(40)  # scores that move by a few percent, not a few 1e-4
    x = torch.rand(3, 3, 20, 20)
    cams = np.random.default_rng(0).random((3, 20, 20)).astype(np.float32)
    target = model(x).argmax(1)
    targets = [ClassifierOutputSoftmaxTarget(int(t)) for t in target]
    with torch.no_grad():
        morf = pgc_road.ROADMostRelevantFirstAverage()(x, cams, targets, model)
        lerf = pgc_road.ROADLeastRelevantFirstAverage()(x, cams, targets, model)
        combined = pgc_road.ROADCombined()(x, cams, targets, model)
    attr = torch.from_numpy(cams).unsqueeze(1)
    model64 = copy.deepcopy(model).double()  # theirs solves in float64, rounds to float32
    for order, theirs in (("morf", morf), ("lerf", lerf), ("combined", combined)):
        ours = road(model64, x.double(), attr.double(), target, order=order, noise=0.0)
        assert float(np.abs(theirs).min()) > 5e-3
        torch.testing.assert_close(ours, torch.from_numpy(theirs).double(), rtol=0, atol=1e-6)


def test_batch_and_chunk_invariance(dims: int) -> None:
    shape = SHAPES[dims]
    model = small_cnn(dims)
    torch.manual_seed(1)
    x = torch.randn(4, 2, *shape, dtype=torch.float64)
    attr = torch.randn(4, 2, *shape, dtype=torch.float64)
    target = torch.tensor([0, 2, 1, 2])
    full = road(model, x, attr, target, max_examples_per_batch=None)
    assert full.shape == (4,)
    one = road(model, x, attr, target, max_examples_per_batch=1)
    torch.testing.assert_close(one, full)
    for i in range(4):
        alone = road(model, x[i : i + 1], attr[i : i + 1], target[i : i + 1])
        torch.testing.assert_close(alone, full[i : i + 1])
    # a generator: chunking still does not matter within a call
    a = road_curve(model, x, attr, target, generator=torch.Generator().manual_seed(3))
    b = road_curve(
        model, x, attr, target, generator=torch.Generator().manual_seed(3), max_examples_per_batch=3
    )
    torch.testing.assert_close(a.scores, b.scores)


def test_combined_is_half_the_gap_and_inputs_unchanged() -> None:
    model = small_cnn(2)
    x = torch.randn(2, 2, 8, 8, dtype=torch.float64)
    attr = torch.randn(2, 1, 8, 8, dtype=torch.float64)
    copies = x.clone(), attr.clone()
    before = model_state(model)
    morf = road(model, x, attr, order="morf")
    lerf = road(model, x, attr, order="lerf")
    combined = road(model, x, attr)
    torch.testing.assert_close(combined, (lerf - morf) / 2)
    m_curve = road_curve(model, x, attr, order="morf")
    clean = model(x).softmax(1).amax(1).detach()
    torch.testing.assert_close(morf, (m_curve.scores - clean[:, None]).mean(1))
    assert torch.equal(x, copies[0]) and torch.equal(attr, copies[1])
    assert_unchanged(model, before)


def test_faithful_map_beats_its_reverse() -> None:
    """A model that reads the mean of the left half: removing (imputing) the left half first
    changes its score, removing the right half first does not."""

    class LeftHalf(nn.Module):
        def forward(self, x):
            left = x[..., : x.shape[-1] // 2].mean((1, 2, 3))
            return torch.stack([left, -left], 1)

    x = torch.zeros(2, 1, 12, 12, dtype=torch.float64)
    x[..., :6] = 3.0  # a bright left half on a dark background
    good = torch.zeros(2, 1, 12, 12, dtype=torch.float64)
    good[..., :6] = 1.0
    good = good + torch.linspace(0, 0.1, 144, dtype=torch.float64).view(1, 1, 12, 12)
    kw = {"target": 0, "score": "logit", "noise": 0.0, "fractions": (0.5,)}
    assert bool(
        (road(LeftHalf().eval(), x, good, **kw) > road(LeftHalf().eval(), x, -good, **kw)).all()
    )
    morf = road_curve(LeftHalf().eval(), x, good, order="morf", **kw).scores
    assert bool((morf < 2.0).all())  # the bright half was imputed from the dark one


def test_score_correct_gives_the_papers_accuracy() -> None:
    model = small_cnn(2)
    x = torch.randn(3, 2, 8, 8, dtype=torch.float64)
    labels = torch.tensor([0, 1, 2])
    curve = road_curve(model, x, x, labels, score="correct", noise=0.0)
    assert set(curve.scores.flatten().tolist()) <= {0.0, 1.0}
    probs = road_curve(model, x, x, labels, noise=0.0)
    with torch.no_grad():
        out = model(x)
    assert curve.scores.shape == probs.scores.shape == (3, 9)
    assert out.shape == (3, 3)


def test_metatensor_and_additional_forward_args() -> None:
    from monai.data import MetaTensor

    class Scaled(nn.Module):
        def forward(self, x, scale):
            return x.flatten(1)[:, :3] * scale.view(-1, 1)

    x = torch.randn(2, 1, 6, 6, dtype=torch.float64)
    scale = torch.tensor([1.0, -2.0], dtype=torch.float64)
    plain = road(Scaled().eval(), x, x.abs(), 1, scale, score="logit")
    meta = road(Scaled().eval(), MetaTensor(x), MetaTensor(x.abs()), 1, scale, score="logit")
    torch.testing.assert_close(torch.as_tensor(meta), plain)
    alone = road(Scaled().eval(), x[1:], x[1:].abs(), 1, scale[1:], score="logit")
    torch.testing.assert_close(alone, plain[1:])


def test_metric_errors() -> None:
    model = small_cnn(2)
    x = torch.randn(2, 2, 8, 8, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        road(model, x, x, fractions=(0.5, 1.0))
    with pytest.raises(ValueError, match="empty"):
        road(model, x, x, fractions=())
    with pytest.raises(TypeError, match="sequence"):
        road_curve(model, x, x, fractions=0.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="order"):
        road(model, x, x, order="both")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="order"):
        road_curve(model, x, x, order="combined")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="upsampled"):
        road(model, x, x[..., :4, :4])
    with pytest.raises(TypeError, match="generator"):
        road(model, x, x, generator="seed")  # type: ignore[arg-type]


def test_forwards_are_chunked_and_counted() -> None:
    """Every forward holds at most max_examples_per_batch imputed inputs; the clean input
    is scored once for both orders; equal counts (fractions 0.5 and 0.52 of 8 voxels)
    are imputed once."""
    sizes: list[int] = []

    class Recording(nn.Module):
        def forward(self, x):
            sizes.append(x.shape[0])
            return x.flatten(1)[:, :2]

    x = torch.randn(4, 1, 2, 4, dtype=torch.float64)
    road(Recording().eval(), x, x, 0, fractions=(0.25, 0.5, 0.52), max_examples_per_batch=3)
    assert max(sizes) <= 3
    assert sum(sizes) == 4 + 4 * 2 * 2  # clean + 4 examples x 2 orders x 2 distinct counts
    sizes.clear()
    road_curve(Recording().eval(), x, x, 0, fractions=(0.5,), show_progress=True)
    assert sizes == [4, 4]
