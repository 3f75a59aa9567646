"""The comparison pipeline behind `captum-medcam evaluate`: methods and metrics by name, the
random floor, curves kept for the report, the AOPC-by-regions curve."""

from __future__ import annotations

import re

import pytest
import torch
from captum.attr import LayerGradCam

from captum_medcam.metrics import (
    aopc_curve,
    blur_baseline,
    deletion_auc,
    insertion_curve,
    mean_baseline,
)
from captum_medcam.pipeline import (
    METHODS,
    EvaluationConfig,
    RandomMap,
    _grid_labels,
    build_method,
    compare_methods,
)
from tests.conftest import assert_unchanged, model_state, small_cnn

# The networks here are tiny and barely trained: their curves are flat, and the library rightly
# says so. These tests check the command's plumbing, not the metrics' power (that is
# tests/metrics/test_metric_sanity.py).
pytestmark = pytest.mark.filterwarnings("ignore::captum_medcam.metrics.DegenerateCurveWarning")


def data(n=4, dims=3, size=8):
    g = torch.Generator().manual_seed(5)
    out = []
    for i in range(n):
        mask = torch.zeros(1, *(size,) * dims, dtype=torch.bool)
        mask[(0, *(slice(1, 4),) * dims)] = bool(i % 2)
        out.append(
            {
                "image": torch.rand(1, *(size,) * dims, generator=g, dtype=torch.float64),
                "label": i % 3,
                "mask": mask,
            }
        )
    return out


def test_random_map_depends_on_the_input_only():
    x = torch.rand(3, 2, 5, 6, dtype=torch.float64)
    a = RandomMap(seed=1).attribute(x)
    assert a.shape == (3, 1, 5, 6) and a.dtype == x.dtype
    assert float(a.min()) >= 0 and float(a.max()) < 1
    torch.testing.assert_close(RandomMap(seed=1).attribute(x[[2, 0]]), a[[2, 0]])
    assert not torch.equal(a[0], a[1])
    assert not torch.equal(RandomMap(seed=2).attribute(x), a)


@pytest.mark.parametrize("dims", [2, 3])
def test_compare_methods_matches_direct_calls(dims):
    """Each method's values are those of the metric on the method's own maps; the curves kept
    for the report are the metric's curves; the model is left as it was."""
    model = small_cnn(dims, in_channels=1)
    before = model_state(model)
    config = EvaluationConfig(
        methods=("gradcam", "random"),
        layer="4",
        metrics=("deletion", "insertion", "aopc", "pointing_game"),
        n_steps=5,
        aopc_grid=2,
        batch_size=3,
        examples=2,
    )
    samples = data(dims=dims)
    comparison = compare_methods(model, samples, config, show_progress=False)
    x = torch.stack([s["image"] for s in samples])
    target = model(x).argmax(1)
    maps = LayerGradCam(model, model[4]).attribute(x, target=target, relu_attributions=True)
    maps = torch.nn.functional.interpolate(
        maps.detach(), x.shape[2:], mode="bilinear" if dims == 2 else "trilinear"
    )
    gradcam = comparison.results["gradcam"]
    torch.testing.assert_close(
        gradcam.values["deletion_auc"], deletion_auc(model, x, maps, target, n_steps=5)
    )
    curve = insertion_curve(model, x, maps, target, n_steps=5)
    for i in range(4):
        torch.testing.assert_close(
            comparison.curves["gradcam"]["insertion_auc"][i], curve.scores[i]
        )
    assert torch.isnan(gradcam.values["pointing_game"][0::2]).all()
    assert gradcam.counts["pointing_game"] == 2
    assert sorted(comparison.examples["gradcam"]) == [0, 1]
    kept = comparison.examples["gradcam"][1]
    assert kept.map.shape == (1, *(8,) * dims) and kept.mask is not None
    torch.testing.assert_close(kept.map, maps[1])
    rows = comparison.rows()
    assert [(r["index"], r["method"]) for r in rows[:3]] == [
        (0, "gradcam"),
        (0, "random"),
        (1, "gradcam"),
    ]
    summary = comparison.summary()
    assert summary["random"]["deletion_auc"]["n"] == 4
    assert_unchanged(model, before)


def test_aopc_by_regions_is_the_running_mean_drop():
    model = small_cnn(2, in_channels=1)
    config = EvaluationConfig(
        methods=("random",), metrics=("aopc",), aopc_grid=3, aopc_regions=9, aopc_baseline="uniform"
    )
    samples = data(n=3, dims=2)
    comparison = compare_methods(model, samples, config, show_progress=False)
    curves = torch.stack([comparison.curves["random"]["aopc"][i] for i in range(3)]).double()
    by_regions = comparison.aopc_by_regions()["random"]
    assert len(by_regions) == 10  # L = 0 .. 9 regions of the 3 x 3 grid
    for L in range(10):
        expected = (curves[:, :1] - curves[:, : L + 1]).sum(1).div(L + 1).mean()
        assert by_regions[L] == pytest.approx(float(expected))
    assert by_regions[-1] == pytest.approx(comparison.summary()["random"]["aopc"]["mean"])
    # the AOPC value is the metric's curve with our seeded uniform noise
    x = torch.stack([s["image"] for s in samples])
    maps = RandomMap(0).attribute(x)
    from captum_medcam.pipeline import _seeded_noise

    direct = aopc_curve(
        model,
        x,
        maps,
        model(x).argmax(1),
        feature_mask=_grid_labels((8, 8), 3, x.device),
        n_regions=9,
        baselines=_seeded_noise(None, 0),
    )
    torch.testing.assert_close(direct.scores.double(), curves)


