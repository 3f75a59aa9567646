"""The CAM base: output options, volume entry points, and the recipe for a new CAM.

The classes below are written as BASE_READY / ARCHITECTURE.md tell a new method to be
written; the tests check that the recipe gives a working method (checks, resize, metadata,
volume contract, no hooks left) without any other code.
"""

from __future__ import annotations

from typing import Any, final

import pytest
import torch
from torch import Tensor

from captum_medcam._core.checks import format_additional_args
from captum_medcam._core.spatial import resize
from captum_medcam.attr._base import VOLUME, CAMBase, CAMOutput
from captum_medcam.attr._interop import captum_attribute
from tests.conftest import assert_unchanged, model_state, small_cnn


class ChannelMeanCAM(CAMBase):
    """An activation-only CAM: ``L = mean_k A_k`` (the recipe for Eigen-CAM-like methods)."""

    @captum_attribute
    def attribute(
        self,
        inputs: Tensor,
        target: Any = None,
        additional_forward_args: Any = None,
        *,
        attribute_to_layer_input: bool = False,
        upsample: bool = True,
        interpolate_mode: str | None = None,
        align_corners: bool = False,
    ) -> Tensor:
        output = self._output(upsample, interpolate_mode, align_corners)
        x, mode = self._check_call(
            inputs, target, output, attribute_to_layer_input=attribute_to_layer_input
        )
        _, acts = self._capture(
            x,
            format_additional_args(additional_forward_args),
            attribute_to_layer_input=attribute_to_layer_input,
            method="ChannelMeanCAM",
        )
        return self._finish(acts.mean(1, keepdim=True), x, inputs, output, mode)


@final
class ChannelMeanCAM3D(ChannelMeanCAM):
    """``ChannelMeanCAM`` for volumes."""

    fixed_output = VOLUME


def _x(dims: int) -> Tensor:
    return torch.randn(2, 2, *([8] * dims), generator=torch.Generator().manual_seed(0)).double()


def test_output_options_are_one_frozen_object() -> None:
    assert CAMOutput() == CAMOutput(True, None, False, None)
    assert CAMOutput.keywords() == ("upsample", "interpolate_mode", "align_corners")
    assert VOLUME.spatial_dims == 3 and VOLUME.interpolate_mode == "trilinear"
    with pytest.raises(AttributeError):
        VOLUME.upsample = False  # type: ignore[misc]


def test_an_activation_cam_from_the_recipe(dims: int) -> None:
    model = small_cnn(dims)
    before = model_state(model)
    x = _x(dims)
    with torch.no_grad():
        acts = model[:5](x)
    low = ChannelMeanCAM(model, model[4]).attribute(x, upsample=False)
    torch.testing.assert_close(low, acts.mean(1, keepdim=True))
    up = ChannelMeanCAM(model, model[4]).attribute(x, interpolate_mode="nearest")
    torch.testing.assert_close(up, resize(low, x.shape[2:], "nearest"))
    assert_unchanged(model, before)
    with pytest.raises(ValueError, match="ChannelMeanCAM needs"):
        ChannelMeanCAM(model, model[6]).attribute(x)
    with pytest.raises(TypeError, match="upsample must be True or False"):
        ChannelMeanCAM(model, model[4]).attribute(x, upsample="no")
    assert_unchanged(model, before)


def test_a_volume_entry_point_is_the_class_with_volume_output() -> None:
    from monai.data import MetaTensor

    model = small_cnn(3)
    affine = torch.diag(torch.tensor([2.0, 3.0, 4.0, 1.0], dtype=torch.float64))
    x = MetaTensor(_x(3), affine=affine)
    got = ChannelMeanCAM3D(model, model[4]).attribute(x)
    assert isinstance(got, MetaTensor) and torch.equal(got.affine, affine)
    torch.testing.assert_close(
        got.as_tensor(), ChannelMeanCAM(model, model[4]).attribute(x.as_tensor())
    )
    with pytest.raises(ValueError, match="5-D"):
        ChannelMeanCAM3D(small_cnn(2), small_cnn(2)[4]).attribute(_x(2))
    with pytest.raises(TypeError, match=r"'upsample'.*use ChannelMeanCAM"):
        ChannelMeanCAM3D(model, model[4]).attribute(x, upsample=False)
    assert ChannelMeanCAM3D(model, model[4]).fixed_keywords == CAMOutput.keywords()
    assert ChannelMeanCAM(model, model[4]).fixed_keywords == ()


def test_the_constructor_checks_and_captum_conventions() -> None:
    model = small_cnn(2)
    with pytest.raises(TypeError, match=r"layer must be a torch\.nn\.Module"):
        ChannelMeanCAM(model, "4")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="reshape_transform must be None or a callable"):
        ChannelMeanCAM(model, model[4], reshape_transform=3)  # type: ignore[arg-type]
    cam = ChannelMeanCAM(model, model[4])
    assert cam.multiplies_by_inputs is False
    (maps,) = cam.attribute((_x(2),))  # a 1-tuple in, a 1-tuple out, as Captum's metrics pass
    assert maps.shape == (2, 1, 8, 8)


def _volume_entry_points() -> list[str]:
    from tests.conftest import LAYER_CLASSES

    return [n for n in LAYER_CLASSES if n.endswith("3D") and n[:-2] in LAYER_CLASSES]


@pytest.mark.parametrize("name", _volume_entry_points())
def test_every_volume_entry_point_is_its_nd_class_with_volume_output(name: str) -> None:
    """ScoreCAM3D, CRM3D, GradCAM3D, ...: the N-D class, the volume options, nothing else."""
    import captum_medcam

    volume, nd = getattr(captum_medcam, name), getattr(captum_medcam, name[:-2])
    assert volume.__mro__[1] is nd and volume.fixed_output == VOLUME
    assert volume.__doc__ and volume.__doc__ != nd.__doc__  # its own docstring, written out
    assert "attribute" not in vars(volume) and "__init__" not in vars(volume)
    model = small_cnn(3)
    before = model_state(model)
    with pytest.raises(TypeError, match=f"'align_corners'.*use {name[:-2]}"):
        volume(model, model[4]).attribute(_x(3), target=0, align_corners=True)
    with pytest.raises(ValueError, match="5-D"):
        volume(model, model[4]).attribute(_x(2), target=0)
    assert_unchanged(model, before)
