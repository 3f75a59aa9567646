"""Substrates: RISE's blur kernel, separability, means, noise."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from captum_medcam.metrics import (
    blur_baseline,
    gaussian_blur,
    mean_baseline,
    normal_noise_baseline,
    uniform_noise_baseline,
)


def test_blur_kernel_is_rise_gkern() -> None:
    ndimage = pytest.importorskip("scipy.ndimage")
    import numpy as np

    delta = np.zeros((11, 11))
    delta[5, 5] = 1
    gkern = torch.from_numpy(ndimage.gaussian_filter(delta, 5))  # RISE's gkern(11, 5)
    img = torch.zeros(1, 1, 11, 11, dtype=torch.float64)
    img[0, 0, 5, 5] = 1
    torch.testing.assert_close(gaussian_blur(img)[0, 0], gkern)


def test_blur_3d_equals_full_kernel_convolution() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 3, 6, 7, 8, dtype=torch.float64)
    delta = torch.zeros(1, 1, 5, 5, 5, dtype=torch.float64)
    delta[0, 0, 2, 2, 2] = 1
    kernel = gaussian_blur(delta, 5, 1.5, padding_mode="zeros")[0, 0]  # the 3D kernel
    full = F.conv3d(x, kernel.expand(3, 1, 5, 5, 5), padding=2, groups=3)
    torch.testing.assert_close(gaussian_blur(x, 5, 1.5), full)
    torch.testing.assert_close(kernel.sum(), torch.tensor(1.0, dtype=torch.float64))


@pytest.mark.parametrize("mode", ["reflect", "replicate"])
def test_blur_keeps_constants_with_border_padding(mode: str) -> None:
    x = torch.full((1, 2, 12, 12, 12), 3.0, dtype=torch.float64)
    torch.testing.assert_close(blur_baseline(padding_mode=mode)(x), x)


def test_mean_and_noise() -> None:
    torch.manual_seed(1)
    x = torch.randn(2, 2, 4, 5, dtype=torch.float64)
    m = mean_baseline()(x)
    torch.testing.assert_close(m[:, :, 0, 0], x.mean((2, 3)))
    u = uniform_noise_baseline(generator=torch.Generator().manual_seed(0))(x)
    lo = x.amin((1, 2, 3)).view(2, 1, 1, 1)
    hi = x.amax((1, 2, 3)).view(2, 1, 1, 1)
    assert bool(((u >= lo) & (u <= hi)).all()) and u.dtype == x.dtype
    a = normal_noise_baseline(0.0, 0.1, generator=torch.Generator().manual_seed(3))(x)
    b = normal_noise_baseline(0.0, 0.1, generator=torch.Generator().manual_seed(3))(x)
    torch.testing.assert_close(a, b)


def test_errors() -> None:
    with pytest.raises(ValueError, match="odd"):
        blur_baseline(4)
    with pytest.raises(ValueError, match="sigma"):
        blur_baseline(5, 0.0)
    with pytest.raises(ValueError, match="padding_mode"):
        blur_baseline(padding_mode="circular")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="low < high"):
        uniform_noise_baseline(1.0, 0.0)
    with pytest.raises(ValueError, match="std"):
        normal_noise_baseline(0.0, -1.0)
