"""Tiny fixed models shared by the tests, in 1D, 2D and 3D, float64."""

from __future__ import annotations

import pytest
import torch
from torch import nn

CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
MAXPOOL = {1: nn.MaxPool1d, 2: nn.MaxPool2d, 3: nn.MaxPool3d}
GAP = {1: nn.AdaptiveAvgPool1d, 2: nn.AdaptiveAvgPool2d, 3: nn.AdaptiveAvgPool3d}


def small_cnn(dims: int, in_channels: int = 2, classes: int = 3, seed: int = 0) -> nn.Sequential:
    """conv -> ReLU -> maxpool -> conv -> ReLU -> GAP -> flatten -> linear, float64, eval.

    Index 4 is the last ReLU (the usual CAM layer); its output is (N, 8, *S/2).
    """
    torch.manual_seed(seed)
    return (
        nn.Sequential(
            CONV[dims](in_channels, 6, 3, padding=1),
            nn.ReLU(),
            MAXPOOL[dims](2),
            CONV[dims](6, 8, 3, padding=1),
            nn.ReLU(),
            GAP[dims](1),
            nn.Flatten(),
            nn.Linear(8, classes),
        )
        .double()
        .eval()
    )


def gap_linear(dims: int, in_channels: int = 2, channels: int = 5, classes: int = 3, seed: int = 0):
    """conv -> GAP -> linear, float64, eval: the model where CAM has a closed form."""
    torch.manual_seed(seed)
    return (
        nn.Sequential(
            CONV[dims](in_channels, channels, 3, padding=1),
            GAP[dims](1),
            nn.Flatten(),
            nn.Linear(channels, classes),
        )
        .double()
        .eval()
    )


def hook_count(model: nn.Module) -> int:
    """Number of hooks registered anywhere in ``model``."""
    return sum(
        len(m._forward_hooks)
        + len(m._forward_pre_hooks)
        + len(m._backward_hooks)
        + len(getattr(m, "_backward_pre_hooks", {}))
        for m in model.modules()
    )


def model_state(model: nn.Module) -> tuple[list[bool], dict[str, torch.Tensor]]:
    """Training flags of every module and a copy of every parameter and buffer."""
    return [m.training for m in model.modules()], {
        k: v.detach().clone() for k, v in model.state_dict().items()
    }


def assert_unchanged(model: nn.Module, before: tuple[list[bool], dict[str, torch.Tensor]]) -> None:
    flags, tensors = model_state(model)
    assert flags == before[0], "a module's training flag was changed"
    for k, v in tensors.items():
        assert torch.equal(v, before[1][k]), f"{k} was changed"
    assert hook_count(model) == 0, "a hook was left on the model"


@pytest.fixture(params=[2, 3], ids=["2d", "3d"])
def dims(request: pytest.FixtureRequest) -> int:
    return request.param


def mean_map_metric(forward_func, inputs, attributions, target=None, additional_forward_args=None):
    """A stand-in metric with the signature of captum_medcam.metrics: the map's mean, (N,)."""
    return attributions.flatten(1).mean(1)


def masked_score_metric(
    forward_func, inputs, attributions, target=None, additional_forward_args=None
):
    """A stand-in metric that uses the model: the target's softmax probability on the input
    multiplied by the min-max normalised map, (N,)."""
    flat = attributions.flatten(1)
    lo, hi = flat.amin(1, keepdim=True), flat.amax(1, keepdim=True)
    mask = ((flat - lo) / (hi - lo).clamp_min(1e-12)).view_as(attributions)
    probs = forward_func(inputs * mask).softmax(1)
    target = torch.as_tensor(target, device=probs.device).reshape(-1).expand(probs.shape[0])
    return probs.gather(1, target.unsqueeze(1)).squeeze(1)


@pytest.fixture
def toy_metrics():
    """Metric functions with the captum_medcam.metrics signature, defined here so that the
    tests of the evaluation machinery do not depend on the real metrics."""
    return {"mean_map": mean_map_metric, "masked_score": masked_score_metric}


#: Every attribution class the package exports; tests/test_package.py checks that the list
#: is complete, so a new class is walked through the client tests (MONAI, Captum) too.
LAYER_CLASSES = [
    "ScoreCAM",
    "ScoreCAM3D",
    "GradCAM",
    "GradCAM3D",
    "GuidedGradCAM3D",
    "GradCAMPlusPlus",
    "GradCAMPlusPlus3D",
    "LayerCAM",
    "LayerCAM3D",
    "HiResCAM",
    "HiResCAM3D",
    "XGradCAM",
    "XGradCAM3D",
    "CRM",
    "CRM3D",
    "GradCAMElementWise",
    "GradCAMElementWise3D",
    "ShapleyCAM",
    "ShapleyCAM3D",
    "FinerCAM",
    "FinerCAM3D",
    "SmoothGradCAMPlusPlus",
    "SmoothGradCAMPlusPlus3D",
    "CAM",
    "CAM3D",
    "EigenCAM",
    "EigenCAM3D",
    "EigenGradCAM",
    "EigenGradCAM3D",
    "KPCACAM",
    "KPCACAM3D",
    "FEM",
    "FEM3D",
    "AblationCAM",
    "AblationCAM3D",
    "SSCAM",
    "SSCAM3D",
    "ISCAM",
    "ISCAM3D",
]
#: Methods that explain the model, not a layer (constructed with the model alone).
MODEL_CLASSES = ["CNNFixations", "FullGrad", "FullGrad3D"]
ATTRIBUTION_CLASSES = [*LAYER_CLASSES, *MODEL_CLASSES, "EnsembleAttribution"]


def make_attribution(name: str, net: nn.Module, layer: nn.Module):
    """The class ``name`` of captum_medcam on ``net`` (and ``layer`` for layer methods); the
    ensemble has two members on the same network; CAM gets the last ``nn.Linear``."""
    import captum_medcam

    cls = getattr(captum_medcam, name)
    if name == "EnsembleAttribution":
        return cls([captum_medcam.ScoreCAM(net, layer), captum_medcam.LayerCAM(net, layer)])
    if name in ("CAM", "CAM3D"):  # the Linear after global average pooling
        return cls(net, layer, fc_layer=[m for m in net.modules() if isinstance(m, nn.Linear)][-1])
    return cls(net) if name in MODEL_CLASSES else cls(net, layer)
