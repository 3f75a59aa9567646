"""Compare attribution methods on a data set: the engine of ``captum-medcam evaluate``,
``explain`` and ``demo``.

:func:`compare_methods` runs :func:`~captum_medcam.evaluation.evaluate_dataset` once per
method, with metrics chosen by name (:data:`METRICS`), methods chosen by name
(:data:`METHODS`: this library's CAMs, Captum's common attributions and a ``"random"``
map, the floor every method should beat), and keeps the deletion/insertion/AOPC curves and
a few maps for the report. :func:`write_outputs` writes ``results.csv`` (a row per sample
and method), ``summary.json`` (method -> metric -> mean, std, n), ``aopc_curve.csv`` and
the HTML report. :data:`PRESETS` hold the settings of the two published protocols.

Example:
    >>> import torch
    >>> from torch import nn
    >>> from captum_medcam.pipeline import EvaluationConfig, compare_methods
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(),
    ...                     nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)).eval()
    >>> data = [{"image": torch.rand(1, 8, 8), "label": i % 2} for i in range(3)]
    >>> config = EvaluationConfig(methods=("gradcam", "random"), layer="1",
    ...                           metrics=("deletion", "insertion"), n_steps=8)
    >>> comparison = compare_methods(net, data, config, show_progress=False)
    >>> sorted(comparison.summary()), sorted(comparison.summary()["gradcam"])
    (['gradcam', 'random'], ['deletion_auc', 'insertion_auc'])
"""

from __future__ import annotations

import inspect
import json
import math
import os
import zlib
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from captum_medcam.evaluation import (
    EvaluatedBatch,
    EvaluationResult,
    Metric,
    _world,
    evaluate_dataset,
    gather_values,
    localization_metric,
    write_csv,
)

__all__ = [
    "METHODS",
    "METRICS",
    "PRESETS",
    "Comparison",
    "EvaluationConfig",
    "KeptExample",
    "RandomMap",
    "build_method",
    "build_metrics",
    "compare_methods",
    "method_keywords",
    "write_outputs",
]


class RandomMap:
    """A map of uniform random values in [0, 1): the floor every explanation should beat.

    Each example's map comes from a ``torch.Generator`` seeded with ``seed`` and a checksum
    of the example itself, so the same input always gets the same map, whatever the batch,
    the order or the number of processes.

    Args:
        seed: the base seed.

    Example:
        >>> import torch
        >>> x = torch.rand(2, 3, 4, 4)
        >>> maps = RandomMap(seed=0).attribute(x)
        >>> maps.shape, bool(torch.equal(maps[1:], RandomMap(seed=0).attribute(x[1:])))
        (torch.Size([2, 1, 4, 4]), True)
    """

    def __init__(self, seed: int = 0) -> None:
        self.seed = int(seed)

    def attribute(self, inputs: Tensor, target: Any = None, **kwargs: Any) -> Tensor:
        """``(N, 1, *S)`` random maps for inputs ``(N, C, *S)`` (``target`` is ignored)."""
        maps = []
        for x in inputs.detach():
            checksum = zlib.crc32(x.cpu().contiguous().numpy().tobytes())
            g = torch.Generator().manual_seed((self.seed * 1_000_003 + checksum) % 2**63)
            maps.append(torch.rand((1, *x.shape[1:]), generator=g, dtype=inputs.dtype))
        return torch.stack(maps).to(inputs.device)


def _seeded_noise(std: float | None, seed: int) -> Callable[[Tensor], Tensor]:
    """Per-example noise seeded like :class:`RandomMap` (by the example's content), so AOPC
    repeats exactly whatever the batch, order or number of processes: normal ``N(0, std^2)``,
    or, with ``std=None``, uniform over each example's range (the metric's default)."""

    def noise(inputs: Tensor) -> Tensor:
        out = []
        for x in inputs.detach():
            checksum = zlib.crc32(x.cpu().contiguous().numpy().tobytes())
            g = torch.Generator().manual_seed((seed * 1_000_003 + checksum) % 2**63)
            if std is None:
                u = torch.rand(x.shape, generator=g, dtype=inputs.dtype).to(inputs.device)
                out.append(x.amin() + (x.amax() - x.amin()) * u)
            else:
                out.append(
                    std * torch.randn(x.shape, generator=g, dtype=inputs.dtype).to(inputs.device)
                )
        return torch.stack(out)

    return noise


@dataclass(frozen=True)
class _MethodSpec:
    """A method of :data:`METHODS`.

    ``build(model, layer, *, init_options, spatial_dims, fc_layer, perturbations_per_eval,
    seed)`` returns ``(attribution, attribute() options)``; ``init_options`` are the
    constructor keywords of ``EvaluationConfig.method_options``. ``classes`` name the
    classes it builds (``"module:Class"``): their constructor and ``attribute()`` keywords
    are the options the method takes. ``class_agnostic``: the map ignores the target class.
    """

    description: str
    needs_layer: bool
    build: Callable[..., tuple[Any, dict[str, Any]]]
    classes: tuple[str, ...] = ()
    class_agnostic: bool = False


def _cam(cls_name: str) -> Callable[..., tuple[Any, dict[str, Any]]]:
    def build(
        model: nn.Module, layer: nn.Module, *, init_options: dict[str, Any], **_: Any
    ) -> tuple[Any, dict[str, Any]]:
        import captum_medcam.attr as attr

        return getattr(attr, cls_name)(model, layer, **init_options), {}

    return build


def _scorecam(
    model: nn.Module,
    layer: nn.Module,
    *,
    perturbations_per_eval: int,
    init_options: dict[str, Any],
    **_: Any,
) -> tuple[Any, dict[str, Any]]:
    from captum_medcam.attr import ScoreCAM

    cam = ScoreCAM(model, layer, **init_options)
    return cam, {"perturbations_per_eval": perturbations_per_eval}


def _guided_gradcam(
    model: nn.Module,
    layer: nn.Module,
    *,
    spatial_dims: int,
    init_options: dict[str, Any],
    **_: Any,
) -> tuple[Any, dict[str, Any]]:
    if spatial_dims == 3:
        from captum_medcam.attr import GuidedGradCAM3D

        return GuidedGradCAM3D(model, layer, **init_options), {}
    from captum.attr import GuidedGradCam

    return GuidedGradCam(model, layer, **init_options), {}


