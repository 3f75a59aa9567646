"""Ready-made ``reshape_transform`` callables for transformer layers, 2D and 3D.

Every layer method takes ``reshape_transform=``: a callable that turns the layer's output
into ``(N, C, *grid)``. A vision transformer's block outputs tokens ``(N, T, E)`` (one per
patch, row-major over the patch grid, possibly after a class token); a Swin block outputs
channel-last maps ``(N, D, H, W, C)``. The functions here build the right callable from the
input size and the patch size, in one call:

============================================ ===================================== ==================
model                                        layer                                 reshape
============================================ ===================================== ==================
torchvision ``vit_b_16`` (2D)                ``model.encoder.layers[-1].ln_1``     ``torchvision_vit_reshape()``
MONAI ``ViT(classification=True)`` (2D/3D)   ``vit.blocks[-1].norm1``              ``monai_vit_reshape(size, patch, classification=True)``
MONAI ``ViT`` without class token            ``vit.blocks[-1]``                    ``monai_vit_reshape(size, patch)``
UNETR's ViT encoder (hidden states)          ``unetr.vit.blocks[i]``               ``unetr_reshape(size, patch)``
SwinUNETR's Swin stages (3D)                 ``swin.swinViT.layers4[0].blocks[-1]`` ``swin_reshape(size, stage=4)``
============================================ ===================================== ==================

A token count that does not fit the grid is a ``ValueError`` naming the grid it expected.

Example:
    >>> import torch
    >>> from monai.networks.nets import ViT
    >>> from captum_medcam import GradCAM3D
    >>> from captum_medcam.reshapes import monai_vit_reshape
    >>> vit = ViT(1, img_size=32, patch_size=8, hidden_size=48, mlp_dim=96, num_layers=2,
    ...           num_heads=4, classification=True, num_classes=2).eval()
    >>> model = lambda x: vit(x)[0]  # MONAI's ViT returns (logits, hidden states)
    >>> cam = GradCAM3D(model, vit.blocks[-1].norm1,
    ...                 reshape_transform=monai_vit_reshape(32, 8, classification=True))
    >>> cam.attribute(torch.randn(2, 1, 32, 32, 32), target=[0, 1]).shape
    torch.Size([2, 1, 32, 32, 32])
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import final

from torch import Tensor

__all__ = [
    "ChannelsLastToFirst",
    "TokensToGrid",
    "monai_vit_reshape",
    "patch_grid",
    "swin_reshape",
    "torchvision_vit_reshape",
    "unetr_reshape",
]


def _sizes(value: int | Sequence[int], spatial_dims: int | None, name: str) -> tuple[int, ...]:
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int or a sequence of ints, got {value!r}")
    if isinstance(value, int):
        if spatial_dims is None:
            raise ValueError(f"{name}={value} is a single int; pass spatial_dims (2 or 3)")
        sizes: tuple[int, ...] = (value,) * spatial_dims
    else:
        sizes = tuple(value)
        if not all(isinstance(s, int) and not isinstance(s, bool) for s in sizes):
            raise TypeError(f"{name} must be an int or a sequence of ints, got {value!r}")
        if spatial_dims is not None and len(sizes) != spatial_dims:
            raise ValueError(f"{name}={value!r} has {len(sizes)} entries, expected {spatial_dims}")
    if not 1 <= len(sizes) <= 3 or any(s < 1 for s in sizes):
        raise ValueError(f"{name} must hold 1 to 3 positive sizes, got {value!r}")
    return sizes


def patch_grid(
    input_size: int | Sequence[int],
    patch_size: int | Sequence[int],
    spatial_dims: int | None = None,
) -> tuple[int, ...]:
    """The patch grid ``input_size // patch_size`` of a vision transformer.

    Args:
        input_size: the input's spatial size, e.g. ``(96, 96, 96)`` or ``224`` (with
            ``spatial_dims``).
        patch_size: the patch size, an int or one per spatial dim.
        spatial_dims: the number of spatial dims when both sizes are ints.

    Returns:
        The grid, one entry per spatial dim.

    Raises:
        ValueError: a size that the patch size does not divide (transformers with
            non-overlapping patches need that), or mismatched lengths.

    Example:
        >>> patch_grid((96, 96, 64), 16)
        (6, 6, 4)
    """
    if spatial_dims is None and not isinstance(input_size, int):
        spatial_dims = len(tuple(input_size))
    if spatial_dims is None and not isinstance(patch_size, int):
        spatial_dims = len(tuple(patch_size))
    size = _sizes(input_size, spatial_dims, "input_size")
    patch = _sizes(patch_size, len(size), "patch_size")
    if any(s % p for s, p in zip(size, patch, strict=True)):
        raise ValueError(
            f"input_size {size} is not divisible by patch_size {patch}; a transformer with "
            "non-overlapping patches needs sizes that are multiples of the patch size"
        )
    return tuple(s // p for s, p in zip(size, patch, strict=True))


@final
class TokensToGrid:
    """Tokens ``(N, prefix_tokens + prod(grid), E)`` to a map ``(N, E, *grid)``.

    The first ``prefix_tokens`` tokens (a class token) are dropped; the others are the
    patches in row-major order over the grid, as ViT patch embeddings (a strided
    convolution, flattened) produce them.

    Args:
        grid: the patch grid, 1 to 3 positive sizes.
        prefix_tokens: tokens before the patch tokens (1 for a class token).

    Example:
        >>> import torch
        >>> tokens = torch.arange(2 * 5 * 3.0).view(2, 5, 3)  # class token + 2x2 patches
        >>> TokensToGrid((2, 2), prefix_tokens=1)(tokens).shape
        torch.Size([2, 3, 2, 2])
    """

    def __init__(self, grid: Sequence[int], prefix_tokens: int = 0) -> None:
        self.grid = _sizes(tuple(grid), None, "grid")
        if (
            isinstance(prefix_tokens, bool)
            or not isinstance(prefix_tokens, int)
            or prefix_tokens < 0
        ):
            raise ValueError(f"prefix_tokens must be an int >= 0, got {prefix_tokens!r}")
        self.prefix_tokens = prefix_tokens

    def __call__(self, tokens: Tensor) -> Tensor:
        """Reshape ``(N, T, E)`` tokens to ``(N, E, *grid)``.

        Raises:
            ValueError: not 3-D, or ``T`` is not ``prefix_tokens + prod(grid)``.
        """
        patches = math.prod(self.grid)
        expected = self.prefix_tokens + patches
        if tokens.dim() != 3:
            raise ValueError(
                f"expected tokens shaped (N, {expected}, E) for the grid {self.grid}, got a "
                f"tensor of shape {tuple(tokens.shape)}"
            )
        if tokens.shape[1] != expected:
            raise ValueError(
                f"got {tokens.shape[1]} tokens but the grid {self.grid} ({patches} patches) "
                f"plus {self.prefix_tokens} class token(s) needs {expected}; check the input "
                "size, the patch size and whether the model has a class token"
            )
        n, _, e = tokens.shape
        return tokens[:, self.prefix_tokens :].transpose(1, 2).reshape(n, e, *self.grid)

    def __repr__(self) -> str:
        return f"TokensToGrid(grid={self.grid}, prefix_tokens={self.prefix_tokens})"


@final
class ChannelsLastToFirst:
    """Channel-last maps ``(N, *grid, C)`` to ``(N, C, *grid)`` (Swin blocks).

    Args:
        grid: the expected grid, checked on every call; None accepts any grid.

    Example:
        >>> import torch
        >>> ChannelsLastToFirst((4, 4, 2))(torch.zeros(1, 4, 4, 2, 24)).shape
        torch.Size([1, 24, 4, 4, 2])
    """

    def __init__(self, grid: Sequence[int] | None = None) -> None:
        self.grid = None if grid is None else _sizes(tuple(grid), None, "grid")

    def __call__(self, maps: Tensor) -> Tensor:
        """Move the last dim to dim 1.

        Raises:
            ValueError: a tensor whose spatial sizes are not the expected grid.
        """
        if not 3 <= maps.dim() <= 5:
            raise ValueError(
                f"expected a channel-last map (N, *grid, C) with 1 to 3 grid dims, got shape "
                f"{tuple(maps.shape)}"
            )
        if self.grid is not None and tuple(maps.shape[1:-1]) != self.grid:
            raise ValueError(
                f"expected a channel-last map on the grid {self.grid}, (N, "
                f"{', '.join(map(str, self.grid))}, C); got shape {tuple(maps.shape)}"
            )
        return maps.movedim(-1, 1)

    def __repr__(self) -> str:
        return f"ChannelsLastToFirst(grid={self.grid})"


def torchvision_vit_reshape(image_size: int = 224, patch_size: int = 16) -> TokensToGrid:
    """The reshape for torchvision's ViTs (``vit_b_16`` and friends), 2D with a class token.

    Use it with a layer inside the last encoder block, e.g. ``model.encoder.layers[-1].ln_1``
    (as pytorch-grad-cam recommends: the last block's output only feeds the class token to
    the head, so its patch tokens have no gradient).

    Args:
        image_size: the model's ``image_size`` (square inputs).
        patch_size: the model's ``patch_size``.

    Returns:
        ``TokensToGrid((image_size // patch_size,) * 2, prefix_tokens=1)``.

    Example:
        >>> torchvision_vit_reshape()
        TokensToGrid(grid=(14, 14), prefix_tokens=1)
    """
    return TokensToGrid(patch_grid(image_size, patch_size, spatial_dims=2), prefix_tokens=1)


def monai_vit_reshape(
    img_size: int | Sequence[int],
    patch_size: int | Sequence[int],
    *,
    classification: bool = False,
    spatial_dims: int = 3,
) -> TokensToGrid:
    """The reshape for MONAI's ``ViT``, 2D or 3D.

    Args:
        img_size: the model's ``img_size``.
        patch_size: the model's ``patch_size``.
        classification: the model's ``classification`` flag: True models prepend a class
            token, which is dropped.
        spatial_dims: the model's ``spatial_dims`` (used when the sizes are ints).

    Returns:
        A :class:`TokensToGrid` for layers such as ``vit.blocks[i]`` or ``vit.blocks[-1].norm1``.

    Example:
        >>> monai_vit_reshape(96, 16, classification=True)
        TokensToGrid(grid=(6, 6, 6), prefix_tokens=1)
    """
    grid = patch_grid(img_size, patch_size, spatial_dims=spatial_dims)
    return TokensToGrid(grid, prefix_tokens=1 if classification else 0)


def unetr_reshape(
    img_size: int | Sequence[int], patch_size: int | Sequence[int] = 16, spatial_dims: int = 3
) -> TokensToGrid:
    """The reshape for the hidden states of UNETR's ViT encoder (``unetr.vit.blocks[i]``).

    UNETR's encoder has no class token; its grid is ``img_size // patch_size`` (UNETR's
    patch size is 16).

    Example:
        >>> unetr_reshape((96, 96, 64))
        TokensToGrid(grid=(6, 6, 4), prefix_tokens=0)
    """
    return TokensToGrid(patch_grid(img_size, patch_size, spatial_dims=spatial_dims))


def swin_reshape(
    img_size: int | Sequence[int] | None = None,
    stage: int = 4,
    patch_size: int = 2,
    spatial_dims: int = 3,
) -> ChannelsLastToFirst:
    """The reshape for a block of SwinUNETR's Swin stages (channel-last to channel-first).

    The blocks of stage ``i`` (``swin.swinViT.layers{i}[0].blocks[j]``) see the grid
    ``img_size / (patch_size * 2 ** (i - 1))`` (rounded up, as the patch embedding and patch
    merging pad odd sizes) and output ``(N, *grid, C)``. The stage modules themselves
    (``layers{i}[0]``) already output ``(N, C, *grid)`` and need no reshape.

    Args:
        img_size: the input's spatial size, to check the grid; None accepts any grid.
        stage: 1 to 4.
        patch_size: the model's patch size (2 in SwinUNETR).
        spatial_dims: 2 or 3.

    Example:
        >>> swin_reshape((64, 64, 32), stage=4)
        ChannelsLastToFirst(grid=(4, 4, 2))
    """
    if isinstance(stage, bool) or not isinstance(stage, int) or not 1 <= stage <= 4:
        raise ValueError(f"stage must be 1, 2, 3 or 4 (layers1 to layers4), got {stage!r}")
    if img_size is None:
        return ChannelsLastToFirst()
    grid = _sizes(img_size, spatial_dims, "img_size")
    grid = tuple(math.ceil(s / patch_size) for s in grid)
    for _ in range(stage - 1):
        grid = tuple(math.ceil(s / 2) for s in grid)
    return ChannelsLastToFirst(grid)
