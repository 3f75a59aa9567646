"""Metrics that tell a good map from a bad one: the AOPC defaults, the degenerate-curve
warning and metric_sanity_check, on SyntheticLesions with a lesion detector whose answer is
known (its logit counts the lesion-bright voxels)."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from captum_medcam.data import SyntheticLesions
from captum_medcam.metrics import (
    DegenerateCurveWarning,
    MetricSanityResult,
    aopc,
    aopc_curve,
    attribution_dice,
    attribution_iou,
    deletion_auc,
    deletion_curve,
    energy_pointing_game,
    insertion_auc,
    metric_sanity_check,
    pointing_game,
    relevance_rank_accuracy,
    uniform_noise_baseline,
)
from tests.conftest import assert_unchanged, model_state

#: Lesions in SyntheticLesions are 0.8 brighter than tissue (~0.3) and distractors (< 0.6).
BRIGHT = 0.8


class BrightVoxelDetector(nn.Module):
    """A lesion detector with a known answer: the logit of class 1 is
    ``gain * (count - threshold)``, ``count`` the (soft) number of voxels brighter than 0.8.
    On clean images the lesion is all the evidence there is; anything bright, such as
    noise drawn from the image's range, reads as lesion."""

    def __init__(self, gain: float, threshold: float) -> None:
        super().__init__()
        self.gain, self.threshold = gain, threshold

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        count = torch.sigmoid((x - BRIGHT) * 50).flatten(1).sum(1)
        z = self.gain * (count - self.threshold)
        return torch.stack([-z, z], 1)


