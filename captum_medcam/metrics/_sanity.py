"""Sanity checks for attributions: the model parameter randomization test.

The test re-initialises the model's layers, recomputes the attribution, and measures how
similar it stays to the original map. A method whose maps do not change when the weights
are destroyed (an edge detector, some gradient x input variants) explains the input, not
the model. Everything runs on a deep copy: the user's model, its hooks and the global
random state are left exactly as they were.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from captum_medcam._core.checks import (
    DEFAULT_SEED,
    check_choice,
    check_flags,
    check_inputs,
    check_positive_int,
    check_target_type,
    format_additional_args,
    index_additional_args,
    make_generator,
    renamed_keywords,
    user_stacklevel,
)
from captum_medcam._core.engine import progress_bar
from captum_medcam._core.layers import get_layer
from captum_medcam._core.meta import unwrap_meta
from captum_medcam._core.spatial import minmax_normalize, resize
from captum_medcam.metrics._similarity import spearman_rank_correlation, structural_similarity

__all__ = ["RandomizationResult", "model_parameter_randomization"]

Mode = Literal["cascading", "independent"]
SimilarityFunc = Callable[[Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class RandomizationResult:
    """What :func:`model_parameter_randomization` measured.

    Attributes:
        layers: the names of the randomised modules, in the order they were randomised
            (from the output towards the input).
        mode: ``"cascading"`` or ``"independent"``.
        similarity: one ``(L, N)`` tensor per measure (``"spearman"``, ``"ssim"`` or a
            callable's ``__name__``): row ``l`` compares the map after randomising
            ``layers[l]`` (and, when cascading, every layer before it) with the original.
        original: the maps of the unchanged model ``(N, C, *S)``.
        seeds: the seed under which each layer was re-initialised, ``(L,)`` ints.
        maps: the maps after each step ``(L, N, C, *S)`` with ``return_maps=True``, else None.
    """

    layers: tuple[str, ...]
    mode: Mode
    similarity: dict[str, Tensor]
    original: Tensor
    seeds: tuple[int, ...]
    maps: Tensor | None = None


def _module_ids(module: nn.Module) -> set[int]:
    return {id(m) for m in module.modules()}


def _build_attribution(
    attribution: Any,
    model: nn.Module,
    layer: str | None,
    attribution_kwargs: dict[str, Any] | None,
) -> Any:
    """Build the attribution object on the copy ``model`` and check that it uses the copy."""
    if isinstance(attribution, type):
        args: list[Any] = [model]
        if layer is not None:
            args.append(_submodule(model, layer))
        obj = attribution(*args, **(attribution_kwargs or {}))
    elif callable(attribution):
        if layer is not None or attribution_kwargs:
            raise ValueError(
                "layer= and attribution_kwargs= are for an attribution class; a factory builds "
                "the object itself, e.g. attribution=lambda m: LayerGradCam(m, m.layer4)"
            )
        obj = attribution(model)
    else:
        raise TypeError(
            "attribution must be an attribution class (e.g. IntegratedGradients) or a function "
            f"model -> attribution object, got {type(attribution).__name__}"
        )
    if not callable(getattr(obj, "attribute", None)):
        raise TypeError(
            f"the attribution built a {type(obj).__name__}, which has no attribute() method"
        )
    inside = _module_ids(model)
    forward = getattr(obj, "forward_func", None)
    owners: list[Any] = [getattr(forward, "__self__", forward)]
    used_layer = getattr(obj, "layer", None)
    owners += list(used_layer) if isinstance(used_layer, (list, tuple)) else [used_layer]
    for owner in owners:
        if isinstance(owner, nn.Module) and id(owner) not in inside:
            raise ValueError(
                f"the attribution uses a {type(owner).__name__} that is not part of the model it "
                "was given (the randomised copy), e.g. your own model's layer. Build it from "
                "the model argument: attribution=lambda m: LayerGradCam(m, m.layer4), or pass "
                "the class with layer='layer4'."
            )
    return obj


def _submodule(model: nn.Module, name: str) -> nn.Module:
    """The module named ``name``; ``""`` is the model itself (its own parameters, e.g. a
    bias or a scale held by the root module, are a layer of the randomization too)."""
    if name == "":
        return model
    return get_layer(model, name)


def _own_parameters(module: nn.Module) -> bool:
    return any(True for _ in module.parameters(recurse=False))


def _resettable(module: nn.Module) -> bool:
    return callable(getattr(module, "reset_parameters", None))


def _default_layers(model: nn.Module, x: Tensor, args: tuple[Any, ...], n: int) -> list[str]:
    """Modules with parameters, from the last one the forward pass calls to the first."""
    names = {id(m): name for name, m in model.named_modules()}
    called: dict[int, None] = {}

    def record(module: nn.Module, _inp: Any) -> None:
        called.setdefault(id(module), None)

    handles = [m.register_forward_pre_hook(record) for m in model.modules() if _own_parameters(m)]
    try:
        with torch.no_grad():
            model(
                x[:1],
                *index_additional_args(args, torch.zeros(1, dtype=torch.long, device=x.device), n),
            )
    finally:
        for h in handles:
            h.remove()
    modules = dict(model.named_modules())
    order = [names[i] for i in reversed(called)]
    skipped = [name for name in order if not _resettable(modules[name])]
    if skipped:
        shown = [name or f"{type(model).__name__} (the model itself, name '')" for name in skipped]
        warnings.warn(
            f"modules {shown} hold parameters but have no reset_parameters(); they are not "
            "randomised. Name their parents in layers= with a reinit= function to include them.",
            UserWarning,
            stacklevel=user_stacklevel(),
        )
    order = [name for name in order if name not in skipped]
    if not order:
        raise ValueError(
            "the model has no module with parameters and reset_parameters() to randomise"
        )
    return order


def _reset(module: nn.Module) -> None:
    """The default re-initialisation: ``reset_parameters()`` of every module in ``module``."""
    parts = [m for m in module.modules() if _own_parameters(m)]
    if not parts:
        raise ValueError(f"{type(module).__name__} has no parameters to randomise")
    missing = sorted({type(m).__name__ for m in parts if not _resettable(m)})
    if missing:
        raise ValueError(
            f"{type(module).__name__} contains modules with parameters but no "
            f"reset_parameters() ({', '.join(missing)}); pass reinit= a function that "
            "re-initialises such a module in place"
        )
    for m in parts:
        m.reset_parameters()  # type: ignore[operator]


def _reinit_under_seed(module: nn.Module, reinit: Callable[[nn.Module], None], seed: int) -> None:
    """Run ``reinit(module)`` with torch's RNGs seeded by ``seed``, then restore them."""
    cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
    devices = list(range(torch.cuda.device_count())) if cuda else []
    with torch.random.fork_rng(devices=devices):
        torch.random.default_generator.manual_seed(seed)
        if cuda:
            torch.cuda.manual_seed_all(seed)
        with torch.no_grad():
            reinit(module)


def _index_target(target: Any, index: Tensor, n: int) -> Any:
    if isinstance(target, Tensor) and target.numel() == n and n > 1:
        return target.reshape(-1)[index.to(target.device)]
    if isinstance(target, list):
        return [target[i] for i in index.tolist()]
    return target


def _attribute(
    obj: Any,
    x: Tensor,
    target: Any,
    additional_forward_args: Any,
    attribute_kwargs: dict[str, Any],
    chunk: int,
    upsample: bool,
) -> Tensor:
    n = x.shape[0]
    args = format_additional_args(additional_forward_args)
    pieces = []
    for start in range(0, n, chunk):
        index = torch.arange(start, min(start + chunk, n), device=x.device)
        kwargs = dict(attribute_kwargs)
        if additional_forward_args is not None:
            kwargs["additional_forward_args"] = index_additional_args(args, index, n)
        out = obj.attribute(
            x[start : start + chunk], target=_index_target(target, index, n), **kwargs
        )
        if isinstance(out, tuple) and len(out) == 1:
            out = out[0]
        if not isinstance(out, Tensor):
            raise TypeError(
                f"{type(obj).__name__}.attribute returned a {type(out).__name__}, not a tensor"
            )
        pieces.append(unwrap_meta(out).detach())
    maps = torch.cat(pieces)
    if maps.dim() != x.dim() or maps.shape[0] != n:
        raise ValueError(
            f"the attribution has shape {tuple(maps.shape)}; expected (N, C, *spatial) like the "
            f"inputs {tuple(x.shape)}"
        )
    if upsample and maps.shape[2:] != x.shape[2:]:
        maps = resize(maps, x.shape[2:])
    return maps


def _similarities(
    original: Tensor, maps: Tensor, measures: dict[str, SimilarityFunc], absolute: bool
) -> dict[str, Tensor]:
    a, b = original.sum(1, keepdim=True), maps.sum(1, keepdim=True)
    if absolute:
        a, b = a.abs(), b.abs()
    return {name: func(a, b) for name, func in measures.items()}


def normalized_ssim(a: Tensor, b: Tensor) -> Tensor:
    """SSIM of the maps min-max normalised to [0, 1] per example (``data_range=1``)."""
    return structural_similarity(minmax_normalize(a)[0], minmax_normalize(b)[0], data_range=1.0)


_MEASURES: dict[str, SimilarityFunc] = {
    "spearman": spearman_rank_correlation,
    "ssim": normalized_ssim,
}


def _measures(similarity: Iterable[str | SimilarityFunc]) -> dict[str, SimilarityFunc]:
    if isinstance(similarity, str) or callable(similarity):
        similarity = [similarity]
    out: dict[str, SimilarityFunc] = {}
    for s in similarity:
        if isinstance(s, str):
            if s not in _MEASURES:
                raise ValueError(
                    f"unknown similarity {s!r}; use 'spearman', 'ssim' or a function (a, b) -> (N,)"
                )
            out[s] = _MEASURES[s]
        elif callable(s):
            out[getattr(s, "__name__", type(s).__name__)] = s
        else:
            raise TypeError(f"a similarity must be a name or a function (a, b) -> (N,), got {s!r}")
    if not out:
        raise ValueError("similarity is empty; use e.g. ('spearman', 'ssim')")
    return out


def _seeds(generator: torch.Generator | int, count: int) -> list[int]:
    g = make_generator(generator)
    return torch.randint(0, 2**62, (count,), generator=g, device=g.device).tolist()


@renamed_keywords(explainer="attribution", explainer_kwargs="attribution_kwargs")
def model_parameter_randomization(
    model: nn.Module,
    attribution: type | Callable[[nn.Module], Any],
    inputs: Tensor,
    target: Any = None,
    additional_forward_args: Any = None,
    *,
    layer: str | None = None,
    attribution_kwargs: dict[str, Any] | None = None,
    attribute_kwargs: dict[str, Any] | None = None,
    mode: Mode = "cascading",
    layers: Sequence[str] | None = None,
    reinit: Callable[[nn.Module], None] | None = None,
    similarity: Sequence[str | SimilarityFunc] = ("spearman", "ssim"),
    absolute: bool = True,
    upsample: bool = True,
    generator: torch.Generator | int = DEFAULT_SEED,
    max_examples_per_batch: int | None = None,
    return_maps: bool = False,
    show_progress: bool = False,
) -> RandomizationResult:
    r"""Model parameter randomization test: does the map change when the weights do?

    On a deep copy of ``model``, the layers are re-initialised one after the other, from
    the output towards the input; after each step the attribution is recomputed and
    compared with the original map::

        cascading:    step l randomises layers[0..l]    (Adebayo et al.'s main test)
        independent:  step l randomises layers[l] only  (every other layer as trained)
        s_l = similarity(|map(x; randomised model)|, |map(x; model)|)   per example

    A method that explains the model should lose its similarity quickly (Grad-CAM, and
    gradients, do); a method whose similarity stays near 1 at every step does not depend
    on the weights and explains the input, not the model. Adebayo et al. report the
    Spearman rank correlation of the absolute maps (``absolute=True``, the default) and
    without absolute value, and the SSIM of maps normalised to [0, 1]; both are computed
    here by default, after summing a map's channels.

    Re-initialisation: each layer's own ``reset_parameters()`` (PyTorch's default
    initialisation of that layer), or ``reinit(module)``. Reproducibility: one seed per
    layer is drawn as ``torch.randint(0, 2**62, (L,), generator=generator)``, and layer
    ``l`` is re-initialised under ``torch.manual_seed(seeds[l])`` inside
    ``torch.random.fork_rng``: the same generator gives the same result, the same layer
    gets the same weights in both modes, and torch's global random state is restored
    afterwards.

    The user's model is never touched: its parameters, buffers, training flags and hooks
    are the same (bitwise) afterwards; even the original map is computed on the copy.

    References:
        Adebayo, Gilmer, Muelly, Goodfellow, Hardt, Kim. "Sanity Checks for Saliency
        Maps". NeurIPS 2018. arXiv:1810.03292.

    Args:
        model: the model (an ``nn.Module``); it is deep-copied, which needs the memory of
            a second model on its device.
        attribution: how to build the attribution on the copy. Either a Captum-style
            attribution class, built as ``attribution(copy, **attribution_kwargs)`` or, with
            ``layer``, ``attribution(copy, copy.get_submodule(layer), **attribution_kwargs)``;
            or a function ``copy -> attribution object``, e.g.
            ``lambda m: LayerGradCam(m, m.layer4)``. The object needs ``attribute(inputs,
            target=..., **attribute_kwargs)``. It is built once and reused: randomising
            changes the copy's parameters in place. (Called ``explainer`` before; that
            keyword still works, with a ``FutureWarning``.)
        inputs: ``(N, C, *S)`` with 1 to 3 spatial dims.
        target: the class to explain, as in Captum. Keep it fixed, e.g. the class predicted
            by the original model: ``target=model(x).argmax(1)``.
        additional_forward_args: further model arguments, as in Captum.
        layer: dotted name of the layer (``"layer4"``, ``"features.7"``) for an attribution
            class that takes one (``LayerGradCam``, ``ScoreCAM``); looked up in the copy.
        attribution_kwargs: further constructor arguments for an attribution class
            (``explainer_kwargs`` before; it still works, with a ``FutureWarning``).
        attribute_kwargs: further arguments of ``attribute`` (``n_steps=16``,
            ``baselines=...``).
        mode: ``"cascading"`` (default) or ``"independent"``.
        layers: dotted names of the modules to randomise, in order (from the output
            towards the input). A module randomises every parameterised module inside it,
            so blocks (``["fc", "layer4", "layer3"]``) work. Default: every module with
            parameters and ``reset_parameters()``, in reverse order of their first call in
            a forward pass of one example (modules the forward never calls are left out;
            modules with parameters but no ``reset_parameters()`` are left out with a
            warning).
        reinit: a function that re-initialises a module in place; default calls
            ``reset_parameters()`` on every parameterised module inside it.
        similarity: names among ``"spearman"`` and ``"ssim"``, or functions
            ``(a, b) -> (N,)`` over maps ``(N, 1, *S)`` (named by ``__name__``).
        absolute: compare absolute values of the maps (default, as Adebayo et al.'s main
            figures); False keeps the sign.
        upsample: resize maps whose spatial size differs from the inputs' (layer
            attributions such as ``LayerGradCam``) to the inputs' size, linearly.
        generator: an int seed (default 0: the same call gives the same result) or a
            ``torch.Generator`` (its state advances). Torch's global random state is never
            used.
        max_examples_per_batch: examples per ``attribute`` call (None: all at once);
            bounds the memory of methods such as Integrated Gradients.
        return_maps: keep the map of every step in the result.
        show_progress: show a progress bar over the layers.

    Returns:
        A :class:`RandomizationResult`; ``result.similarity["spearman"]`` is ``(L, N)``.
        Spearman is NaN for an example whose map is constant (e.g. an all-zero Grad-CAM
        after ReLU): a constant map has no ranking.

    Raises:
        TypeError: a model that is not an ``nn.Module``, an ``attribution`` that is neither
            a class nor a function, maps that are not a tensor.
        ValueError: unknown layer names or similarity names, an attribution built on the
            user's model instead of the copy, maps not shaped like the inputs.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from captum.attr import LayerGradCam
        >>> from captum_medcam.metrics import model_parameter_randomization
        >>> model = nn.Sequential(nn.Conv3d(1, 4, 3, padding=1), nn.ReLU(),
        ...                       nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(4, 2)).eval()
        >>> x = torch.randn(2, 1, 12, 12, 12)
        >>> result = model_parameter_randomization(
        ...     model, lambda m: LayerGradCam(m, m[1]), x, target=1, generator=0)
        >>> result.layers, result.similarity["spearman"].shape
        (('4', '0'), torch.Size([2, 2]))
    """
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"model must be a torch.nn.Module (it is deep-copied), got {type(model).__name__}"
        )
    check_choice(mode, "mode", ("cascading", "independent"))
    x = check_inputs(unwrap_meta(inputs))
    check_target_type(target)
    check_flags(
        absolute=absolute, upsample=upsample, return_maps=return_maps, show_progress=show_progress
    )
    if layer is not None and not isinstance(layer, str):
        raise TypeError(f"layer must be a dotted module name such as 'layer4', got {layer!r}")
    n = x.shape[0]
    chunk = (
        n
        if max_examples_per_batch is None
        else check_positive_int(max_examples_per_batch, "max_examples_per_batch")
    )
    measures = _measures(similarity)
    reinit = _reset if reinit is None else reinit
    if not callable(reinit):
        raise TypeError(f"reinit must be a function of a module or None, got {reinit!r}")
    if layers is not None and not isinstance(layers, str):
        if not isinstance(layers, (list, tuple)) or not all(isinstance(m, str) for m in layers):
            raise TypeError(f"layers must be dotted module names, got {layers!r}")
        if not layers:
            raise ValueError("layers is empty; give at least one module name, or None for all")
    seeds_from = make_generator(generator)
    attribute_kwargs = dict(attribute_kwargs or {})
    args = format_additional_args(additional_forward_args)

    work = copy.deepcopy(model)
    obj = _build_attribution(attribution, work, layer, attribution_kwargs)
    if layers is None:
        names = _default_layers(work, x, args, n)
    else:
        if isinstance(layers, str):
            layers = [layers]
        names = list(layers)
        if not names:
            raise ValueError("layers is empty; give at least one module name, or None for all")
    modules = [_submodule(work, name) for name in names]
    seeds = _seeds(seeds_from, len(names))
    trained = (
        {k: v.clone() for k, v in work.state_dict().items()} if mode == "independent" else None
    )

    def run() -> Tensor:
        return _attribute(
            obj, x, target, additional_forward_args, attribute_kwargs, chunk, upsample
        )

    original = run()
    scores: dict[str, list[Tensor]] = {name: [] for name in measures}
    kept: list[Tensor] = []
    bar = progress_bar(len(names), "randomising layers", unit="layer", show=show_progress)
    try:
        for i in range(len(names)):
            if trained is not None and i > 0:
                work.load_state_dict(trained)
            _reinit_under_seed(modules[i], reinit, seeds[i])
            maps = run()
            for name, value in _similarities(original, maps, measures, absolute).items():
                scores[name].append(value)
            if return_maps:
                kept.append(maps)
            bar.update(1)
    finally:
        bar.close()
    return RandomizationResult(
        layers=tuple(names),
        mode=mode,
        similarity={name: torch.stack(values) for name, values in scores.items()},
        original=original,
        seeds=tuple(seeds),
        maps=torch.stack(kept) if return_maps else None,
    )