def _crm(
    model: nn.Module,
    layer: nn.Module,
    *,
    fc_layer: nn.Module | None,
    perturbations_per_eval: int,
    init_options: dict[str, Any],
    **_: Any,
) -> tuple[Any, dict[str, Any]]:
    from captum_medcam.attr import CRM

    crm = CRM(model, layer, fc_layer=fc_layer, **init_options)
    return crm, {"perturbations_per_eval": perturbations_per_eval}


def _class_cam(
    model: nn.Module,
    layer: nn.Module,
    *,
    fc_layer: nn.Module | None,
    init_options: dict[str, Any],
    **_: Any,
) -> tuple[Any, dict[str, Any]]:
    from captum_medcam.attr import CAM

    if fc_layer is None:
        raise ValueError(_CAM_NEEDS_FC)
    return CAM(model, layer, fc_layer=fc_layer, **init_options), {}  # type: ignore[arg-type]  # checked there


_CAM_NEEDS_FC = (
    "method 'cam' weights the layer by the Linear after global average pooling: name it "
    "with --fc-layer (e.g. fc for a MONAI ResNet)"
)


def _perturbation_cam(
    cls_name: str, *, seeded: bool = False
) -> Callable[..., tuple[Any, dict[str, Any]]]:
    """A CAM of :mod:`captum_medcam.attr` that takes ``perturbations_per_eval`` (and, with
    ``seeded``, the run's seed as its noise ``generator``)."""

    def build(
        model: nn.Module,
        layer: nn.Module,
        *,
        perturbations_per_eval: int,
        seed: int,
        init_options: dict[str, Any],
        **_: Any,
    ) -> tuple[Any, dict[str, Any]]:
        import captum_medcam.attr as attr

        options: dict[str, Any] = {"perturbations_per_eval": perturbations_per_eval}
        if seeded:
            options["generator"] = seed
        return getattr(attr, cls_name)(model, layer, **init_options), options

    return build


class _GradientInputs:
    """A Captum input-gradient method, called on a copy of the inputs that requires grad.

    Captum's ``Saliency``/``GuidedBackprop`` otherwise set ``requires_grad`` on the caller's
    tensor and warn; GuidedBackprop's note that it hooks the ReLUs for one call is expected
    here, so it is not repeated for every batch.
    """

    def __init__(self, method: Any) -> None:
        self.method = method

    def attribute(self, inputs: Tensor, target: Any = None, **kwargs: Any) -> Tensor:
        import warnings

        x = inputs.detach().clone().requires_grad_(True)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU")
            out = self.method.attribute(x, target=target, **kwargs)
        return out.detach()


def _captum(cls_name: str, **options: Any) -> Callable[..., tuple[Any, dict[str, Any]]]:
    def build(
        model: nn.Module, layer: Any = None, *, init_options: dict[str, Any], **kw: Any
    ) -> tuple[Any, dict[str, Any]]:
        import captum.attr

        kwargs = dict(options)
        if cls_name == "IntegratedGradients":
            kwargs["internal_batch_size"] = kw["perturbations_per_eval"]
        return _GradientInputs(getattr(captum.attr, cls_name)(model, **init_options)), kwargs

    return build


def _fixations(
    model: nn.Module, layer: Any = None, *, init_options: dict[str, Any], **_: Any
) -> tuple[Any, dict[str, Any]]:
    from captum_medcam.attr import CNNFixations

    return CNNFixations(model, **init_options), {}


def _fullgrad(
    model: nn.Module, layer: Any = None, *, init_options: dict[str, Any], **_: Any
) -> tuple[Any, dict[str, Any]]:
    from captum_medcam.attr import FullGrad

    return FullGrad(model, **init_options), {}


def _random(model: nn.Module, layer: Any = None, *, seed: int, **_: Any) -> tuple[Any, dict]:
    return RandomMap(seed), {}