def lesions(dims: int, n: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` lesion examples of SyntheticLesions, float64: 24^3 volumes, or in 2D the 32x32
    axial slice through the lesion's largest cross-section. Returns (inputs, masks)."""
    data = SyntheticLesions(2 * n, size=32 if dims == 2 else 24, seed=3)
    images, masks = [], []
    for i in range(1, 2 * n, 2):  # odd indices have a lesion
        item = data[i]
        image, mask = item["image"].double(), item["mask"]
        if dims == 2:
            z = int(mask[0].flatten(1).sum(1).argmax())
            image, mask = image[:, z], mask[:, z]
        images.append(image)
        masks.append(mask)
    return torch.stack(images), torch.stack(masks)


def detector(masks: torch.Tensor) -> BrightVoxelDetector:
    """The logit grows with the share of the (mean) lesion that is bright: ``10 * (share -
    1/2)``, so deleting part of the lesion lowers the score part of the way."""
    lesion = float(masks.flatten(1).sum(1).float().mean())
    return BrightVoxelDetector(10.0 / lesion, lesion / 2).double().eval()


def trigger_happy() -> BrightVoxelDetector:
    """Four bright voxels anywhere make a lesion: like the demo's CNN, it reads uniform
    noise over the image's range (a third of it brighter than the lesion threshold) as
    lesion, so with that noise the score saturates at the first perturbed region."""
    return BrightVoxelDetector(5.0, 3.0).double().eval()


def random_map(x: torch.Tensor, seed: int = 0) -> torch.Tensor:
    return torch.rand(x.shape, generator=torch.Generator().manual_seed(seed), dtype=x.dtype)


def test_the_detectors_see_the_lesion(dims: int) -> None:
    x, masks = lesions(dims)
    healed = torch.where(masks, x.new_tensor(0.3), x)
    for model in (detector(masks), trigger_happy()):
        assert bool((model(x).argmax(1) == 1).all())
        assert bool((model(healed).argmax(1) == 0).all())


def test_every_metric_ranks_the_true_mask_above_a_random_map_with_the_defaults(dims: int) -> None:
    x, masks = lesions(dims)
    model = detector(masks)
    truth = masks.to(x.dtype)
    randoms = [random_map(x, seed) for seed in range(3)]
    for metric, lower_is_better in [(deletion_auc, True), (insertion_auc, False), (aopc, False)]:
        good = float(metric(model, x, truth, 1).mean())
        bad = float(torch.stack([metric(model, x, r, 1) for r in randoms]).mean())
        assert (good < bad - 0.1) if lower_is_better else (good > bad + 0.1), (metric, good, bad)
    for metric in (pointing_game, energy_pointing_game, relevance_rank_accuracy):
        good = float(metric(truth, masks).mean())
        bad = float(torch.stack([metric(r, masks) for r in randoms]).mean())
        assert good > bad + 0.1, (metric, good, bad)
    for metric in (attribution_iou, attribution_dice):
        good = float(metric(truth, masks, threshold=0.5).mean())
        bad = float(torch.stack([metric(r, masks, threshold=0.5) for r in randoms]).mean())
        assert good > bad + 0.1, (metric, good, bad)


def test_uniform_noise_saturates_and_warns(dims: int) -> None:
    # Samek's uniform noise over the image's range is bright where the lesion is bright:
    # the detector fires on the first perturbed region whatever the order.
    x, masks = lesions(dims)
    model = trigger_happy()
    values = {}
    for name, maps in [("truth", masks.to(x.dtype)), ("random", random_map(x))]:
        for order in ("morf", "lerf"):
            noise = uniform_noise_baseline(generator=torch.Generator().manual_seed(0))
            with pytest.warns(DegenerateCurveWarning, match="`baselines`") as record:
                values[name, order] = aopc(model, x, maps, 1, baselines=noise, order=order)
            assert len(record) == 1  # once per call, not per example or per step
            assert record[0].filename == __file__  # it points at the caller's line
    for key in values:
        torch.testing.assert_close(values[key], values["truth", "morf"], rtol=0, atol=1e-4)
    with warnings.catch_warnings():  # the same detector with the default perturbation
        warnings.simplefilter("error")
        assert bool((aopc(model, x, masks.to(x.dtype), 1) > 0.1).all())


def test_the_warning_names_the_curve_and_the_option_of_a_combined_call() -> None:
    from captum_medcam.metrics import deletion_insertion_auc

    x, _ = lesions(3)
    constant = nn.Sequential(nn.Flatten(), nn.Linear(x[0].numel(), 2)).double().eval()
    with torch.no_grad():
        constant[1].weight.zero_()  # the score ignores the input: no curve can inform
    with pytest.warns(DegenerateCurveWarning) as record:
        deletion_insertion_auc(constant, x, random_map(x), 1, n_steps=8)
    assert len(record) == 1
    text = str(record[0].message)
    assert "deletion and insertion curves" in text
    assert "`deletion_baselines` / `insertion_baselines`" in text


def test_score_correct_that_never_flips_warns() -> None:
    x, masks = lesions(2)
    model = detector(masks)
    # deleting into a bright substrate keeps the prediction at "lesion" at every step
    with pytest.warns(DegenerateCurveWarning, match="score='correct'"):
        values = deletion_auc(
            model, x, masks.to(x.dtype), 1, n_steps=10, baselines=1.0, score="correct"
        )
    torch.testing.assert_close(values, torch.ones_like(values))


def test_silent_for_a_perfect_map_whose_first_step_removes_the_lesion(dims: int) -> None:
    # The true mask's deletion curve drops to its floor at the first step and stays there,
    # like a saturated curve; deleting the least relevant voxels first does not, so no warning.
    x, masks = lesions(dims)
    model = detector(masks)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        curve = deletion_curve(model, x, masks.to(x.dtype), 1, n_steps=4)
    tail = curve.scores[:, 1:]
    assert torch.allclose(tail, tail[:, :1], atol=1e-3)  # flat after the first step
    assert bool((curve.scores[:, 0] - curve.scores[:, 1] > 0.9).all())


def test_silent_for_the_defaults_and_for_curves_too_short_to_judge(dims: int) -> None:
    x, masks = lesions(dims)
    model = detector(masks)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for maps in (masks.to(x.dtype), random_map(x)):
            deletion_auc(model, x, maps, 1)
            insertion_auc(model, x, maps, 1)
            aopc(model, x, maps, 1)
            aopc(model, x, maps, 1, order="lerf")
        # one perturbed point: MoRF and LeRF cannot be told apart, nothing is judged
        noise = uniform_noise_baseline(generator=torch.Generator().manual_seed(0))
        aopc_curve(model, x, masks.to(x.dtype), 1, region_size=4, n_regions=1, baselines=noise)


def test_sanity_check_separates_with_the_defaults_and_not_with_uniform_noise(dims: int) -> None:
    x, masks = lesions(dims)
    result = metric_sanity_check(
        {
            "deletion_auc": "deletion_auc",
            "insertion_auc": insertion_auc,
            "aopc": "aopc",
            "pointing_game": "pointing_game",
            "relevance_rank_accuracy": "relevance_rank_accuracy",
        },
        detector(masks),
        x,
        masks=masks,
        target=1,
    )
    assert isinstance(result, MetricSanityResult)
    assert set(result.verdicts.values()) == {"separates"}
    assert not any(row.degenerate for row in result.rows.values())
    assert result["aopc"].beats_random == 1.0
    assert result["aopc"].random.shape == (3, x.shape[0])
    deletion = result["deletion_auc"]
    assert not deletion.higher_is_better
    assert deletion.reference_mean < deletion.random_mean < deletion.inverted_mean
    assert deletion.beats_inverted == 1.0

    noise = uniform_noise_baseline(generator=torch.Generator().manual_seed(0))
    saturated = metric_sanity_check(
        {"aopc": "aopc", "aopc, uniform noise": ("aopc", {"baselines": noise})},
        trigger_happy(),
        x,
        masks=masks,
        target=1,
    )
    assert saturated.verdicts == {"aopc": "separates", "aopc, uniform noise": "does not separate"}
    row = saturated["aopc, uniform noise"]
    assert row.degenerate and row.beats_random == 0.0
    table = str(saturated)
    assert table.splitlines()[0].startswith("| metric | better | reference | random (3 seeds)")
    assert "| aopc, uniform noise | higher | 0.000 | 0.000 | 0.000 | 0% | does not separate |" in (
        table
    )
    assert "degenerate curves (DegenerateCurveWarning): aopc, uniform noise" in table


def test_sanity_check_with_reference_maps_and_random_maps_from_a_local_generator() -> None:
    x, masks = lesions(2)
    model = detector(masks)
    state = torch.random.get_rng_state()
    first = metric_sanity_check(
        ["deletion_auc", ("aopc", {"order": "lerf", "region_fraction": 1.0})],
        model,
        x,
        reference=masks.to(x.dtype) * 2.0,
        target=1,
        n_random=2,
        generator=5,
    )
    assert torch.equal(torch.random.get_rng_state(), state)  # the global RNG is untouched
    again = metric_sanity_check(
        "deletion_auc",
        model,
        x,
        reference=masks.to(x.dtype) * 2.0,
        target=1,
        n_random=2,
        generator=torch.Generator().manual_seed(5),
    )
    torch.testing.assert_close(first["deletion_auc"].random, again["deletion_auc"].random)
    assert not first["aopc"].higher_is_better  # LeRF: small drops are the good side
    assert first.verdicts["deletion_auc"] == "separates"


def test_sanity_check_with_a_metric_of_ones_own() -> None:
    x, masks = lesions(2)

    def inside_share(attributions, masks):
        a = attributions.flatten(1)
        return (a * masks.flatten(1)).sum(1) / a.sum(1)

    result = metric_sanity_check(
        {"share": inside_share}, None, x, masks=masks, higher_is_better={"share": True}
    )
    assert result.verdicts == {"share": "separates"}
    with pytest.raises(ValueError, match="higher_is_better=\\{'share'"):
        metric_sanity_check({"share": inside_share}, None, x, masks=masks)


def test_sanity_check_errors() -> None:
    x, masks = lesions(2)
    model = detector(masks)
    with pytest.raises(ValueError, match=r"pass masks .* or reference maps"):
        metric_sanity_check("deletion_auc", model, x)
    with pytest.raises(ValueError, match="unknown metric 'dauc'"):
        metric_sanity_check("dauc", model, x, masks=masks)
    with pytest.raises(ValueError, match="'pointing_game' compares maps with masks"):
        metric_sanity_check("pointing_game", model, x, reference=masks.to(x.dtype))
    with pytest.raises(ValueError, match="'aopc' perturbs the inputs: pass forward_func"):
        metric_sanity_check("aopc", None, x, masks=masks)
    with pytest.raises(ValueError, match=r"min_win_rate must be in \(0, 1\], got 1.5"):
        metric_sanity_check("aopc", model, x, masks=masks, min_win_rate=1.5)
    with pytest.raises(ValueError, match="two metrics are named 'aopc'"):
        metric_sanity_check(["aopc", ("aopc", {"order": "lerf"})], model, x, masks=masks)
    with pytest.raises(ValueError, match="masks of shape \\(4, 1, 8, 8\\) do not match"):
        metric_sanity_check("aopc", model, x, masks=masks[:, :, :8, :8])
    with pytest.raises(TypeError, match="cannot tell how to call it"):
        metric_sanity_check(
            {"f": lambda a, m: a.mean()}, model, x, masks=masks, higher_is_better={"f": True}
        )
    with pytest.raises(TypeError, match="one value per example, a tensor of shape \\(4,\\)"):
        metric_sanity_check(
            {"f": lambda attributions, masks: attributions.mean()},
            model,
            x,
            masks=masks,
            higher_is_better={"f": True},
        )
    with pytest.raises(TypeError, match=r"generator must be an int seed or a torch.Generator"):
        metric_sanity_check("aopc", model, x, masks=masks, generator=1.5)  # type: ignore[arg-type]


def test_sanity_check_leaves_the_model_alone_and_passes_other_warnings_on() -> None:
    x, masks = lesions(2)
    model = detector(masks).train()
    before = model_state(model)
    with pytest.warns(UserWarning, match="training mode") as record:
        result = metric_sanity_check("deletion_auc", model, x, masks=masks, target=1, n_random=1)
    assert_unchanged(model, before)
    assert result.verdicts == {"deletion_auc": "separates"}
    assert all(w.filename == __file__ for w in record)
