"""Deletion and insertion: closed forms, the RISE loop, invariances, sharing, errors."""

from __future__ import annotations

import math

import pytest
import torch
from captum.attr import IntegratedGradients
from torch import nn

from captum_medcam import ScoreCAM
from captum_medcam.metrics import (
    auc,
    blur_baseline,
    deletion_auc,
    deletion_curve,
    deletion_insertion_auc,
    deletion_insertion_curves,
    insertion_auc,
    insertion_curve,
    mean_baseline,
)
from tests.conftest import assert_unchanged, model_state, small_cnn

SHAPES = {2: (5, 7), 3: (3, 4, 5)}


class SumModel(nn.Module):
    """Logits ``[sum(x), threshold]``: class 0's logit is the sum of all voxels."""

    def __init__(self, threshold: float = 0.0) -> None:
        super().__init__()
        self.threshold = threshold
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.flatten(1).sum(1)
        return torch.stack([s, torch.full_like(s, self.threshold)], dim=1)


class CountingModel(nn.Module):
    """Wraps a model and counts the examples it is given."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.examples = 0
        self.calls = 0
        self.eval()

    def forward(self, x: torch.Tensor, *args: object) -> torch.Tensor:
        self.examples += x.shape[0]
        self.calls += 1
        return self.model(x, *args)


def permuted_values(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """A (1, 1, *shape) tensor holding 1 .. V in a random arrangement."""
    g = torch.Generator().manual_seed(seed)
    v = math.prod(shape)
    return (torch.randperm(v, generator=g).double() + 1).view(1, 1, *shape)


def rise_loop(model, img, explanation, step, n_steps, mode, substrate_fn):
    """The RISE code's ``CausalMetric.single_run`` (one example), with probabilities."""
    hw = explanation[0, 0].numel()
    c = int(model(img).argmax(1))
    if mode == "del":
        start, finish = img.clone(), substrate_fn(img)
    else:
        start, finish = substrate_fn(img), img.clone()
    scores = torch.empty(n_steps + 1, dtype=img.dtype)
    salient_order = torch.flip(torch.argsort(explanation.reshape(-1, hw), dim=1), dims=(-1,))
    for i in range(n_steps + 1):
        scores[i] = model(start).softmax(1)[0, c]
        if i < n_steps:
            coords = salient_order[:, step * i : step * (i + 1)]
            start.view(1, img.shape[1], hw)[0, :, coords] = finish.reshape(1, img.shape[1], hw)[
                0, :, coords
            ]
    return scores, (scores.sum() - scores[0] / 2 - scores[-1] / 2) / n_steps