#: Method name -> what it is. ``needs_layer``: the method explains a layer (``--layer``).
METHODS: dict[str, _MethodSpec] = {
    "scorecam": _MethodSpec(
        "Score-CAM (Wang et al. 2020), forwards only",
        True,
        _scorecam,
        classes=("captum_medcam.attr:ScoreCAM",),
    ),
    "gradcam": _MethodSpec(
        "Grad-CAM (Selvaraju et al. 2017), Captum's LayerGradCam bit for bit",
        True,
        _cam("GradCAM"),
        classes=("captum_medcam.attr:GradCAM",),
    ),
    "gradcampp": _MethodSpec(
        "Grad-CAM++ (Chattopadhay et al. 2018)",
        True,
        _cam("GradCAMPlusPlus"),
        classes=("captum_medcam.attr:GradCAMPlusPlus",),
    ),
    "layercam": _MethodSpec(
        "LayerCAM (Jiang et al. 2021)",
        True,
        _cam("LayerCAM"),
        classes=("captum_medcam.attr:LayerCAM",),
    ),
    "hirescam": _MethodSpec(
        "HiResCAM (Draelos and Carin 2020)",
        True,
        _cam("HiResCAM"),
        classes=("captum_medcam.attr:HiResCAM",),
    ),
    "xgradcam": _MethodSpec(
        "XGrad-CAM (Fu et al. 2020)",
        True,
        _cam("XGradCAM"),
        classes=("captum_medcam.attr:XGradCAM",),
    ),
    "gradcam_elementwise": _MethodSpec(
        "Grad-CAM element-wise (pytorch-grad-cam), sum of ReLU(gradient x activation)",
        True,
        _cam("GradCAMElementWise"),
        classes=("captum_medcam.attr:GradCAMElementWise",),
    ),
    "shapleycam": _MethodSpec(
        "Shapley-CAM (Cai 2025), gradient and Hessian-vector product of ReST",
        True,
        _cam("ShapleyCAM"),
        classes=("captum_medcam.attr:ShapleyCAM",),
    ),
    "finercam": _MethodSpec(
        "Finer-CAM (Zhang et al. 2025), Grad-CAM of the score relative to 3 similar classes",
        True,
        _cam("FinerCAM"),
        classes=("captum_medcam.attr:FinerCAM",),
    ),
    "smoothgradcampp": _MethodSpec(
        "Smooth Grad-CAM++ (Omeiza et al. 2019), derivatives averaged over 4 noisy copies",
        True,
        _cam("SmoothGradCAMPlusPlus"),
        classes=("captum_medcam.attr:SmoothGradCAMPlusPlus",),
    ),
    "guided_gradcam": _MethodSpec(
        "Guided Grad-CAM (Selvaraju et al. 2017)",
        True,
        _guided_gradcam,
        classes=(
            "captum_medcam.attr:GuidedGradCAM3D",
            "captum.attr:GuidedGradCam",
        ),
    ),
    "crm": _MethodSpec(
        "CRM, class-selective relevance mapping (Kim et al. 2019)",
        True,
        _crm,
        classes=("captum_medcam.attr:CRM",),
    ),
    "cam": _MethodSpec(
        "CAM (Zhou et al. 2016), GAP -> Linear heads; needs --fc-layer",
        True,
        _class_cam,
        classes=("captum_medcam.attr:CAM",),
    ),
    "eigencam": _MethodSpec(
        "Eigen-CAM (Muhammad and Yeasin 2020), class-agnostic",
        True,
        _cam("EigenCAM"),
        classes=("captum_medcam.attr:EigenCAM",),
        class_agnostic=True,
    ),
    "eigengradcam": _MethodSpec(
        "EigenGrad-CAM (pytorch-grad-cam), gradients x activations",
        True,
        _cam("EigenGradCAM"),
        classes=("captum_medcam.attr:EigenGradCAM",),
    ),
    "kpcacam": _MethodSpec(
        "KPCA-CAM (Karmani et al. 2024), sigmoid kernel, class-agnostic",
        True,
        _cam("KPCACAM"),
        classes=("captum_medcam.attr:KPCACAM",),
        class_agnostic=True,
    ),
    "fem": _MethodSpec(
        "FEM (Fuad et al. 2020), k = 2, class-agnostic",
        True,
        _cam("FEM"),
        classes=("captum_medcam.attr:FEM",),
        class_agnostic=True,
    ),
    "ablationcam": _MethodSpec(
        "Ablation-CAM (Desai and Ramaswamy 2020), forwards only",
        True,
        _perturbation_cam("AblationCAM"),
        classes=("captum_medcam.attr:AblationCAM",),
    ),
    "sscam": _MethodSpec(
        "SS-CAM, smoothed Score-CAM (Wang et al. 2020), 35 noisy masks per channel",
        True,
        _perturbation_cam("SSCAM", seeded=True),
        classes=("captum_medcam.attr:SSCAM",),
    ),
    "iscam": _MethodSpec(
        "IS-CAM, integrated Score-CAM (Naidu et al. 2020), 10 steps per channel",
        True,
        _perturbation_cam("ISCAM"),
        classes=("captum_medcam.attr:ISCAM",),
    ),
    "cnn_fixations": _MethodSpec(
        "CNN Fixations (Mopuri et al. 2019), plain conv chains",
        False,
        _fixations,
        classes=("captum_medcam.attr:CNNFixations",),
    ),
    "fullgrad": _MethodSpec(
        "FullGrad (Srinivas and Fleuret 2019), input- and bias-gradients of every layer",
        False,
        _fullgrad,
        classes=("captum_medcam.attr:FullGrad",),
    ),
    "integrated_gradients": _MethodSpec(
        "Captum IntegratedGradients (Sundararajan et al. 2017), zero baseline, 32 steps",
        False,
        _captum("IntegratedGradients", n_steps=32),
        classes=("captum.attr:IntegratedGradients",),
    ),
    "saliency": _MethodSpec(
        "Captum Saliency (Simonyan et al. 2014), |gradient|",
        False,
        _captum("Saliency"),
        classes=("captum.attr:Saliency",),
    ),
    "input_x_gradient": _MethodSpec(
        "Captum InputXGradient",
        False,
        _captum("InputXGradient"),
        classes=("captum.attr:InputXGradient",),
    ),
    "guided_backprop": _MethodSpec(
        "Captum GuidedBackprop (Springenberg et al. 2015)",
        False,
        _captum("GuidedBackprop"),
        classes=("captum.attr:GuidedBackprop",),
    ),
    "random": _MethodSpec(
        "uniform random map from a seeded generator: the floor",
        False,
        _random,
        classes=("captum_medcam.pipeline:RandomMap",),
    ),
}

#: Keywords a method option cannot set: the pipeline passes them (or they change what
#: ``attribute()`` returns), with where they are set instead.
_SET_BY_PIPELINE = {
    "inputs": "the data",
    "target": "--target (EvaluationConfig.target)",
    "additional_forward_args": "the data",
    "fc_layer": "--fc-layer (EvaluationConfig.fc_layer)",
    "seed": "--seed (EvaluationConfig.seed)",
    "return_convergence_delta": "the pipeline, which needs the maps alone",
}


def _resolve(path: str) -> Any:
    import importlib

    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def method_keywords(name: str) -> dict[str, tuple[str, inspect.Parameter]]:
    """The options the method ``name`` of :data:`METHODS` takes in ``method_options``.

    Args:
        name: a method name, e.g. ``"sscam"``.

    Returns:
        keyword -> ``(where, parameter)``, ``where`` being ``"init"`` (the constructor) or
        ``"attribute"``; sorted by keyword. Keywords without a default and those the
        pipeline sets (``target``, ``fc_layer``, ``seed``, ...) are left out. A method built
        from several classes (Guided Grad-CAM: one for 2D, one for 3D) takes the keywords
        they all take.

    Example:
        >>> from captum_medcam.pipeline import method_keywords
        >>> [k for k in method_keywords("sscam") if k.startswith("num")]
        ['num_samples']
        >>> method_keywords("sscam")["num_samples"][0]
        'attribute'
    """
    if name not in METHODS:
        raise ValueError(
            f"unknown method {name!r}{_did_you_mean(name, METHODS)}; choose from {sorted(METHODS)}"
        )
    found: dict[str, tuple[str, inspect.Parameter]] | None = None
    for path in METHODS[name].classes:
        cls = _resolve(path)
        here: dict[str, tuple[str, inspect.Parameter]] = {}
        for where, function in (("init", cls.__init__), ("attribute", cls.attribute)):
            for key, parameter in inspect.signature(function).parameters.items():
                if (
                    key == "self"
                    or key in _SET_BY_PIPELINE
                    or parameter.default is inspect.Parameter.empty
                    or parameter.kind in (parameter.VAR_KEYWORD, parameter.VAR_POSITIONAL)
                ):
                    continue
                here.setdefault(key, (where, parameter))
        found = here if found is None else {k: v for k, v in found.items() if k in here}
    return dict(sorted((found or {}).items()))


