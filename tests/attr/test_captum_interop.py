"""Captum's own wrappers around every attribution class: NoiseTunnel, sensitivity_max,
infidelity, and the 1-tuple inputs that Captum passes."""

from __future__ import annotations

import pytest
import torch
from captum.attr import NoiseTunnel
from captum.metrics import infidelity, sensitivity_max
from torch import nn

from tests.conftest import (
    ATTRIBUTION_CLASSES,
    LAYER_CLASSES,
    assert_unchanged,
    make_attribution,
    model_state,
)

ALL_CLASSES = ATTRIBUTION_CLASSES


def tiny_net() -> nn.Sequential:
    torch.manual_seed(0)
    return (
        nn.Sequential(
            nn.Conv3d(1, 4, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool3d(2),
            nn.Conv3d(4, 6, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool3d(1),
            nn.Flatten(),
            nn.Linear(6, 3),
        )
        .double()
        .eval()
    )


def make(name: str, net: nn.Sequential):
    return make_attribution(name, net, net[4])


@pytest.fixture(scope="module")
def volume() -> torch.Tensor:
    return torch.randn(
        2, 1, 6, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1)
    )


TARGET = [0, 2]


@pytest.mark.parametrize("name", ALL_CLASSES)
def test_one_tuple_inputs_give_a_one_tuple(name, volume):
    method = make(name, tiny_net())
    plain = method.attribute(volume, target=TARGET)
    as_tuple = method.attribute((volume,), target=TARGET)
    assert isinstance(as_tuple, tuple) and len(as_tuple) == 1
    torch.testing.assert_close(as_tuple[0], plain, rtol=0, atol=0)


@pytest.mark.parametrize("name", ALL_CLASSES)
def test_noise_tunnel_without_noise_is_the_method(name, volume):
    """SmoothGrad with stdev 0 averages identical maps: the method's own map."""
    net = tiny_net()
    before = model_state(net)
    method = make(name, net)
    expected = method.attribute(volume, target=TARGET)
    smoothed = NoiseTunnel(method).attribute(
        volume, nt_type="smoothgrad", nt_samples=3, stdevs=0.0, target=TARGET
    )
    torch.testing.assert_close(smoothed, expected)
    (from_tuple,) = NoiseTunnel(method).attribute(
        (volume,),
        nt_type="smoothgrad",
        nt_samples=2,
        nt_samples_batch_size=1,
        stdevs=0.0,
        target=TARGET,
    )
    torch.testing.assert_close(from_tuple, expected)
    assert_unchanged(net, before)


@pytest.mark.parametrize("name", LAYER_CLASSES)
def test_noise_tunnel_with_noise_averages_noisy_maps(name, volume):
    """SmoothGrad's map is the mean of the maps of the noisy copies Captum draws."""
    method = make(name, tiny_net())
    torch.manual_seed(3)
    smoothed = NoiseTunnel(method).attribute(
        volume, nt_type="smoothgrad", nt_samples=2, stdevs=0.1, target=TARGET
    )
    torch.manual_seed(3)  # Captum draws the noise for both copies of the batch at once
    noisy = volume.repeat_interleave(2, 0) + torch.normal(
        0, torch.tensor(0.1).repeat(4, 1, 6, 6, 6)
    )
    maps = method.attribute(noisy, target=[t for t in TARGET for _ in range(2)])
    torch.testing.assert_close(smoothed, maps.view(2, 2, *maps.shape[1:]).mean(1))


@pytest.mark.parametrize("name", ALL_CLASSES)
def test_sensitivity_max(name, volume):
    method = make(name, tiny_net())
    target = torch.tensor(TARGET)
    same = sensitivity_max(
        method.attribute, volume, perturb_func=lambda x: x, n_perturb_samples=2, target=target
    )
    torch.testing.assert_close(same, torch.zeros(2, dtype=volume.dtype))
    torch.manual_seed(0)  # Captum's default perturbation draws from the global generator
    noisy = sensitivity_max(
        method.attribute, volume, perturb_radius=0.05, n_perturb_samples=2, target=target
    )
    assert noisy.shape == (2,) and bool(torch.isfinite(noisy).all()) and bool((noisy >= 0).all())


@pytest.mark.parametrize("name", ALL_CLASSES)
def test_infidelity_matches_its_definition(name, volume):
    """``(sum(I * A) - (f_t(x) - f_t(x - I)))^2`` for one fixed perturbation ``I``."""
    net = tiny_net()
    method = make(name, net)
    (maps,) = method.attribute((volume,), target=TARGET)
    perturbation = torch.linspace(-0.05, 0.05, volume[0].numel(), dtype=volume.dtype).view(
        volume.shape[1:]
    )

    def perturb(inputs):
        noise = perturbation.expand_as(inputs)
        return noise, inputs - noise

    value = infidelity(
        net, perturb, volume, maps, target=TARGET, n_perturb_samples=1, normalize=False
    )
    with torch.no_grad():
        rows = torch.arange(2)
        drop = net(volume)[rows, TARGET] - net(volume - perturbation)[rows, TARGET]
    expected = ((perturbation * maps).flatten(1).sum(1) - drop) ** 2
    torch.testing.assert_close(value, expected)
