"""EnsembleAttribution: the mean of the members' per-example min-max normalised maps."""

from __future__ import annotations

import pytest
import torch
from captum.attr import LayerAttribution, LayerGradCam

from captum_medcam import CRM3D, EnsembleAttribution, GradCAMPlusPlus3D, ScoreCAM, ScoreCAM3D
from captum_medcam.metrics import deletion_auc
from tests.conftest import assert_unchanged, model_state, small_cnn


def _normalised(m: torch.Tensor) -> torch.Tensor:
    out = torch.empty_like(m)
    for i in range(m.shape[0]):
        lo, hi = m[i].min(), m[i].max()
        out[i] = 0 if hi == lo else (m[i] - lo) / (hi - lo)
    return out


def test_ensemble_is_the_mean_of_normalised_member_maps() -> None:
    nets = [small_cnn(3, in_channels=1, seed=s) for s in range(3)]
    x = torch.randn(2, 1, 8, 8, 8, dtype=torch.float64)
    target = [0, 2]
    members = [
        ScoreCAM3D(nets[0], nets[0][4]),
        GradCAMPlusPlus3D(nets[1], nets[1][4]),
        CRM3D(nets[2], nets[2][4], fc_layer=nets[2][7]),
    ]
    before = [model_state(n) for n in nets]
    combined, stacked = EnsembleAttribution(members).attribute(
        x, target=target, return_members=True
    )
    maps = [m.attribute(x, target=target) for m in members]
    want = torch.stack([_normalised(m) for m in maps], 1)
    torch.testing.assert_close(stacked, want)
    torch.testing.assert_close(combined, want.mean(1))
    assert combined.shape == (2, 1, 8, 8, 8)
    assert float(combined.min()) >= 0 and float(combined.max()) <= 1
    for net, state in zip(nets, before, strict=True):
        assert_unchanged(net, state)
    # batch invariance
    one = EnsembleAttribution(members).attribute(x[1:], target=target[1:])
    torch.testing.assert_close(combined[1:], one)


def test_layer_resolution_members_are_upsampled_and_options_reach_members() -> None:
    nets = [small_cnn(2, seed=s) for s in range(2)]
    x = torch.randn(3, 2, 8, 8, dtype=torch.float64)
    grad_cam = LayerGradCam(nets[0], nets[0][4])
    score_cam = ScoreCAM(nets[1], nets[1][4])
    ensemble = EnsembleAttribution([grad_cam, score_cam])
    got = ensemble.attribute(
        x, target=1, member_kwargs=[{"relu_attributions": True}, {"perturbations_per_eval": 2}]
    )
    gc = LayerAttribution.interpolate(
        grad_cam.attribute(x, target=1, relu_attributions=True), (8, 8), "bilinear"
    )
    want = (_normalised(gc) + _normalised(score_cam.attribute(x, target=1))) / 2
    torch.testing.assert_close(got, want)
    # the ensemble's forward is the mean of the members' outputs; metrics accept it
    torch.testing.assert_close(ensemble.forward_func(x), (nets[0](x) + nets[1](x)) / 2)
    assert deletion_auc(ensemble.forward_func, x, got, target=1, n_steps=4).shape == (3,)


def test_constant_member_map_counts_as_zero() -> None:
    net = small_cnn(2)

    class Constant:
        forward_func = net

        def attribute(self, inputs, target=None, additional_forward_args=None):
            return torch.full((inputs.shape[0], 1, *inputs.shape[2:]), 3.0, dtype=inputs.dtype)

    x = torch.randn(2, 2, 8, 8, dtype=torch.float64)
    score_cam = ScoreCAM(net, net[4])
    got = EnsembleAttribution([score_cam, Constant()]).attribute(x, target=0)
    torch.testing.assert_close(got, _normalised(score_cam.attribute(x, target=0)) / 2)


def test_bad_members() -> None:
    net = small_cnn(2)
    with pytest.raises(TypeError, match="non-empty sequence"):
        EnsembleAttribution([])
    with pytest.raises(TypeError, match=r"members\[1\]"):
        EnsembleAttribution([ScoreCAM(net, net[4]), net])
    ensemble = EnsembleAttribution([ScoreCAM(net, net[4])])
    x = torch.randn(1, 2, 8, 8, dtype=torch.float64)
    with pytest.raises(ValueError, match="member_kwargs has 2 entries for 1 members"):
        ensemble.attribute(x, target=0, member_kwargs=[{}, {}])
