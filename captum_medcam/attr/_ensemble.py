"""Ensembles: the members' maps, each normalised, then averaged (as CRM's authors do)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, final

import torch
from captum.attr import Attribution
from torch import Tensor

from captum_medcam._core.checks import check_inputs
from captum_medcam._core.meta import unwrap_meta, wrap_meta
from captum_medcam._core.spatial import resize
from captum_medcam.attr._interop import captum_attribute

__all__ = ["EnsembleAttribution"]


def normalize_per_sample(maps: Tensor) -> Tensor:
    """Min-max scale every example's map to [0, 1] over all its channels and positions.

    ``(M - min M) / (max M - min M)`` per example; a constant map becomes 0.

    Args:
        maps: ``(N, C, *S)``.

    Returns:
        ``(N, C, *S)`` in [0, 1].
    """
    flat = maps.flatten(1)
    lo = flat.amin(1, keepdim=True)
    span = flat.amax(1, keepdim=True) - lo
    scaled = torch.where(span > 0, (flat - lo) / torch.where(span > 0, span, 1.0), 0.0)
    return scaled.view_as(maps)


@final
class EnsembleAttribution(Attribution):
    r"""The attribution of an ensemble: every member's map normalised, then averaged.

    For members ``m = 1..M``, each an attribution object over its own model (e.g.
    ``ScoreCAM3D(resnet, resnet.layer4)`` and ``CRM3D(densenet, densenet.features)``)::

        L = 1/M sum_m s(A_m(x))        s(A) = (A - min A) / (max A - min A) per example

    as Kim, Rajaraman and Antani combine the CRMs of an ensemble's members. Maps at layer
    resolution (Captum's ``LayerGradCam``) are first resized to the input (linear,
    bilinear or trilinear, ``align_corners=False``), so members of different depths can be
    mixed; every member must give the same number of channels (one, or the input's).

    ``forward_func`` is the mean of the members' model outputs, the usual ensemble of
    logits; pass it (or your own ensemble model) to the metrics.

    References:
        Kim, Rajaraman, Antani. "Visual Interpretation of Convolutional Neural Network
        Predictions in Classifying Medical Image Modalities". Diagnostics 2019, 9(2):38.
        Rajaraman, Kim, Antani et al. "Visualizing and Explaining Deep Learning Predictions
        for Pneumonia Detection in Pediatric Chest Radiographs". SPIE Medical Imaging 2019.

    Args:
        members: the attribution objects, one per member model; each needs
            ``attribute(inputs, target=..., additional_forward_args=..., **kwargs)`` and a
            ``forward_func``.

    Raises:
        TypeError: no members, or a member without ``attribute`` and ``forward_func``.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from captum_medcam import EnsembleAttribution, GradCAMPlusPlus, ScoreCAM
        >>> def net(seed):
        ...     torch.manual_seed(seed)
        ...     return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(),
        ...                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)).eval()
        >>> a, b = net(0), net(1)
        >>> ensemble = EnsembleAttribution([ScoreCAM(a, a[1]), GradCAMPlusPlus(b, b[1])])
        >>> combined, members = ensemble.attribute(torch.randn(2, 1, 16, 16), target=[0, 2],
        ...                                        return_members=True)
        >>> combined.shape, members.shape
        (torch.Size([2, 1, 16, 16]), torch.Size([2, 2, 1, 16, 16]))
    """

    def __init__(self, members: Sequence[Any]) -> None:
        if isinstance(members, (str, bytes)) or not isinstance(members, Sequence) or not members:
            raise TypeError(
                "members must be a non-empty sequence of attribution objects (one per member "
                f"model), got {members!r}"
            )
        for i, member in enumerate(members):
            if not callable(getattr(member, "attribute", None)) or not callable(
                getattr(member, "forward_func", None)
            ):
                raise TypeError(
                    f"members[{i}] must be an attribution object with attribute() and a "
                    f"forward_func (e.g. ScoreCAM3D(model, layer)), got {type(member).__name__}"
                )
        self.members = list(members)
        super().__init__(self._ensemble_forward)

    def _ensemble_forward(self, *args: Any, **kwargs: Any) -> Tensor:
        outputs = [member.forward_func(*args, **kwargs) for member in self.members]
        return torch.stack(outputs).mean(0)

    @property
    def multiplies_by_inputs(self) -> bool:
        return False

    @captum_attribute
    def attribute(
        self,
        inputs: Tensor,
        target: Any = None,
        additional_forward_args: Any = None,
        *,
        return_members: bool = False,
        member_kwargs: Sequence[Mapping[str, Any]] | None = None,
        **attribute_kwargs: Any,
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Compute every member's map, normalise each per example, and average them.

        Args:
            inputs: ``(N, C, *S)``, a tensor or a MONAI ``MetaTensor``.
            target: the class to explain, as in Captum, the same for every member.
            additional_forward_args: further model arguments, as in Captum.
            return_members: also return the members' normalised maps.
            member_kwargs: one dict of ``attribute`` options per member (e.g. Score-CAM's
                ``perturbations_per_eval``), or None.
            **attribute_kwargs: options passed to every member's ``attribute``.

        Returns:
            The ensemble's map ``(N, C', *S)`` in [0, 1] (``C'`` is the members' number of
            channels), or ``(map, members)`` with the members' normalised maps
            ``(N, M, C', *S)``. A ``MetaTensor`` input gives a ``MetaTensor`` map.

        Raises:
            ValueError: a member whose map is not ``(N, C', *spatial)``, members with
                different numbers of channels, ``member_kwargs`` of the wrong length.
        """
        x = check_inputs(unwrap_meta(inputs))
        if member_kwargs is None:
            member_kwargs = [{}] * len(self.members)
        if len(member_kwargs) != len(self.members):
            raise ValueError(
                f"member_kwargs has {len(member_kwargs)} entries for {len(self.members)} members"
            )
        maps = []
        for i, (member, extra) in enumerate(zip(self.members, member_kwargs, strict=True)):
            out = member.attribute(
                inputs,
                target=target,
                additional_forward_args=additional_forward_args,
                **attribute_kwargs,
                **extra,
            )
            if not isinstance(out, Tensor):
                raise ValueError(
                    f"members[{i}] ({type(member).__name__}) returned a {type(out).__name__}; "
                    "one tensor of maps is expected (a single input tensor)"
                )
            out = unwrap_meta(out).detach().to(x.dtype)
            if out.dim() != x.dim() or out.shape[0] != x.shape[0]:
                raise ValueError(
                    f"members[{i}] ({type(member).__name__}) returned maps of shape "
                    f"{tuple(out.shape)} for inputs {tuple(x.shape)}; expected (N, channels, "
                    "*spatial)"
                )
            maps.append(normalize_per_sample(resize(out, x.shape[2:])))
        channels = {m.shape[1] for m in maps}
        if len(channels) > 1:
            raise ValueError(
                f"the members' maps have {sorted(channels)} channels; combine members whose maps "
                "have the same number of channels (e.g. all CAMs, (N, 1, *S))"
            )
        stacked = torch.stack(maps, dim=1)
        combined = wrap_meta(stacked.mean(1), inputs)
        return (combined, stacked) if return_members else combined
