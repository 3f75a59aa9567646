"""MONAI ``MetaTensor`` in and out: plain tensors for the math, metadata back on the result.

MONAI is imported only when a value is a MONAI tensor, so plain-tensor users never pay
for it.
"""

from __future__ import annotations

import copy

from torch import Tensor


def unwrap_meta(x: Tensor) -> Tensor:
    """Return the plain tensor behind a MONAI ``MetaTensor`` (``x`` itself otherwise)."""
    as_tensor = getattr(x, "as_tensor", None)
    if as_tensor is not None and type(x).__module__.startswith("monai."):
        return as_tensor()
    return x


def wrap_meta(result: Tensor, like: Tensor) -> Tensor:
    """Give ``result`` the metadata of ``like`` when ``like`` is a MONAI ``MetaTensor``.

    The affine, the original shape and ``applied_operations`` are copied (a deep copy: the
    map never shares metadata with the image), so a map at input resolution can be inverted
    and saved in the image's original space. A batch collated by ``monai.data.DataLoader``
    keeps its per-sample metadata (affines ``(N, 4, 4)``, one ``applied_operations`` list
    per sample, ``is_batch``), so ``decollate_batch(maps)`` gives each sample's map with
    its own affine. (``MetaTensor(result, meta=like.meta)`` fails on collated metadata:
    MONAI's constructor reads ``original_channel_dim`` as one value, a batch holds one per
    sample.)
    """
    if not type(like).__module__.startswith("monai."):
        return result
    from monai.data import MetaTensor

    if not isinstance(like, MetaTensor):
        return result
    out = unwrap_meta(result).as_subclass(MetaTensor)
    out.__dict__.update(copy.deepcopy(like.__dict__))  # MetaObj's state, as copy_meta_from
    return out