def _literal_choices(function: Any, key: str) -> tuple[Any, ...] | None:
    """The values of a ``Literal[...]`` (or ``Literal[...] | None``) annotation, else None."""
    import typing

    try:
        hints = typing.get_type_hints(function)
    except (NameError, TypeError, AttributeError):  # an annotation that cannot be resolved
        return None
    hint = hints.get(key)
    if hint is None:
        return None
    if typing.get_origin(hint) is typing.Literal:
        return typing.get_args(hint)
    members = typing.get_args(hint)
    literals = [m for m in members if typing.get_origin(m) is typing.Literal]
    if len(literals) == 1 and all(m is type(None) or m is literals[0] for m in members):
        return (*typing.get_args(literals[0]), None)
    return None


def _check_option_value(method: str, key: str, value: Any, parameter: inspect.Parameter) -> None:
    """Refuse a value whose type cannot be the parameter's (judged by its default and a
    ``Literal`` annotation); other values are checked by the method when it runs."""
    default = parameter.default
    expected: str | None = None
    if isinstance(default, bool):
        expected = None if isinstance(value, bool) else "true or false"
    elif isinstance(default, int):
        expected = None if isinstance(value, int) and not isinstance(value, bool) else "an int"
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        expected = None if ok else "a number"
    elif isinstance(default, str):
        expected = None if isinstance(value, str) else "a string"
    if expected is not None:
        raise ValueError(
            f"method option {method}.{key} must be {expected} (its default is {default!r}), "
            f"got {value!r}"
        )


def _check_method_options(
    methods: Sequence[str], method_options: object
) -> dict[str, dict[str, Any]]:
    """``method_options`` checked against the methods' keywords, as a dict of dicts."""
    if not isinstance(method_options, Mapping):
        raise TypeError(
            "method_options must be a dict {method: {keyword: value}}, e.g. "
            f"{{'sscam': {{'num_samples': 8}}}}, got {method_options!r}"
        )
    out: dict[str, dict[str, Any]] = {}
    for method, options in method_options.items():
        if method not in METHODS:
            raise ValueError(
                f"method_options names an unknown method {method!r}"
                f"{_did_you_mean(str(method), METHODS)}; choose from {sorted(METHODS)}"
            )
        if method not in methods:
            raise ValueError(
                f"method_options has options for {method!r}, which is not among the methods "
                f"{list(methods)}: add it to the methods or drop its options"
            )
        if not isinstance(options, Mapping) or not all(isinstance(k, str) for k in options):
            raise TypeError(
                f"method_options[{method!r}] must be a dict {{keyword: value}}, got {options!r}"
            )
        accepted = method_keywords(method)
        for key, value in options.items():
            if key not in accepted:
                import difflib

                close = difflib.get_close_matches(key, list(accepted), n=1, cutoff=0.75)
                where = (
                    f" ({key!r} is set by {_SET_BY_PIPELINE[key]})"
                    if key in _SET_BY_PIPELINE
                    else f" (did you mean {close[0]!r}?)"
                    if close
                    else ""
                )
                raise ValueError(
                    f"method {method!r} takes no option {key!r}{where}; its options are: "
                    f"{', '.join(accepted) or 'none'}"
                )
            parameter = accepted[key][1]
            _check_option_value(method, key, value, parameter)
            cls = _resolve(METHODS[method].classes[0])
            function = cls.__init__ if accepted[key][0] == "init" else cls.attribute
            choices = _literal_choices(function, key)
            if choices is not None and value not in choices:
                raise ValueError(
                    f"method option {method}.{key} must be one of {list(choices)}, got {value!r}"
                )
        out[method] = dict(options)
    return out


_METRIC_COLUMNS = {
    "deletion": "deletion_auc",
    "insertion": "insertion_auc",
    "aopc": "aopc",
    "aopc_lerf": "aopc_lerf",
    "road": "road",
    "road_morf": "road_morf",
    "road_lerf": "road_lerf",
    "average_drop": "average_drop",
    "increase_in_confidence": "increase_in_confidence",
    "pointing_game": "pointing_game",
    "energy_pointing_game": "energy_pointing_game",
    "iou": "iou",
    "dice": "dice",
    "rank_accuracy": "rank_accuracy",
}
#: Metric name (as ``--metrics`` takes it) -> its column in ``results.csv``.
METRICS: dict[str, str] = dict(_METRIC_COLUMNS)
_CONFIDENCE = ("average_drop", "increase_in_confidence")
_LOCALIZATION = ("pointing_game", "energy_pointing_game", "iou", "dice", "rank_accuracy")


def _did_you_mean(name: str, names: Mapping[str, Any]) -> str:
    """`` (did you mean 'x'?)`` for a misspelt name of :data:`METHODS` or :data:`METRICS`.

    A metric's ``results.csv`` column (``deletion_auc``) points to its name (``deletion``);
    otherwise the closest name, ignoring ``_``, ``-`` and ``+`` (``grad_cam``, ``gradcam++``).
    """
    import difflib

    columns = [key for key, column in names.items() if column == name and key != name]
    if columns:
        return f" (did you mean {columns[0]!r}? {name!r} is its column in results.csv)"
    squashed = {key.replace("_", ""): key for key in names}
    guess = name.lower().replace("_", "").replace("-", "").replace("++", "pp")
    close = difflib.get_close_matches(guess, list(squashed), n=1, cutoff=0.75)
    return f" (did you mean {squashed[close[0]]!r}?)" if close else ""


#: The two published protocols (the options they fix; the data and model are yours).
PRESETS: dict[str, dict[str, Any]] = {
    "organmnist3d-scorecam": {
        "description": (
            "3D Score-CAM on OrganMNIST3D at 64^3 (MONAI resnet18, layer4), deletion and "
            "insertion AUC with the 0/1 correctness of the argmax as the score, 130 curve "
            "points (n_steps=129); published: DAUC 0.2576 +- 0.1710, IAUC 0.6750 +- 0.1944"
        ),
        "medmnist": "organmnist3d",
        "size": 64,
        "network": (
            '{"_target_": "monai.networks.nets.resnet18", "spatial_dims": 3, '
            '"n_input_channels": 1, "num_classes": 11}'
        ),
        "layer": "layer4",
        "methods": ("scorecam",),
        "metrics": ("deletion", "insertion"),
        "score": "correct",
        "n_steps": 129,
    },
    "xray-aopc": {
        "description": (
            "X-ray AOPC (MoRF): 81 regions on a 9x9 grid perturbed by normal noise of std 0.1, "
            "softmax probability of the predicted class, correctly classified images only; "
            "aopc_curve.csv gives AOPC as a function of the number of regions; published: "
            "VGG16 0.45, DenseNet201 0.49"
        ),
        "methods": ("gradcam",),
        "metrics": ("aopc",),
        "aopc_grid": 9,
        "aopc_regions": 81,
        "aopc_noise_std": 0.1,
        "score": "probability",
        "correct_only": True,
    },
}


