"""Ablation-CAM for 1D, 2D and 3D inputs, and the ``AblationCAM3D`` entry point for volumes."""

from __future__ import annotations

from typing import Any, final

import torch
import torch.nn.functional as F
from captum.attr import PerturbationAttribution
from torch import Tensor

from captum_medcam._core.baselines import activation_baseline
from captum_medcam._core.checks import (
    check_baseline_value,
    check_choice,
    check_positive_int,
    format_additional_args,
)
from captum_medcam._core.engine import Perturbed, run_jobs
from captum_medcam._core.targets import Score, class_scores, per_sample_target
from captum_medcam.attr._base import VOLUME, CAMBase
from captum_medcam.attr._cam import weighted_sum
from captum_medcam.attr._hooks import forward_with_capture, replacing_forward
from captum_medcam.attr._interop import captum_attribute
from captum_medcam.attr._reshape import apply_reshape, unreshape
from captum_medcam.attr._score_cam import ChannelCriterion, check_max_channels, select_channels

__all__ = ["AblationCAM", "AblationCAM3D"]

#: Ablated copies of each example per forward pass. Only the layers after ``layer`` run on
#: the copies, and each chunk reruns the layers before it once per example (as CRM).
DEFAULT_PERTURBATIONS_PER_EVAL = 64


def ablation_weights(clean: Tensor, ablated: Tensor, relative: bool = True) -> Tensor:
    """Ablation-CAM's channel weights from the scores with and without each channel.

    ``w_k = (y_c - y_c^k) / y_c`` (the paper's relative drop), or ``y_c - y_c^k`` with
    ``relative=False``.

    Args:
        clean: ``(N,)``, the target's score ``y_c`` on the unchanged input.
        ablated: ``(N, K)``, the score ``y_c^k`` with channel ``k`` of the layer ablated.
        relative: divide the drop by ``y_c``.

    Returns:
        ``(N, K)``.

    Raises:
        ValueError: ``relative`` and a score ``y_c`` that is exactly 0 (the relative drop is
            undefined there).
    """
    drop = clean.unsqueeze(1) - ablated
    if not relative:
        return drop
    zero = clean == 0
    if bool(zero.any()):
        rows = zero.nonzero().flatten().tolist()
        raise ValueError(
            f"the target's score is exactly 0 for example(s) {rows}, so the relative drop "
            "(y_c - y_c^k) / y_c is undefined; pass relative=False (the drop itself, the same "
            'map up to a positive factor) or score="probability"'
        )
    return drop / clean.unsqueeze(1)


def ablate_channels(acts: Tensor, base: Tensor, owner: Tensor, channel: Tensor) -> Tensor:
    """Copies of the activations with one channel each set to the baseline.

    Args:
        acts: the layer's activations ``(N, K, *S')``.
        base: the ablation value, shaped like ``acts``.
        owner: ``(B,)``, the example of each copy.
        channel: ``(B,)``, the channel each copy ablates.

    Returns:
        ``(B, K, *S')``: copy ``b`` is ``acts[owner[b]]`` with channel ``channel[b]`` replaced
        by ``base[owner[b], channel[b]]``.
    """
    copies = acts.index_select(0, owner).clone()
    rows = torch.arange(owner.shape[0], device=acts.device)
    copies[rows, channel] = base[owner, channel]
    return copies


def channels_to_ablate(acts: Tensor, base: Tensor, selected: Tensor | None) -> Tensor:
    """``(N, K)`` bool, true for the channels whose ablation can change the output.

    A channel already equal to its ablation value everywhere (a dead ReLU channel ablated to
    zero) is unchanged by the ablation: its score is ``y_c`` and its weight exactly 0, so no
    forward is spent on it. ``selected`` (approximate mode) keeps only the ranked channels.
    """
    live = (acts != base).flatten(2).any(-1)
    return live if selected is None else live & selected


