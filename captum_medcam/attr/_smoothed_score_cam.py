"""SS-CAM and IS-CAM, the smoothed and the integrated Score-CAM, for 1D, 2D and 3D inputs.

Both average Score-CAM's channel score over ``num_samples`` masked inputs per channel:
SS-CAM adds Gaussian noise to each mask, IS-CAM scales each masked input along a path.
"""

from __future__ import annotations

from typing import Any, final

import torch
from captum.attr import PerturbationAttribution
from torch import Tensor

from captum_medcam._core.checks import (
    DEFAULT_SEED,
    check_finite_float,
    check_positive_int,
    format_additional_args,
    make_generator,
)
from captum_medcam._core.engine import Perturbed, run_jobs
from captum_medcam._core.spatial import minmax_normalize
from captum_medcam._core.targets import Score, per_sample_target
from captum_medcam.attr._base import VOLUME, CAMBase, CAMOutput
from captum_medcam.attr._interop import captum_attribute
from captum_medcam.attr._score_cam import (
    DEFAULT_PERTURBATIONS_PER_EVAL,
    ChannelCriterion,
    NormalizeAt,
    ScoreCAM,
    check_score_options,
    reference_scores,
    score_cam_map,
    upsample_masks,
)

__all__ = ["ISCAM", "ISCAM3D", "SSCAM", "SSCAM3D"]

#: SS-CAM's defaults, as in torchcam 0.5 (``num_samples=35, std=2.0``).
SS_NUM_SAMPLES = 35
SS_STD = 2.0
#: IS-CAM's default number of steps, as in torchcam 0.5.
IS_NUM_SAMPLES = 10


def integration_coefficients(num_samples: int, dtype: torch.dtype = torch.float64) -> Tensor:
    """IS-CAM's scale of the masked input at each step ``i = 1..N``: ``c_i = sum_{j<=i} j / N``.

    The mask of step ``i`` is the running sum of ``(j / N) * H_k`` over ``j = 1..i``, so
    ``c_i = i (i + 1) / (2N)`` (0.1, 0.3, 0.6, ..., 5.5 for ``N = 10``), as in torchcam's
    ``ISCAM`` (whose docstring writes the sum from ``j = 0`` to ``i - 1``, one step earlier,
    but whose code, followed here, adds ``(i + 1) / N`` before the first forward).

    Returns:
        ``(num_samples,)``.
    """
    steps = torch.arange(1, num_samples + 1, dtype=dtype)
    return steps * (steps + 1) / (2 * num_samples)


class _SharedNoise:
    """SS-CAM's noise ``delta ~ N(0, std^2)`` at input resolution, one ``(1, *S)`` draw per job.

    With an int seed, a new generator draws one sample per ``(sample, channel)`` pair, in
    order, and every example gets the same draws: the noise does not depend on the batch or
    on the chunking, and a call is reproducible. With a ``torch.Generator``, every example's
    job draws its own sample, in job order (independent noise per example; the generator
    advances). Torch's global random state is never used. Draws are made lazily, chunk by
    chunk, on the generator's device, and moved to the inputs' device.
    """

    def __init__(
        self, generator: int | torch.Generator, std: float, spatial: tuple[int, ...], x: Tensor
    ) -> None:
        self.shared = not isinstance(generator, torch.Generator)
        self.gen = make_generator(generator)
        self.std = std
        self.spatial = spatial
        self.dtype = x.dtype
        self.device = x.device
        self.next_pair = 0
        self.last = torch.empty(0)

    def _draw(self) -> Tensor:
        z = torch.randn(self.spatial, generator=self.gen, dtype=self.dtype, device=self.gen.device)
        return (z * self.std).to(self.device)

    def __call__(self, pairs: list[int]) -> Tensor:
        """Noise ``(B, 1, *S)`` for the jobs of ``pairs`` (``B`` non-decreasing pair ids)."""
        if not self.shared:
            return torch.stack([self._draw() for _ in range(len(pairs))]).unsqueeze(1)
        rows = []
        for p in pairs:
            while self.next_pair <= p:  # pairs with no job still draw: the stream stays put
                self.last = self._draw()
                self.next_pair += 1
            rows.append(self.last)
        return torch.stack(rows).unsqueeze(1)


