"""A real MONAI pipeline through every method, metric and the evaluator handler.

NIfTI files (nibabel's ``anatomical.nii`` and a copy with another affine) are loaded with
``LoadImaged`` + ``EnsureChannelFirstd``, made small with ``Resized`` and collated by
``monai.data.DataLoader`` into a batch of two ``MetaTensor`` s, as MONAI users do.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import DataLoader, Dataset, MetaTensor, decollate_batch
from monai.engines import SupervisedEvaluator
from monai.handlers import DecollateBatch, PostProcessing
from monai.transforms import (
    Activationsd,
    AsDiscreted,
    Compose,
    EnsureChannelFirstd,
    Invertd,
    LoadImaged,
    Resized,
    SaveImaged,
    ScaleIntensityd,
)
from nibabel.testing import data_path
from torch import nn

import captum_medcam
from captum_medcam.integrations.monai import AttributionHandler
from captum_medcam.metrics import (
    aopc,
    attribution_iou,
    correctly_classified,
    deletion_auc,
    insertion_auc,
    pointing_game,
)
from tests.conftest import ATTRIBUTION_CLASSES, assert_unchanged, make_attribution, model_state

SIZE = (10, 12, 8)
METHODS = ATTRIBUTION_CLASSES


def tiny_net(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv3d(1, 4, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool3d(2),
        nn.Conv3d(4, 6, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool3d(1),
        nn.Flatten(),
        nn.Linear(6, 3),
    ).eval()


def make(name: str, net: nn.Sequential):
    return make_attribution(name, net, net[4])


def preprocessing() -> Compose:
    return Compose(
        [
            LoadImaged("image", image_only=True),
            EnsureChannelFirstd("image"),
            ScaleIntensityd("image"),
            Resized("image", SIZE, mode="trilinear"),
        ]
    )


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> list[dict[str, object]]:
    """anatomical.nii and an inverted copy, flipped and shifted: two samples that differ
    in their voxels and in their affines."""
    original = nib.load(f"{data_path}/anatomical.nii")
    affine = original.affine @ np.diag([-1.0, 1.0, 1.0, 1.0])
    affine[:3, 3] += (10.0, -5.0, 2.5)
    other = tmp_path_factory.mktemp("nifti") / "shifted.nii"
    data = np.asarray(original.dataobj, dtype=np.float32)
    nib.save(nib.Nifti1Image((data.max() - data)[::-1].copy(), affine), other)
    return [
        {"image": f"{data_path}/anatomical.nii", "label": 1},
        {"image": str(other), "label": 2},
    ]


@pytest.fixture(scope="module")
def batch(files) -> dict[str, object]:
    loader = DataLoader(Dataset(files, preprocessing()), batch_size=2)
    return next(iter(loader))


def test_the_batch_is_what_monai_users_have(batch):
    images = batch["image"]
    assert isinstance(images, MetaTensor) and images.is_batch
    assert images.shape == (2, 1, *SIZE)
    assert not torch.equal(images.affine[0], images.affine[1])


@pytest.mark.parametrize("name", METHODS)
def test_every_method_keeps_each_samples_metadata(name, batch):
    images = batch["image"]
    net = tiny_net()
    before = model_state(net)
    target = MetaTensor(torch.tensor([1, 2]))  # MONAI's labels and predictions are MetaTensors
    maps = make(name, net).attribute(images, target=target)
    assert isinstance(maps, MetaTensor) and maps.is_batch
    expected = make(name, net).attribute(images.as_tensor(), target=[1, 2])
    torch.testing.assert_close(maps.as_tensor(), expected)
    assert bool(expected.abs().sum() > 0)
    for one_map, image in zip(decollate_batch(maps), decollate_batch(images), strict=True):
        assert isinstance(one_map, MetaTensor) and not one_map.is_batch
        assert torch.equal(one_map.affine, image.affine)
        assert one_map.meta["filename_or_obj"] == image.meta["filename_or_obj"]
        assert one_map.applied_operations == image.applied_operations
    maps.affine[0, 0, 0] = 123.0  # the maps' metadata is a copy, never the images'
    assert images.affine[0, 0, 0] != 123.0
    assert_unchanged(net, before)


def test_metatensor_baselines_in_methods(batch):
    images = batch["image"]
    net = tiny_net()
    for name, base in [
        ("ScoreCAM3D", MetaTensor(torch.full_like(images.as_tensor(), 0.25))),
        ("CRM3D", MetaTensor(torch.full((1, 6, 1, 1, 1), 0.1))),  # in the layer's space
    ]:
        method = make(name, net)
        got = method.attribute(images, target=1, baselines=base)
        want = method.attribute(images.as_tensor(), target=1, baselines=base.as_tensor())
        torch.testing.assert_close(got.as_tensor(), want)


def test_metrics_accept_metatensors_everywhere(batch):
    images = batch["image"]
    net = tiny_net()
    maps = captum_medcam.ScoreCAM3D(net, net[4]).attribute(images, target=[1, 2])
    plain_x, plain_maps = images.as_tensor(), maps.as_tensor()
    target = MetaTensor(torch.tensor([1, 2]))
    for metric, kwargs in [
        (deletion_auc, {"n_steps": 4, "baselines": MetaTensor(torch.zeros(1))}),
        (insertion_auc, {"n_steps": 4}),
        (aopc, {"region_size": 4, "n_regions": 3, "baselines": MetaTensor(torch.zeros(1))}),
    ]:
        got = metric(net, images, maps, target=target, **kwargs)
        plain_kwargs = {
            k: v.as_tensor() if isinstance(v, MetaTensor) else v for k, v in kwargs.items()
        }
        want = metric(net, plain_x, plain_maps, target=torch.tensor([1, 2]), **plain_kwargs)
        assert type(got) is torch.Tensor
        torch.testing.assert_close(got, want)
    mask = torch.zeros_like(plain_maps, dtype=torch.bool)
    mask[..., 2:6, 3:8, 2:6] = True
    meta_mask = MetaTensor(mask)
    torch.testing.assert_close(
        pointing_game(maps, meta_mask, tolerance=1), pointing_game(plain_maps, mask, tolerance=1)
    )
    torch.testing.assert_close(
        attribution_iou(maps, meta_mask, top_k_percent=20.0),
        attribution_iou(plain_maps, mask, top_k_percent=20.0),
    )
    labels = MetaTensor(torch.tensor([1, 2]))
    torch.testing.assert_close(
        correctly_classified(net, images, labels),
        correctly_classified(net, plain_x, torch.tensor([1, 2])),
    )


# --------------------------------------------------------------------------------------
# SupervisedEvaluator + AttributionHandler with MONAI's postprocessing
# --------------------------------------------------------------------------------------


def biased_net(files) -> nn.Sequential:
    """A tiny net that predicts class 1 for one sample and class 2 for the other.

    The bias of class 1 is set halfway between the two samples' logit gaps ``l_2 - l_1``,
    so the argmax differs between them; class 0 is never predicted (the bug explained it).
    """
    net = tiny_net(seed=8)
    images = next(iter(DataLoader(Dataset(files, preprocessing()), batch_size=2)))["image"]
    with torch.no_grad():
        logits = net(images.as_tensor())
        gaps = logits[:, 2] - logits[:, 1]
        assert float((gaps[0] - gaps[1]).abs()) > 0.01
        net[7].bias += torch.tensor([-5.0, float(gaps.mean()), 0.0])
    return net


def target_metric(forward_func, inputs, attributions, target=None, additional_forward_args=None):
    """Records the class the handler explained, one per example."""
    return torch.as_tensor(target).reshape(-1).double().expand(inputs.shape[0]).clone()


def postprocessing(decollate: bool) -> Compose:
    dim = {} if decollate else {"dim": 1}  # on a collated batch, dim 0 is the batch
    return Compose(
        [
            Activationsd("pred", softmax=True, **dim),
            AsDiscreted("pred", argmax=True, **dim),
        ]
    )


@pytest.mark.parametrize("decollate", [True, False], ids=["decollate", "collated"])
def test_handler_explains_the_predicted_class_and_saves_maps(decollate, files, tmp_path):
    net = biased_net(files)
    pre = preprocessing()
    loader = DataLoader(Dataset(files, pre), batch_size=2)
    images = next(iter(loader))["image"]
    with torch.no_grad():
        predicted = net(images.as_tensor()).argmax(1)
    assert set(predicted.tolist()) == {1, 2}, "the test needs two different predicted classes"
    evaluator = SupervisedEvaluator(
        device=torch.device("cpu"),
        val_data_loader=loader,
        network=net,
        postprocessing=postprocessing(decollate),
        decollate=decollate,
    )
    cam = captum_medcam.GradCAM3D(net, net[4])
    handler = AttributionHandler(
        cam, {"target": target_metric, "deletion_auc": deletion_auc}, map_key="cam"
    )
    handler.attach(evaluator)
    if not decollate:
        DecollateBatch(event="ITERATION_COMPLETED").attach(evaluator)
    save = Compose(
        [
            Invertd("cam", transform=pre, orig_keys="image", nearest_interp=False),
            SaveImaged(
                "cam",
                output_dir=str(tmp_path),
                output_postfix="cam",
                separate_folder=False,
                print_log=False,
            ),
        ]
    )
    PostProcessing(save, event="ITERATION_COMPLETED").attach(evaluator)
    evaluator.run()

    torch.testing.assert_close(handler.values["target"], predicted.double())
    maps = cam.attribute(images.as_tensor(), target=predicted)
    for i, f in enumerate(files):
        name = Path(str(f["image"])).name.replace(".nii", "_cam.nii.gz")
        saved = nib.load(tmp_path / name)
        original = nib.load(str(f["image"]))
        np.testing.assert_allclose(saved.affine, original.affine, atol=1e-5)
        assert saved.shape == original.shape  # back in the original voxel grid
        # the saved map is the map of that sample, inverted: the same mass where it is largest
        assert np.asarray(saved.dataobj).max() == pytest.approx(float(maps[i].max()), rel=0.2)


@pytest.mark.parametrize("decollate", [True, False], ids=["decollate", "collated"])
def test_handler_refuses_a_prediction_that_names_no_class(decollate, files):
    """Sigmoid + threshold on a 3-class net gives multi-label 0/1 rows: no single class."""
    net = biased_net(files)
    dim = {} if decollate else {"dim": 1}
    evaluator = SupervisedEvaluator(
        device=torch.device("cpu"),
        val_data_loader=DataLoader(Dataset(files, preprocessing()), batch_size=2),
        network=net,
        postprocessing=Compose(
            [Activationsd("pred", sigmoid=True), AsDiscreted("pred", threshold=0.0, **dim)]
        ),
        decollate=decollate,
    )
    AttributionHandler(captum_medcam.ScoreCAM3D(net, net[4]), {"t": target_metric}).attach(
        evaluator
    )
    with pytest.raises(ValueError, match="names no single class"):
        evaluator.run()


def test_collated_postprocessing_over_the_batch_dim_is_named(files):
    """Activationsd/AsDiscreted without dim=1 on a collated batch act over the batch."""
    net = biased_net(files)
    evaluator = SupervisedEvaluator(
        device=torch.device("cpu"),
        val_data_loader=DataLoader(Dataset(files, preprocessing()), batch_size=2),
        network=net,
        postprocessing=Compose(
            [Activationsd("pred", softmax=True), AsDiscreted("pred", argmax=True)]
        ),
        decollate=False,
    )
    AttributionHandler(captum_medcam.ScoreCAM3D(net, net[4]), {"t": target_metric}).attach(
        evaluator
    )
    with pytest.raises(ValueError, match=r"pass dim=1 to them, or use decollate=True"):
        evaluator.run()


def test_handler_map_key_is_checked():
    net = tiny_net()
    cam = captum_medcam.ScoreCAM3D(net, net[4])
    with pytest.raises(TypeError, match="map_key must be a str or None, got 3"):
        AttributionHandler(cam, {"t": target_metric}, map_key=3)
    with pytest.raises(ValueError, match="map_key 'image' would overwrite"):
        AttributionHandler(cam, {"t": target_metric}, map_key="image")
