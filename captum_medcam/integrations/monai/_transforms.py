"""MONAI dictionary transforms: compute a map for an image, and invert it to scanner space."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import Invertd, InvertibleTransform, MapTransform
from monai.utils import ensure_tuple_rep
from torch import Tensor

from captum_medcam._core.checks import check_flags
from captum_medcam._core.meta import unwrap_meta, wrap_meta
from captum_medcam._core.targets import class_indices
from captum_medcam.evaluation import attribute_batch, check_attribute_kwargs

__all__ = ["Attributiond", "InvertAttributiond", "check_invertible"]


def _missing_key(key: Hashable, data: Mapping[Hashable, Any], what: str) -> KeyError:
    return KeyError(
        f"{what} {key!r} is not in the data dict; its keys are {sorted(map(str, data))}"
    )


def _target_from(value: Any, key: Hashable) -> int:
    """One class index from a label or a prediction stored in the data dict (one sample).

    A class index (an int, ``()`` or ``(1,)``, e.g. after ``AsDiscreted(argmax=True)``) is
    that class; class scores or a one-hot ``(K,)`` give their argmax (see
    :func:`captum_medcam._core.targets.class_indices`).
    """
    return int(class_indices([value], 1, name=f"the target under key {key!r}")[0])


class Attributiond(MapTransform):
    """Compute an attribution map for each image key and store it under a new key.

    The map is computed for one sample (``(C, *S)``, channel first, as MONAI dictionary
    transforms see it) with any attribution object of captum_medcam or Captum, at the
    image's resolution (maps at layer resolution are upsampled trilinearly), and stored as a
    ``MetaTensor`` ``(1, *S)`` that carries the image's metadata (affine, original shape)
    and ``applied_operations``, ready for :class:`InvertAttributiond` / ``Invertd`` and
    ``SaveImaged``.

    Gradients are enabled locally, so gradient methods work inside a MONAI evaluator's
    postprocessing or under ``torch.no_grad()``; the model's mode is never changed (call
    ``model.eval()`` first).

    Args:
        keys: keys of the images to explain.
        attribution: e.g. ``ScoreCAM3D(model, model.layer4)`` or
            ``captum.attr.LayerGradCam(model, model.layer4)``.
        target: a fixed class (an int), a key of the data dict whose value gives the class
            (a label or a prediction: a class index ``()`` or ``(1,)``, as
            ``AsDiscreted(argmax=True)`` leaves it, or class scores or a one-hot ``(K,)``,
            whose argmax is taken), or None for a model with one output.
        map_keys: where to store each map; default ``"{key}_map"``.
        attribute_kwargs: options passed to ``attribution.attribute``.
        allow_missing_keys: skip image keys that are missing.

    Raises:
        KeyError: an image key or the target key is missing from the data dict.

    Example:
        >>> import torch
        >>> from monai.networks.nets import resnet10
        >>> from captum_medcam import ScoreCAM3D
        >>> from captum_medcam.integrations.monai import Attributiond
        >>> net = resnet10(spatial_dims=3, n_input_channels=1, num_classes=2,
        ...                widen_factor=0.25).eval()
        >>> explain = Attributiond("image", ScoreCAM3D(net, net.layer2), target="label")
        >>> out = explain({"image": torch.randn(1, 16, 16, 16), "label": 1})
        >>> out["image_map"].shape
        torch.Size([1, 16, 16, 16])
    """

    def __init__(
        self,
        keys: KeysCollection,
        attribution: Any,
        target: int | str | None = None,
        map_keys: KeysCollection | None = None,
        attribute_kwargs: Mapping[str, Any] | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        check_flags(allow_missing_keys=allow_missing_keys)
        super().__init__(keys, allow_missing_keys)
        if not callable(getattr(attribution, "attribute", None)):
            raise TypeError(
                "attribution must be an attribution object with an attribute() method, "
                f"got {type(attribution).__name__}"
            )
        if target is not None and (isinstance(target, bool) or not isinstance(target, (int, str))):
            raise TypeError(f"target must be an int, a key (str) or None, got {target!r}")
        self.attribution = attribution
        self.target = target
        self.map_keys = (
            tuple(f"{k}_map" for k in self.keys)
            if map_keys is None
            else ensure_tuple_rep(map_keys, len(self.keys))
        )
        self.attribute_kwargs = check_attribute_kwargs(attribute_kwargs)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        if not self.allow_missing_keys:
            for key in self.keys:
                if key not in d:
                    raise _missing_key(key, d, "image key")
        target: int | None
        if isinstance(self.target, str):
            if self.target not in d:
                raise _missing_key(self.target, d, "target key")
            target = _target_from(d[self.target], self.target)
        else:
            target = self.target
        for key, map_key in self.key_iterator(d, self.map_keys):
            image = d[key]
            if not isinstance(image, Tensor):
                image = torch.as_tensor(image)
            if not image.is_floating_point():
                image = image.float()
            maps = attribute_batch(
                self.attribution, image.unsqueeze(0), target, **self.attribute_kwargs
            )
            d[map_key] = wrap_meta(unwrap_meta(maps)[0], image)
        return d


class InvertAttributiond(MapTransform):
    """Map attribution maps back to the original image space (``Invertd`` for maps).

    Inverts the preprocessing ``transform`` (spacing, orientation, resizing, ...) that was
    applied to ``orig_keys`` on the maps at ``keys``, interpolating maps linearly (not with
    ``Invertd``'s default nearest neighbour, which makes blocky maps). After it,
    ``SaveImaged`` writes a NIfTI with the original file's affine and shape.

    Checks first that each map can be inverted: it must be a ``MetaTensor`` (as
    :class:`Attributiond` writes it) with the spatial shape of its image, else the inversion
    would be silently skipped or wrong.

    Args:
        keys: keys of the maps.
        transform: the invertible preprocessing applied to the images (e.g. a ``Compose``).
        orig_keys: the image key of each map (default ``"image"``).
        nearest_interp: use nearest-neighbour interpolation anyway (False: linear).
        allow_missing_keys: skip map keys that are missing.

    Raises:
        KeyError: a map or image key is missing from the data dict.
        ValueError: a map without metadata, or with another spatial shape than its image.

    Example::

        pre = Compose([LoadImaged("image"), EnsureChannelFirstd("image"),
                       Orientationd("image", "RAS"), Spacingd("image", (2.0, 2.0, 2.0))])
        post = Compose([Attributiond("image", cam, target=1),
                        InvertAttributiond("image_map", pre, orig_keys="image"),
                        SaveImaged("image_map", output_dir="maps", output_postfix="map")])
        post(pre({"image": "scan.nii.gz"}))
    """

    def __init__(
        self,
        keys: KeysCollection,
        transform: InvertibleTransform,
        orig_keys: KeysCollection = "image",
        nearest_interp: bool = False,
        allow_missing_keys: bool = False,
    ) -> None:
        check_flags(nearest_interp=nearest_interp, allow_missing_keys=allow_missing_keys)
        super().__init__(keys, allow_missing_keys)
        self.orig_keys = ensure_tuple_rep(orig_keys, len(self.keys))
        self._invert = Invertd(
            keys=self.keys,
            transform=transform,
            orig_keys=self.orig_keys,
            nearest_interp=nearest_interp,
            allow_missing_keys=allow_missing_keys,
        )

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key, orig_key in zip(self.keys, self.orig_keys, strict=True):
            if key not in d:
                if self.allow_missing_keys:
                    continue
                raise _missing_key(key, d, "map key")
            if orig_key not in d:
                raise _missing_key(orig_key, d, "image key (orig_keys)")
            check_invertible(d[key], d[orig_key], key, orig_key)
        return self._invert(d)


def check_invertible(
    value: Any, image: Any, key: Hashable = "map", orig_key: Hashable = "image"
) -> None:
    """Raise a clear error if the map ``value`` cannot be inverted like ``image``."""
    if not isinstance(value, MetaTensor):
        raise ValueError(
            f"the map under {key!r} is a {type(value).__name__} without metadata, so it cannot be "
            "inverted to the original image space; compute it with Attributiond on a MetaTensor "
            "image (as LoadImaged makes), or wrap it: MetaTensor(map, meta=image.meta, "
            "applied_operations=image.applied_operations)"
        )
    spatial = tuple(value.shape[1:])
    image_spatial = tuple(image.shape[1:]) if isinstance(image, Tensor) else None
    if image_spatial is not None and spatial != image_spatial:
        raise ValueError(
            f"the map under {key!r} has spatial shape {spatial} but the image {orig_key!r} has "
            f"{image_spatial}; upsample the map to the image first (Attributiond does)"
        )