class SSCAM(CAMBase, PerturbationAttribution):
    r"""SS-CAM, smoothed Score-CAM: Score-CAM's channel score averaged over noisy masks.

    For a layer with activations ``A`` of shape ``(N, K, *S')`` and inputs ``x`` of shape
    ``(N, C, *S)``, with ``H_k = Up(s(A_k))`` the min-max normalised map of channel ``k``
    upsampled to ``S`` and ``delta_i ~ N(0, std^2)`` drawn at input resolution, one draw per
    sample and channel, shared by the input channels::

        w_k = softmax_k( (1/N) sum_{i=1..N} f_c(x * (H_k + delta_i)) )
        L   = ReLU(sum_k w_k * Up(A_k))

    ``f_c`` is the logit of class ``c``. Noise added to the masks is the paper's first
    variant (SS-CAM(1), smoothing the feature maps), as torchcam implements it; the paper's
    second (noise on the input) is not offered. Cost: ``num_samples`` forwards per channel
    (35 x 512 for a ResNet-18 ``layer4``), ``perturbations_per_eval * N`` masked inputs per
    forward, made chunk by chunk: memory does not grow with the channels or the samples.
    Constant channels have no mask but the noise: they take part under the channel softmax
    (as in torchcam) and get weight 0 without it. ``std=0`` and ``num_samples=1`` give
    Score-CAM.

    Randomness: ``generator`` is an int seed (default 0) or a ``torch.Generator``. A seed
    draws the noise of each (sample, channel) pair from a new generator, in order, and gives
    every example the same draws, so a map does not depend on the batch it is in, nor on
    ``perturbations_per_eval``, and a call is reproducible. A generator draws independent
    noise for every example and advances. Torch's global random state is never used. With
    one example, the seed ``s`` draws the same noise as torchcam after ``torch.manual_seed(s)``
    (on the CPU, in float32, when the number of input positions is a multiple of 16).

    The defaults follow torchcam 0.5 (the peer that implements the method, and the paper's
    formula): logits, a softmax over channels, masks min-max normalised at layer resolution
    and then upsampled. The other Score-CAM variants are options
    with the meaning they have in :class:`ScoreCAM` (``score``, ``baselines``,
    ``channel_softmax``, ``normalize_at``, ``align_corners``). torchcam subtracts the
    unmasked input's score from every weight; under the channel softmax that per-example
    constant cancels, so it is not repeated here (``baselines`` subtracts a baseline input's
    score, which matters without the softmax). torchcam adds ``1e-8`` to each map's range
    when normalising (here constant maps are exact zeros) and works in chunks of 32 masked
    inputs; neither changes the result beyond rounding. The ReLU comes after the resize, as
    in :class:`ScoreCAM` (the official Score-CAM code); torchcam applies it at layer
    resolution and leaves the resize to the user, so the maps at layer resolution
    (``upsample=False``) are the ones to compare.

    Args:
        forward_func: the model, or a function of ``(inputs, *additional_forward_args)``.
        layer: the module whose output (or input) the map explains.
        device_ids: as in Captum, for ``DataParallel`` models.
        reshape_transform: None, or a callable turning the layer's output into
            ``(N, C', *S')`` (a transformer's tokens: see :mod:`captum_medcam.reshapes`).

    References:
        Wang, Naidu, Michael, Kundu. "SS-CAM: Smoothed Score-CAM for Sharper Visual Feature
        Localization". 2020. arXiv:2006.14255.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from captum_medcam import SSCAM
        >>> model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(),
        ...                       nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)).eval()
        >>> cam = SSCAM(model, model[1])
        >>> x = torch.randn(2, 1, 16, 16)
        >>> maps = cam.attribute(x, target=[0, 2], num_samples=4)
        >>> maps.shape, torch.equal(maps, cam.attribute(x, target=[0, 2], num_samples=4))
        (torch.Size([2, 1, 16, 16]), True)
    """

    @captum_attribute
    def attribute(
        self,
        inputs: Tensor,
        target: Any = None,
        additional_forward_args: Any = None,
        *,
        num_samples: int = SS_NUM_SAMPLES,
        std: float = SS_STD,
        generator: int | torch.Generator = DEFAULT_SEED,
        score: Score = "logit",
        baselines: float | Tensor | None = None,
        channel_softmax: bool = True,
        normalize_at: NormalizeAt = "layer",
        perturbations_per_eval: int = DEFAULT_PERTURBATIONS_PER_EVAL,
        relu_attributions: bool = True,
        attribute_to_layer_input: bool = False,
        upsample: bool = True,
        interpolate_mode: str | None = None,
        align_corners: bool = False,
        show_progress: bool = False,
    ) -> Tensor:
        """Compute SS-CAM maps.

        Args:
            inputs: ``(N, C, *S)`` with 1 to 3 spatial dims (5-D for :class:`SSCAM3D`),
                floating point, a tensor or a MONAI ``MetaTensor``.
            target: the class to explain, as in Captum: an int, a tuple, a tensor or list
                with one entry per example, or None when the model returns one score per
                example.
            additional_forward_args: further arguments of the model, as in Captum; tensors
                whose first dim is ``N`` are indexed with their example.
            num_samples: noisy masks per channel (default 35, as torchcam).
            std: standard deviation of the noise added to the masks, which lie in [0, 1]
                (default 2.0, as torchcam).
            generator: an int seed (default 0) or a ``torch.Generator`` for the noise (see
                *Randomness* above).
            score: ``"logit"`` (default), ``"probability"`` (softmax; sigmoid for a single
                output) or ``"sigmoid"`` (of the target label's logit alone), as in
                :meth:`ScoreCAM.attribute`.
            baselines: None (default), or a number or tensor broadcastable to ``inputs``
                whose score is subtracted from every weight.
            channel_softmax: apply a softmax over channels to the weights (default True).
                Constant channels then take part with the score of their mask.
            normalize_at: ``"layer"`` (default) min-max normalises the maps at layer
                resolution, then upsamples; ``"input"`` normalises the upsampled maps.
            perturbations_per_eval: masked copies per example in one forward pass; each
                forward holds at most ``perturbations_per_eval * N`` inputs, made chunk by
                chunk.
            relu_attributions: apply ReLU to the map (default True), after the resize as in
                :class:`ScoreCAM`.
            attribute_to_layer_input: use the layer's input instead of its output.
            upsample: return maps at input resolution ``(N, 1, *S)``; False returns them at
                layer resolution ``(N, 1, *S')``. Not taken by the 3D entry point.
            interpolate_mode: None picks linear/bilinear/trilinear by the number of spatial
                dims; ``"nearest"`` and ``"area"`` also work. Not taken by the 3D entry point.
            align_corners: passed to the linear interpolation of the masks and the map. Not
                taken by the 3D entry point.
            show_progress: show a progress bar over the forward passes.

        Returns:
            Maps ``(N, 1, *S)`` (or ``(N, 1, *S')``), not normalised, on the inputs' device
            and dtype. A MONAI ``MetaTensor`` input gives a ``MetaTensor`` with its metadata.

        Raises:
            TypeError: inputs not a floating tensor; a generator, baseline, target or option
                of the wrong type; an output keyword passed to :class:`SSCAM3D`.
            ValueError: wrong input dims, NaN/inf inputs, a target out of range, a layer not
                reached by the forward pass, ``num_samples`` or ``perturbations_per_eval``
                below 1, a negative or non-finite ``std``, a negative seed, unknown options.
        """
        return self._ss_cam(
            inputs,
            target,
            additional_forward_args,
            num_samples=num_samples,
            std=std,
            generator=generator,
            score=score,
            baselines=baselines,
            channel_softmax=channel_softmax,
            normalize_at=normalize_at,
            perturbations_per_eval=perturbations_per_eval,
            relu_attributions=relu_attributions,
            attribute_to_layer_input=attribute_to_layer_input,
            output=self._output(upsample, interpolate_mode, align_corners),
            show_progress=show_progress,
        )

    def _ss_cam(
        self,
        inputs: Tensor,
        target: Any,
        additional_forward_args: Any,
        *,
        num_samples: int,
        std: float,
        generator: int | torch.Generator,
        score: Score,
        baselines: float | Tensor | None,
        channel_softmax: bool,
        normalize_at: NormalizeAt,
        perturbations_per_eval: int,
        relu_attributions: bool,
        attribute_to_layer_input: bool,
        output: CAMOutput,
        show_progress: bool,
    ) -> Tensor:
        """The pipeline: Score-CAM's, with one job per (sample, channel, example)."""
        x, mode = self._check_call(
            inputs,
            target,
            output,
            channel_softmax=channel_softmax,
            relu_attributions=relu_attributions,
            attribute_to_layer_input=attribute_to_layer_input,
            show_progress=show_progress,
        )
        check_positive_int(num_samples, "num_samples")
        std = check_finite_float(std, "std", low=0.0)
        make_generator(generator)
        base = check_score_options(x, perturbations_per_eval, score, normalize_at, baselines)
        args = format_additional_args(additional_forward_args)
        n = x.shape[0]
        clean, acts = self._capture(
            x, args, attribute_to_layer_input=attribute_to_layer_input, method="SS-CAM"
        )
        targets = per_sample_target(target, n, clean)
        keys, constant = minmax_normalize(acts)
        k = acts.shape[1]
        # Jobs (sample s, channel k, example i) in this order. Every channel draws its own
        # noise, as in torchcam and the paper, so channels with equal masks are not merged
        # as in Score-CAM; constant channels take part only under the channel softmax (their
        # mask is then the noise alone).
        wanted = torch.ones_like(constant) if channel_softmax else ~constant
        s_idx, k_idx, owner = (
            wanted.t().unsqueeze(0).expand(num_samples, k, n).nonzero(as_tuple=True)
        )
        pair: list[int] = (s_idx * k + k_idx).tolist()  # read on the host by the noise, once
        noise = _SharedNoise(generator, std, tuple(x.shape[2:]), x)
        source = keys if normalize_at == "layer" else acts

        def build(start: int, stop: int) -> Perturbed:
            i, c = owner[start:stop], k_idx[start:stop]
            mask = upsample_masks(
                source[i, c].unsqueeze(1), x.shape[2:], mode, output.align_corners, normalize_at
            )
            return Perturbed(x.index_select(0, i) * (mask + noise(pair[start:stop])), i)

        scores = run_jobs(
            self.forward_func,
            x,
            targets,
            args,
            owner.shape[0],
            build,
            chunk_size=perturbations_per_eval * n,
            score=score,
            show_progress=show_progress,
            desc="SS-CAM forwards",
        )
        table = x.new_zeros(num_samples, k, n)
        table[s_idx, k_idx, owner] = scores
        reference = (
            None
            if base is None
            else reference_scores(self.forward_func, base, args, targets, score)
        )
        cam = score_cam_map(
            table.mean(0).t(),
            acts,
            x,
            output,
            mode,
            reference=reference,
            constant=constant,
            selected=None,
            channel_softmax=channel_softmax,
            relu_attributions=relu_attributions,
        )
        return self._finish(cam, x, inputs, output, mode)  # already resized: metadata only


