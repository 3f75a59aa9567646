"""The new CAMs against the peers' implementations, end to end, where the options match.

pytorch-grad-cam applies ReLU, min-max normalises each map and resizes it (OpenCV in 2D,
SciPy's ``zoom`` in 3D), then normalises again; torchcam min-max normalises at layer
resolution. Our maps at layer resolution are put through the peer's own post-processing,
so what is compared is the method's math.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from captum_medcam import CAM, FEM, KPCACAM, EigenCAM, EigenGradCAM
from captum_medcam._core.spatial import minmax_normalize
from tests.conftest import small_cnn

SIZE = {2: (16, 16), 3: (8, 8, 8)}


def volume(dims: int, n: int = 3, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 2, *SIZE[dims], generator=g, dtype=torch.float64)


def pgc_postprocess(layer_maps: torch.Tensor, x: torch.Tensor) -> np.ndarray:
    """pytorch-grad-cam's steps after ``get_cam_image``: ReLU, min-max and resize per map,
    then (its multi-layer aggregation, one layer here) min-max again."""
    from pytorch_grad_cam.utils.image import scale_cam_image

    size = tuple(reversed(x.shape[2:]))  # its get_target_width_height: (W, H) or (W, H, D)
    cams = np.maximum(layer_maps[:, 0].detach().numpy(), 0)
    return scale_cam_image(np.maximum(scale_cam_image(cams, size), 0))


def run_pgc(name: str, net: torch.nn.Module, x: torch.Tensor, target: list[int], **kw):
    import pytorch_grad_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model = copy.deepcopy(net)  # it calls model.eval() and hooks the layer until exit
    with getattr(pytorch_grad_cam, name)(model, [model[4]], **kw) as cam:
        return cam(x, targets=[ClassifierOutputTarget(t) for t in target])


@pytest.mark.parametrize("dims", [2, 3])
def test_cam_equals_torchcam(dims):
    from torchcam.methods import CAM as TorchcamCAM

    net = small_cnn(dims)
    x = volume(dims)
    target = [2, 0, 1]
    model = copy.deepcopy(net)
    with TorchcamCAM(model, model[4], model[7], input_shape=x.shape[1:]) as extractor:
        with torch.no_grad():
            model(x)
        (theirs,) = extractor(class_idx=target)
    ours = CAM(net, net[4], fc_layer=net[7]).attribute(x, target=target, upsample=False)
    torch.testing.assert_close(minmax_normalize(ours)[0][:, 0], theirs, atol=1e-7, rtol=0)


@pytest.mark.parametrize("dims", [2, 3])
def test_eigen_cam_equals_pytorch_grad_cam_up_to_its_sign(dims):
    """Centred, pytorch-grad-cam's map is ours or, where LAPACK picked the other sign, the
    map of our negated projection (after its ReLU that is a different map). Its sign
    correction for Seg-Eigen-CAM is our ``sign="largest_entry"``."""
    net = small_cnn(dims)
    x = volume(dims, n=6)
    theirs = run_pgc("EigenCAM", net, x, [0] * 6)
    signed = EigenCAM(net, net[4]).attribute(
        x, center=True, relu_attributions=False, upsample=False
    )
    same, flipped = pgc_postprocess(signed, x), pgc_postprocess(-signed, x)
    agree = [np.allclose(t, s, atol=1e-5) for t, s in zip(theirs, same, strict=True)]
    for t, f, ok in zip(theirs, flipped, agree, strict=True):
        assert ok or np.allclose(t, f, atol=1e-5)
    # the two candidates are different maps, so each comparison can fail
    assert all(not np.allclose(s, f, atol=1e-2) for s, f in zip(same, flipped, strict=True))


@pytest.mark.parametrize("dims", [2, 3])
def test_eigen_grad_cam_equals_pytorch_grad_cam_up_to_its_sign(dims):
    net = small_cnn(dims)
    x = volume(dims, n=4, seed=1)
    target = [0, 1, 2, 1]
    theirs = run_pgc("EigenGradCAM", net, x, target)
    signed = EigenGradCAM(net, net[4]).attribute(
        x, target=target, center=True, relu_attributions=False, upsample=False
    )
    same, flipped = pgc_postprocess(signed, x), pgc_postprocess(-signed, x)
    agree = [np.allclose(t, s, atol=1e-5) for t, s in zip(theirs, same, strict=True)]
    for t, f, ok in zip(theirs, flipped, agree, strict=True):
        assert ok or np.allclose(t, f, atol=1e-5)
    # the two candidates are different maps, so each comparison can fail
    assert all(not np.allclose(s, f, atol=1e-2) for s, f in zip(same, flipped, strict=True))


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("kernel", ["sigmoid", "rbf", "poly"])
def test_kpca_cam_equals_pytorch_grad_cam(dims, kernel):
    """Sign included with ``sign="largest_entry"``, scikit-learn's rule."""
    net = small_cnn(dims)
    x = volume(dims, n=3, seed=2)
    theirs = run_pgc("KPCA_CAM", net, x, [0] * 3, kernel=kernel)
    ours = KPCACAM(net, net[4]).attribute(x, kernel=kernel, sign="largest_entry", upsample=False)
    np.testing.assert_allclose(pgc_postprocess(ours, x), theirs, atol=1e-5, rtol=0)


@pytest.mark.parametrize("dims", [2, 3])
def test_fem_variant_equals_pytorch_grad_cam(dims):
    net = small_cnn(dims)
    x = volume(dims, n=3, seed=3)
    theirs = run_pgc("FEM", net, x, [0] * 3)
    ours = FEM(net, net[4]).attribute(x, variant="pytorch-grad-cam", upsample=False)
    np.testing.assert_allclose(pgc_postprocess(ours, x), theirs, atol=1e-5, rtol=0)
    paper = FEM(net, net[4]).attribute(x, upsample=False)
    assert not np.allclose(pgc_postprocess(paper, x), theirs, atol=1e-3)
