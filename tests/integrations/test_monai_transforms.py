"""Attributiond and InvertAttributiond: maps in MONAI dictionary pipelines, back to scanner space."""

from __future__ import annotations

import os

import nibabel as nib
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from captum.attr import LayerGradCam
from monai.data import MetaTensor
from monai.transforms import (
    Compose,
    EnsureChannelFirstd,
    LoadImaged,
    Orientationd,
    SaveImaged,
    Spacingd,
)
from nibabel.testing import data_path

from captum_medcam import ScoreCAM3D
from captum_medcam.integrations.monai import Attributiond, InvertAttributiond
from tests.conftest import assert_unchanged, model_state, small_cnn

ANATOMICAL = os.path.join(data_path, "anatomical.nii")


def meta_image(seed: int = 0, shape=(1, 8, 8, 8)) -> MetaTensor:
    torch.manual_seed(seed)
    affine = torch.diag(torch.tensor([2.0, 1.5, 3.0, 1.0], dtype=torch.float64))
    affine[:3, 3] = torch.tensor([10.0, -5.0, 2.0])
    return MetaTensor(torch.randn(shape, dtype=torch.float64), affine=affine)


class InputAsMap:
    """An 'attribution' whose map is the input itself: inverting it must give the image back."""

    def __init__(self, forward_func):
        self.forward_func = forward_func

    def attribute(self, inputs, target=None):
        return inputs.clone()


def test_map_equals_direct_call_and_keeps_metadata():
    model = small_cnn(3, in_channels=1)
    cam = ScoreCAM3D(model, model[4])
    image = meta_image()
    image.applied_operations.append({"class": "Fake", "id": 1})
    out = Attributiond("image", cam, target=2)({"image": image})
    expected = cam.attribute(image.as_tensor().unsqueeze(0), target=2)[0]
    assert isinstance(out["image_map"], MetaTensor)
    torch.testing.assert_close(out["image_map"].as_tensor(), expected)
    assert torch.equal(out["image_map"].affine, image.affine)
    assert out["image_map"].applied_operations == image.applied_operations
    assert out["image"] is image


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("label", 1, 1),
        ("label", torch.tensor([2]), 2),
        ("pred", torch.tensor([0.1, -3.0, 0.7]), 2),
        ("pred", MetaTensor(torch.tensor([1.0])), 1),  # AsDiscreted(argmax=True): an index
        ("pred", torch.tensor([0.0, 1.0, 0.0]), 1),  # AsDiscreted(to_onehot=3)
    ],
)
def test_target_from_key(key, value, expected):
    model = small_cnn(3, in_channels=1)
    cam = ScoreCAM3D(model, model[4])
    image = meta_image(1)
    out = Attributiond("image", cam, target=key, map_keys="cam")({"image": image, key: value})
    direct = cam.attribute(image.as_tensor().unsqueeze(0), target=expected)[0]
    torch.testing.assert_close(out["cam"].as_tensor(), direct)
    other = cam.attribute(image.as_tensor().unsqueeze(0), target=(expected + 1) % 3)[0]
    assert not torch.allclose(out["cam"].as_tensor(), other)


@pytest.mark.parametrize("context", ["no_grad", "inference_mode"])
def test_gradient_method_works_without_grad(context):
    """MONAI evaluators run under no_grad; users may use inference_mode. LayerGradCam needs
    gradients: they are enabled locally and inference tensors are cloned."""
    model = small_cnn(3, in_channels=1)
    before = model_state(model)
    gc = LayerGradCam(model, model[4])
    image = meta_image(2)
    expected = F.interpolate(
        gc.attribute(image.as_tensor().unsqueeze(0), target=1),
        size=(8, 8, 8),
        mode="trilinear",
        align_corners=False,
    )[0]
    ctx = torch.no_grad() if context == "no_grad" else torch.inference_mode()
    with ctx:
        if context == "inference_mode":
            image = meta_image(2)  # an inference tensor
        out = Attributiond("image", gc, target=1)({"image": image})
    torch.testing.assert_close(out["image_map"].as_tensor(), expected.detach())
    assert not out["image_map"].requires_grad
    assert_unchanged(model, before)