class AblationCAM(CAMBase, PerturbationAttribution):
    r"""Ablation-CAM: channel weights from the drop of the target's score when the channel is
    zeroed at the layer.

    For a layer with activations ``A`` of shape ``(N, K, *S')``, ``y_c`` the model's score
    for class ``c`` and ``y_c^k`` the same score with channel ``k`` of the layer's output set
    to zero (all its positions; the rest of the model unchanged)::

        w_k = (y_c - y_c^k) / y_c
        L   = ReLU(sum_k w_k * A_k)          then resized to the input (``Up``)

    ``y_c`` is the logit by default, as in the paper and pytorch-grad-cam. One forward per
    (example, channel), but only the layers after ``layer`` run on the ablated copies: a
    forward hook replaces the layer's output by ``perturbations_per_eval * N`` copies per
    forward, each with one channel ablated, and the layers before it run once per example
    and chunk. A channel that is already zero everywhere (a dead ReLU channel) is unchanged
    by its ablation: its weight is exactly 0 and no forward is spent on it. Memory is bounded
    by ``perturbations_per_eval``, never by the number of channels.

    Dividing by ``y_c`` scales each example's map by ``1 / y_c``: for ``y_c > 0`` it does not
    change the map's shape, for a negative logit it flips its sign (so the ReLU keeps the
    regions whose ablation *raises* the score), and for ``y_c = 0`` it is undefined (a
    ``ValueError``). ``relative=False`` gives the drop ``y_c - y_c^k`` itself; with
    ``score="probability"`` the score is always positive.

    Differences from pytorch-grad-cam's ``AblationCAM`` (1.5.7), which gives the same weights
    (and, min-max normalised, the same map to 1e-6) on a layer whose activations reach 0, a
    ReLU's output (``tests/attr/test_ablation_cam.py`` checks it):

    * it ablates to 0 only when the smallest activation of the batch is 0 and otherwise to
      ``min - 1e7`` (its comment: "deviating from the paper"); here the value is
      ``baselines`` (0 by default, the paper), the same for every layer;
    * it runs the whole model on every ablated copy (the layers before the target layer
      too), swaps the layer out of the user's model for the call and calls ``model.eval()``;
      here one hook lives for one call and the model is never changed;
    * its ``ratio_channels_to_ablate`` ranks channels by their overlap with an Eigen-CAM
      mask and ablates the top and the bottom of that ranking; the approximation here is
      ``max_channels`` / ``channel_criterion`` as in :class:`ScoreCAM` (the others get
      weight 0, as pytorch-grad-cam also gives its skipped channels);
    * it min-max normalises the map (a display step, left out here) and resizes it with
      OpenCV, in 2D only.

    The map is computed at layer resolution, ReLU is applied there (as in pytorch-grad-cam
    and torchcam; ``relu_attributions=False`` for the signed map), then it is resized to the
    input (linear, bilinear or trilinear by the number of spatial dims,
    ``align_corners=False``). It is not normalised.

    Args:
        forward_func: the model, or a function of ``(inputs, *additional_forward_args)``.
        layer: the module whose output is ablated (usually the last convolutional block).
        device_ids: as in Captum, for ``DataParallel`` models.
        reshape_transform: None, or a callable turning the layer's output into
            ``(N, C', *S')`` (a transformer's tokens: see :mod:`captum_medcam.reshapes`); the
            ablated channel is mapped back to the layer's output (its tokens' features), so
            the reshape must rearrange or select elements only.

    References:
        Desai, Ramaswamy. "Ablation-CAM: Visual Explanations for Deep Convolutional Network
        via Gradient-free Localization". WACV 2020.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from captum_medcam import AblationCAM
        >>> model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(),
        ...                       nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)).eval()
        >>> cam = AblationCAM(model, model[1])
        >>> cam.attribute(torch.randn(2, 1, 16, 16), target=[0, 2]).shape
        torch.Size([2, 1, 16, 16])
    """

    @captum_attribute
    def attribute(
        self,
        inputs: Tensor,
        target: Any = None,
        additional_forward_args: Any = None,
        *,
        score: Score = "logit",
        baselines: float | Tensor = 0.0,
        relative: bool = True,
        perturbations_per_eval: int = DEFAULT_PERTURBATIONS_PER_EVAL,
        max_channels: int | float | None = None,
        channel_criterion: ChannelCriterion = "variance",
        relu_attributions: bool = True,
        upsample: bool = True,
        interpolate_mode: str | None = None,
        align_corners: bool = False,
        show_progress: bool = False,
    ) -> Tensor:
        """Compute Ablation-CAM maps.

        Args:
            inputs: ``(N, C, *S)`` with 1 to 3 spatial dims (5-D for :class:`AblationCAM3D`),
                floating point, a tensor or a MONAI ``MetaTensor``.
            target: the class to explain, as in Captum: an int, a tuple, a tensor or list
                with one entry per example, or None when the model returns one score per
                example.
            additional_forward_args: further arguments of the model, as in Captum. When it
                holds per-example tensors, each ablated copy runs the whole model (the
                arguments may be used before the layer).
            score: ``"logit"`` (default, the paper and pytorch-grad-cam), ``"probability"``
                (softmax; sigmoid for a single output) or ``"sigmoid"`` (of the target
                label's logit alone, for multi-label heads).
            baselines: the value an ablated channel takes: a number, or a tensor
                broadcastable to the layer's output ``(N, K, *S')`` (e.g. per-channel
                means). Default 0, as in the paper.
            relative: divide the drop by ``y_c`` (default, the paper); False keeps the drop
                ``y_c - y_c^k``.
            perturbations_per_eval: ablated copies per example in one forward pass: each
                forward holds at most ``perturbations_per_eval * N`` copies of the layer's
                output.
            max_channels: None (default): every channel. An int ``m >= 1`` or a fraction
                ``f`` in (0, 1] ablates, per example, only the ``min(m, K)`` (or
                ``ceil(f * K)``) channels ranked highest by ``channel_criterion``; the others
                get weight 0 and cost no forward.
            channel_criterion: ``"variance"`` (default) or ``"mean"`` of ``A_k`` over its
                positions, for ``max_channels``.
            relu_attributions: apply ReLU to the map at layer resolution (default True).
            upsample: return maps at input resolution ``(N, 1, *S)``; False returns them at
                layer resolution ``(N, 1, *S')``. Not taken by :class:`AblationCAM3D`.
            interpolate_mode: None picks linear/bilinear/trilinear by the number of spatial
                dims; ``"nearest"`` and ``"area"`` also work. Not taken by
                :class:`AblationCAM3D`.
            align_corners: passed to the linear interpolation. Not taken by
                :class:`AblationCAM3D`.
            show_progress: show a progress bar over the forward passes.

        Returns:
            Maps ``(N, 1, *S)`` (or ``(N, 1, *S')``), not normalised, on the inputs' device
            and dtype. A MONAI ``MetaTensor`` input gives a ``MetaTensor`` with its metadata.

        Raises:
            TypeError: inputs not a floating tensor; a baseline, target or option of the
                wrong type; an output keyword passed to :class:`AblationCAM3D`.
            ValueError: wrong input dims, NaN/inf inputs or baselines, a target out of range,
                a layer not reached by the forward pass or not convolutional, a score of
                exactly 0 with ``relative``, ``perturbations_per_eval < 1``, unknown options.
        """
        output = self._output(upsample, interpolate_mode, align_corners)
        x, mode = self._check_call(
            inputs,
            target,
            output,
            relative=relative,
            relu_attributions=relu_attributions,
            show_progress=show_progress,
        )
        check_baseline_value(baselines)
        check_positive_int(perturbations_per_eval, "perturbations_per_eval")
        check_choice(score, "score", ("logit", "probability", "sigmoid"))
        max_channels = check_max_channels(max_channels)
        check_choice(channel_criterion, "channel_criterion", ("mean", "variance"))
        args = format_additional_args(additional_forward_args)
        n = x.shape[0]

        with torch.no_grad():
            out, raw = forward_with_capture(
                self.forward_func, self.layer, x, args, device_ids=self.device_ids
            )
            acts = apply_reshape(self.reshape_transform, raw, n)
            self._check_activations(acts, x, "Ablation-CAM")
            acts = acts.to(x.dtype)
            base = activation_baseline(baselines, acts)
            targets = per_sample_target(target, n, out)
            clean = class_scores(out.to(x.dtype), targets, torch.arange(n, device=x.device), score)
            selected = (
                None
                if max_channels is None
                else select_channels(acts, max_channels, channel_criterion)
            )
            ablated = clean.unsqueeze(1).repeat(1, acts.shape[1])
            owner, channel = channels_to_ablate(acts, base, selected).nonzero(as_tuple=True)
            ablated[owner, channel] = self._ablated_scores(
                x,
                args,
                targets,
                score,
                raw,
                acts,
                base,
                owner,
                channel,
                perturbations_per_eval,
                show_progress,
            )
            cam = weighted_sum(ablation_weights(clean, ablated, relative), acts)
            if relu_attributions:
                cam = F.relu(cam)
        return self._finish(cam, x, inputs, output, mode)

    def _ablated_scores(
        self,
        x: Tensor,
        args: tuple[Any, ...],
        targets: Tensor | list[Any] | None,
        score: Score,
        raw: Tensor,
        acts: Tensor,
        base: Tensor,
        owner: Tensor,
        channel: Tensor,
        perturbations_per_eval: int,
        show_progress: bool,
    ) -> Tensor:
        """The target's score ``(J,)`` with channel ``channel[j]`` of example ``owner[j]``
        ablated, through the engine: ``perturbations_per_eval * N`` ablated copies per
        forward, each chunk's copies made when it runs."""
        n = x.shape[0]
        # Per-example tensors among the extra arguments may be used before the layer: then
        # each copy runs the whole model. Otherwise the layers before it run once for each
        # example of the chunk (owners are sorted: the chunk's examples are a range, read
        # from a host copy made once, so building a chunk needs no host sync).
        batch_args = any(isinstance(a, Tensor) and a.dim() > 0 and a.shape[0] == n for a in args)
        first_last: list[int] = owner.tolist()

        def build(start: int, stop: int) -> Perturbed:
            who = owner[start:stop]
            copies = ablate_channels(acts, base, who, channel[start:stop])
            if self.reshape_transform is not None:
                copies = unreshape(self.reshape_transform, raw.index_select(0, who), copies)
            examples = torch.arange(first_last[start], first_last[stop - 1] + 1, device=x.device)
            return Perturbed(copies, who, who if batch_args else examples)

        return run_jobs(
            None,
            x,
            targets,
            args,
            owner.shape[0],
            build,
            chunk_size=perturbations_per_eval * n,
            score=score,
            forward=replacing_forward(
                self.forward_func, self.layer, x, copies="ablated", method="Ablation-CAM"
            ),
            # the weights are differences of nearly equal scores: full precision, as CRM
            allow_autocast=False,
            show_progress=show_progress,
            desc="Ablation-CAM forwards",
        )


