"""FEM, the feature explanation method, for 1D, 2D and 3D inputs.

The math is one function without hooks, :func:`fem_map`.
"""

from __future__ import annotations

import math

from torch import Tensor

from captum_medcam._core.checks import check_choice, check_finite_float

__all__: list[str] = []

#: ``"paper"``: the authors' code (binary masks weighted by the channel means);
#: ``"pytorch-grad-cam"``: its ``FEM`` (activations weighted by the fraction of positions
#: above the threshold).
FEM_VARIANTS = ("paper", "pytorch-grad-cam")


def fem_map(acts: Tensor, k: float = 2.0, variant: str = "paper") -> Tensor:
    r"""FEM from a layer's activations: channels' unusually strong positions, weighted.

    For each example and channel ``k`` of ``A`` ``(N, K, *S')``, with ``mu_k`` and
    ``sigma_k`` the mean and the (population, ``ddof=0``) standard deviation of ``A_k`` over
    the ``P = |S'|`` positions, the k-sigma rule gives a binary mask::

        B_k(p) = 1  if  A_k(p) > mu_k + k sigma_k,  else 0

        FEM(p) = sum_k mu_k B_k(p)                     variant="paper" (the authors' code)
        FEM(p) = sum_k mean_q(B_k(q)) A_k(p)           variant="pytorch-grad-cam"

    Fuad et al. weight each channel's binary mask by the channel's mean activation
    (``aggregate_binary_maps`` in their code; the same in Xplique's ``FEM``);
    pytorch-grad-cam 1.5.7 exchanges the roles: it weights the activations by the
    fraction of each channel's positions above the threshold.

    Args:
        acts: ``(N, K, *S')``, 1 to 3 spatial dims.
        k: the number of standard deviations above the mean (2 in the paper and both
            implementations).
        variant: ``"paper"`` (default) or ``"pytorch-grad-cam"``.

    Returns:
        ``(N, 1, *S')`` in the dtype of ``acts``.

    Raises:
        ValueError: ``k`` negative, not finite, or so large that no position can pass the
            threshold: a value exceeds ``mu + k sigma`` only if ``k < sqrt(P - 1)``, so with
            ``P`` positions and ``k >= sqrt(P - 1)`` every mask is empty and the map is
            zero (a 2x2 layer and ``k = 2``); choose a smaller ``k`` or an earlier layer.

    Example:
        >>> import torch
        >>> acts = torch.zeros(1, 2, 3, 3)
        >>> acts[0, 0, 1, 1] = 9.0                       # one outlier in channel 0
        >>> acts[0, 1] = 1.0                             # channel 1 constant: no outlier
        >>> fem_map(acts).flatten()                      # mu_0 = 1 at the outlier
        tensor([0., 0., 0., 0., 1., 0., 0., 0., 0.])
    """
    k = check_finite_float(k, "k", low=0.0)
    check_choice(variant, "variant", FEM_VARIANTS)
    flat = acts.flatten(2)
    positions = flat.shape[-1]
    if k >= math.sqrt(positions - 1):
        raise ValueError(
            f"k={k:g} with {positions} positions in the layer: no activation can exceed its "
            f"channel's mean + k * std unless k < sqrt(positions - 1) = "
            f"{math.sqrt(positions - 1):.3g}, so the map would be zero; choose a smaller k or "
            "a layer with more positions"
        )
    mean = flat.mean(-1, keepdim=True)
    std = flat.std(-1, correction=0, keepdim=True)
    mask = (flat > mean + k * std).to(acts.dtype)
    if variant == "paper":
        cam = (mean * mask).sum(1, keepdim=True)
    else:
        cam = (mask.mean(-1, keepdim=True) * flat).sum(1, keepdim=True)
    return cam.view(acts.shape[0], 1, *acts.shape[2:])
