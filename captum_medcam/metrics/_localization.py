"""Localization metrics: does an attribution map point at the annotated region?

Every function takes precomputed attributions ``(N, C, *S)`` and binary masks of the same
spatial shape, and returns one value per example ``(N,)`` on the attributions' device.
The ``C`` channels of an attribution (e.g. Integrated Gradients on a multi-channel MRI)
are summed into one relevance value per voxel before anything else, as Quantus does.
Masks are ``(N, 1, *S)`` (one per example) or ``(1, 1, *S)`` (shared by all examples).

An empty mask makes every metric undefined: by default it is a ``ValueError`` naming the
examples, and ``empty_mask="nan"`` returns NaN for them instead (never a silent 0), which
suits loops over slices of which some show no lesion.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

from captum_medcam._core.checks import check_baseline_value, check_finite_float
from captum_medcam._core.meta import unwrap_meta

__all__ = [
    "attribution_dice",
    "attribution_iou",
    "energy_pointing_game",
    "pointing_game",
    "relevance_rank_accuracy",
]

EmptyMask = Literal["raise", "nan"]


def _check_pair(attributions: object, masks: object) -> tuple[Tensor, Tensor]:
    """Validate and return ``(relevance (N, 1, *S), masks bool (N or 1, 1, *S))``."""
    if not isinstance(attributions, Tensor):
        raise TypeError(f"attributions must be a torch.Tensor, got {type(attributions).__name__}")
    if not isinstance(masks, Tensor):
        raise TypeError(f"masks must be a torch.Tensor, got {type(masks).__name__}")
    a = unwrap_meta(attributions)
    m = unwrap_meta(masks)
    if not a.is_floating_point():
        raise TypeError(f"attributions must be floating point, got dtype {a.dtype}")
    if not 3 <= a.dim() <= 5:
        raise ValueError(
            "attributions must be shaped (N, C, *spatial) with 1 to 3 spatial dims, "
            f"got shape {tuple(a.shape)}"
        )
    if a.numel() == 0:
        raise ValueError(f"attributions are empty (shape {tuple(a.shape)})")
    if not bool(torch.isfinite(a).all()):
        raise ValueError("attributions contain NaN or inf values")
    n, spatial = a.shape[0], tuple(a.shape[2:])
    if (
        m.dim() != a.dim()
        or m.shape[1] != 1
        or m.shape[0] not in (1, n)
        or tuple(m.shape[2:]) != spatial
    ):
        hint = ""
        if tuple(m.shape[-len(spatial) :]) == spatial and m.dim() == a.dim() - 1:
            hint = "; add the channel dim with masks.unsqueeze(1)"
        elif m.dim() == a.dim() and tuple(m.shape[2:]) != spatial:
            hint = (
                "; attributions at layer resolution must be upsampled to the mask first, e.g. "
                "captum.attr.LayerAttribution.interpolate(maps, masks.shape[2:], 'trilinear')"
            )
        raise ValueError(
            f"masks must be shaped ({n}, 1, *{spatial}) (one per example) or (1, 1, *{spatial}) "
            f"(shared) to match attributions of shape {tuple(a.shape)}, got {tuple(m.shape)}{hint}"
        )
    if m.dtype != torch.bool:
        if m.is_complex():
            raise TypeError(f"masks must be boolean or hold 0/1 values, got dtype {m.dtype}")
        if not bool(((m == 0) | (m == 1)).all()):
            raise ValueError(
                "masks must be binary (bool, or only 0 and 1); for a label map pick the "
                "structure first, e.g. masks = labels == 2"
            )
        m = m != 0
    return a.sum(1, keepdim=True), m.to(a.device)


def _empty_rows(masks: Tensor, n: int, empty_mask: EmptyMask) -> Tensor:
    """Bool ``(N,)``: the examples whose mask is empty; raises under ``"raise"``."""
    if empty_mask not in ("raise", "nan"):
        raise ValueError(f"empty_mask must be 'raise' or 'nan', got {empty_mask!r}")
    empty = ~masks.flatten(1).any(1)
    if bool(empty.any()) and empty_mask == "raise":
        rows = empty.nonzero().squeeze(1).tolist()
        which = "the shared mask is" if masks.shape[0] == 1 else f"the masks of examples {rows} are"
        raise ValueError(
            f"{which} empty: the metric is undefined there. Pass empty_mask='nan' to get NaN "
            "for those examples instead."
        )
    return empty.expand(n)


def _with_nan(values: Tensor, empty: Tensor) -> Tensor:
    return values.masked_fill(empty, math.nan)


def dilate_mask(masks: Tensor, tolerance: float) -> Tensor:
    r"""Voxels within Euclidean distance ``tolerance`` (in voxels) of a binary mask.

    Computed exactly as a squared distance transform truncated at ``tolerance``, one spatial
    dim after the other: ``d_{i}(p) = min_{|o| <= r} (o^2 + d_{i-1}(p + o e_i))`` with
    ``d_0 = 0`` on the mask and ``inf`` elsewhere. The truncation loses nothing, since a
    mask voxel within distance ``r`` is within ``r`` along every axis. Cost: ``2r + 1``
    shifted minima per spatial dim, on the masks' device.

    Args:
        masks: bool ``(N, 1, *S)``.
        tolerance: a distance in voxels, >= 0 (the name :func:`pointing_game` uses for
            it); 0 returns the masks unchanged.

    Returns:
        Bool ``(N, 1, *S)``.

    Example:
        >>> import torch
        >>> m = torch.zeros(1, 1, 5, 5, dtype=torch.bool)
        >>> m[0, 0, 2, 2] = True
        >>> int(dilate_mask(m, 1.0).sum())  # the centre and its 4 neighbours
        5
    """
    tolerance = check_finite_float(tolerance, "tolerance", low=0)
    # offsets beyond the largest extent only reach the padding: capping them changes nothing
    r = min(math.floor(tolerance), max(masks.shape[2:], default=0))
    if r == 0:
        return masks
    dist = torch.zeros(masks.shape, dtype=torch.float32, device=masks.device)
    dist = dist.masked_fill(~masks, math.inf)
    for dim in range(2, masks.dim()):
        length = dist.shape[dim]
        pad_shape = list(dist.shape)
        pad_shape[dim] = r
        pad = dist.new_full(pad_shape, math.inf)
        padded = torch.cat([pad, dist, pad], dim)
        best = dist.clone()
        for o in range(-r, r + 1):
            if o != 0:
                best = torch.minimum(best, padded.narrow(dim, r + o, length) + float(o * o))
        dist = best
    return dist <= tolerance * tolerance


def pointing_game(
    attributions: Tensor,
    masks: Tensor,
    *,
    tolerance: float = 0,
    empty_mask: EmptyMask = "raise",
) -> Tensor:
    r"""Pointing game: 1 where the map's maximum lies in the mask, 0 elsewhere.

    ``hit = 1 if argmax_p a(p) in dilate(M, tolerance) else 0``, where ``a`` is the
    attribution summed over channels and ``dilate`` adds the voxels within Euclidean
    distance ``tolerance`` of the mask (Zhang et al. use 15 pixels). The mean over a data
    set is the pointing accuracy.

    Ties: when several voxels share the maximum, the example is a hit only if **all** of
    them lie in the (dilated) mask, so a constant or saturated map cannot score by
    chance. (Quantus counts a hit if any of them does.)

    References:
        Zhang, Bargal, Lin, Brandt, Shen, Sclaroff. "Top-down Neural Attention by
        Excitation Backprop". ECCV 2016 / IJCV 2018. arXiv:1608.00507.

    Args:
        attributions: ``(N, C, *S)`` with 1 to 3 spatial dims.
        masks: binary ``(N, 1, *S)`` or shared ``(1, 1, *S)``; bool or 0/1 values.
        tolerance: distance in voxels (>= 0) within which a maximum outside the mask still
            counts as a hit.
        empty_mask: ``"raise"`` (default) or ``"nan"`` for examples with an empty mask.

    Returns:
        ``(N,)`` of 0.0 and 1.0 (NaN for empty masks under ``empty_mask="nan"``), in the
        attributions' dtype and device.

    Raises:
        TypeError: non-tensor or non-floating attributions, complex masks.
        ValueError: shapes that do not match, non-binary masks, NaN attributions, a
            negative tolerance, an empty mask (under ``empty_mask="raise"``).

    Example:
        >>> import torch
        >>> maps = torch.zeros(1, 1, 4, 4)
        >>> maps[0, 0, 1, 1] = 1.0
        >>> mask = torch.zeros(1, 1, 4, 4, dtype=torch.bool)
        >>> mask[0, 0, 1, 2] = True
        >>> pointing_game(maps, mask), pointing_game(maps, mask, tolerance=1)
        (tensor([0.]), tensor([1.]))
    """
    a, m = _check_pair(attributions, masks)
    n = a.shape[0]
    empty = _empty_rows(m, n, empty_mask)
    region = dilate_mask(m, tolerance).flatten(1).expand(n, -1)
    flat = a.flatten(1)
    is_max = flat == flat.amax(1, keepdim=True)
    hit = ~(is_max & ~region).any(1)
    return _with_nan(hit.to(a.dtype), empty)


def energy_pointing_game(
    attributions: Tensor,
    masks: Tensor,
    *,
    empty_mask: EmptyMask = "raise",
) -> Tensor:
    r"""Energy-based pointing game: the share of positive attribution inside the mask.

    ``E = sum_{p in M} a+(p) / sum_p a+(p)`` with ``a+ = max(a, 0)`` and ``a`` the
    attribution summed over channels. 1 means all positive evidence is inside the mask;
    the mask's volume fraction is what a uniform map scores. This is the Score-CAM
    paper's localization measure; Arras et al. call it *relevance mass accuracy*.

    A map with no positive value has no energy to share: NaN for that example (not 0).

    References:
        Wang et al. "Score-CAM: Score-Weighted Visual Explanations for Convolutional
        Neural Networks". CVPR Workshops 2020. arXiv:1910.01279.
        Arras, Osman, Samek. "CLEVR-XAI: A benchmark dataset for the ground truth
        evaluation of neural network explanations". Information Fusion 2022.
        arXiv:2003.07258.

    Args:
        attributions: ``(N, C, *S)`` with 1 to 3 spatial dims.
        masks: binary ``(N, 1, *S)`` or shared ``(1, 1, *S)``.
        empty_mask: ``"raise"`` (default) or ``"nan"``.

    Returns:
        ``(N,)`` in [0, 1]; NaN where the map has no positive value (or the mask is empty
        under ``empty_mask="nan"``).

    Raises:
        TypeError, ValueError: as :func:`pointing_game`.

    Example:
        >>> import torch
        >>> maps = torch.tensor([[[3.0, 1.0, -2.0, 0.0]]])
        >>> mask = torch.tensor([[[True, False, False, False]]])
        >>> energy_pointing_game(maps, mask)
        tensor([0.7500])
    """
    a, m = _check_pair(attributions, masks)
    n = a.shape[0]
    empty = _empty_rows(m, n, empty_mask)
    positive = a.clamp(min=0).flatten(1)
    inside = (positive * m.flatten(1)).sum(1)
    total = positive.sum(1)
    share = inside / torch.where(total > 0, total, torch.ones_like(total))
    return _with_nan(share, empty | (total <= 0))


def relevance_rank_accuracy(
    attributions: Tensor,
    masks: Tensor,
    *,
    empty_mask: EmptyMask = "raise",
) -> Tensor:
    r"""Relevance rank accuracy: the share of the ``K = |M|`` top-ranked voxels in the mask.

    ``RRA = |top_K(a) ∩ M| / K`` with ``K`` the number of mask voxels and ``a`` the
    attribution summed over channels. Ties at the ``K``-th value are shared out evenly
    (the expectation over random tie-breaking): voxels strictly above the ``K``-th
    largest value ``t`` all count, and the ``K - #{a > t}`` remaining places go to the
    voxels equal to ``t`` in proportion to how many of them lie in the mask. A constant
    map therefore scores the mask's volume fraction (chance level), not an arbitrary
    value set by the memory order of the voxels.

    References:
        Arras, Osman, Samek. "CLEVR-XAI: A benchmark dataset for the ground truth
        evaluation of neural network explanations". Information Fusion 2022.
        arXiv:2003.07258.

    Args:
        attributions: ``(N, C, *S)`` with 1 to 3 spatial dims.
        masks: binary ``(N, 1, *S)`` or shared ``(1, 1, *S)``.
        empty_mask: ``"raise"`` (default) or ``"nan"``.

    Returns:
        ``(N,)`` in [0, 1] (NaN for empty masks under ``empty_mask="nan"``).

    Raises:
        TypeError, ValueError: as :func:`pointing_game`.

    Example:
        >>> import torch
        >>> maps = torch.tensor([[[4.0, 3.0, 2.0, 1.0]]])
        >>> mask = torch.tensor([[[True, False, True, False]]])
        >>> relevance_rank_accuracy(maps, mask)
        tensor([0.5000])
    """
    a, m = _check_pair(attributions, masks)
    n = a.shape[0]
    empty = _empty_rows(m, n, empty_mask)
    flat = a.flatten(1)
    inside = m.flatten(1).expand(n, -1)
    k = inside.sum(1)
    ordered = flat.sort(1, descending=True).values
    kth = ordered.gather(1, (k - 1).clamp(min=0).unsqueeze(1))
    above = flat > kth
    tied = flat == kth
    n_above = above.sum(1).to(a.dtype)
    n_tied = tied.sum(1).to(a.dtype)
    hits_above = (above & inside).sum(1).to(a.dtype)
    hits_tied = (tied & inside).sum(1).to(a.dtype)
    kf = k.to(a.dtype)
    hits = hits_above + (kf - n_above) * hits_tied / n_tied
    return _with_nan(hits / kf.clamp(min=1), empty)


def _binarize(a: Tensor, threshold: float | Tensor | None, top_k_percent: float | None) -> Tensor:
    """Bool ``(N, V)``: the voxels of the flattened ``a`` ``(N, V)`` that the map selects."""
    if (threshold is None) == (top_k_percent is None):
        raise ValueError("pass exactly one of threshold= or top_k_percent=")
    n, v = a.shape
    if top_k_percent is not None:
        check_finite_float(top_k_percent, "top_k_percent", low=0, high=100, low_open=True)
        k = max(1, math.ceil(v * top_k_percent / 100))
        kth = a.topk(k, dim=1).values[:, -1:]
        return a >= kth
    if isinstance(threshold, Tensor) and threshold.numel() > 1:
        check_baseline_value(threshold, "threshold")  # a finite real tensor
    else:
        threshold = check_finite_float(threshold, "threshold")
    t = torch.as_tensor(threshold, dtype=a.dtype, device=a.device)
    if t.dim() > 1 or (t.dim() == 1 and t.numel() not in (1, n)):
        raise ValueError(
            f"threshold must be a number or a tensor with one value per example ({n}), "
            f"got shape {tuple(t.shape)}"
        )
    return a > t.reshape(-1, 1)


def _overlap(
    attributions: Tensor,
    masks: Tensor,
    threshold: float | Tensor | None,
    top_k_percent: float | None,
    empty_mask: EmptyMask,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(|B ∩ M|, |B|, |M|, empty)``, each ``(N,)``, for the binarized map ``B``."""
    a, m = _check_pair(attributions, masks)
    n = a.shape[0]
    empty = _empty_rows(m, n, empty_mask)
    selected = _binarize(a.flatten(1), threshold, top_k_percent)
    inside = m.flatten(1).expand(n, -1)
    both = (selected & inside).sum(1).to(a.dtype)
    return both, selected.sum(1).to(a.dtype), inside.sum(1).to(a.dtype), empty


