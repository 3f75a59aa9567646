"""FEM: the k-sigma masks, both weightings, and pytorch-grad-cam's implementation."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from captum_medcam.attr._fem import fem_map

SHAPES = {1: (9,), 2: (3, 3), 3: (3, 3, 1)}


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_one_outlier_per_channel(dims):
    """Channel 0: 9 at one of 9 positions (mean 1, std sqrt(8): threshold 1 + 2 sqrt(8) < 9);
    channel 1: 4 at two positions (mean 8/9, std 1.66: threshold 4.2 > 4, no outlier);
    channel 2: constant (std 0: nothing exceeds the mean)."""
    acts = torch.zeros(1, 3, 9, dtype=torch.float64)
    acts[0, 0, 4] = 9.0
    acts[0, 1, [1, 7]] = 4.0
    acts[0, 2] = 0.5
    acts = acts.view(1, 3, *SHAPES[dims])
    expected = torch.zeros(9, dtype=torch.float64)
    expected[4] = 1.0  # mu_0 * B_0
    torch.testing.assert_close(fem_map(acts).flatten(), expected)
    # pytorch-grad-cam: A_0 weighted by the fraction of its positions above (1/9)
    torch.testing.assert_close(fem_map(acts, variant="pytorch-grad-cam").flatten(), expected)
    # k = 1: channel 1's two positions pass (4 > 0.889 + 1.663) and weigh mu_1 = 8/9
    loose = fem_map(acts, k=1.0).flatten()
    assert loose[1].item() == pytest.approx(8 / 9) and loose[4].item() == pytest.approx(1.0)


def test_the_threshold_is_strict_and_uses_the_population_std():
    """Values (0, 0, 0, 0, 3): mean 0.6, population std 1.2, so mean + 2 std = 3.0 exactly:
    3 is not above it; with the sample std (1.34) it would not be either, but with k = 1.99 the
    population std lets it pass (0.6 + 2.388 < 3) where the sample std would not (3.27)."""
    acts = torch.tensor([0.0, 0.0, 0.0, 0.0, 3.0], dtype=torch.float64).view(1, 1, 5)
    with pytest.raises(ValueError, match="sqrt"):
        fem_map(acts, k=2.0)  # k = sqrt(P - 1): no value can pass
    assert fem_map(acts, k=1.99).flatten().tolist() == [0.0, 0.0, 0.0, 0.0, 0.6]


@pytest.mark.parametrize("positions", [1, 4, 5])
def test_a_threshold_no_value_can_pass_is_refused(positions):
    acts = torch.rand(1, 2, positions)
    with pytest.raises(ValueError, match=r"k=2 with \d+ positions"):
        fem_map(acts)
    if positions > 1:
        fem_map(acts, k=math.sqrt(positions - 1) - 0.01)


@pytest.mark.parametrize("shape", [(3, 8, 7, 7), (2, 8, 4, 5, 6)], ids=["2d", "3d"])
def test_pytorch_grad_cam_variant_equals_its_fem(shape):
    from pytorch_grad_cam import FEM

    acts = torch.relu(torch.randn(*shape, generator=torch.Generator().manual_seed(0)))
    acts = acts.double()
    for k in (1.0, 2.0):
        theirs = FEM.get_cam_image(
            SimpleNamespace(k=k), None, None, None, acts.numpy(), None, False
        )
        ours = fem_map(acts, k=k, variant="pytorch-grad-cam")[:, 0].numpy()
        np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-12)
        assert np.abs(theirs).max() > 0


def test_the_two_weightings_differ():
    acts = torch.relu(torch.randn(2, 8, 7, 7, generator=torch.Generator().manual_seed(1)))
    assert not torch.allclose(fem_map(acts), fem_map(acts, variant="pytorch-grad-cam"))


def test_bad_options():
    acts = torch.rand(1, 2, 4, 4)
    with pytest.raises(ValueError, match="variant must be"):
        fem_map(acts, variant="xplique")
    with pytest.raises(ValueError, match="k must be >= 0"):
        fem_map(acts, k=-1.0)
    with pytest.raises(TypeError, match="k must be a real number"):
        fem_map(acts, k="2")  # type: ignore[arg-type]
