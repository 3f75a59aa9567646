"""The base of every layer CAM: constructor, output options and the shared pipeline stages.

A layer CAM is ``check the call -> (method) map at layer resolution -> resize -> metadata``.
The first and the last stages are the same for every method and live here, in
:class:`CAMBase`; a method supplies the middle one. How the map is returned is one object,
:class:`CAMOutput`: an N-D class builds it from the call's ``upsample``,
``interpolate_mode`` and ``align_corners``; a volume entry point (``XGradCAM3D``) is the N-D
class with :data:`VOLUME` fixed as its ``fixed_output``, so it needs no code of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from captum.attr import GradientAttribution, LayerAttribution, PerturbationAttribution
from torch import Tensor, nn

from captum_medcam._core.checks import (
    check_flags,
    check_forward_and_layer,
    check_inputs,
    check_target_type,
    format_additional_args,
    warn_if_training,
)
from captum_medcam._core.meta import unwrap_meta, wrap_meta
from captum_medcam._core.spatial import interpolation_mode, resize
from captum_medcam._core.targets import per_sample_target
from captum_medcam.attr._hooks import forward_with_capture
from captum_medcam.attr._reshape import ReshapeTransform, apply_reshape, check_reshape_transform


@dataclass(frozen=True)
class CAMOutput:
    """How a CAM returns its map.

    Attributes:
        upsample: resize the map to the input, ``(N, 1, *S)``; False keeps the layer's
            resolution ``(N, 1, *S')``.
        interpolate_mode: ``None`` picks linear / bilinear / trilinear by the number of
            spatial dims; ``"nearest"``, ``"nearest-exact"`` and ``"area"`` also work.
        align_corners: passed to the linear modes.
        spatial_dims: the number of spatial dims the inputs must have (3 for volumes), or
            None for 1 to 3.
    """

    upsample: bool = True
    interpolate_mode: str | None = None
    align_corners: bool = False
    spatial_dims: int | None = None

    @staticmethod
    def keywords() -> tuple[str, ...]:
        """The ``attribute`` keywords an N-D class takes for these options."""
        return tuple(f.name for f in fields(CAMOutput) if f.name != "spatial_dims")


#: The volume entry points' options: 5-D inputs, maps upsampled trilinearly to the input
#: with ``align_corners=False`` (as MONAI and the 3D Score-CAM study do).
VOLUME = CAMOutput(upsample=True, interpolate_mode="trilinear", align_corners=False, spatial_dims=3)


class CAMBase(LayerAttribution):
    """What every layer CAM shares; subclasses add the map at layer resolution.

    Holds the configuration only (``forward_func``, ``layer``, ``device_ids``,
    ``reshape_transform``), as Captum's methods do: hooks live for one call. A subclass that
    also derives from Captum's ``GradientAttribution`` or ``PerturbationAttribution`` is
    initialised as one.

    Args:
        forward_func: the model, or a function of ``(inputs, *additional_forward_args)``.
        layer: the module whose output (or input) the map explains.
        device_ids: as in Captum, for ``DataParallel`` models.
        reshape_transform: None, or a callable turning the layer's output into
            ``(N, C', *S')`` (a transformer's tokens: see :mod:`captum_medcam.reshapes`).

    Raises:
        TypeError: ``forward_func`` not callable, ``layer`` not a module, ``device_ids`` not
            a list of ints, ``reshape_transform`` not callable.
    """

    #: None in an N-D class (the options come from each call); a volume entry point sets
    #: :data:`VOLUME`, and its ``attribute`` then refuses ``upsample``, ``interpolate_mode``
    #: and ``align_corners`` with a ``TypeError``.
    fixed_output: ClassVar[CAMOutput | None] = None

    def __init__(
        self,
        forward_func: Callable[..., Tensor],
        layer: nn.Module,
        device_ids: list[int] | None = None,
        *,
        reshape_transform: ReshapeTransform | None = None,
    ) -> None:
        check_forward_and_layer(forward_func, layer, device_ids)
        LayerAttribution.__init__(self, forward_func, layer, device_ids)
        if isinstance(self, GradientAttribution):
            GradientAttribution.__init__(self, forward_func)
        if isinstance(self, PerturbationAttribution):
            PerturbationAttribution.__init__(self, forward_func)
        self.reshape_transform = check_reshape_transform(reshape_transform)

    @property
    def multiplies_by_inputs(self) -> bool:
        """False: a CAM is not multiplied by the inputs (Captum's convention)."""
        return False

    @property
    def fixed_keywords(self) -> tuple[str, ...]:
        """The output keywords this class refuses (those of a volume entry point)."""
        return CAMOutput.keywords() if self.fixed_output is not None else ()

    def _output(
        self, upsample: bool, interpolate_mode: str | None, align_corners: bool
    ) -> CAMOutput:
        """The call's output options, or the class's fixed ones."""
        if self.fixed_output is not None:
            return self.fixed_output
        return CAMOutput(upsample, interpolate_mode, align_corners)

    def _check_call(
        self, inputs: Tensor, target: Any, output: CAMOutput, **flags: object
    ) -> tuple[Tensor, str]:
        """Check the arguments of a call before anything runs; warn about training mode.

        Args:
            inputs: the user's inputs (a ``MetaTensor`` is read as a plain tensor).
            target: checked for its type (ranges need the model's output).
            output: the output options; ``spatial_dims`` is checked against ``inputs``.
            **flags: the method's bool options, checked by name.

        Returns:
            ``(x, mode)``: the plain inputs ``(N, C, *S)`` and the interpolation mode.
        """
        x = check_inputs(unwrap_meta(inputs), spatial_dims=output.spatial_dims)
        check_target_type(target)
        check_flags(upsample=output.upsample, align_corners=output.align_corners, **flags)
        mode = interpolation_mode(x.dim() - 2, output.interpolate_mode)
        warn_if_training(self.forward_func, self.layer)
        return x, mode

    def _check_activations(self, acts: Tensor, x: Tensor, method: str) -> None:
        """Refuse activations that are not ``(N, C', *S')`` with the inputs' spatial dims."""
        if acts.dim() != x.dim():
            raise ValueError(
                f"the layer's activations have shape {tuple(acts.shape)} but {method} needs "
                f"(N, channels, *spatial) with the {x.dim() - 2} spatial dims of the inputs "
                f"{tuple(x.shape)}; choose a convolutional layer, or pass reshape_transform= "
                "(captum_medcam.reshapes) for a transformer's tokens"
            )

    def _capture(
        self,
        x: Tensor,
        args: tuple[Any, ...],
        *,
        attribute_to_layer_input: bool = False,
        method: str = "a CAM",
    ) -> tuple[Tensor, Tensor]:
        """One forward pass that captures the layer (no gradient is kept or needed).

        Args:
            x: checked inputs ``(N, C, *S)``.
            args: the additional forward arguments, as a tuple.
            attribute_to_layer_input: capture the layer's input instead of its output.
            method: the method's name for the error about the activations' shape.

        Returns:
            ``(output, activations)``: the model's output and the layer's activations,
            reshaped by ``reshape_transform``, ``(N, C', *S')`` in the dtype of ``x``.

        Raises:
            ValueError: a layer not reached, called twice, with a tuple output, or whose
                (reshaped) activations are not ``(N, C', *S')``.
        """
        with torch.no_grad():
            output, acts = forward_with_capture(
                self.forward_func,
                self.layer,
                x,
                args,
                attribute_to_layer_input=attribute_to_layer_input,
                device_ids=self.device_ids,
            )
        acts = apply_reshape(self.reshape_transform, acts, x.shape[0])
        self._check_activations(acts, x, method)
        return output, acts.to(x.dtype)

    def _activation_cam(
        self,
        inputs: Tensor,
        target: Any,
        additional_forward_args: Any,
        layer_map: Callable[[Tensor], Tensor],
        *,
        output: CAMOutput,
        relu_attributions: bool,
        attribute_to_layer_input: bool,
        method: str,
        **flags: object,
    ) -> Tensor:
        """The pipeline of a class-agnostic activation CAM (Eigen-CAM, KPCA-CAM, FEM):
        check the call -> capture -> ``layer_map(activations)`` ``(N, 1, *S')`` -> ReLU ->
        resize and metadata. A target is checked against the model's output, then ignored.

        Args:
            inputs, target, additional_forward_args: as in the method's ``attribute``.
            layer_map: the method's map of the activations ``(N, C', *S')``.
            output: the output options.
            relu_attributions: apply ReLU to the map at layer resolution.
            attribute_to_layer_input: use the layer's input instead of its output.
            method: the method's name in error messages.
            **flags: the method's other bool options, checked by name first.
        """
        x, mode = self._check_call(
            inputs,
            target,
            output,
            **flags,
            relu_attributions=relu_attributions,
            attribute_to_layer_input=attribute_to_layer_input,
        )
        scores, acts = self._capture(
            x,
            format_additional_args(additional_forward_args),
            attribute_to_layer_input=attribute_to_layer_input,
            method=method,
        )
        if target is not None:  # class-agnostic: a target is checked, then ignored
            per_sample_target(target, x.shape[0], scores)
        cam = layer_map(acts)
        if relu_attributions:
            cam = F.relu(cam)
        return self._finish(cam, x, inputs, output, mode)

    @staticmethod
    def _finish(cam: Tensor, x: Tensor, inputs: Tensor, output: CAMOutput, mode: str) -> Tensor:
        """Resize the layer-resolution map ``(N, 1, *S')`` to the input and copy the metadata
        of a ``MetaTensor`` input (maps at layer resolution are returned as they are)."""
        if not output.upsample:
            return cam
        return wrap_meta(resize(cam, x.shape[2:], mode, output.align_corners), inputs)
