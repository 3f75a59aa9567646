"""Score-CAM for 1D, 2D and 3D inputs, and the ``ScoreCAM3D`` entry point for volumes."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any, Literal, final

import numpy as np
import torch
import torch.nn.functional as F
from captum.attr import PerturbationAttribution
from torch import Tensor

from captum_medcam._core.checks import (
    check_baseline_value,
    check_choice,
    check_finite_float,
    check_positive_int,
    format_additional_args,
)
from captum_medcam._core.engine import Perturbed, forward_in_chunks, run_jobs
from captum_medcam._core.spatial import minmax_normalize, resize
from captum_medcam._core.targets import Score, class_scores, per_sample_target
from captum_medcam.attr._base import VOLUME, CAMBase, CAMOutput
from captum_medcam.attr._cam import weighted_sum
from captum_medcam.attr._interop import captum_attribute

__all__ = ["ScoreCAM", "ScoreCAM3D"]

NormalizeAt = Literal["input", "layer"]
ChannelCriterion = Literal["mean", "variance"]

#: Masked copies of each example per forward pass. On a CPU larger batches gain little and
#: cost memory; on a GPU raise it until memory is the limit (see benchmarks/).
DEFAULT_PERTURBATIONS_PER_EVAL = 16


def _input_baseline(baselines: object, x: Tensor) -> Tensor:
    """A finite number or tensor broadcast to the inputs ``x`` ``(N, C, *S)``."""
    base = torch.as_tensor(check_baseline_value(baselines), dtype=x.dtype, device=x.device)
    try:
        return base.expand_as(x)
    except RuntimeError:
        raise ValueError(
            f"baselines of shape {tuple(base.shape)} do not broadcast to the inputs' shape "
            f"{tuple(x.shape)}"
        ) from None


def check_score_options(
    x: Tensor,
    perturbations_per_eval: int,
    score: Score,
    normalize_at: NormalizeAt,
    baselines: float | Tensor | None,
) -> Tensor | None:
    """Check the options Score-CAM, SS-CAM and IS-CAM share; return the input baseline
    ``(N, C, *S)`` or None."""
    check_positive_int(perturbations_per_eval, "perturbations_per_eval")
    check_choice(score, "score", ("probability", "logit", "sigmoid"))
    check_choice(normalize_at, "normalize_at", ("input", "layer"))
    return None if baselines is None else _input_baseline(baselines, x)


def check_max_channels(max_channels: object) -> int | float | None:
    """Return ``max_channels`` if it is None, an int >= 1 or a float fraction in (0, 1].

    Raises:
        TypeError: a bool, a string or another type.
        ValueError: an int below 1, or a fraction outside (0, 1] (NaN and inf included).
    """
    if max_channels is None:
        return None
    if isinstance(max_channels, (bool, np.bool_)):
        pass  # a flag is neither a count nor a fraction
    elif isinstance(max_channels, numbers.Integral):
        return check_positive_int(max_channels, "max_channels")
    elif isinstance(max_channels, numbers.Real):  # float, NumPy floats
        return check_finite_float(max_channels, "max_channels", low=0.0, high=1.0, low_open=True)
    raise TypeError(
        "max_channels must be None (exact), an int >= 1 (a number of channels) or a float "
        f"fraction in (0, 1], got {max_channels!r} ({type(max_channels).__name__})"
    )


def channel_budget(max_channels: int | float, n_channels: int) -> int:
    """The number of channels kept: ``min(max_channels, K)`` for an int, ``ceil(f * K)`` for a
    fraction ``f`` (at least 1; rounded to 9 digits first so that ``0.3 * 10`` keeps 3)."""
    if isinstance(max_channels, float):
        return max(1, math.ceil(round(max_channels * n_channels, 9)))
    return min(int(max_channels), n_channels)


def select_channels(acts: Tensor, max_channels: int | float, criterion: ChannelCriterion) -> Tensor:
    """The channels an approximate Score-CAM evaluates, per example.

    Channels are ranked by the spatial mean or variance of ``A_k`` at layer resolution
    (largest first); ties are broken by the channel index (lower first), so the choice is
    deterministic and does not depend on the other examples of the batch.

    Args:
        acts: the layer's activations ``(N, K, *S')``.
        max_channels: an int (a number of channels) or a float fraction of ``K``.
        criterion: ``"mean"`` or ``"variance"`` (population variance) of each ``A_k``.

    Returns:
        A bool tensor ``(N, K)``, true for the kept channels (the same number per example).
    """
    n, k = acts.shape[:2]
    flat = acts.flatten(2)
    value = flat.mean(-1) if criterion == "mean" else flat.var(-1, correction=0)
    keep = channel_budget(max_channels, k)
    order = torch.sort(value, dim=1, descending=True, stable=True).indices[:, :keep]
    selected = torch.zeros(n, k, dtype=torch.bool, device=acts.device)
    return selected.scatter_(1, order, True)


def upsample_masks(
    masks: Tensor, size: Sequence[int], mode: str, align_corners: bool, normalize_at: NormalizeAt
) -> Tensor:
    """Score-CAM's masks ``H_k`` at input resolution: ``(M, 1, *S')`` -> ``(M, 1, *size)``.

    ``normalize_at="input"`` min-max normalises after the resize (official code); with
    ``"layer"`` the masks are already normalised at layer resolution (torchcam).
    """
    up = resize(masks, size, mode, align_corners)
    return minmax_normalize(up)[0] if normalize_at == "input" else up


def _distinct_masks(
    keys: Tensor, constant: Tensor, zero_mask: bool, selected: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """Group channels whose min-max normalised maps are identical, per example.

    Score-CAM's weight of a channel depends on its normalised mask only, so channels with
    the same mask share one forward pass. Constant channels have no mask: they are left out,
    unless ``zero_mask`` asks for the all-zero mask's score (the softmax variants).

    Args:
        keys: normalised maps ``(N, K, *S')``.
        constant: ``(N, K)``, true where a map is constant.
        zero_mask: evaluate the all-zero mask for examples with a constant channel.
        selected: ``(N, K)``, the channels to evaluate (approximate Score-CAM), or None for
            all; the others get no mask (their slot is meaningless and masked by the caller).

    Returns:
        ``(masks, owner, slots)``: the distinct masks ``(M, 1, *S')``, the example each
        belongs to ``(M,)``, and for every channel the index of its mask ``(N, K)`` (constant
        channels point at their example's zero mask, or at 0 when there is none).
    """
    n, k = keys.shape[:2]
    flat = keys.flatten(2)
    masks: list[Tensor] = []
    owners: list[Tensor] = []
    slots = torch.zeros(n, k, dtype=torch.long, device=keys.device)
    offset = 0
    for i in range(n):
        wanted = ~constant[i] if selected is None else ~constant[i] & selected[i]
        live = wanted.nonzero().squeeze(1)
        unique, inverse = torch.unique(flat[i, live], dim=0, return_inverse=True)
        slots[i, live] = inverse + offset
        rows = [unique]
        flat_channels = constant[i] if selected is None else constant[i] & selected[i]
        if zero_mask and bool(flat_channels.any()):
            rows.append(flat.new_zeros(1, flat.shape[-1]))
            slots[i, flat_channels] = offset + unique.shape[0]
        block = torch.cat(rows)
        masks.append(block)
        owners.append(torch.full((block.shape[0],), i, dtype=torch.long, device=keys.device))
        offset += block.shape[0]
    return torch.cat(masks).view(-1, 1, *keys.shape[2:]), torch.cat(owners), slots


def reference_scores(
    forward_func: Callable[..., Any],
    base: Tensor,
    args: tuple[Any, ...],
    targets: Tensor | list[Any] | None,
    score: Score,
) -> Tensor:
    """The baseline's score ``f_c(x_b)`` ``(N,)``, subtracted from every channel's score;
    through the engine, so that it runs in the masked forwards' precision."""
    n = base.shape[0]
    base_out = forward_in_chunks(forward_func, base, args, chunk_size=n)
    return class_scores(base_out, targets, torch.arange(n, device=base.device), score)


def score_cam_map(
    channel_scores: Tensor,
    acts: Tensor,
    x: Tensor,
    output: CAMOutput,
    mode: str,
    *,
    reference: Tensor | None,
    constant: Tensor,
    selected: Tensor | None,
    channel_softmax: bool,
    relu_attributions: bool,
) -> Tensor:
    """Score-CAM's last stages, shared with SS-CAM: channel scores ``(N, K)`` -> weights
    (minus the baseline's score; a softmax over the channels, or constant and unselected
    channels set to 0) -> weighted sum -> resize -> ReLU (after the resize, as in the
    official code). Returns ``(N, 1, *S)``, or ``(N, 1, *S')`` without ``upsample``."""
    weights = channel_scores
    if reference is not None:
        weights = weights - reference.unsqueeze(1)
    if channel_softmax:
        if selected is not None:  # softmax over the selected channels only
            weights = weights.masked_fill(~selected, -math.inf)
        weights = weights.softmax(1)
    else:
        weights = weights.masked_fill(constant if selected is None else constant | ~selected, 0.0)
    cam = weighted_sum(weights, acts)
    if output.upsample:
        cam = resize(cam, x.shape[2:], mode, output.align_corners)
    if relu_attributions:
        cam = F.relu(cam)
    return cam


class ScoreCAM(CAMBase, PerturbationAttribution):
    r"""Score-CAM: channel weights from the model's score on the input masked by each channel.

    For a layer with activations ``A`` of shape ``(N, K, *S')`` and inputs ``x`` of shape
    ``(N, C, *S)``::

        H_k = s(Up(A_k))                  s(M) = (M - min M) / (max M - min M)
        w_k = f_c(x * H_k)                f_c: softmax probability of class c
        L   = ReLU(sum_k w_k * Up(A_k))

    ``Up`` resizes from ``S'`` to ``S`` (linear, bilinear or trilinear by the number of
    spatial dims, ``align_corners=False``). Channels whose map is constant carry no spatial
    information: their weight is 0 and no forward is spent on them. Channels whose
    normalised masks are identical share one forward (exact: the weight depends on the mask
    only). Both savings are common on the small maps of deep layers of ReLU networks. The
    masked inputs are made chunk by chunk by the perturbation engine
    (:mod:`captum_medcam._core.engine`): memory is bounded by ``perturbations_per_eval``.

    The result is not normalised (normalising is a display step). ``relu_attributions`` is
    True by default, unlike Captum's ``LayerGradCam``, because the official code applies
    the ReLU; it is applied after the resize, as in the official code.

    Transformers: pass ``reshape_transform=`` to the constructor, a callable that turns the
    layer's output (tokens ``(N, T, E)``, channel-last Swin maps) into ``(N, C, *grid)``;
    ready-made ones for torchvision's and MONAI's ViTs, UNETR and SwinUNETR are in
    :mod:`captum_medcam.reshapes`.

    Variants (each an explicit option; the defaults follow the official code):

    ===================== ================ ========== =============== ============ ==============
    variant               score            baselines  channel_softmax normalize_at align_corners
    ===================== ================ ========== =============== ============ ==============
    official code         ``probability``  None       False           ``input``    False
    paper, Algorithm 1    ``logit``        0          True            ``input``    False
    pytorch-grad-cam      ``logit``        None       True            ``input``    True
    torchcam              ``logit``        None       True            ``layer``    False
    ===================== ================ ========== =============== ============ ==============

    Under ``channel_softmax`` a baseline's score is a constant shift and cancels, so the
    paper's and the peers' variants differ only in where the masks are normalised and how
    they are upsampled. pytorch-grad-cam adds ``1e-8`` to the mask's range and torchcam
    works in chunks of 32 masked inputs; neither changes the result beyond rounding.

    Approximate Score-CAM (opt-in, ``max_channels``; after Faster Score-CAM, which keeps the
    channels of largest variance): per example, rank the channels by a cheap statistic of
    ``A_k`` at layer resolution, keep the top ``m`` set ``T`` (ties: lower channel index
    first) and compute::

        w_k = f_c(x * H_k)  for k in T,     w_k = 0  otherwise
        L   = ReLU(sum_{k in T} w_k * Up(A_k))

    Only ``|T|`` masked forwards are spent (fewer when masks of ``T`` are constant or equal).
    What is approximated: the terms of the channels left out, whose scores are never
    measured. With ``channel_softmax`` the softmax runs over the channels of ``T`` only, so
    the weights still sum to 1; a baseline's score is subtracted as in the exact method.
    ``channel_criterion="variance"`` is the default: a channel with little spatial variation
    has a nearly flat mask that adds little to the map, and a constant channel (variance 0)
    is ranked last, where ``"mean"`` can spend the budget on bright but flat channels (it
    does rank worse at small budgets in the measurements below).
    The trade-off, measured on a narrow MONAI ``resnet10`` trained on 32^3 synthetic lesion
    volumes (``layer4``: 128 channels, 81 distinct masks per volume; CPU time; Spearman rank
    correlation with the exact map, mean over 6 volumes;
    ``benchmarks/bench_score_cam_approx.py``, more in the README)::

        max_channels  criterion  forwards  speed-up  Spearman  change in DAUC / IAUC
        0.5           variance   64        1.3x      0.999     -0.0007 / -0.0003
        0.25          variance   32        2.5x      0.904     +0.0161 / -0.0145
        0.1           variance   13        6.1x      0.764     +0.0027 / -0.0062
        0.1           mean       13        6.2x      0.582     +0.0890 / -0.0671
        0.05          variance    7       12.6x      0.536     +0.0478 / -0.0505

    The cost falls with the budget; on this 2x2x2 map the ranking degrades below a quarter
    of the channels (for single volumes more than the mean shows). On 64^3 volumes (a 4x4x4
    map, 128 distinct masks) ``max_channels=0.1`` is 9.0x faster at a Spearman correlation
    of 0.997 (DAUC +0.0052, IAUC -0.0001). Exact Score-CAM is the default.

    Args:
        forward_func: the model, or a function of ``(inputs, *additional_forward_args)``.
        layer: the module whose output (or input) gives the masks.
        device_ids: as in Captum, for ``DataParallel`` models.
        reshape_transform: None, or a callable turning the layer's output into
            ``(N, C', *S')``.

    References:
        Wang, Wang, Du, Yang, Zhang, Ding, Mardziel, Hu. "Score-CAM: Score-Weighted Visual
        Explanations for Convolutional Neural Networks". CVPR Workshops 2020.
        arXiv:1910.01279.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from captum_medcam import ScoreCAM
        >>> model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(),
        ...                       nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)).eval()
        >>> cam = ScoreCAM(model, model[1])
        >>> cam.attribute(torch.randn(2, 1, 16, 16), target=[0, 2]).shape
        torch.Size([2, 1, 16, 16])
        >>> # approximate: only the 2 channels of largest variance, per example
        >>> cam.attribute(torch.randn(2, 1, 16, 16), target=[0, 2], max_channels=2).shape
        torch.Size([2, 1, 16, 16])
    """

    @captum_attribute
    def attribute(
        self,
        inputs: Tensor,
        target: Any = None,
        additional_forward_args: Any = None,
        *,
        score: Score = "probability",
        baselines: float | Tensor | None = None,
        channel_softmax: bool = False,
        normalize_at: NormalizeAt = "input",
        align_corners: bool = False,
        perturbations_per_eval: int = DEFAULT_PERTURBATIONS_PER_EVAL,
        max_channels: int | float | None = None,
        channel_criterion: ChannelCriterion = "variance",
        relu_attributions: bool = True,
        attribute_to_layer_input: bool = False,
        upsample: bool = True,
        interpolate_mode: str | None = None,
        show_progress: bool = False,
    ) -> Tensor:
        """Compute Score-CAM maps.

        Args:
            inputs: ``(N, C, *S)`` with 1 to 3 spatial dims (5-D for :class:`ScoreCAM3D`),
                floating point, a tensor or a MONAI ``MetaTensor``.
            target: the class to explain, as in Captum: an int, a tuple, a tensor or list
                with one entry per example, or None when the model returns one score per
                example.
            additional_forward_args: further arguments of the model, as in Captum; tensors
                whose first dim is ``N`` are indexed with their example.
            score: ``"probability"`` (softmax of the target class; sigmoid for a single
                output), ``"logit"``, or ``"sigmoid"`` (the sigmoid of the target label's
                logit alone: use it for multi-label heads with one sigmoid per finding, such
                as ChestMNIST; ``target`` names the label).
            baselines: None (no baseline, the official code), or a number or tensor
                broadcastable to ``inputs`` whose score is subtracted from every weight
                (the paper uses 0, a black image).
            channel_softmax: apply a softmax over channels to the weights (the paper's
                Algorithm 1, pytorch-grad-cam, torchcam). Constant channels then take part
                with the score of the all-zero mask.
            normalize_at: ``"input"`` min-max normalises the upsampled maps (official code);
                ``"layer"`` normalises at layer resolution, then upsamples (torchcam).
            align_corners: passed to the interpolation (True in pytorch-grad-cam). Not taken
                by :class:`ScoreCAM3D` (always False).
            perturbations_per_eval: masked copies per example in one forward pass: each
                forward holds at most ``perturbations_per_eval * N`` inputs, which bounds
                memory; the number of channels does not.
            max_channels: None (default): exact Score-CAM, every channel. An int ``m >= 1``
                or a float fraction ``f`` in (0, 1] makes it approximate: per example only
                the ``min(m, K)`` (or ``ceil(f * K)``) channels ranked highest by
                ``channel_criterion`` are evaluated, the others get weight 0 and cost no
                forward (see *Approximate Score-CAM* above). ``K`` channels or ``1.0`` give
                the exact map.
            channel_criterion: how channels are ranked for ``max_channels``: ``"variance"``
                (default) or ``"mean"`` of ``A_k`` over its positions, at layer resolution.
            relu_attributions: apply ReLU to the map (default True, as the official code).
            attribute_to_layer_input: use the layer's input instead of its output.
            upsample: return maps at input resolution ``(N, 1, *S)``; False returns them at
                layer resolution ``(N, 1, *S')``. Not taken by :class:`ScoreCAM3D`.
            interpolate_mode: ``None`` picks linear/bilinear/trilinear by the number of
                spatial dims; ``"nearest"`` and ``"area"`` also work. Not taken by
                :class:`ScoreCAM3D` (always trilinear).
            show_progress: show a progress bar over the forward passes.

        Returns:
            Maps ``(N, 1, *S)`` (or ``(N, 1, *S')`` with ``upsample=False``) on the inputs'
            device and dtype. A MONAI ``MetaTensor`` input gives a ``MetaTensor`` with its
            metadata.

        Raises:
            TypeError: inputs not a floating tensor; a layer that is not a module; a
                baseline, target or option of the wrong type; an output keyword passed to
                :class:`ScoreCAM3D`.
            ValueError: wrong input dims (not 5-D for :class:`ScoreCAM3D`), NaN/inf inputs
                or baselines, a target out of range, a layer not reached by the forward
                pass, ``perturbations_per_eval < 1``, ``max_channels`` below 1 or a
                fraction outside (0, 1], unknown options.
        """
        return self._score_cam(
            inputs,
            target,
            additional_forward_args,
            score=score,
            baselines=baselines,
            channel_softmax=channel_softmax,
            normalize_at=normalize_at,
            perturbations_per_eval=perturbations_per_eval,
            max_channels=max_channels,
            channel_criterion=channel_criterion,
            relu_attributions=relu_attributions,
            attribute_to_layer_input=attribute_to_layer_input,
            show_progress=show_progress,
            output=self._output(upsample, interpolate_mode, align_corners),
        )

    def _score_cam(
        self,
        inputs: Tensor,
        target: Any,
        additional_forward_args: Any,
        *,
        score: Score,
        baselines: float | Tensor | None,
        channel_softmax: bool,
        normalize_at: NormalizeAt,
        perturbations_per_eval: int,
        max_channels: int | float | None,
        channel_criterion: ChannelCriterion,
        relu_attributions: bool,
        attribute_to_layer_input: bool,
        show_progress: bool,
        output: CAMOutput,
        mask_options: dict[str, Any] | None = None,
    ) -> Tensor:
        """The pipeline: checks, masks, their scores (:meth:`_mask_scores`, which also gets
        ``mask_options``, a variant's own keywords), weights, map."""
        x, mode = self._check_call(
            inputs,
            target,
            output,
            channel_softmax=channel_softmax,
            relu_attributions=relu_attributions,
            attribute_to_layer_input=attribute_to_layer_input,
            show_progress=show_progress,
        )
        base = check_score_options(x, perturbations_per_eval, score, normalize_at, baselines)
        max_channels = check_max_channels(max_channels)
        check_choice(channel_criterion, "channel_criterion", ("mean", "variance"))
        args = format_additional_args(additional_forward_args)
        n = x.shape[0]

        clean, acts = self._capture(
            x, args, attribute_to_layer_input=attribute_to_layer_input, method="Score-CAM"
        )
        targets = per_sample_target(target, n, clean)
        reference = (
            None
            if base is None
            else reference_scores(self.forward_func, base, args, targets, score)
        )
        keys, constant = minmax_normalize(acts)
        selected = (
            None if max_channels is None else select_channels(acts, max_channels, channel_criterion)
        )
        masks, owner, slots = _distinct_masks(
            keys, constant, zero_mask=channel_softmax, selected=selected
        )
        scores = self._mask_scores(
            x,
            targets,
            args,
            masks,
            owner,
            score=score,
            mode=mode,
            align_corners=output.align_corners,
            normalize_at=normalize_at,
            chunk_size=perturbations_per_eval * n,
            show_progress=show_progress,
            **(mask_options or {}),
        )
        # (N, K): each channel takes its mask's score; with every map constant there is no
        # mask at all and every weight is 0, as in the official code.
        channel_scores = scores[slots] if scores.numel() else x.new_zeros(slots.shape)
        cam = score_cam_map(
            channel_scores,
            acts,
            x,
            output,
            mode,
            reference=reference,
            constant=constant,
            selected=selected,
            channel_softmax=channel_softmax,
            relu_attributions=relu_attributions,
        )
        return self._finish(cam, x, inputs, output, mode)  # already resized: metadata only

    def _mask_scores(
        self,
        x: Tensor,
        targets: Tensor | list[Any] | None,
        args: tuple[Any, ...],
        masks: Tensor,
        owner: Tensor,
        *,
        score: Score,
        mode: str,
        align_corners: bool,
        normalize_at: NormalizeAt,
        chunk_size: int,
        show_progress: bool,
    ) -> Tensor:
        """The score of each masked input ``f_c(x_owner * H)``, through the engine.

        A variant that scores a mask differently (several noisy or scaled copies per mask:
        SS-CAM, IS-CAM) overrides this stage; the masks, the weights and the map stay.

        Args:
            x: checked inputs ``(N, C, *S)``.
            targets: per-example targets (:func:`per_sample_target`).
            args: the additional forward arguments (indexed per row by the engine).
            masks: the distinct masks at layer resolution ``(M, 1, *S')``.
            owner: ``(M,)``, the example of each mask.
            score, mode, align_corners, normalize_at: as in :meth:`attribute`.
            chunk_size: masked inputs per forward pass.
            show_progress: show a progress bar.

        Returns:
            ``(M,)`` scores in the inputs' dtype.
        """

        def build(start: int, stop: int) -> Perturbed:
            index = owner[start:stop]
            mask = upsample_masks(masks[start:stop], x.shape[2:], mode, align_corners, normalize_at)
            return Perturbed(x.index_select(0, index) * mask, index)

        return run_jobs(
            self.forward_func,
            x,
            targets,
            args,
            owner.shape[0],
            build,
            chunk_size=chunk_size,
            score=score,
            show_progress=show_progress,
            desc="Score-CAM forwards",
        )


@final
class ScoreCAM3D(ScoreCAM):
    r"""Score-CAM for volumes: ``(N, C, D, H, W)`` in, ``(N, 1, D, H, W)`` out.

    :class:`ScoreCAM` (see there for the formula, the variants and the approximation) with
    the contract a volume pipeline needs: 5-D input is required, the map is always returned
    at input resolution, upsampled trilinearly with ``align_corners=False``, and a MONAI
    ``MetaTensor`` input gives a ``MetaTensor`` output with the same affine and
    ``applied_operations``, ready for ``Invertd`` and ``SaveImaged``. ``upsample``,
    ``interpolate_mode`` and ``align_corners`` are fixed (passing one is a ``TypeError``).

    References:
        Wang et al. "Score-CAM: Score-Weighted Visual Explanations for Convolutional Neural
        Networks". CVPR Workshops 2020. arXiv:1910.01279.

    Example:
        >>> import torch
        >>> from monai.networks.nets import resnet10
        >>> from captum_medcam import ScoreCAM3D
        >>> net = resnet10(spatial_dims=3, n_input_channels=1, num_classes=2).eval()
        >>> maps = ScoreCAM3D(net, net.layer4).attribute(torch.randn(1, 1, 32, 32, 32), target=1)  # doctest: +SKIP
        >>> maps.shape  # doctest: +SKIP
        torch.Size([1, 1, 32, 32, 32])
    """

    fixed_output = VOLUME