def attribution_iou(
    attributions: Tensor,
    masks: Tensor,
    *,
    threshold: float | Tensor | None = None,
    top_k_percent: float | None = None,
    empty_mask: EmptyMask = "raise",
) -> Tensor:
    r"""Intersection over union of the binarized map ``B`` and the mask ``M``.

    ``IoU = |B ∩ M| / |B ∪ M|``. The map (the attribution summed over channels) is
    binarized in one of two ways:

    - ``threshold=t``: the voxels with ``a > t`` (strictly). ``t`` is a number or a tensor
      ``(N,)`` with one threshold per example, e.g. 15 % of each map's maximum (the
      Grad-CAM paper's localization): ``threshold=0.15 * maps.flatten(1).amax(1)``.
    - ``top_k_percent=q``: the ``ceil(q / 100 * V)`` voxels with the largest values, out
      of ``V`` voxels. Voxels tied with the last one are all included, so the selection
      can be larger (a constant map selects everything).

    References:
        Selvaraju et al. "Grad-CAM: Visual Explanations from Deep Networks via
        Gradient-based Localization". ICCV 2017. arXiv:1610.02391 (thresholded maps
        against boxes).

    Args:
        attributions: ``(N, C, *S)`` with 1 to 3 spatial dims.
        masks: binary ``(N, 1, *S)`` or shared ``(1, 1, *S)``.
        threshold: binarize at ``a > threshold``: a number or a tensor ``(N,)``.
        top_k_percent: binarize to the top ``top_k_percent`` % of voxels, in (0, 100].
        empty_mask: ``"raise"`` (default) or ``"nan"``.

    Returns:
        ``(N,)`` in [0, 1] (NaN for empty masks under ``empty_mask="nan"``). An empty
        binarized map scores 0.

    Raises:
        TypeError, ValueError: as :func:`pointing_game`; both or neither of ``threshold``
            and ``top_k_percent``; ``top_k_percent`` outside (0, 100].

    Example:
        >>> import torch
        >>> maps = torch.tensor([[[0.9, 0.8, 0.1, 0.0]]])
        >>> mask = torch.tensor([[[True, False, False, False]]])
        >>> attribution_iou(maps, mask, top_k_percent=50)
        tensor([0.5000])
    """
    both, selected, inside, empty = _overlap(
        attributions, masks, threshold, top_k_percent, empty_mask
    )
    union = selected + inside - both
    return _with_nan(both / union.clamp(min=1), empty)