@pytest.mark.parametrize("n_steps", [1, 4, 6, 35])
def test_closed_form_sum_model(dims: int, n_steps: int) -> None:
    shape = SHAPES[dims]
    v = math.prod(shape)
    x = torch.cat([permuted_values(shape, 0), permuted_values(shape, 1)])
    model = SumModel()
    step = -(-v // n_steps)
    m = torch.tensor([min(i * step, v) for i in range(n_steps + 1)], dtype=torch.float64)
    remaining = (v - m) * (v - m + 1) / 2  # the v - m smallest values 1 .. v - m are left
    total = v * (v + 1) / 2
    d = deletion_curve(model, x, x, target=0, n_steps=n_steps, score="logit")
    i = insertion_curve(model, x, x, target=0, n_steps=n_steps, score="logit", baselines=0.0)
    assert torch.equal(d.x, torch.arange(n_steps + 1, dtype=torch.float64) / n_steps)
    torch.testing.assert_close(d.scores, remaining.expand(2, -1))
    torch.testing.assert_close(i.scores, (total - remaining).expand(2, -1))
    expected = (remaining.sum() - remaining[0] / 2 - remaining[-1] / 2) / n_steps
    torch.testing.assert_close(auc(d), expected.expand(2))
    torch.testing.assert_close(
        deletion_auc(model, x, x, target=0, n_steps=n_steps, score="logit"), expected.expand(2)
    )


def test_one_channel_map_moves_all_channels(dims: int) -> None:
    shape = SHAPES[dims]
    v = math.prod(shape)
    x1 = permuted_values(shape, 3)
    x = torch.cat([x1, x1], dim=1)  # two identical channels
    curve = deletion_curve(SumModel(), x, x1, target=0, n_steps=v, score="logit")
    m = torch.arange(v + 1, dtype=torch.float64)
    torch.testing.assert_close(curve.scores[0], (v - m) * (v - m + 1))  # twice the 1-channel sum
    # a C-channel map is summed over channels: the same ranking
    same = deletion_curve(
        SumModel(), x, torch.cat([x1, 2 * x1], 1), target=0, n_steps=v, score="logit"
    )
    torch.testing.assert_close(same.scores, curve.scores)


@pytest.mark.parametrize("n_steps", [3, 8, 13])
def test_equals_rise_loop(dims: int, n_steps: int) -> None:
    shape = (8, 9) if dims == 2 else (6, 7, 5)
    model = small_cnn(dims, in_channels=2, classes=3)
    torch.manual_seed(1)
    x = torch.randn(3, 2, *shape, dtype=torch.float64)
    attr = torch.randn(3, 1, *shape, dtype=torch.float64)  # no ties
    blur = blur_baseline(5, 2.0)
    v = math.prod(shape)
    step = -(-v // n_steps)
    d = deletion_curve(model, x, attr, n_steps=n_steps, max_examples_per_batch=5)
    i = insertion_curve(model, x, attr, n_steps=n_steps, baselines=blur, max_examples_per_batch=5)
    for k in range(3):
        zeros = torch.zeros_like
        ref_d, ref_dauc = rise_loop(
            model, x[k : k + 1], attr[k : k + 1], step, n_steps, "del", zeros
        )
        ref_i, ref_iauc = rise_loop(
            model, x[k : k + 1], attr[k : k + 1], step, n_steps, "ins", blur
        )
        torch.testing.assert_close(d.scores[k], ref_d)
        torch.testing.assert_close(i.scores[k], ref_i)
        torch.testing.assert_close(auc(d)[k], ref_dauc)
        torch.testing.assert_close(auc(i)[k], ref_iauc)


def test_good_ranking_beats_reversed(dims: int) -> None:
    torch.manual_seed(0)
    shape = SHAPES[dims]
    x = torch.randn(4, 1, *shape, dtype=torch.float64)
    w = torch.randn(1, *shape, dtype=torch.float64)
    model = nn.Sequential(nn.Flatten(), nn.Linear(w.numel(), 2)).double().eval()
    with torch.no_grad():
        model[1].weight.copy_(torch.stack([w.flatten(), -w.flatten()]))
        model[1].bias.zero_()
    good = w * x  # exact contributions to logit 0
    kw = {"target": 0, "n_steps": 10, "score": "logit"}
    assert bool((deletion_auc(model, x, good, **kw) < deletion_auc(model, x, -good, **kw)).all())
    ins = {**kw, "baselines": 0.0}
    assert bool(
        (insertion_auc(model, x, good, **ins) > insertion_auc(model, x, -good, **ins)).all()
    )


def test_batch_and_chunk_invariance(dims: int) -> None:
    shape = (8, 8) if dims == 2 else (6, 6, 6)
    model = small_cnn(dims, in_channels=1, classes=3)
    torch.manual_seed(2)
    x = torch.randn(3, 1, *shape, dtype=torch.float64)
    attr = torch.randn(3, 1, *shape, dtype=torch.float64)
    target = torch.tensor([2, 0, 1])
    kw = {
        "n_steps": 7,
        "deletion_baselines": mean_baseline(),
        "insertion_baselines": blur_baseline(3, 1.0),
    }
    full = deletion_insertion_auc(model, x, attr, target, max_examples_per_batch=None, **kw)
    for chunk in (1, 4):
        for a, b in zip(
            deletion_insertion_auc(model, x, attr, target, max_examples_per_batch=chunk, **kw),
            full,
            strict=True,
        ):
            torch.testing.assert_close(a, b)
    for k in range(3):
        one = deletion_insertion_auc(model, x[k : k + 1], attr[k : k + 1], target[k : k + 1], **kw)
        torch.testing.assert_close(one[0], full[0][k : k + 1])
        torch.testing.assert_close(one[1], full[1][k : k + 1])


def test_per_example_additional_forward_args() -> None:
    class Shifted(nn.Module):
        def forward(self, x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
            return SumModel()(x) + shift[:, None] * torch.tensor([1.0, 0.0], dtype=x.dtype)

    x = torch.cat([permuted_values((4, 4), 0), permuted_values((4, 4), 1)])
    model = Shifted().eval()
    shift = torch.tensor([100.0, -5.0], dtype=torch.float64)
    both = deletion_curve(model, x, x, 0, shift, n_steps=4, score="logit", max_examples_per_batch=3)
    for k in range(2):
        one = deletion_curve(
            model, x[k : k + 1], x[k : k + 1], 0, shift[k : k + 1], n_steps=4, score="logit"
        )
        torch.testing.assert_close(both.scores[k], one.scores[0])
    assert float(both.scores[0, -1]) == 100.0 and float(both.scores[1, -1]) == -5.0


def test_joint_call_shares_inputs_and_matches_separate_calls(dims: int) -> None:
    shape = SHAPES[dims]
    v = math.prod(shape)
    n, n_steps = 2, 6
    model = CountingModel(small_cnn(dims, in_channels=1))
    torch.manual_seed(3)
    x = torch.randn(n, 1, *shape, dtype=torch.float64)
    attr = torch.randn(n, 1, *shape, dtype=torch.float64)
    levels = len({min(i * -(-v // n_steps), v) for i in range(n_steps + 1)}) - 1  # non-clean levels
    d = deletion_curve(model, x, attr, n_steps=n_steps)
    assert model.examples == n + n * levels
    model.examples = 0
    blur = blur_baseline(3, 1.0)
    i = insertion_curve(model, x, attr, n_steps=n_steps, baselines=blur)
    model.examples = 0
    d2, i2 = deletion_insertion_curves(
        model, x, attr, n_steps=n_steps, deletion_baselines=blur, insertion_baselines=blur
    )
    assert model.examples == n + n * (2 * levels - 1)  # the fully blurred input is scored once
    torch.testing.assert_close(i2.scores, i.scores)
    torch.testing.assert_close(d2.scores[:, -1], i.scores[:, 0])
    model.examples = 0
    d3, _ = deletion_insertion_curves(model, x, attr, n_steps=n_steps, insertion_baselines=blur)
    assert model.examples == n + n * 2 * levels
    torch.testing.assert_close(d3.scores, d.scores)


def test_trailing_steps_evaluated_once() -> None:
    # V = 10, n_steps = 9 -> step 2: levels 0, 2, 4, 6, 8, then 10 for the last five points.
    x = permuted_values((2, 5), 0)
    model = CountingModel(SumModel())
    curve = deletion_curve(model, x, x, target=0, n_steps=9, score="logit")
    assert model.examples == 1 + 5  # clean + levels 2, 4, 6, 8, 10
    assert torch.equal(curve.scores[0, 5:], torch.zeros(5, dtype=torch.float64))


def test_score_correct_reproduces_seed_form() -> None:
    # 3D volume with V = 4 * 4 * 8 = 128, values 1 .. 128; class 0 wins while the remaining sum
    # exceeds the threshold. With n_steps = 129 (130 points, step 1) the first point is 1 and
    # the last 0, so the AUC is (k - 1/2) / 129 with k the number of correct points.
    x = permuted_values((4, 4, 8), 5)
    v = 128
    threshold = 2000.0
    model = SumModel(threshold)
    curve = deletion_curve(model, x, x, n_steps=129, score="correct")
    m = torch.arange(130).clamp(max=v).double()
    expected = ((v - m) * (v - m + 1) / 2 > threshold).double()
    torch.testing.assert_close(curve.scores[0], expected)
    k = int(expected.sum())
    torch.testing.assert_close(
        deletion_auc(model, x, x, n_steps=129, score="correct"),
        torch.tensor([(k - 0.5) / 129], dtype=torch.float64),
    )


def test_score_probability_and_logit(dims: int) -> None:
    model = small_cnn(dims, in_channels=1)
    shape = SHAPES[dims]
    torch.manual_seed(4)
    x = torch.randn(2, 1, *shape, dtype=torch.float64)
    p = deletion_curve(model, x, x, target=[1, 2], n_steps=3)
    logit = deletion_curve(model, x, x, target=[1, 2], n_steps=3, score="logit")
    with torch.no_grad():
        out = model(x)
    torch.testing.assert_close(p.scores[:, 0], out.softmax(1)[[0, 1], [1, 2]])
    torch.testing.assert_close(logit.scores[:, 0], out[[0, 1], [1, 2]])
    # target=None: the class predicted on the clean input
    default = deletion_curve(model, x, x, n_steps=3)
    predicted = deletion_curve(model, x, x, target=out.argmax(1), n_steps=3)
    torch.testing.assert_close(default.scores, predicted.scores)


def test_single_logit_model_uses_sigmoid() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 1)).double().eval()
    torch.manual_seed(0)
    x = torch.randn(2, 1, 4, 4, dtype=torch.float64)
    curve = deletion_curve(model, x, x, n_steps=2)
    with torch.no_grad():
        torch.testing.assert_close(curve.scores[:, 0], model(x)[:, 0].sigmoid())
    with pytest.raises(ValueError, match="score='correct'"):
        deletion_curve(model, x, x, n_steps=2, score="correct")


def test_captum_integrated_gradients_and_scorecam(dims: int) -> None:
    shape = (8, 8) if dims == 2 else (8, 8, 8)
    model = small_cnn(dims, in_channels=2)
    torch.manual_seed(5)
    x = torch.randn(2, 2, *shape, dtype=torch.float64)
    target = torch.tensor([0, 2])
    ig = IntegratedGradients(model).attribute(x, target=target, n_steps=8)
    cam = ScoreCAM(model, model[4]).attribute(x, target=target)
    before = model_state(model)
    for attr in (ig, cam):
        dauc, iauc = deletion_insertion_auc(model, x, attr, target, n_steps=8)
        assert dauc.shape == iauc.shape == (2,)
        assert bool(((dauc >= 0) & (dauc <= 1) & (iauc >= 0) & (iauc <= 1)).all())
    assert_unchanged(model, before)


def test_metatensor_inputs() -> None:
    from monai.data import MetaTensor

    x = permuted_values((2, 3, 4), 0)
    plain = deletion_auc(SumModel(), x, x, 0, n_steps=4, score="logit")
    meta = deletion_auc(SumModel(), MetaTensor(x), MetaTensor(x), 0, n_steps=4, score="logit")
    torch.testing.assert_close(torch.as_tensor(meta), plain)


def test_training_mode_warns_and_model_unchanged() -> None:
    model = small_cnn(2, in_channels=1).train()
    x = torch.randn(1, 1, 8, 8, dtype=torch.float64)
    before = model_state(model)
    with pytest.warns(UserWarning, match="training mode"):
        deletion_auc(model, x, x, n_steps=2)
    assert_unchanged(model, before)


def test_errors() -> None:
    model = small_cnn(3, in_channels=1)
    x = torch.randn(2, 1, 8, 8, 8, dtype=torch.float64)
    with pytest.raises(
        ValueError, match=r"interpolate\(attributions, inputs.shape\[2:\], 'trilinear'\)"
    ):
        deletion_auc(model, x, torch.rand(2, 1, 2, 2, 2))
    with pytest.raises(ValueError, match="3 examples"):
        deletion_auc(model, x, torch.rand(3, 1, 8, 8, 8))
    with pytest.raises(ValueError, match="same number of dims"):
        deletion_auc(model, x, torch.rand(2, 8, 8, 8))
    with pytest.raises(ValueError, match="4 channels"):
        deletion_auc(model, x, torch.rand(2, 4, 8, 8, 8))
    with pytest.raises(ValueError, match="n_steps must be >= 1, got 0"):
        insertion_auc(model, x, x, n_steps=0)
    with pytest.raises(TypeError, match="n_steps"):
        insertion_auc(model, x, x, n_steps=2.5)  # type: ignore[arg-type]
    with pytest.raises(
        ValueError, match="score must be 'probability', 'logit', 'sigmoid' or 'correct', got 'prob'"
    ):
        deletion_auc(model, x, x, score="prob")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_examples_per_batch must be >= 1"):
        deletion_auc(model, x, x, max_examples_per_batch=0)
    with pytest.raises(ValueError, match="does not broadcast"):
        deletion_auc(model, x, x, baselines=torch.zeros(3, 1, 8, 8, 8))
    with pytest.raises(TypeError, match="baselines must be a number"):
        deletion_auc(model, x, x, baselines="zeros")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="out of range"):
        deletion_auc(model, x, x, target=7)
    with pytest.raises(ValueError, match="NaN"):
        deletion_auc(model, x, torch.full_like(x, float("nan")))


def test_show_progress_gives_the_same_numbers(capsys: pytest.CaptureFixture[str]) -> None:
    x = permuted_values((3, 4), 0)
    quiet = deletion_curve(SumModel(), x, x, 0, n_steps=5, score="logit")
    loud = deletion_curve(
        SumModel(), x, x, 0, n_steps=5, score="logit", show_progress=True, max_examples_per_batch=2
    )
    torch.testing.assert_close(loud.scores, quiet.scores)
    assert "metric forwards" in capsys.readouterr().err


def test_model_unchanged_when_the_call_raises() -> None:
    model = small_cnn(2, in_channels=1)
    before = model_state(model)
    x = torch.randn(1, 1, 8, 8, dtype=torch.float64)
    with pytest.raises(ValueError, match="out of range"):
        deletion_insertion_auc(model, x, x, target=9)
    assert_unchanged(model, before)
