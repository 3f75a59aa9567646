"""Find a submodule by its dotted name, for the MONAI helpers and the randomization check."""

from __future__ import annotations

import difflib

from torch import nn

__all__ = ["get_layer"]


def get_layer(model: nn.Module, name: str) -> nn.Module:
    """The submodule of ``model`` with the dotted ``name`` (e.g. ``"layer4"``,
    ``"features.denseblock4"``), as MONAI's ``target_layers`` names it.

    Raises:
        TypeError: ``model`` is not a module or ``name`` not a string.
        ValueError: no such module; the message lists the closest names.

    Example:
        >>> from monai.networks.nets import resnet10
        >>> from captum_medcam.integrations.monai import get_layer
        >>> net = resnet10(spatial_dims=3, n_input_channels=1, num_classes=2)
        >>> get_layer(net, "layer4") is net.layer4
        True
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(name, str):
        raise TypeError(f"the layer name must be a dotted string such as 'layer4', got {name!r}")
    modules = dict(model.named_modules())
    if name in modules and name:
        return modules[name]
    names = [n for n in modules if n]
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
    top = sorted({n.split(".")[0] for n in names})
    hint = f"close names: {close}" if close else f"top-level modules: {top}"
    raise ValueError(f"{type(model).__name__} has no layer named {name!r}; {hint}")