def test_missing_keys_are_named():
    model = small_cnn(3, in_channels=1)
    explain = Attributiond("image", ScoreCAM3D(model, model[4]), target="label")
    with pytest.raises(
        KeyError,
        match=r"image key 'image' is not in the data dict; its keys are \['img', 'label'\]",
    ):
        explain({"img": meta_image(), "label": 0})
    with pytest.raises(
        KeyError, match=r"target key 'label' is not in the data dict; its keys are \['image'\]"
    ):
        explain({"image": meta_image()})
    out = Attributiond(["image", "other"], ScoreCAM3D(model, model[4]), 0, allow_missing_keys=True)(
        {"image": meta_image()}
    )
    assert "image_map" in out and "other_map" not in out


def test_bad_arguments():
    model = small_cnn(3, in_channels=1)
    with pytest.raises(TypeError, match="attribute"):
        Attributiond("image", model)
    with pytest.raises(TypeError, match="target must be an int, a key"):
        Attributiond("image", ScoreCAM3D(model, model[4]), target=1.5)
    with pytest.raises(ValueError, match="not a class index"):
        Attributiond("image", ScoreCAM3D(model, model[4]), target="label")(
            {"image": meta_image(), "label": torch.tensor(0.5)}
        )


def preprocessing() -> Compose:
    return Compose(
        [
            LoadImaged("image", image_only=True),
            EnsureChannelFirstd("image"),
            Orientationd("image", axcodes="RAS"),
            Spacingd("image", pixdim=(3.0, 3.0, 3.0), mode="bilinear"),
        ]
    )


def test_inversion_rejects_maps_without_metadata():
    pre = preprocessing()
    data = pre({"image": ANATOMICAL})
    invert = InvertAttributiond("image_map", pre, orig_keys="image")
    with pytest.raises(ValueError, match="without metadata, so it cannot be inverted"):
        invert({**data, "image_map": torch.zeros(data["image"].shape)})
    small = MetaTensor(torch.zeros(1, 2, 2, 2), meta=dict(data["image"].meta))
    with pytest.raises(ValueError, match=r"spatial shape \(2, 2, 2\) but the image 'image' has"):
        invert({**data, "image_map": small})
    with pytest.raises(KeyError, match="map key 'image_map'"):
        invert(data)


def test_nifti_map_saved_in_original_space(tmp_path):
    """anatomical.nii is LAS; after RAS orientation and 3 mm spacing the map is computed,
    inverted with linear interpolation and saved: the file has the original affine and shape."""
    original = nib.load(ANATOMICAL)
    pre = preprocessing()
    data = pre({"image": ANATOMICAL})
    assert tuple(data["image"].shape[1:]) != original.shape  # the preprocessing did resample

    model = small_cnn(3, in_channels=1).float()
    post = Compose(
        [
            Attributiond("image", ScoreCAM3D(model, model[4]), target=0),
            InvertAttributiond("image_map", pre, orig_keys="image"),
            SaveImaged(
                "image_map",
                output_dir=str(tmp_path),
                output_postfix="map",
                separate_folder=False,
                print_log=False,
            ),
        ]
    )
    out = post(data)
    saved = nib.load(tmp_path / "anatomical_map.nii.gz")
    assert saved.shape == original.shape
    np.testing.assert_allclose(saved.affine, original.affine, atol=1e-5)
    assert np.isfinite(saved.get_fdata()).all() and saved.get_fdata().max() > 0
    assert tuple(out["image_map"].shape[1:]) == original.shape


def test_inverted_map_matches_the_original_voxels():
    """With the input as its own map, the inverted map is the original image up to the blur of
    resampling twice: a wrong flip or spacing would decorrelate them."""
    original = nib.load(ANATOMICAL).get_fdata()
    pre = preprocessing()
    model = small_cnn(3, in_channels=1).float()
    post = Compose(
        [
            Attributiond("image", InputAsMap(model), target=0),
            InvertAttributiond("image_map", pre, orig_keys="image"),
        ]
    )
    inverted = post(pre({"image": ANATOMICAL}))["image_map"][0].numpy()
    corr = np.corrcoef(inverted.ravel(), original.ravel())[0, 1]
    flipped = np.corrcoef(inverted[::-1].ravel(), original.ravel())[0, 1]
    assert corr > 0.9 > flipped
