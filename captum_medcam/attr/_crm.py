"""CRM, class-selective relevance mapping, for 1D, 2D and 3D inputs, and ``CRM3D`` for volumes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, final

import torch
from captum.attr import PerturbationAttribution
from torch import Tensor, nn

from captum_medcam._core.baselines import activation_baseline
from captum_medcam._core.checks import (
    check_baseline_value,
    check_positive_int,
    format_additional_args,
)
from captum_medcam._core.engine import Perturbed, run_jobs
from captum_medcam._core.targets import per_sample_target
from captum_medcam.attr._base import VOLUME, CAMBase, CAMOutput
from captum_medcam.attr._head import check_fc_layer, check_gap_linear_head, forward_with_head
from captum_medcam.attr._hooks import forward_with_capture, replacing_forward
from captum_medcam.attr._interop import captum_attribute
from captum_medcam.attr._reshape import (
    ReshapeTransform,
    apply_reshape,
    unreshape,
)

__all__ = ["CRM", "CRM3D"]

#: Perturbed copies of each example per forward pass. Only the layers after ``layer`` run on
#: the copies (copies of a layer output are small), and each chunk reruns the layers before
#: it once, so a larger default than Score-CAM's pays off.
DEFAULT_PERTURBATIONS_PER_EVAL = 64


def crm_from_score_changes(changes: Tensor, target: Tensor | list[Any] | None) -> Tensor:
    """CRM from the score changes ``S_c - S_c(p)``.

    Args:
        changes: ``(N, K, *S')``, the change of every output score ``c`` when position ``p``
            is removed.
        target: None for the combined map ``sum_c (S_c - S_c(p))^2``, or a long tensor ``(N,)``
            of classes for the class-selective map ``(S_t - S_t(p))^2``.

    Returns:
        ``(N, 1, *S')``.
    """
    if target is None:
        return changes.pow(2).sum(1, keepdim=True)
    if not isinstance(target, Tensor):
        raise ValueError("CRM's class-selective map needs integer class targets, not tuples")
    index = target.to(changes.device).view(-1, 1, *([1] * (changes.dim() - 2)))
    return changes.gather(1, index.expand(-1, 1, *changes.shape[2:])).pow(2)


#: How to avoid the fast path's head checks, appended to their messages.
_USE_THE_DEFINITION = "Pass fc_layer=None to use the definition (any head)"


class CRM(CAMBase, PerturbationAttribution):
    r"""Class-selective relevance mapping: the squared change of the model's scores when one
    spatial element of a layer's output is removed.

    Removing spatial element ``p`` of the layer's output ``A`` (all channels at ``p`` set to a
    baseline, zero by default) changes the model's score of output node ``c`` from ``S_c`` to
    ``S_c(p)``::

        CRM(p)   = sum_c (S_c - S_c(p))^2      combined map (target=None, the paper's default)
        CRM_t(p) = (S_t - S_t(p))^2            class-selective map for class t

    Two ways to compute it:

    * **Definition (any head)**, ``fc_layer=None``: the model is evaluated again with each
      position removed. A forward hook replaces the layer's output by a batch of perturbed
      copies built chunk by chunk by the perturbation engine (``perturbations_per_eval * N``
      copies per forward), so the layers before ``layer`` run once per example and only the
      head runs on the copies.
    * **Exact fast path** for a head ``layer -> global average pooling -> fc_layer`` (weight
      ``W`` of shape ``(K, C')``), whose output is the model's output: removing ``p`` changes
      the pooled features by ``(A(p) - b(p)) / |S'|``, so ::

          S_c - S_c(p) = (1/|S'|) sum_k W[c, k] (A_k(p) - b_k(p))

      one einsum after one forward; the bias cancels. The head is checked during that forward
      (``fc_layer``'s input must be the spatial mean of the layer's output and its output the
      model's output); otherwise a ``ValueError`` says so. The two ways agree to rounding.

    With a zero baseline the class-selective map is ``(CAM_t / |S'|)^2`` and the combined map
    the sum over classes of the squared CAMs. Differences from the authors' code (Keras): the
    ``1/|S'|`` factor of the average pooling is kept (the reference sums, which scales the map
    by ``|S'|^2``); class 0 is a class (the reference treats ``class_idx=0`` as "combined");
    the map is not normalised by its max (normalising is a display step). ``target`` means what
    it means in Captum, with one difference: ``target=None`` gives the combined map (the
    README's table "What a name means" lists where ``target=None`` differs).

    Args:
        forward_func: the model (or a function of ``(inputs, *args)``) returning ``(N, K)``.
        layer: the module whose output is perturbed (usually the last convolutional block).
        device_ids: as in Captum, for ``DataParallel`` models.
        fc_layer: the ``nn.Linear`` after global average pooling (MONAI ResNet: ``net.fc``)
            for the exact fast path; None evaluates the definition for any head.
        reshape_transform: None, or a callable turning the layer's output into
            ``(N, C', *S')`` (a transformer's tokens: see :mod:`captum_medcam.reshapes`); a
            removed grid position is mapped back to the layer's output (its token), so the
            reshape must rearrange or select elements only.

    Raises:
        TypeError: ``fc_layer`` is not None or an ``nn.Linear``, and the errors of the other
            CAMs' constructors.

    References:
        Kim, Rajaraman, Antani. "Visual Interpretation of Convolutional Neural Network
        Predictions in Classifying Medical Image Modalities". Diagnostics 9(2):38, 2019.
        doi:10.3390/diagnostics9020038.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from captum_medcam import CRM
        >>> model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(),
        ...                       nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)).eval()
        >>> x = torch.randn(2, 1, 16, 16)
        >>> fast = CRM(model, model[1], fc_layer=model[4]).attribute(x)
        >>> slow = CRM(model, model[1]).attribute(x)
        >>> fast.shape, torch.allclose(fast, slow, atol=1e-5)
        (torch.Size([2, 1, 16, 16]), True)
    """

    def __init__(
        self,
        forward_func: Callable[..., Tensor],
        layer: nn.Module,
        device_ids: list[int] | None = None,
        *,
        fc_layer: nn.Module | None = None,
        reshape_transform: ReshapeTransform | None = None,
    ) -> None:
        super().__init__(forward_func, layer, device_ids, reshape_transform=reshape_transform)
        self.fc_layer = None if fc_layer is None else check_fc_layer(fc_layer, _USE_THE_DEFINITION)

    @captum_attribute
    def attribute(
        self,
        inputs: Tensor,
        target: Any = None,
        additional_forward_args: Any = None,
        *,
        baselines: float | Tensor = 0.0,
        perturbations_per_eval: int = DEFAULT_PERTURBATIONS_PER_EVAL,
        upsample: bool = True,
        interpolate_mode: str | None = None,
        align_corners: bool = False,
        show_progress: bool = False,
    ) -> Tensor:
        """Compute CRM maps.

        Args:
            inputs: ``(N, C, *S)`` with 1 to 3 spatial dims (5-D for :class:`CRM3D`),
                floating point, a tensor or a MONAI ``MetaTensor``.
            target: None for the combined map (sum over all outputs), or the class of the
                class-selective map: an int, or a tensor or list with one class per example.
            additional_forward_args: further arguments of the model, as in Captum. When it
                holds per-example tensors, each perturbed copy runs the whole model (the
                arguments may be used before the layer).
            baselines: the value a removed position takes: a number, or a tensor broadcastable
                to the layer's output ``(N, C', *S')`` (e.g. per-channel means). Default 0,
                as in the paper.
            perturbations_per_eval: perturbed copies per example in one forward pass of the
                definition (``fc_layer=None``); each forward holds at most
                ``perturbations_per_eval * N`` copies of the layer's output.
            upsample: return maps at input resolution ``(N, 1, *S)``; False returns them at
                layer resolution ``(N, 1, *S')``. Not taken by :class:`CRM3D`.
            interpolate_mode: None picks linear/bilinear/trilinear by the number of spatial
                dims; ``"nearest"`` and ``"area"`` also work. Not taken by :class:`CRM3D`
                (always trilinear).
            align_corners: passed to the interpolation. Not taken by :class:`CRM3D` (always
                False).
            show_progress: show a progress bar over the forward passes of the definition.

        Returns:
            Maps ``(N, 1, *S)`` (or ``(N, 1, *S')``), not normalised, on the inputs' device and
            dtype. A MONAI ``MetaTensor`` input gives a ``MetaTensor`` with its metadata.

        Raises:
            TypeError: inputs not a floating tensor; a baseline, target or option of the
                wrong type; an output keyword passed to :class:`CRM3D`.
            ValueError: wrong input dims (not 5-D for :class:`CRM3D`), NaN/inf inputs or
                baselines, a target out of range, a layer not reached by the forward pass or
                not convolutional, a head that is not ``GAP -> fc_layer`` on the fast path,
                ``perturbations_per_eval < 1``.
        """
        return self._crm(
            inputs,
            target,
            additional_forward_args,
            baselines=baselines,
            perturbations_per_eval=perturbations_per_eval,
            show_progress=show_progress,
            output=self._output(upsample, interpolate_mode, align_corners),
        )

    def _crm(
        self,
        inputs: Tensor,
        target: Any,
        additional_forward_args: Any,
        *,
        baselines: float | Tensor,
        perturbations_per_eval: int,
        show_progress: bool,
        output: CAMOutput,
    ) -> Tensor:
        """The pipeline: checks, the score changes (fast path or definition), the map."""
        x, mode = self._check_call(inputs, target, output, show_progress=show_progress)
        check_baseline_value(baselines)
        check_positive_int(perturbations_per_eval, "perturbations_per_eval")
        args = format_additional_args(additional_forward_args)

        with torch.no_grad():
            if self.fc_layer is None:
                clean, raw = forward_with_capture(
                    self.forward_func, self.layer, x, args, device_ids=self.device_ids
                )
                acts = apply_reshape(self.reshape_transform, raw, x.shape[0])
                self._check_activations(acts, x, "CRM")
                acts = acts.to(x.dtype)
                targets = _crm_target(target, x.shape[0], clean)
                base = activation_baseline(baselines, acts)
                changes = self._faithful_changes(
                    x, args, clean, raw, acts, base, perturbations_per_eval, show_progress
                )
            else:
                clean, acts, fc_input = self._capture_with_head(x, args)
                targets = _crm_target(target, x.shape[0], clean)
                base = activation_baseline(baselines, acts)
                self._check_head(acts, fc_input, clean)
                weight = self.fc_layer.weight.to(acts.dtype)
                positions = acts[0, 0].numel()
                # S_c - S_c(p) = (1/|S'|) sum_k W[c, k] (A_k(p) - b_k(p))
                changes = torch.einsum("ck,nk...->nc...", weight, acts - base) / positions
            cam = crm_from_score_changes(changes, targets)
        return self._finish(cam, x, inputs, output, mode)

    def _capture_with_head(self, x: Tensor, args: tuple[Any, ...]) -> tuple[Tensor, Tensor, Tensor]:
        """One forward that captures the layer's output and the input of ``fc_layer``."""
        assert self.fc_layer is not None  # only called on the fast path
        output, acts, fc_input = forward_with_head(
            self.forward_func,
            self.layer,
            self.fc_layer,
            x,
            args,
            device_ids=self.device_ids,
            reshape_transform=self.reshape_transform,
        )
        self._check_activations(acts, x, "CRM")
        return output, acts, fc_input

    def _check_head(self, acts: Tensor, fc_input: Tensor, output: Tensor) -> None:
        """Check that the head is ``GAP -> fc_layer`` and that its output is the model's."""
        assert self.fc_layer is not None
        check_gap_linear_head(self.fc_layer, acts, fc_input, output, _USE_THE_DEFINITION)

    def _faithful_changes(
        self,
        x: Tensor,
        args: tuple[Any, ...],
        output: Tensor,
        raw: Tensor,
        acts: Tensor,
        base: Tensor,
        perturbations_per_eval: int,
        show_progress: bool,
    ) -> Tensor:
        """``S_c - S_c(p)`` by re-evaluating the model with each position removed.

        ``raw`` is the layer's output and ``acts`` its reshaped form ``(N, C', *S')`` (the same
        tensor without ``reshape_transform``); removals are made on ``acts`` and mapped back.

        Returns:
            ``(N, K, *S')`` where ``K`` is the number of model outputs per example.
        """
        n, channels, *spatial = acts.shape
        positions = acts[0, 0].numel()
        flat_acts = acts.reshape(n, channels, positions)
        flat_base = base.reshape(n, channels, positions)
        clean = output.reshape(n, -1).to(x.dtype)
        # Per-example tensors among the extra arguments may be used before the layer: then
        # each copy runs the whole model. Otherwise the layers before it run once per example.
        batch_args = any(isinstance(a, Tensor) and a.dim() > 0 and a.shape[0] == n for a in args)

        def build(start: int, stop: int) -> Perturbed:
            # Job j removes position j % positions of example j // positions.
            rows = torch.arange(start, stop, device=x.device)
            owner, where = rows // positions, rows % positions
            copies = flat_acts.index_select(0, owner).clone()
            pick = torch.arange(rows.numel(), device=x.device)
            copies[pick, :, where] = flat_base[owner, :, where]
            copies = copies.view(rows.numel(), channels, *spatial)
            if self.reshape_transform is not None:
                copies = unreshape(self.reshape_transform, raw.index_select(0, owner), copies)
            # The examples of the chunk, each once (owners are consecutive: no host sync).
            examples = torch.arange(
                start // positions, (stop - 1) // positions + 1, device=x.device
            )
            return Perturbed(copies, owner, owner if batch_args else examples)

        outputs = run_jobs(
            None,
            x,
            None,
            args,
            n * positions,
            build,
            chunk_size=perturbations_per_eval * n,
            score="output",
            forward=replacing_forward(
                self.forward_func, self.layer, x, copies="perturbed", method="CRM"
            ),
            allow_autocast=False,  # S_c - S_c(p) is often below a low-precision score's step
            show_progress=show_progress,
            desc="CRM forwards",
        )
        scored = outputs.reshape(n, positions, -1).to(x.dtype)
        changes = (clean.unsqueeze(1) - scored).transpose(1, 2).contiguous()
        return changes.view(n, clean.shape[1], *spatial)


def _crm_target(target: Any, n: int, output: Tensor) -> Tensor | None:
    """None (the combined map) or one class per example, checked against ``output``."""
    if target is None:
        return None
    targets = per_sample_target(target, n, output)
    if not isinstance(targets, Tensor):
        raise ValueError(
            f"CRM's class-selective map needs integer class targets, got {target!r}; "
            "the model's output must be shaped (N, K)"
        )
    return targets


@final
class CRM3D(CRM):
    r"""CRM for volumes: ``(N, C, D, H, W)`` in, ``(N, 1, D, H, W)`` out.

    :class:`CRM` (see there for the formula, the fast path and the definition) with the
    contract a volume pipeline needs: 5-D input is required, the map is always returned at
    input resolution, upsampled trilinearly with ``align_corners=False``, and a MONAI
    ``MetaTensor`` input gives a ``MetaTensor`` output with the same affine and
    ``applied_operations``. ``upsample``, ``interpolate_mode`` and ``align_corners`` are fixed
    (passing one is a ``TypeError``).

    References:
        Kim, Rajaraman, Antani. "Visual Interpretation of Convolutional Neural Network
        Predictions in Classifying Medical Image Modalities". Diagnostics 9(2):38, 2019.
        doi:10.3390/diagnostics9020038.

    Example:
        >>> import torch
        >>> from monai.networks.nets import resnet10
        >>> from captum_medcam import CRM3D
        >>> net = resnet10(spatial_dims=3, n_input_channels=1, num_classes=2).eval()
        >>> crm = CRM3D(net, net.layer4, fc_layer=net.fc)
        >>> crm.attribute(torch.randn(1, 1, 32, 32, 32), target=1).shape
        torch.Size([1, 1, 32, 32, 32])
    """

    fixed_output = VOLUME
