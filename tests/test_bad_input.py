"""Every public entry point refuses bad arguments with a ValueError or TypeError, up front.

A property-based test: for each entry point, hypothesis replaces one argument of a good
call by a bad value (wrong type, NaN/inf, zero or negative size, wrong shape, unknown
choice) and the call must raise ``ValueError`` or ``TypeError`` (never another type)
naming that argument where it is one of ours, and leave the model exactly as it was
(parameters and buffers bitwise, training flags, no hook). The examples are derandomized
so CI is reproducible.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import captum_medcam as cm
from captum_medcam import metrics as M
from captum_medcam.data import SyntheticLesions
from captum_medcam.integrations.monai import Attributiond, get_layer, list_layers
from tests.conftest import assert_unchanged, gap_linear, model_state, small_cnn

SETTINGS = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

MODEL = small_cnn(3, in_channels=1)
GAP = gap_linear(3, in_channels=1)
X = torch.randn(2, 1, 8, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
MAPS = X.abs()
MASKS = torch.zeros(2, 1, 8, 8, 8, dtype=torch.bool)
MASKS[:, :, 2:5, 2:5, 2:5] = True
TARGET = torch.tensor([0, 2])


def _with(t: torch.Tensor, value: float) -> torch.Tensor:
    t = t.clone()
    t.view(-1)[3] = value
    return t


# ---------------------------------------------------------------------------------------
# Bad values, by kind
# ---------------------------------------------------------------------------------------
NAN_INF = st.sampled_from([math.nan, math.inf, -math.inf])
JUNK = st.one_of(
    st.text(max_size=4), st.lists(st.integers(), max_size=2), st.just(object()), st.just({})
)


def bad_int(low: int = 1) -> st.SearchStrategy[Any]:
    """Below ``low``, a float (also a whole one), a string, a bool."""
    return st.one_of(
        st.integers(max_value=low - 1),
        st.floats(allow_nan=True),
        st.booleans(),
        st.text(max_size=3),
        NAN_INF,
    )


def bad_float(
    low: float | None = None,
    high: float | None = None,
    *,
    low_ok: bool = True,
    high_ok: bool = True,
) -> st.SearchStrategy[Any]:
    """NaN/inf, strings, bools, and numbers outside ``[low, high]`` (a bound is bad itself
    when not ``*_ok``)."""
    options = [NAN_INF, st.text(max_size=3), st.booleans(), JUNK]
    if low is not None:
        options.append(st.floats(max_value=low, exclude_max=low_ok, allow_nan=False))
    if high is not None:
        options.append(st.floats(min_value=high, exclude_min=high_ok, allow_nan=False))
    return st.one_of(*options)


BAD_FLAG = st.one_of(st.text(max_size=5), st.integers(), st.none(), st.floats(), JUNK)


def bad_choice(*choices: str) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.text(max_size=8).filter(lambda s: s not in choices), st.integers(), st.none(), JUNK
    )


BAD_INPUTS = st.sampled_from(
    [
        _with(X, math.nan),
        _with(X, math.inf),
        X.long(),
        X[0, 0, 0],  # 2-D
        X.unsqueeze(0),  # 6-D
        X[:0],  # empty
        [X],
        "x",
        None,
        X.numpy(),
        X.to(torch.complex128),
    ]
)
BAD_MAPS = st.sampled_from(
    [_with(MAPS, math.nan), _with(MAPS, -math.inf), MAPS.long(), MAPS[:1], MAPS[..., :4], "a", None]
)
BAD_MASKS = st.sampled_from(
    [MASKS.float() * 2, MASKS[0], MASKS[..., :4], "m", None, MASKS.to(torch.complex64)]
)
BAD_TARGET = st.one_of(
    st.text(max_size=3),
    st.floats(),
    st.booleans(),
    st.integers(min_value=3, max_value=10**6),
    st.integers(max_value=-4),
    st.just([0, 1, 2]),  # one per example is 2
    st.just(torch.tensor([0.5, 1.0])),
    st.just(torch.tensor([0, 1, 2])),
    st.just(JUNK),
)
BAD_BASELINE = st.one_of(
    NAN_INF,
    st.text(max_size=3),
    st.booleans(),
    st.just(_with(X, math.nan)),
    st.just(torch.zeros(3, 3, dtype=torch.float64)),
    st.just(torch.tensor([math.inf])),
    st.just([0.0]),
)
#: Score-CAM's channel budget: an int >= 1 or a fraction in (0, 1] (None is exact).
BAD_MAX_CHANNELS = st.one_of(
    st.integers(max_value=0),
    st.floats().filter(lambda v: not 0 < v <= 1),
    st.booleans(),
    JUNK,
)
BAD_GENERATOR = st.one_of(
    st.floats(), st.text(max_size=3), st.none(), st.integers(max_value=-1), st.booleans()
)
BAD_LAYER = st.one_of(
    st.none(),
    st.text(max_size=5),
    st.integers(),
    st.just(nn.Conv3d(1, 1, 1).eval()),  # not in the model: not reached
)
BAD_INTERPOLATE = st.one_of(
    st.sampled_from(["bilinear", "linear", "bicubic", "cubic"]), st.integers(), JUNK
)


CURVE = M.PerturbationCurve(torch.linspace(0, 1, 3), torch.tensor([[1.0, 0.4, 0.1]]))
RESULT = M.RandomizationResult(
    layers=("7", "3"),
    mode="cascading",
    similarity={"spearman": torch.tensor([[0.5, 0.4], [0.1, 0.0]])},
    original=torch.zeros(2, 1, 4, 4),
    seeds=(1, 2),
)


def _plot(name: str, **kw: Any) -> Any:
    """Draw on an Axes of a Figure made without pyplot (so no figure is left open)."""
    from matplotlib.figure import Figure

    from captum_medcam import visualization

    if name != "plot_slices":
        kw["ax"] = Figure().subplots()
    return getattr(visualization, name)(**kw)


# ---------------------------------------------------------------------------------------
# Entry points: a call, its good arguments and a bad-value strategy per argument
# ---------------------------------------------------------------------------------------
def _attribute(cls: type, **kw: Any) -> Callable[..., Any]:
    def call(
        forward_func: Any = MODEL, layer: Any = MODEL[4], device_ids: Any = None, **args: Any
    ) -> Any:
        return cls(forward_func, layer, device_ids, **kw).attribute(**args)

    return call


METHOD_ARGS = {"inputs": BAD_INPUTS, "target": BAD_TARGET}
LAYER_ARGS = {
    "layer": BAD_LAYER,
    "forward_func": JUNK,
    "attribute_to_layer_input": BAD_FLAG,
    "device_ids": st.one_of(st.integers(), st.text(max_size=2), st.just([-1]), st.just([0.0])),
}
GRAD_ND = {
    "relu_attributions": BAD_FLAG,
    "upsample": BAD_FLAG,
    "align_corners": BAD_FLAG,
    "interpolate_mode": BAD_INTERPOLATE,
}
GOOD = {"inputs": X, "target": TARGET}

ENTRY_POINTS: dict[str, tuple[Callable[..., Any], dict[str, Any], dict[str, Any]]] = {
    "ScoreCAM": (
        _attribute(cm.ScoreCAM),
        GOOD,
        {
            **METHOD_ARGS,
            **LAYER_ARGS,
            **GRAD_ND,
            "baselines": BAD_BASELINE,
            "perturbations_per_eval": bad_int(),
            "score": bad_choice("probability", "logit"),
            "normalize_at": bad_choice("input", "layer"),
            "channel_softmax": BAD_FLAG,
            "show_progress": BAD_FLAG,
            "max_channels": BAD_MAX_CHANNELS,
            "channel_criterion": bad_choice("mean", "variance"),
        },
    ),
    "ScoreCAM3D": (
        _attribute(cm.ScoreCAM3D),
        GOOD,
        {
            **METHOD_ARGS,
            **LAYER_ARGS,
            "baselines": BAD_BASELINE,
            "relu_attributions": BAD_FLAG,
            "max_channels": BAD_MAX_CHANNELS,
        },
    ),
    "GradCAM3D": (
        _attribute(cm.GradCAM3D),
        GOOD,
        {**METHOD_ARGS, **LAYER_ARGS, "relu_attributions": BAD_FLAG},
    ),
    "GradCAM": (_attribute(cm.GradCAM), GOOD, {**METHOD_ARGS, **LAYER_ARGS, **GRAD_ND}),
    "GuidedGradCAM3D": (
        _attribute(cm.GuidedGradCAM3D),
        GOOD,
        {**METHOD_ARGS, **LAYER_ARGS, "interpolate_mode": BAD_INTERPOLATE},
    ),
    "GradCAMPlusPlus": (
        _attribute(cm.GradCAMPlusPlus),
        GOOD,
        {**METHOD_ARGS, **LAYER_ARGS, **GRAD_ND, "exp_score": BAD_FLAG},
    ),
    "LayerCAM": (_attribute(cm.LayerCAM), GOOD, {**METHOD_ARGS, **LAYER_ARGS, **GRAD_ND}),
    "HiResCAM3D": (_attribute(cm.HiResCAM3D), GOOD, {**METHOD_ARGS, **LAYER_ARGS}),
    "XGradCAM": (_attribute(cm.XGradCAM), GOOD, {**METHOD_ARGS, **LAYER_ARGS, **GRAD_ND}),
    "CAM": (
        lambda forward_func=MODEL, layer=MODEL[4], device_ids=None, fc_layer=MODEL[7], **kw: cm.CAM(
            forward_func, layer, device_ids, fc_layer=fc_layer
        ).attribute(**kw),
        GOOD,
        {
            **METHOD_ARGS,
            **{k: v for k, v in LAYER_ARGS.items() if k != "attribute_to_layer_input"},
            **GRAD_ND,
            "fc_layer": st.sampled_from([MODEL[3], MODEL[4], "fc", None]),
        },
    ),
    "EigenCAM": (
        _attribute(cm.EigenCAM),
        GOOD,
        {
            **METHOD_ARGS,
            **LAYER_ARGS,
            **GRAD_ND,
            "center": BAD_FLAG,
            "sign": bad_choice("channel_sum", "largest_entry"),
        },
    ),
    "EigenGradCAM3D": (
        _attribute(cm.EigenGradCAM3D),
        GOOD,
        {
            **METHOD_ARGS,
            **LAYER_ARGS,
            "center": BAD_FLAG,
            "sign": bad_choice("channel_sum", "largest_entry"),
            "relu_attributions": BAD_FLAG,
        },
    ),
    "KPCACAM": (
        _attribute(cm.KPCACAM),
        GOOD,
        {
            **METHOD_ARGS,
            **LAYER_ARGS,
            **GRAD_ND,
            "kernel": bad_choice("linear", "poly", "rbf", "sigmoid", "cosine"),
            "gamma": bad_float(low=0),
            "degree": bad_float(low=0),
            "coef0": bad_float(),
            "center": BAD_FLAG,
            "sign": bad_choice("channel_sum", "largest_entry"),
        },
    ),
    "FEM3D": (
        _attribute(cm.FEM3D),
        GOOD,
        {
            **METHOD_ARGS,
            **LAYER_ARGS,
            "k": st.one_of(bad_float(low=0), st.floats(min_value=math.sqrt(63), max_value=1e6)),
            "variant": bad_choice("paper", "pytorch-grad-cam"),
            "relu_attributions": BAD_FLAG,
        },
    ),
    "GradCAMElementWise3D": (
        _attribute(cm.GradCAMElementWise3D),
        GOOD,
        {**METHOD_ARGS, **LAYER_ARGS, "relu_attributions": BAD_FLAG},
    ),
    "ShapleyCAM": (
        _attribute(cm.ShapleyCAM),
        GOOD,
        {
            **METHOD_ARGS,
            **LAYER_ARGS,
            **GRAD_ND,
            "score": bad_choice("rest", "logit", "probability"),
        },
    ),
    "FinerCAM": (
        _attribute(cm.FinerCAM),
        GOOD,
        {
            **METHOD_ARGS,
            **LAYER_ARGS,
            **GRAD_ND,
            "alpha": bad_float(low=0),
            "num_references": bad_int(),
            "reference_weights": bad_choice("probability", "uniform"),
        },
    ),
    "FinerCAM base_method": (
        lambda base_method="x", **kw: cm.FinerCAM(MODEL, MODEL[4], base_method=base_method),
        {"base_method": "layercam"},
        {"base_method": bad_choice("gradcam", "gradcampp", "layercam", "hirescam", "xgradcam")},
    ),
    "SmoothGradCAMPlusPlus": (
        _attribute(cm.SmoothGradCAMPlusPlus),
        {**GOOD, "nt_samples": 2},
        {
            **METHOD_ARGS,
            **LAYER_ARGS,
            **GRAD_ND,
            "nt_samples": bad_int(),
            "stdevs": bad_float(low=0),
            "generator": BAD_GENERATOR,
            "exp_score": BAD_FLAG,
        },
    ),
    "FullGrad": (
        lambda forward_func=MODEL, **kw: cm.FullGrad(forward_func).attribute(**kw),
        GOOD,
        {
            **METHOD_ARGS,
            "forward_func": st.one_of(JUNK, st.just(lambda x: MODEL(x))),
            "normalize": bad_choice("sample", "channel"),
            "align_corners": BAD_FLAG,
            "interpolate_mode": BAD_INTERPOLATE,
        },
    ),
    "FullGrad3D": (
        lambda **kw: cm.FullGrad3D(MODEL).attribute(**kw),
        GOOD,
        {**METHOD_ARGS, "normalize": bad_choice("sample", "channel")},
    ),
    "CRM": (
        _attribute(cm.CRM),
        GOOD,
        {
            **METHOD_ARGS,
            **LAYER_ARGS,
            "baselines": BAD_BASELINE,
            "perturbations_per_eval": bad_int(),
            "upsample": BAD_FLAG,
            "interpolate_mode": BAD_INTERPOLATE,
            "show_progress": BAD_FLAG,
        },
    ),
    "CRM3D fast path": (
        lambda fc_layer=GAP[3], **kw: cm.CRM3D(GAP, GAP[0], fc_layer=fc_layer).attribute(**kw),
        GOOD,
        {**METHOD_ARGS, "baselines": BAD_BASELINE, "fc_layer": st.sampled_from([GAP[0], "fc"])},
    ),
    "AblationCAM": (
        _attribute(cm.AblationCAM),
        GOOD,
        {
            **METHOD_ARGS,
            **LAYER_ARGS,
            **GRAD_ND,
            "baselines": BAD_BASELINE,
            "perturbations_per_eval": bad_int(),
            "score": bad_choice("probability", "logit"),
            "relative": BAD_FLAG,
            "max_channels": BAD_MAX_CHANNELS,
            "channel_criterion": bad_choice("mean", "variance"),
            "show_progress": BAD_FLAG,
        },
    ),
    "SSCAM3D": (
        _attribute(cm.SSCAM3D),
        {**GOOD, "num_samples": 2},
        {
            **METHOD_ARGS,
            **LAYER_ARGS,
            "num_samples": bad_int(),
            "std": bad_float(low=0.0),
            "generator": st.one_of(st.integers(max_value=-1), st.booleans(), st.floats(), JUNK),
            "baselines": BAD_BASELINE,
            "channel_softmax": BAD_FLAG,
            "normalize_at": bad_choice("input", "layer"),
            "upsample": st.just(True),  # fixed in 3D: a TypeError
        },
    ),
    "ISCAM": (
        _attribute(cm.ISCAM),
        {**GOOD, "num_samples": 2},
        {
            **METHOD_ARGS,
            **LAYER_ARGS,
            **GRAD_ND,
            "num_samples": bad_int(),
            "perturbations_per_eval": bad_int(),
            "score": bad_choice("probability", "logit"),
            "channel_softmax": BAD_FLAG,
        },
    ),
    "CNNFixations": (
        lambda forward_func=MODEL, **kw: cm.CNNFixations(forward_func).attribute(**kw),
        GOOD,
        {
            **METHOD_ARGS,
            "forward_func": st.one_of(JUNK, st.just(lambda x: MODEL(x))),
            "sigma": bad_float(low=0, low_ok=False),
            "outlier_radius": bad_float(low=0),
            "outlier_fraction": bad_float(low=0, high=1, high_ok=False),
        },
    ),
    "aopc": (
        partial(M.aopc, MODEL),
        {"inputs": X, "attributions": MAPS, "target": TARGET, "region_size": 4},
        {
            **METHOD_ARGS,
            "attributions": BAD_MAPS,
            "region_size": st.one_of(bad_int(), st.just((4, 4)), st.just((4, 4, 9))),
            "n_regions": st.one_of(bad_int(), st.integers(min_value=9)),
            "order": bad_choice("morf", "lerf"),
            "reduction": bad_choice("mean", "sum"),
            "baselines": BAD_BASELINE,
            "region_fraction": bad_float(low=0, high=1, low_ok=False),
            "score": bad_choice("probability", "logit", "correct"),
            "max_examples_per_batch": bad_int(),
            "show_progress": BAD_FLAG,
        },
    ),
    "deletion_insertion_auc": (
        partial(M.deletion_insertion_auc, MODEL),
        {"inputs": X, "attributions": MAPS, "target": TARGET, "n_steps": 4},
        {
            **METHOD_ARGS,
            "attributions": BAD_MAPS,
            "n_steps": bad_int(),
            "deletion_baselines": BAD_BASELINE,
            "insertion_baselines": st.one_of(BAD_BASELINE, st.just(lambda x: x * math.nan)),
            "score": bad_choice("probability", "logit", "correct"),
            "max_examples_per_batch": bad_int(),
        },
    ),
    "insertion_curve": (
        partial(M.insertion_curve, MODEL),
        {"inputs": X, "attributions": MAPS, "target": TARGET, "n_steps": 4},
        {"baselines": BAD_BASELINE, "show_progress": BAD_FLAG, "n_steps": bad_int()},
    ),
    "region_labels": (M.region_labels, {"inputs": X, "region_size": 3}, {"region_size": bad_int()}),
    "blur_baseline": (
        M.blur_baseline,
        {},
        {
            "kernel_size": st.one_of(bad_int(), st.sampled_from([2, 4, 10])),
            "sigma": bad_float(low=0),
            "padding_mode": bad_choice("zeros", "reflect", "replicate"),
        },
    ),
    "gaussian_blur": (
        M.gaussian_blur,
        {"inputs": X, "kernel_size": 3, "sigma": 1.0},
        {"sigma": bad_float(low=0), "kernel_size": bad_int()},
    ),
    "uniform_noise_baseline": (
        M.uniform_noise_baseline,
        {"low": 0.0, "high": 1.0},
        {
            "low": st.one_of(bad_float(), st.floats(min_value=1.0)),
            "high": bad_float(high=0.0, high_ok=False),
            "generator": BAD_GENERATOR,
        },
    ),
    "normal_noise_baseline": (
        M.normal_noise_baseline,
        {},
        {"mean": bad_float(), "std": bad_float(low=0, low_ok=False), "generator": BAD_GENERATOR},
    ),
    "pointing_game": (
        M.pointing_game,
        {"attributions": MAPS, "masks": MASKS},
        {
            "attributions": BAD_MAPS,
            "masks": BAD_MASKS,
            "tolerance": bad_float(low=0, low_ok=False),
            "empty_mask": bad_choice("raise", "nan"),
        },
    ),
    "attribution_iou threshold": (
        M.attribution_iou,
        {"attributions": MAPS, "masks": MASKS, "threshold": 0.5},
        {
            "threshold": st.one_of(
                NAN_INF, st.text(max_size=3), st.just(torch.tensor([math.nan, 1.0]))
            ),
            "masks": BAD_MASKS,
        },
    ),
    "attribution_dice top_k": (
        M.attribution_dice,
        {"attributions": MAPS, "masks": MASKS, "top_k_percent": 10.0},
        {"top_k_percent": bad_float(low=0, high=100, low_ok=False)},
    ),
    "energy_pointing_game": (
        M.energy_pointing_game,
        {"attributions": MAPS, "masks": MASKS},
        {"attributions": BAD_MAPS, "masks": BAD_MASKS},
    ),
    "structural_similarity": (
        M.structural_similarity,
        {"a": MAPS, "b": MAPS},
        {
            "b": BAD_MAPS.filter(lambda v: not isinstance(v, torch.Tensor) or v.isfinite().all()),
            "data_range": bad_float(low=0, low_ok=False),
            "window_size": st.one_of(bad_int(), st.sampled_from([2, 4])),
            "sigma": bad_float(low=0, low_ok=False),
            "k1": bad_float(low=0),
        },
    ),
    "spearman_rank_correlation": (
        M.spearman_rank_correlation,
        {"a": MAPS, "b": MAPS},
        {"a": st.sampled_from([MAPS.long(), MAPS[:1], "a", None])},
    ),
    "model_parameter_randomization": (
        partial(M.model_parameter_randomization, MODEL, cm.LayerCAM),
        {"inputs": X, "target": TARGET, "layer": "4", "layers": ["7"], "upsample": True},
        {
            "inputs": BAD_INPUTS,
            "target": st.one_of(st.text(max_size=3), st.floats(), st.booleans()),
            "mode": bad_choice("cascading", "independent"),
            "generator": BAD_GENERATOR,
            "max_examples_per_batch": bad_int(),
            "layers": st.one_of(st.just([]), st.just([7]), st.just(["nope"]), st.integers()),
            "absolute": BAD_FLAG,
            "similarity": st.one_of(st.just([]), st.just(["pearson"]), st.just([3])),
            "reinit": st.one_of(st.integers(), st.text(max_size=2)),
            "layer": st.one_of(st.integers(), st.just(MODEL[4])),
        },
    ),
    "correctly_classified": (
        partial(M.correctly_classified, MODEL),
        {"inputs": X, "labels": TARGET},
        {"inputs": BAD_INPUTS, "max_examples_per_batch": bad_int()},
    ),
    "summarize": (
        M.summarize,
        {"values": torch.tensor([0.1, 0.2])},
        {
            "values": st.sampled_from([[0.1], "v", None, torch.zeros(0)]),
            "where": st.sampled_from(
                [[True, False], torch.ones(2), torch.ones(3, dtype=torch.bool)]
            ),
            "correction": bad_int(0),
        },
    ),
    "evaluate_dataset": (
        lambda **kw: cm.evaluate_dataset(
            MODEL,
            cm.LayerCAM3D(MODEL, MODEL[4]),
            [{"image": X[i], "label": i} for i in range(2)],
            **kw,
        ),
        {"metrics": {"deletion": partial(M.deletion_auc, n_steps=2)}, "show_progress": False},
        {
            "batch_size": bad_int(),
            "num_workers": bad_int(0),
            "target": st.one_of(
                st.text(max_size=4).filter(lambda s: s not in ("pred", "label")), st.floats()
            ),
            "metrics": st.one_of(st.just({}), st.just([M.aopc]), st.just({"m": 3})),
            "attribute_kwargs": st.one_of(st.just([1]), st.just({1: 2}), st.text(max_size=2)),
            "show_progress": BAD_FLAG,
            "device": st.one_of(st.integers(), st.just(object())),
        },
    ),
    "Attributiond": (
        lambda **kw: Attributiond("image", cm.LayerCAM3D(MODEL, MODEL[4]), **kw)({"image": X[0]}),
        {"target": 1},
        {
            "target": st.one_of(st.floats(), st.booleans(), st.integers(min_value=3)),
            "attribute_kwargs": st.one_of(st.just([1]), st.just({1: 2})),
            "allow_missing_keys": BAD_FLAG,
        },
    ),
    "AttributionHandler": (
        lambda **kw: __import__(
            "captum_medcam.integrations.monai", fromlist=["AttributionHandler"]
        ).AttributionHandler(cm.LayerCAM3D(MODEL, MODEL[4]), **kw),
        {},
        {
            "target": st.one_of(st.text(max_size=3).filter(lambda s: s not in ("pred", "label"))),
            "attribute_kwargs": st.one_of(st.just([1]), st.just({1: 2})),
            "metrics": st.one_of(st.just({}), st.just({"m": 3})),
        },
    ),
    "list_layers": (
        partial(list_layers, MODEL),
        {"input_shape": (1, 1, 8, 8, 8)},
        {
            "input_shape": st.one_of(
                st.just((1, 1)), st.just((1, 1, 0, 8, 8)), st.just((1.0, 1, 8, 8, 8)), JUNK
            ),
            "spatial_only": BAD_FLAG,
        },
    ),
    "get_layer": (
        partial(get_layer, MODEL),
        {"name": "4"},
        {"name": st.one_of(st.integers(), st.sampled_from(["", "layer4", "4.0"]))},
    ),
    "run_distributed": (
        cm.run_distributed,
        {"function": lambda: 1},
        {"function": JUNK, "backend": bad_choice("nccl", "gloo", "mpi", "ucc")},
    ),
    "plot_deletion_insertion": (
        lambda **kw: _plot("plot_deletion_insertion", **kw),
        {"deletion": CURVE},
        {
            "deletion": st.sampled_from(
                [tuple(CURVE), "c", M.PerturbationCurve(CURVE.x[:2], CURVE.scores)]
            ),
            "sample": st.one_of(st.floats(), st.text(max_size=2), st.integers(min_value=1)),
        },
    ),
    "plot_randomization": (
        lambda **kw: _plot("plot_randomization", **kw),
        {"result": RESULT},
        {
            "result": JUNK,
            "measures": st.sampled_from([["pearson"], "spearman", [1]]),
            "show_examples": BAD_FLAG,
        },
    ),
    "plot_slices": (
        lambda **kw: _plot("plot_slices", **kw),
        {"volume": X[0], "attribution": MAPS[0]},
        {
            "attribution": st.sampled_from([_with(MAPS[0], math.nan), MAPS[0, 0, :4], MAPS]),
            "alpha": bad_float(low=0, high=1),
            "center": st.sampled_from([(8, 0, 0), (1, 2), (-1, 0, 0), (1.5, 0, 0), "c"]),
            "cmap": st.integers(),
            "affine": st.sampled_from([torch.eye(3), torch.zeros(4, 4), "x", object()]),
            "orientation": st.sampled_from(["RAA", "RA", "XYZ", 3]),
        },
    ),
    "SyntheticLesions": (
        SyntheticLesions,
        {"length": 2, "size": 8},
        {"length": bad_int(), "size": bad_int(8), "seed": bad_int(0)},
    ),
}


@pytest.mark.parametrize("name", list(ENTRY_POINTS))
@SETTINGS
@given(data=st.data())
def test_bad_argument_raises_value_or_type_error(name, data):
    call, good, bad = ENTRY_POINTS[name]
    arg = data.draw(st.sampled_from(sorted(bad)), label="argument")
    value = data.draw(bad[arg], label=arg)
    models = (MODEL, GAP)
    before = [model_state(m) for m in models]
    with pytest.raises((ValueError, TypeError)):
        call(**{**good, arg: value})
    for m, state in zip(models, before, strict=True):
        assert_unchanged(m, state)


@pytest.mark.parametrize("name", list(ENTRY_POINTS))
def test_good_arguments_work(name):
    """The good call of each entry point works, so the test above fails for the bad value."""
    call, good, _ = ENTRY_POINTS[name]
    call(**good)


def test_messages_name_the_argument_and_the_fix():
    cases = [
        (lambda: cm.GradCAM3D(MODEL, None), TypeError, "layer is None; pass the module"),
        (
            lambda: cm.ScoreCAM3D(MODEL, MODEL[4]).attribute(X, 0, baselines=math.nan),
            ValueError,
            "baselines must be a finite number",
        ),
        (
            lambda: cm.ScoreCAM3D(MODEL, MODEL[4]).attribute(X, 0, baselines="zero"),
            TypeError,
            "baselines must be a number or a tensor",
        ),
        (
            lambda: M.aopc(MODEL, X, MAPS, 0, region_size=4.0),
            TypeError,
            r"region_size must be an int >= 1, got 4\.0",
        ),
        (
            lambda: M.attribution_iou(MAPS, MASKS, threshold="0.5"),
            TypeError,
            "threshold must be a real number",
        ),
        (
            lambda: M.pointing_game(MAPS, MASKS, tolerance=math.inf),
            ValueError,
            "tolerance must be a finite number",
        ),
        (
            lambda: cm.evaluate_dataset(
                MODEL, cm.LayerCAM3D(MODEL, MODEL[4]), [X[0]], batch_size=0
            ),
            ValueError,
            "batch_size must be >= 1, got 0",
        ),
        (
            lambda: M.uniform_noise_baseline(generator=None),
            TypeError,
            "generator must be an int seed or a torch.Generator",
        ),
        (
            lambda: cm.CNNFixations(MODEL).attribute(X, 0, sigma=math.inf),
            ValueError,
            "sigma must be a finite number",
        ),
        (
            lambda: cm.LayerCAM(MODEL, MODEL[4]).attribute(X, 0, upsample="no"),
            TypeError,
            "upsample must be True or False",
        ),
    ]
    for call, error, message in cases:
        with pytest.raises(error, match=message):
            call()


class _Tuple(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = small_cnn(3, in_channels=1)

    def forward(self, x):
        return self.net(x), 0


class _Dict(_Tuple):
    def forward(self, x):
        return {"logits": self.net(x)}


class _SideBranch(_Tuple):
    """``side`` runs but the output does not depend on it."""

    def __init__(self) -> None:
        super().__init__()
        self.side = nn.Conv3d(1, 2, 1).double()

    def forward(self, x):
        self.side(x)
        return self.net(x)


class _Pair(nn.Module):
    def forward(self, x):
        return x, x


class _TupleLayer(_Tuple):
    def __init__(self) -> None:
        super().__init__()
        self.pair = _Pair()

    def forward(self, x):
        a, _ = self.pair(x)
        return self.net(a)


class _Twice(_Tuple):
    def __init__(self) -> None:
        super().__init__()
        self.act = nn.ReLU()

    def forward(self, x):
        return self.net(self.act(self.act(x)))


LAYER_CASES = {
    "not in the model": (
        lambda: small_cnn(3, in_channels=1),
        lambda m: nn.Conv3d(1, 1, 1).eval(),
        ValueError,
        "was not reached",
    ),
    "model returns a tuple": (
        _Tuple,
        lambda m: m.net[4],
        TypeError,
        "must return a tensor, got tuple",
    ),
    "model returns a dict": (
        _Dict,
        lambda m: m.net[4],
        TypeError,
        "must return a tensor, got dict",
    ),
    "layer off the path": (
        _SideBranch,
        lambda m: m.side,
        ValueError,
        "do not depend on the output",
    ),
    "layer with a tuple output": (_TupleLayer, lambda m: m.pair, ValueError, "tuple of 2 tensors"),
    "layer called twice": (_Twice, lambda m: m.act, ValueError, "called more than once"),
}


@pytest.mark.parametrize("case", list(LAYER_CASES))
@pytest.mark.parametrize(
    "cls",
    [cm.GradCAM3D, cm.GuidedGradCAM3D, cm.LayerCAM3D, cm.GradCAMPlusPlus3D],
    ids=lambda c: c.__name__,
)
def test_captum_backed_classes_give_the_same_layer_errors(cls, case):
    """GradCAM3D and GuidedGradCAM3D (Captum inside) refuse the layers the other gradient
    methods refuse, with the same messages, and leave the model as it was."""
    make, pick, error, message = LAYER_CASES[case]
    model = make().double().eval()
    state = model_state(model)
    with pytest.raises(error, match=message):
        cls(model, pick(model)).attribute(X, target=TARGET)
    assert_unchanged(model, state)


def test_rank_correlation_of_a_map_with_nan_is_nan():
    a = MAPS.clone()
    a[0, 0, 0, 0, 0] = math.nan
    rho = M.spearman_rank_correlation(a, MAPS)
    assert math.isnan(rho[0]) and rho[1] == 1


def test_huge_finite_widths_stay_bounded():
    """A finite but huge sigma or tolerance gives the limit, not an OverflowError or a
    kernel that does not fit in memory."""
    wide = cm.CNNFixations(MODEL).attribute(X, TARGET, sigma=1e12, outlier_radius=None)
    assert wide.isfinite().all()
    flat = M.gaussian_blur(X, 5, 1e300)
    torch.testing.assert_close(flat, M.gaussian_blur(X, 5, 1e6), rtol=1e-6, atol=1e-9)
    assert M.pointing_game(MAPS, MASKS, tolerance=1e300).tolist() == [1.0, 1.0]