@dataclass(frozen=True)
class EvaluationConfig:
    """What to compare and how to score it (the options of ``captum-medcam evaluate``).

    Attributes:
        methods: names from :data:`METHODS`.
        layer: the dotted layer name for the CAMs (e.g. ``"layer4"``).
        metrics: names from :data:`METRICS`. The localization metrics need masks.
        score: ``"probability"``, ``"logit"``, ``"sigmoid"`` (multi-label heads) or
            ``"correct"`` (0/1 correctness of the argmax) for deletion, insertion, AOPC and
            ROAD (the confidence metrics refuse ``"correct"``).
        n_steps: deletion/insertion steps (``n_steps + 1`` curve points).
        deletion_baseline: what deleted voxels become: ``"zero"`` (RISE's reference code,
            the default), ``"mean"`` (each example's mean) or ``"blur"`` (RISE's Gaussian
            blur of the input). Where zero is itself a finding (a dark infarct in a brain,
            as in the demo), zeroing voxels changes the prediction whatever the order and a
            random map scores as well as a good one: use ``"blur"`` there.
        aopc_grid: regions per spatial dim for AOPC (9 gives the 9x9 grid); None uses
            ``aopc_region_size``.
        aopc_region_size: AOPC patch edge in voxels (default: the metric's, 9).
        aopc_regions: how many regions AOPC perturbs (default: the metric's, the first 20%).
        aopc_baseline: what replaces an AOPC region: ``"mean"`` (each example's mean, the
            metric's default, chosen because it separates good maps from random ones),
            ``"blur"``, or ``"uniform"`` noise over each example's range (Samek et al.'s;
            it can saturate a lesion detector, see :func:`~captum_medcam.metrics.aopc`).
        aopc_noise_std: perturb AOPC regions with normal noise of this std instead (the
            X-ray study: 0.1). Noise is seeded by ``seed`` and the example's content, so
            runs repeat exactly.
        target: ``"pred"`` (the predicted class) or ``"label"``.
        correct_only: explain only correctly classified samples.
        batch_size: samples per batch.
        perturbations_per_eval: masked copies per forward (Score-CAM, CRM, IG steps).
        max_examples_per_batch: perturbed inputs per forward in the metrics.
        fc_layer: dotted name of the Linear after global pooling, for CRM's exact fast path.
        localization_threshold: IoU/Dice binarize at this fraction of each map's maximum.
        pointing_tolerance: pointing-game tolerance in voxels.
        seed: seed of the random map and of the noise of AOPC and ROAD.
        examples: how many samples the report shows.
        method_options: per-method keywords, ``{method: {keyword: value}}``, e.g.
            ``{"sscam": {"num_samples": 8}, "scorecam": {"max_channels": 0.1}}``: each goes
            to the method's constructor or ``attribute()`` call (see
            :func:`method_keywords`) and overrides the pipeline's value
            (``perturbations_per_eval``, SS-CAM's ``generator``, ...). Checked here, before
            any model runs.
        autocast: None, ``"bfloat16"`` or ``"float16"``: the perturbed forwards run under
            ``torch.autocast`` (:func:`~captum_medcam.perturbation_options`).
        chunk_size: None or ``"auto"`` (chunks sized from free GPU memory on CUDA).
        compile: True or a ``torch.compile`` backend name: compile the perturbed forwards.
    """

    methods: Sequence[str] = ("gradcam", "random")
    layer: str | None = None
    metrics: Sequence[str] = ("deletion", "insertion", "aopc")
    score: str = "probability"
    n_steps: int = 100
    deletion_baseline: str = "zero"
    aopc_grid: int | None = None
    aopc_region_size: int | None = None
    aopc_regions: int | None = None
    aopc_baseline: str = "mean"
    aopc_noise_std: float | None = None
    target: str = "pred"
    correct_only: bool = False
    batch_size: int = 1
    perturbations_per_eval: int = 16
    max_examples_per_batch: int | None = 32
    fc_layer: str | None = None
    localization_threshold: float = 0.5
    pointing_tolerance: float = 0.0
    seed: int = 0
    examples: int = 4
    method_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    autocast: str | None = None
    chunk_size: str | None = None
    compile: bool | str = False

    def __post_init__(self) -> None:
        from captum_medcam._core.engine import (
            _check_autocast,
            _check_chunk_option,
            _check_compile,
        )

        methods, metrics = tuple(self.methods), tuple(self.metrics)
        object.__setattr__(self, "methods", methods)
        object.__setattr__(self, "metrics", metrics)
        if not methods:
            raise ValueError("methods is empty; name at least one, e.g. gradcam,random")
        for name in methods:
            if name not in METHODS:
                raise ValueError(
                    f"unknown method {name!r}{_did_you_mean(name, METHODS)}; choose from "
                    f"{sorted(METHODS)}"
                )
        if len(set(methods)) != len(methods):
            raise ValueError(f"methods lists a name twice: {list(methods)}")
        object.__setattr__(
            self, "method_options", _check_method_options(methods, self.method_options)
        )
        if self.autocast is not None and not isinstance(self.autocast, str):
            raise TypeError(
                f"autocast must be None, 'bfloat16' or 'float16', got {self.autocast!r}"
            )
        _check_autocast(self.autocast)
        _check_chunk_option(self.chunk_size)
        _check_compile(self.compile)
        if not metrics:
            raise ValueError("metrics is empty; name at least one, e.g. deletion,insertion")
        for name in metrics:
            if name not in METRICS:
                raise ValueError(
                    f"unknown metric {name!r}{_did_you_mean(name, METRICS)}; choose from "
                    f"{sorted(METRICS)}"
                )
        if self.score not in ("probability", "logit", "sigmoid", "correct"):
            raise ValueError(
                f"score must be 'probability', 'logit', 'sigmoid' or 'correct', got {self.score!r}"
            )
        if self.score == "correct" and any(m in _CONFIDENCE for m in metrics):
            raise ValueError(
                "average_drop and increase_in_confidence compare the confidence on the image "
                "and on the explanation map; score='correct' (0/1) has no drop to measure: use "
                "score='probability' (the paper's), 'sigmoid' or 'logit'"
            )
        if self.deletion_baseline not in ("zero", "mean", "blur"):
            raise ValueError(
                "deletion_baseline must be 'zero', 'mean' or 'blur', got "
                f"{self.deletion_baseline!r}"
            )
        if self.aopc_baseline not in ("mean", "blur", "uniform"):
            raise ValueError(
                "aopc_baseline must be 'mean', 'blur' or 'uniform' (normal noise: set "
                f"aopc_noise_std), got {self.aopc_baseline!r}"
            )
        if self.target not in ("pred", "label"):
            raise ValueError(f"target must be 'pred' or 'label', got {self.target!r}")
        for name in ("n_steps", "batch_size", "perturbations_per_eval"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.aopc_grid is not None and self.aopc_grid < 1:
            raise ValueError(f"aopc_grid must be a positive int, got {self.aopc_grid!r}")
        if "cam" in methods and not self.fc_layer:
            raise ValueError(_CAM_NEEDS_FC)
        if any(METHODS[m].needs_layer for m in methods) and not self.layer:
            needing = [m for m in methods if METHODS[m].needs_layer]
            raise ValueError(
                f"the methods {needing} explain a layer: name it with --layer (e.g. layer4 "
                "for a MONAI ResNet; captum_medcam.integrations.monai.list_layers(model, "
                "input_shape) lists the layers with their output shapes)"
            )


def _grid_labels(shape: Sequence[int], parts: int, device: torch.device) -> Tensor:
    """``(1, 1, *shape)`` region labels: each spatial dim cut into ``parts`` near-equal bands."""
    label = torch.zeros((), dtype=torch.long, device=device)
    for size in shape:
        band = torch.div(
            torch.arange(size, device=device) * min(parts, size), size, rounding_mode="floor"
        )
        label = label.unsqueeze(-1) * min(parts, size) + band
    return label.reshape(1, 1, *shape)


class _CurveMetric:
    """A perturbation metric that also keeps each example's curve (for the report)."""

    def __init__(self, kind: str, options: dict[str, Any], grid: int | None) -> None:
        self.kind, self.options, self.grid = kind, options, grid
        self.last: Tensor | None = None

    def __call__(
        self,
        forward_func: Callable[..., Tensor],
        inputs: Tensor,
        attributions: Tensor,
        target: Any = None,
        additional_forward_args: Any = None,
    ) -> Tensor:
        from captum_medcam import metrics

        if self.kind in ("deletion", "insertion"):
            fn = metrics.deletion_curve if self.kind == "deletion" else metrics.insertion_curve
            curve = fn(
                forward_func, inputs, attributions, target, additional_forward_args, **self.options
            )
            self.last = curve.scores.detach()
            return metrics.auc(curve)
        options = dict(self.options)
        if self.grid is not None:
            options["feature_mask"] = _grid_labels(inputs.shape[2:], self.grid, inputs.device)
        curve = metrics.aopc_curve(
            forward_func, inputs, attributions, target, additional_forward_args, **options
        )
        scores = curve.scores.detach()
        self.last = scores
        return (scores[:, :1] - scores).mean(1)


def build_metrics(config: EvaluationConfig) -> dict[str, Metric]:
    """The metrics of ``config`` as ``{column name: metric}`` for :func:`evaluate_dataset`."""
    from captum_medcam import metrics

    common = {"score": config.score, "max_examples_per_batch": config.max_examples_per_batch}
    out: dict[str, Metric] = {}
    options: dict[str, Any]
    for name in config.metrics:
        column = METRICS[name]
        if name == "deletion":
            substrate = {
                "zero": 0.0,
                "mean": metrics.mean_baseline(),
                "blur": metrics.blur_baseline(),
            }[config.deletion_baseline]
            options = {**common, "n_steps": config.n_steps, "baselines": substrate}
            out[column] = _CurveMetric(name, options, None)
        elif name == "insertion":
            out[column] = _CurveMetric(name, {**common, "n_steps": config.n_steps}, None)
        elif name in ("aopc", "aopc_lerf"):
            options = {**common, "order": "lerf" if name == "aopc_lerf" else "morf"}
            if config.aopc_grid is None and config.aopc_region_size is not None:
                options["region_size"] = config.aopc_region_size
            if config.aopc_regions is not None:
                options["n_regions"] = config.aopc_regions
            if config.aopc_noise_std is not None:
                options["baselines"] = _seeded_noise(config.aopc_noise_std, config.seed)
            elif config.aopc_baseline == "uniform":
                options["baselines"] = _seeded_noise(None, config.seed)
            elif config.aopc_baseline == "blur":
                options["baselines"] = metrics.blur_baseline()
            else:
                options["baselines"] = metrics.mean_baseline()
            out[column] = _CurveMetric("aopc", options, config.aopc_grid)
        elif name in ("road", "road_morf", "road_lerf"):
            order = {"road": "combined", "road_morf": "morf", "road_lerf": "lerf"}[name]
            options = {**common, "order": order, "generator": config.seed}
            out[column] = partial(metrics.road, **options)
        elif name in _CONFIDENCE:
            function = (
                metrics.average_drop if name == "average_drop" else metrics.increase_in_confidence
            )
            options = dict(common)
            out[column] = partial(function, **options)
        elif name == "pointing_game":
            out[column] = localization_metric(
                metrics.pointing_game, tolerance=config.pointing_tolerance
            )
        elif name == "energy_pointing_game":
            out[column] = localization_metric(metrics.energy_pointing_game)
        elif name == "rank_accuracy":
            out[column] = localization_metric(metrics.relevance_rank_accuracy)
        else:
            fn = metrics.attribution_iou if name == "iou" else metrics.attribution_dice
            out[column] = _relative_threshold(fn, config.localization_threshold)
    return out


def _relative_threshold(function: Callable[..., Tensor], fraction: float) -> Metric:
    """IoU/Dice with the map binarized at ``fraction`` of each example's maximum."""

    def thresholded(attributions: Tensor, masks: Tensor, **options: Any) -> Tensor:
        peak = attributions.sum(1).flatten(1).amax(1).clamp(min=0)
        return function(attributions, masks, threshold=fraction * peak, **options)

    thresholded.__name__ = getattr(function, "__name__", "localization_metric")
    return localization_metric(thresholded)


def build_method(
    name: str,
    model: nn.Module,
    config: EvaluationConfig,
    spatial_dims: int,
) -> tuple[Any, dict[str, Any]]:
    """``(attribution object, attribute() options)`` for the method ``name`` of :data:`METHODS`,
    with ``config.method_options[name]`` passed to its constructor or ``attribute()``."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose from {sorted(METHODS)}")
    spec = METHODS[name]
    layer = None
    from captum_medcam.integrations.monai import get_layer

    if spec.needs_layer:
        if not config.layer:
            raise ValueError(f"method {name!r} explains a layer: pass --layer")
        layer = get_layer(model, config.layer)
    fc = get_layer(model, config.fc_layer) if config.fc_layer else None
    options = dict(config.method_options.get(name, {}))
    keywords = method_keywords(name) if options else {}
    init_options = {k: v for k, v in options.items() if keywords[k][0] == "init"}
    attribution, kwargs = spec.build(
        model,
        layer,
        spatial_dims=spatial_dims,
        fc_layer=fc,
        perturbations_per_eval=config.perturbations_per_eval,
        seed=config.seed,
        init_options=init_options,
    )
    kwargs.update({k: v for k, v in options.items() if k not in init_options})
    return attribution, kwargs


def _speed_options(config: EvaluationConfig) -> AbstractContextManager[Any]:
    """The :func:`~captum_medcam.perturbation_options` of ``config`` as a context manager;
    a no-op (an outer ``perturbation_options`` block stays in force) when ``config`` sets
    none of ``autocast``, ``chunk_size`` and ``compile``."""
    from captum_medcam._core.engine import perturbation_options

    if config.autocast is None and config.chunk_size is None and config.compile is False:
        return nullcontext()
    return perturbation_options(
        autocast=config.autocast,
        chunk_size="auto" if config.chunk_size == "auto" else None,
        compile=config.compile,
    )


@dataclass
class Comparison:
    """The results of :func:`compare_methods`.

    Attributes:
        results: method -> :class:`~captum_medcam.evaluation.EvaluationResult`.
        curves: method -> metric column -> ``{sample index: curve scores (L,)}`` for the
            deletion, insertion and AOPC curves (every sample, gathered on every rank).
        examples: method -> ``{sample index: KeptExample}`` (CPU tensors)
            for the first ``config.examples`` samples this process evaluated.
        config: the settings.
    """

    results: dict[str, EvaluationResult]
    curves: dict[str, dict[str, dict[int, Tensor]]]
    examples: dict[str, dict[int, KeptExample]]
    config: EvaluationConfig
    seconds: dict[str, float] = field(default_factory=dict)

    def rows(self) -> list[dict[str, Any]]:
        """Every ``(sample, method)`` row, sorted by sample then method order."""
        rows = [row for result in self.results.values() for row in result.rows()]
        order = {m: i for i, m in enumerate(self.results)}
        return sorted(rows, key=lambda r: (r["index"], order[r["method"]]))

    def summary(self) -> dict[str, dict[str, dict[str, float]]]:
        """method -> metric -> ``{"mean", "std", "n"}`` (NaN values left out)."""
        return {m: r.summary_dict() for m, r in self.results.items()}

    def aopc_by_regions(self, column: str = "aopc") -> dict[str, list[float]]:
        """method -> mean AOPC after perturbing ``L = 0, 1, ...`` regions (the X-ray study's
        curve): ``mean_i 1/(L+1) sum_{k<=L} (s_i(0) - s_i(k))``."""
        out = {}
        for method, by_metric in self.curves.items():
            curves = by_metric.get(column)
            if not curves:
                continue
            length = min(len(c) for c in curves.values())
            s = torch.stack([c[:length] for c in curves.values()]).double()
            steps = torch.arange(1, length + 1, dtype=torch.float64)
            out[method] = ((s[:, :1] - s).cumsum(1) / steps).mean(0).tolist()
        return out


class KeptExample(NamedTuple):
    """A sample kept for the report: ``image (C, *S)``, ``map (1, *S)``, ``mask (1, *S)``,
    and the image's ``(4, 4)`` affine when the batch carried one (it names the slice views)."""

    image: Tensor
    map: Tensor
    mask: Tensor | None
    affine: Tensor | None = None


class _Collector:
    """``on_batch`` of one method's pass: keeps the curves and the first examples."""

    def __init__(
        self,
        method: str,
        metric_fns: Mapping[str, Metric],
        n_examples: int,
        on_batch: Callable[[str, EvaluatedBatch], None] | None,
    ) -> None:
        self.method, self.metric_fns, self.n_examples = method, metric_fns, n_examples
        self.on_batch = on_batch
        self.curve_columns = [c for c, m in metric_fns.items() if isinstance(m, _CurveMetric)]
        self.curves: dict[str, list[Tensor]] = {c: [] for c in self.curve_columns}
        self.indices: list[Tensor] = []
        self.kept: dict[int, KeptExample] = {}

    def __call__(self, batch: EvaluatedBatch) -> None:
        self.indices.append(batch.indices.cpu())
        for column in self.curve_columns:
            metric = self.metric_fns[column]
            assert isinstance(metric, _CurveMetric) and metric.last is not None
            self.curves[column].append(metric.last.cpu())
        for i, index in enumerate(batch.indices.tolist()):
            if len(self.kept) < self.n_examples:
                self.kept[index] = KeptExample(
                    image=batch.inputs[i].detach().cpu(),
                    map=batch.maps[i].detach().sum(0, keepdim=True).cpu(),
                    mask=batch.masks[i].cpu() if batch.masks is not None else None,
                    affine=batch.affines[i] if batch.affines is not None else None,
                )
        if self.on_batch is not None:
            self.on_batch(self.method, batch)

    def gathered_curves(self, world_size: int) -> dict[str, dict[int, Tensor]]:
        """metric column -> {sample index: curve}, from every rank."""
        out = {}
        index = torch.cat(self.indices) if self.indices else torch.empty(0, dtype=torch.long)
        for column, parts in self.curves.items():
            scores = torch.cat(parts) if parts else torch.empty(0)
            gathered = gather_values({"i": index, "s": scores}, world_size)
            out[column] = {
                int(i): s for i, s in zip(gathered["i"].tolist(), gathered["s"], strict=True)
            }
        return out


def _spatial_dims(data: Any) -> int:
    from captum_medcam.evaluation import _split_batch

    first = data.dataset[0] if hasattr(data, "dataset") else data[0]
    image, _ = _split_batch(first, "image", "label")
    return int(torch.as_tensor(image).dim()) - 1


def compare_methods(
    model: nn.Module,
    data: Any,
    config: EvaluationConfig,
    *,
    device: torch.device | str | None = None,
    show_progress: bool = True,
    on_batch: Callable[[str, EvaluatedBatch], None] | None = None,
) -> Comparison:
    """Evaluate every method of ``config`` on ``data`` with every metric.

    One :func:`~captum_medcam.evaluation.evaluate_dataset` pass per method (so each
    method's progress bar counts volumes); under ``torchrun`` the samples are split across
    processes and the results gathered, equal to a single process's.

    Args:
        model: the classifier ``(N, C, *S) -> (N, K)``, in eval mode.
        data: a map-style data set of dicts ``{"image", "label", "mask"}`` (label and mask
            optional) or tuples, or a ``DataLoader`` over one.
        config: methods, metrics and options.
        device: where the inputs go (default: the model's).
        show_progress: progress bars on stderr.
        on_batch: ``on_batch(method, batch)`` after each batch, e.g. to save the maps.

    Returns:
        A :class:`Comparison`.

    Raises:
        ValueError: bad settings, a localization metric without masks, a missing layer.
    """
    import time

    dims = _spatial_dims(data)
    metric_fns = build_metrics(config)
    world_size = _world()[1]
    results: dict[str, EvaluationResult] = {}
    curves: dict[str, dict[str, dict[int, Tensor]]] = {}
    examples: dict[str, dict[int, KeptExample]] = {}
    seconds: dict[str, float] = {}
    for method in config.methods:
        attribution, kwargs = build_method(method, model, config, dims)
        collect = _Collector(method, metric_fns, config.examples, on_batch)
        start = time.perf_counter()
        with _speed_options(config):
            results[method] = evaluate_dataset(
                model,
                attribution,
                data,
                metric_fns,
                target=config.target,
                batch_size=config.batch_size,
                device=device,
                attribute_kwargs=kwargs,
                show_progress=show_progress,
                correct_only=config.correct_only,
                method=method,
                on_batch=collect,
            )
        seconds[method] = time.perf_counter() - start
        curves[method] = collect.gathered_curves(world_size)
        examples[method] = collect.kept
    return Comparison(results, curves, examples, config, seconds)


def _report_examples(
    comparison: Comparison,
    class_names: Sequence[str] | None,
    affines: Callable[[int], Any] | None = None,
) -> list[Any]:
    from captum_medcam.visualization import ReportExample

    first = next(iter(comparison.results))
    indices = list(comparison.examples[first])
    by_index = {row["index"]: row for row in comparison.results[first].rows()}
    out = []
    for index in indices:
        sample = comparison.examples[first][index]
        row = by_index[index]
        curves = {}
        for method, by_metric in comparison.curves.items():
            entry = {
                kind: by_metric[col][index]
                for kind, col in (("deletion", "deletion_auc"), ("insertion", "insertion_auc"))
                if col in by_metric and index in by_metric[col]
            }
            if entry:
                curves[method] = entry
        mask = sample.mask
        affine = affines(index) if affines is not None else None
        out.append(
            ReportExample(
                index=index,
                image=sample.image,
                maps={m: ex[index].map for m, ex in comparison.examples.items() if index in ex},
                target=int(row["target"]),
                label=row["label"],
                prediction=row["prediction"],
                mask=mask.bool() if mask is not None else None,
                curves=curves,
                class_names=class_names,
                affine=affine if affine is not None else sample.affine,
            )
        )
    return out


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def write_outputs(
    comparison: Comparison,
    output_dir: str | os.PathLike[str],
    *,
    title: str = "captum_medcam report",
    run_config: Mapping[str, Any] | None = None,
    class_names: Sequence[str] | None = None,
    report: bool = True,
    affines: Callable[[int], Any] | None = None,
) -> dict[str, Path]:
    """Write ``results.csv``, ``summary.json``, ``config.json`` (the settings: the
    :class:`EvaluationConfig` fields, ``run_config`` and the seconds per method; its
    config fields give the same config back through :func:`config_from_options`),
    ``aopc_curve.csv`` (when AOPC was computed) and ``report.html`` (with its figures)
    into ``output_dir``.

    ``summary.json`` holds ``{method: {metric: {"mean", "std", "n"}}}``; NaN (a metric
    with no value, e.g. no sample had a mask) is written as ``null``.

    The report names each example's slice views sagittal, coronal and axial from its
    image's affine: ``affines(index)`` (a ``(4, 4)`` matrix or None) when given, else the
    affine its MONAI ``MetaTensor`` batch carried; without one (e.g. MedMNIST) the views are
    named by array axis. Only the orientation is read, so the affine of the file before a
    resize serves.

    Returns:
        name -> path of every file written.
    """
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"results": write_csv(comparison.rows(), out / "results.csv")}
    summary = comparison.summary()
    paths["summary"] = out / "summary.json"
    paths["summary"].write_text(json.dumps(_json_safe(summary), indent=2) + "\n")
    by_regions = comparison.aopc_by_regions()
    if by_regions:
        methods = list(by_regions)
        length = min(len(v) for v in by_regions.values())
        rows = [{"regions": k, **{m: by_regions[m][k] for m in methods}} for k in range(length)]
        paths["aopc_curve"] = write_csv(rows, out / "aopc_curve.csv")
    config = {**asdict(comparison.config), **dict(run_config or {})}
    config["seconds_per_method"] = {m: round(s, 2) for m, s in comparison.seconds.items()}
    paths["config"] = out / "config.json"
    paths["config"].write_text(json.dumps(_json_safe(config), indent=2, default=repr) + "\n")
    if report:
        from captum_medcam.visualization import write_report

        paths["report"] = write_report(
            out,
            results=comparison.rows(),
            summary=summary,
            examples=_report_examples(comparison, class_names, affines),
            title=title,
            config=config,
        )
    return paths


def apply_preset(name: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` with the preset's settings filled in where ``options`` has None."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose from {sorted(PRESETS)}")
    merged = dict(options)
    for key, value in PRESETS[name].items():
        if key != "description" and merged.get(key) is None:
            merged[key] = value
    return merged


def config_from_options(options: Mapping[str, Any]) -> EvaluationConfig:
    """An :class:`EvaluationConfig` from a dict of options, None meaning the default."""
    names = EvaluationConfig.__dataclass_fields__
    given = {k: v for k, v in options.items() if k in names and v is not None}
    return EvaluationConfig(**given)
