"""Captum's own Guided Backprop and Gradient SHAP maps of a ViT and a ResNet go through the
metrics (the ResNet-18 vs ViT-B/16 brain study compares these methods)."""

from __future__ import annotations

import pytest
import torch
from captum.attr import GradientShap, GuidedBackprop
from monai.networks.nets import ViT, resnet10
from torch import nn

from captum_medcam import evaluate_dataset
from captum_medcam.metrics import aopc, deletion_curve, insertion_auc


class _Logits(nn.Module):
    def __init__(self, vit: nn.Module) -> None:
        super().__init__()
        self.vit = vit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.vit(x)[0]


def _models() -> dict[str, nn.Module]:
    torch.manual_seed(0)
    vit = ViT(
        1,
        img_size=16,
        patch_size=4,
        hidden_size=24,
        mlp_dim=48,
        num_layers=2,
        num_heads=4,
        classification=True,
        num_classes=3,
    )
    resnet = resnet10(spatial_dims=3, n_input_channels=1, num_classes=3, widen_factor=0.25)
    return {"vit": _Logits(vit).eval(), "resnet": resnet.eval()}  # float32: 3D convs are fast


@pytest.mark.filterwarnings("ignore:Setting backward hooks on ReLU:UserWarning")
@pytest.mark.parametrize("name", ["vit", "resnet"])
def test_guided_backprop_and_gradient_shap_maps_through_the_metrics(name: str) -> None:
    model = _models()[name]
    torch.manual_seed(1)
    x = torch.randn(2, 1, 16, 16, 16)
    target = torch.tensor([0, 2])
    xg = x.clone().requires_grad_()  # Captum warns about inputs without grad
    maps = {
        "guided_backprop": GuidedBackprop(model).attribute(xg, target=target).detach(),
        "gradient_shap": GradientShap(model)
        .attribute(
            xg,
            baselines=torch.zeros(3, 1, 16, 16, 16),
            target=target,
            n_samples=4,
        )
        .detach(),
    }
    clean = model(x).softmax(1).gather(1, target.view(-1, 1)).squeeze(1).detach()
    for attributions in maps.values():
        assert attributions.shape == x.shape and attributions.abs().sum() > 0
        curve = deletion_curve(model, x, attributions, target=target, n_steps=8)
        torch.testing.assert_close(curve.scores[:, 0], clean)  # the unperturbed input
        deleted = model(torch.zeros_like(x)).softmax(1).gather(1, target.view(-1, 1)).squeeze(1)
        torch.testing.assert_close(curve.scores[:, -1], deleted.detach())  # all voxels gone
        assert torch.isfinite(insertion_auc(model, x, attributions, target=target, n_steps=8)).all()
        assert torch.isfinite(aopc(model, x, attributions, target=target, region_size=8)).all()


@pytest.mark.filterwarnings("ignore:Setting backward hooks on ReLU:UserWarning")
# evaluate_dataset hands Captum inputs that do not require grad; Captum sets it and warns.
@pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already require gradients:UserWarning")
def test_evaluate_dataset_with_captum_guided_backprop_on_a_vit() -> None:
    model = _models()["vit"]
    torch.manual_seed(2)
    data = [(torch.randn(1, 16, 16, 16), torch.tensor(1)) for _ in range(3)]
    metrics = {"insertion_auc": lambda *a, **k: insertion_auc(*a, n_steps=8, **k)}
    result = evaluate_dataset(
        model, GuidedBackprop(model), data, metrics, target="label", show_progress=False
    )
    x = torch.stack([d[0] for d in data])
    maps = GuidedBackprop(model).attribute(x.clone().requires_grad_(), target=1).detach()
    want = insertion_auc(model, x, maps, target=1, n_steps=8)
    torch.testing.assert_close(result.values["insertion_auc"], want)