def attribution_dice(
    attributions: Tensor,
    masks: Tensor,
    *,
    threshold: float | Tensor | None = None,
    top_k_percent: float | None = None,
    empty_mask: EmptyMask = "raise",
) -> Tensor:
    r"""Dice coefficient of the binarized map ``B`` and the mask ``M``.

    ``Dice = 2 |B ∩ M| / (|B| + |M|) = 2 IoU / (1 + IoU)``, with ``B`` binarized by
    ``threshold`` or ``top_k_percent`` as in :func:`attribution_iou`.

    Args:
        attributions: ``(N, C, *S)`` with 1 to 3 spatial dims.
        masks: binary ``(N, 1, *S)`` or shared ``(1, 1, *S)``.
        threshold: binarize at ``a > threshold``: a number or a tensor ``(N,)``.
        top_k_percent: binarize to the top ``top_k_percent`` % of voxels, in (0, 100].
        empty_mask: ``"raise"`` (default) or ``"nan"``.

    Returns:
        ``(N,)`` in [0, 1] (NaN for empty masks under ``empty_mask="nan"``). An empty
        binarized map scores 0.

    Raises:
        TypeError, ValueError: as :func:`attribution_iou`.

    Example:
        >>> import torch
        >>> maps = torch.tensor([[[0.9, 0.8, 0.1, 0.0]]])
        >>> mask = torch.tensor([[[True, False, False, False]]])
        >>> attribution_dice(maps, mask, top_k_percent=50)
        tensor([0.6667])
    """
    both, selected, inside, empty = _overlap(
        attributions, masks, threshold, top_k_percent, empty_mask
    )
    return _with_nan(2 * both / (selected + inside).clamp(min=1), empty)