@final
class SSCAM3D(SSCAM):
    r"""SS-CAM for volumes: ``(N, C, D, H, W)`` in, ``(N, 1, D, H, W)`` out.

    :class:`SSCAM` (see there for the formula, the noise and the variants) with 5-D input
    required and the map always upsampled trilinearly to the input volume
    (``align_corners=False``, the masks too); ``upsample``, ``interpolate_mode`` and
    ``align_corners`` are fixed (passing one is a ``TypeError``). A MONAI ``MetaTensor``
    input gives a ``MetaTensor`` output with the same affine.

    References:
        Wang, Naidu, Michael, Kundu. "SS-CAM: Smoothed Score-CAM for Sharper Visual Feature
        Localization". 2020. arXiv:2006.14255.

    Example:
        >>> import torch
        >>> from monai.networks.nets import resnet10
        >>> from captum_medcam import SSCAM3D
        >>> net = resnet10(spatial_dims=3, n_input_channels=1, num_classes=2).eval()
        >>> cam = SSCAM3D(net, net.layer3)  # a 2x2x2 map at 32^3
        >>> cam.attribute(torch.randn(1, 1, 32, 32, 32), target=1, num_samples=2).shape  # doctest: +SKIP
        torch.Size([1, 1, 32, 32, 32])
    """

    fixed_output = VOLUME