@final
class AblationCAM3D(AblationCAM):
    r"""Ablation-CAM for volumes: ``(N, C, D, H, W)`` in, ``(N, 1, D, H, W)`` out.

    :class:`AblationCAM` (see there for the formula and the differences from
    pytorch-grad-cam, whose Ablation-CAM does not run on volumes) with 5-D input required and
    the map always upsampled trilinearly to the input volume (``align_corners=False``);
    ``upsample``, ``interpolate_mode`` and ``align_corners`` are fixed (passing one is a
    ``TypeError``). A MONAI ``MetaTensor`` input gives a ``MetaTensor`` output with the same
    affine.

    References:
        Desai, Ramaswamy. "Ablation-CAM: Visual Explanations for Deep Convolutional Network
        via Gradient-free Localization". WACV 2020.

    Example:
        >>> import torch
        >>> from monai.networks.nets import resnet10
        >>> from captum_medcam import AblationCAM3D
        >>> net = resnet10(spatial_dims=3, n_input_channels=1, num_classes=2).eval()
        >>> cam = AblationCAM3D(net, net.layer4)
        >>> cam.attribute(torch.randn(1, 1, 32, 32, 32), target=1).shape
        torch.Size([1, 1, 32, 32, 32])
    """

    fixed_output = VOLUME
