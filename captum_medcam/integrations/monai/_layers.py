"""Name the layer to explain by its dotted name, and list the candidates with their shapes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from captum_medcam._core.checks import check_flags, check_positive_int, format_additional_args
from captum_medcam._core.layers import get_layer

__all__ = ["LayerInfo", "get_layer", "list_layers"]


class LayerInfo(NamedTuple):
    """A module of a network and what it produces for a given input size.

    Attributes:
        name: dotted name, as in ``model.named_modules()`` and MONAI's ``target_layers``.
        type: the module's class name.
        output_shape: shape of its output, ``(N, C, *S')``.
        calls: how often the forward pass calls it; a CAM layer must be called once.
    """

    name: str
    type: str
    output_shape: tuple[int, ...]
    calls: int


def list_layers(
    model: nn.Module,
    input_shape: Sequence[int],
    *,
    spatial_only: bool = True,
    additional_forward_args: Any = None,
) -> list[LayerInfo]:
    """Every layer of ``model`` with its output shape for inputs of ``input_shape``.

    Runs one forward pass on zeros (no gradients) with hooks that are removed afterwards,
    also when the forward raises. The model is left exactly as it was, in either mode: its
    mode is not changed, and a model in training mode, whose forward updates the batch-norm
    statistics, gets every buffer back (saved before, copied back after, also when the
    forward raises). Torch's global random state (dropout draws from it in training mode)
    is restored too. Saving the buffers rather than running a deep copy keeps the memory
    cost to the buffers (a copy would double the parameters) and works for models that
    cannot be copied.

    Args:
        model: the network.
        input_shape: the full input shape ``(N, C, *S)``, e.g. ``(1, 1, 64, 64, 64)``.
        spatial_only: keep only layers whose output has the inputs' number of spatial dims
            (the candidates for a CAM).
        additional_forward_args: further model arguments.

    Returns:
        :class:`LayerInfo` for each layer, in the order their first call finishes (a block
        after its sub-layers).

    Example:
        >>> from monai.networks.nets import resnet10
        >>> from captum_medcam.integrations.monai import list_layers
        >>> net = resnet10(spatial_dims=3, n_input_channels=1, num_classes=2).eval()
        >>> {i.name: i.output_shape for i in list_layers(net, (1, 1, 32, 32, 32))}["layer4"]
        (1, 512, 2, 2, 2)
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(input_shape, (tuple, list, torch.Size)):
        raise TypeError(
            f"input_shape must be a tuple of ints (N, C, *spatial), got {input_shape!r}"
        )
    shape = tuple(check_positive_int(s, "input_shape") for s in input_shape)
    if len(shape) < 3:
        raise ValueError(
            f"input_shape must be (N, C, *spatial) with positive sizes, got {tuple(input_shape)}"
        )
    check_flags(spatial_only=spatial_only)
    param = next(iter(model.parameters()), None)
    x = torch.zeros(
        shape,
        dtype=param.dtype if param is not None and param.is_floating_point() else torch.float32,
        device=param.device if param is not None else None,
    )
    seen: dict[str, LayerInfo] = {}

    def hook_for(name: str, module: nn.Module) -> Any:
        def hook(_m: nn.Module, _inp: Any, out: Any) -> None:
            out_shape = tuple(out.shape) if isinstance(out, Tensor) else ()
            calls = seen[name].calls + 1 if name in seen else 1
            seen[name] = LayerInfo(name, type(module).__name__, out_shape, calls)

        return hook

    buffers = [(b, b.clone()) for b in model.buffers()]
    devices = sorted({p.device.index or 0 for p in model.parameters() if p.is_cuda})
    handles = [m.register_forward_hook(hook_for(n, m)) for n, m in model.named_modules() if n]
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=devices):
            model(x, *format_additional_args(additional_forward_args))
    finally:
        for h in handles:
            h.remove()
        with torch.no_grad():
            for buffer, saved in buffers:
                buffer.copy_(saved)
    infos = list(seen.values())
    if spatial_only:
        infos = [i for i in infos if len(i.output_shape) == len(shape)]
    return infos