def test_grid_labels_and_config_errors():
    labels = _grid_labels((4, 6), 2, torch.device("cpu"))
    assert labels[0, 0].tolist() == [[0, 0, 0, 1, 1, 1]] * 2 + [[2, 2, 2, 3, 3, 3]] * 2
    with pytest.raises(
        ValueError, match=r"unknown method 'gradcamm' \(did you mean 'gradcam'\?\); choose from"
    ):
        EvaluationConfig(methods=("gradcamm",))
    with pytest.raises(ValueError, match="unknown metric 'auc'"):
        EvaluationConfig(methods=("random",), metrics=("auc",))
    # a results.csv column, or a spelling of a name, points to the name
    with pytest.raises(ValueError, match=r"'deletion_auc' \(did you mean 'deletion'\? .* column"):
        EvaluationConfig(methods=("random",), metrics=("deletion_auc",))
    for spelt, name in [("grad_cam", "gradcam"), ("gradcam++", "gradcampp"), ("SS-CAM", "sscam")]:
        with pytest.raises(ValueError, match=rf"'{re.escape(spelt)}' \(did you mean '{name}'\?"):
            EvaluationConfig(methods=(spelt,))
    with pytest.raises(ValueError, match=r"unknown metric 'auc'; choose"):  # no guess
        EvaluationConfig(methods=("random",), metrics=("auc",))
    with pytest.raises(
        ValueError,
        match=r"explain a layer: name it with --layer .*\.list_layers\(model, input_shape\)",
    ):
        EvaluationConfig(methods=("scorecam",))
    with pytest.raises(ValueError, match="score must be"):
        EvaluationConfig(methods=("random",), score="prob")
    with pytest.raises(ValueError, match=r"method 'cam' .* --fc-layer"):
        EvaluationConfig(methods=("cam",), layer="layer4")


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_builds_and_runs(name):
    """Every method named in --help runs on a small 3D model (CNN Fixations included: it is a
    plain chain) and gives a map with the input's spatial shape; the model is untouched."""
    model = small_cnn(3, in_channels=1)
    before = model_state(model)
    fc_layer = "7" if name in ("crm", "cam") else None
    config = EvaluationConfig(methods=(name,), layer="4", fc_layer=fc_layer)
    attribution, kwargs = build_method(name, model, config, spatial_dims=3)
    from captum_medcam.evaluation import attribute_batch

    x = torch.rand(2, 1, 8, 8, 8, dtype=torch.float64)
    maps = attribute_batch(attribution, x, torch.tensor([0, 2]), **kwargs)
    assert maps.shape[0] == 2 and maps.shape[2:] == (8, 8, 8)
    assert torch.isfinite(maps).all()
    assert_unchanged(model, before)


@pytest.mark.parametrize(
    ("deletion_baseline", "substrate"),
    [("zero", lambda: 0.0), ("mean", mean_baseline), ("blur", blur_baseline)],
)
def test_deletion_baseline_is_the_metrics_substrate(deletion_baseline, substrate):
    model = small_cnn(3, in_channels=1)
    config = EvaluationConfig(
        methods=("random",), metrics=("deletion",), n_steps=4, deletion_baseline=deletion_baseline
    )
    samples = data(n=3)
    comparison = compare_methods(model, samples, config, show_progress=False)
    x = torch.stack([s["image"] for s in samples])
    expected = deletion_auc(
        model, x, RandomMap(0).attribute(x), model(x).argmax(1), n_steps=4, baselines=substrate()
    )
    torch.testing.assert_close(comparison.results["random"].values["deletion_auc"], expected)


def test_deletion_baseline_must_be_known():
    with pytest.raises(ValueError, match="deletion_baseline must be 'zero', 'mean' or 'blur'"):
        EvaluationConfig(deletion_baseline="noise")


def test_road_and_confidence_metrics_by_name():
    """`--metrics road,road_morf,road_lerf,average_drop,increase_in_confidence`: each column
    holds the metric called directly on the method's maps, with the config's seed."""
    from captum_medcam.metrics import average_drop, increase_in_confidence, road

    model = small_cnn(2, in_channels=1)
    names = ("road", "road_morf", "road_lerf", "average_drop", "increase_in_confidence")
    config = EvaluationConfig(methods=("random",), metrics=names, seed=3, batch_size=2)
    samples = data(n=3, dims=2)
    values = compare_methods(model, samples, config, show_progress=False).results["random"].values
    x = torch.stack([s["image"] for s in samples])
    maps, target = RandomMap(3).attribute(x), model(x).argmax(1)
    for name, order in (("road", "combined"), ("road_morf", "morf"), ("road_lerf", "lerf")):
        expected = road(model, x, maps, target, order=order, generator=3)
        torch.testing.assert_close(values[name], expected)
    torch.testing.assert_close(values["average_drop"], average_drop(model, x, maps, target))
    torch.testing.assert_close(
        values["increase_in_confidence"], increase_in_confidence(model, x, maps, target)
    )
    with pytest.raises(ValueError, match="score='correct'"):
        EvaluationConfig(metrics=("average_drop",), score="correct")