class ISCAM(ScoreCAM):
    r"""IS-CAM, integrated Score-CAM: Score-CAM's channel score averaged along a path of
    growing masks.

    For a layer with activations ``A`` of shape ``(N, K, *S')``, ``H_k = Up(s(A_k))`` the
    min-max normalised map of channel ``k`` upsampled to the input's size and
    ``c_i = sum_{j=1..i} j / N = i (i + 1) / (2N)``::

        w_k = softmax_k( (1/N) sum_{i=1..N} f_c(c_i * (x * H_k)) )
        L   = ReLU(sum_k w_k * Up(A_k))

    ``f_c`` is the logit of class ``c``. The step-``i`` mask is the running sum of
    ``(j / N) * H_k``, as in the paper's algorithm and torchcam's code, so the scale grows
    past 1 (to 5.5 at ``N = 10``); see :func:`integration_coefficients` for the one-step
    difference between torchcam's docstring and its code. Cost: ``num_samples`` forwards per
    distinct mask; channels whose map is constant cost none (their weight is 0, or under the
    softmax the all-zero mask's score), and channels whose normalised masks are equal share
    their forwards, as in :class:`ScoreCAM`, whose pipeline this is (only the score of a
    mask differs), approximate mode (``max_channels``) included. Deterministic.
    ``num_samples=1`` gives Score-CAM.

    The defaults follow torchcam 0.5, as :class:`SSCAM`'s do, with the same differences
    from it (see there): logits, a softmax over channels, masks min-max normalised at
    layer resolution and then upsampled; ReLU after the resize, so compare with torchcam
    at layer resolution (``upsample=False``).

    Args:
        forward_func: the model, or a function of ``(inputs, *additional_forward_args)``.
        layer: the module whose output (or input) the map explains.
        device_ids: as in Captum, for ``DataParallel`` models.
        reshape_transform: None, or a callable turning the layer's output into
            ``(N, C', *S')`` (a transformer's tokens: see :mod:`captum_medcam.reshapes`).

    References:
        Naidu, Ghosh, Maurya, Nayak K, Kundu. "IS-CAM: Integrated Score-CAM for
        axiomatic-based explanations". 2020. arXiv:2010.03023.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from captum_medcam import ISCAM
        >>> model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(),
        ...                       nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)).eval()
        >>> ISCAM(model, model[1]).attribute(torch.randn(2, 1, 16, 16), target=[0, 2]).shape
        torch.Size([2, 1, 16, 16])
    """

    @captum_attribute
    def attribute(
        self,
        inputs: Tensor,
        target: Any = None,
        additional_forward_args: Any = None,
        *,
        num_samples: int = IS_NUM_SAMPLES,
        score: Score = "logit",
        baselines: float | Tensor | None = None,
        channel_softmax: bool = True,
        normalize_at: NormalizeAt = "layer",
        perturbations_per_eval: int = DEFAULT_PERTURBATIONS_PER_EVAL,
        max_channels: int | float | None = None,
        channel_criterion: ChannelCriterion = "variance",
        relu_attributions: bool = True,
        attribute_to_layer_input: bool = False,
        upsample: bool = True,
        interpolate_mode: str | None = None,
        align_corners: bool = False,
        show_progress: bool = False,
    ) -> Tensor:
        """Compute IS-CAM maps.

        Args:
            inputs: ``(N, C, *S)`` with 1 to 3 spatial dims (5-D for :class:`ISCAM3D`),
                floating point, a tensor or a MONAI ``MetaTensor``.
            target: the class to explain, as in Captum: an int, a tuple, a tensor or list
                with one entry per example, or None when the model returns one score per
                example.
            additional_forward_args: further arguments of the model, as in Captum; tensors
                whose first dim is ``N`` are indexed with their example.
            num_samples: steps of the path ``N`` (default 10, as torchcam).
            score: ``"logit"`` (default), ``"probability"`` (softmax; sigmoid for a single
                output) or ``"sigmoid"`` (of the target label's logit alone), as in
                :meth:`ScoreCAM.attribute`.
            baselines: None (default), or a number or tensor broadcastable to ``inputs``
                whose score is subtracted from every weight.
            channel_softmax: apply a softmax over channels to the weights (default True).
                Constant channels then take part with the score of their mask.
            normalize_at: ``"layer"`` (default) min-max normalises the maps at layer
                resolution, then upsamples; ``"input"`` normalises the upsampled maps.
            perturbations_per_eval: masked copies per example in one forward pass; each
                forward holds at most ``perturbations_per_eval * N`` inputs, made chunk by
                chunk.
            max_channels, channel_criterion: approximate IS-CAM, only the channels ranked
                highest per example, as in :meth:`ScoreCAM.attribute` (default None: exact).
            relu_attributions: apply ReLU to the map (default True), after the resize as in
                :class:`ScoreCAM`.
            attribute_to_layer_input: use the layer's input instead of its output.
            upsample: return maps at input resolution ``(N, 1, *S)``; False returns them at
                layer resolution ``(N, 1, *S')``. Not taken by the 3D entry point.
            interpolate_mode: None picks linear/bilinear/trilinear by the number of spatial
                dims; ``"nearest"`` and ``"area"`` also work. Not taken by the 3D entry point.
            align_corners: passed to the linear interpolation of the masks and the map. Not
                taken by the 3D entry point.
            show_progress: show a progress bar over the forward passes.

        Returns:
            Maps ``(N, 1, *S)`` (or ``(N, 1, *S')``), not normalised, on the inputs' device
            and dtype. A MONAI ``MetaTensor`` input gives a ``MetaTensor`` with its metadata.

        Raises:
            TypeError: inputs not a floating tensor; a baseline, target or option of the
                wrong type; an output keyword passed to :class:`ISCAM3D`.
            ValueError: wrong input dims, NaN/inf inputs, a target out of range, a layer not
                reached by the forward pass, ``num_samples`` or ``perturbations_per_eval``
                below 1, ``max_channels`` out of range, unknown options.
        """
        check_positive_int(num_samples, "num_samples")
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
            mask_options={"num_samples": num_samples},
        )

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
        num_samples: int = IS_NUM_SAMPLES,
    ) -> Tensor:
        """IS-CAM's score of each distinct mask ``H``: the mean of ``f_c(c_i * x * H)`` over
        the ``N = num_samples`` steps; jobs (mask, step), in this order, through the engine."""
        steps = num_samples
        coeff = integration_coefficients(steps, x.dtype).to(x.device)
        trailing = [1] * (x.dim() - 1)

        def build(start: int, stop: int) -> Perturbed:
            job = torch.arange(start, stop, device=x.device)
            first = start // steps  # the chunk's masks are first .. (stop - 1) // steps
            up = upsample_masks(
                masks[first : (stop - 1) // steps + 1],
                x.shape[2:],
                mode,
                align_corners,
                normalize_at,
            )  # each mask upsampled once per chunk, not once per step
            index = owner[job // steps]
            scale = coeff[job % steps].view(-1, *trailing)
            return Perturbed(x.index_select(0, index) * (up[job // steps - first] * scale), index)

        scores = run_jobs(
            self.forward_func,
            x,
            targets,
            args,
            owner.shape[0] * steps,
            build,
            chunk_size=chunk_size,
            score=score,
            show_progress=show_progress,
            desc="IS-CAM forwards",
        )
        return scores.view(-1, steps).mean(1)


@final
class ISCAM3D(ISCAM):
    r"""IS-CAM for volumes: ``(N, C, D, H, W)`` in, ``(N, 1, D, H, W)`` out.

    :class:`ISCAM` (see there for the formula and the variants) with 5-D input required and
    the map always upsampled trilinearly to the input volume (``align_corners=False``, the
    masks too); ``upsample``, ``interpolate_mode`` and ``align_corners`` are fixed (passing
    one is a ``TypeError``). A MONAI ``MetaTensor`` input gives a ``MetaTensor`` output with
    the same affine.

    References:
        Naidu, Ghosh, Maurya, Nayak K, Kundu. "IS-CAM: Integrated Score-CAM for
        axiomatic-based explanations". 2020. arXiv:2010.03023.

    Example:
        >>> import torch
        >>> from monai.networks.nets import resnet10
        >>> from captum_medcam import ISCAM3D
        >>> net = resnet10(spatial_dims=3, n_input_channels=1, num_classes=2).eval()
        >>> cam = ISCAM3D(net, net.layer3)  # a 2x2x2 map at 32^3
        >>> cam.attribute(torch.randn(1, 1, 32, 32, 32), target=1, num_samples=2).shape  # doctest: +SKIP
        torch.Size([1, 1, 32, 32, 32])
    """

    fixed_output = VOLUME
