"""Average drop and increase in confidence: the paper's formula written out, pytorch-grad-cam's
DropInConfidence / IncreaseInConfidence, invariances and errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from captum_medcam.metrics import average_drop, increase_in_confidence
from tests.conftest import assert_unchanged, model_state, small_cnn

SHAPES = {1: (12,), 2: (8, 10), 3: (4, 6, 4)}


def paper_loop(model, x, attr):
    """Section 5.1 of Grad-CAM++, one image at a time: E = s(L) * x, c the predicted class."""
    drops, increases = [], []
    for i in range(x.shape[0]):
        xi, li = x[i : i + 1], attr[i : i + 1].sum(1, keepdim=True)
        e = xi * (li - li.min()) / (li.max() - li.min())
        probs = model(xi).softmax(1)
        c = int(probs.argmax(1))
        y, o = float(probs[0, c]), float(model(e).softmax(1)[0, c])
        drops.append(max(0.0, y - o) / y)
        increases.append(float(y < o))
    return torch.tensor(drops, dtype=x.dtype), torch.tensor(increases, dtype=x.dtype)


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_equals_the_papers_formula(dims: int) -> None:
    model = small_cnn(dims)
    torch.manual_seed(dims)
    x = torch.rand(5, 2, *SHAPES[dims], dtype=torch.float64)
    attr = torch.randn(5, 2, *SHAPES[dims], dtype=torch.float64)
    drop = average_drop(model, x, attr, max_examples_per_batch=2)
    increase = increase_in_confidence(model, x, attr, max_examples_per_batch=3)
    with torch.no_grad():
        ref_drop, ref_increase = paper_loop(model, x, attr)
    torch.testing.assert_close(drop, ref_drop)
    torch.testing.assert_close(increase, ref_increase)


def test_closed_form() -> None:
    """A model whose class-0 logit is the sum of the input: keeping half of a uniform image
    halves the logit."""

    class Sum(nn.Module):
        def forward(self, x):
            s = x.flatten(1).sum(1)
            return torch.stack([s, torch.zeros_like(s)], 1)

    x = torch.full((1, 1, 4), 0.5, dtype=torch.float64)  # logit 2 -> sigmoid(2)
    attr = torch.tensor([[[0.0, 0.0, 1.0, 1.0]]], dtype=torch.float64)  # keeps half: logit 1
    y, o = torch.sigmoid(torch.tensor(2.0)), torch.sigmoid(torch.tensor(1.0))
    drop = average_drop(Sum().eval(), x, attr, 0)
    torch.testing.assert_close(drop, ((y - o) / y).view(1).double())
    assert increase_in_confidence(Sum().eval(), x, attr, 0).tolist() == [0.0]
    assert increase_in_confidence(Sum().eval(), -x, attr, 0).tolist() == [1.0]
    assert average_drop(Sum().eval(), -x, attr, 0).tolist() == [0.0]
    logit = average_drop(Sum().eval(), x, attr, 0, score="logit", relative=False)
    assert logit.tolist() == [1.0]
    # a constant map keeps nothing (min-max of a constant is 0)
    flat = average_drop(Sum().eval(), x, torch.ones_like(x), 0, score="logit", relative=False)
    assert flat.tolist() == [2.0]


@pytest.mark.filterwarnings("ignore:__array_wrap__:DeprecationWarning")  # the peer, NumPy 2
def test_equals_pytorch_grad_cam() -> None:
    from pytorch_grad_cam.metrics.cam_mult_image import DropInConfidence, IncreaseInConfidence
    from pytorch_grad_cam.utils.model_targets import (
        ClassifierOutputSoftmaxTarget,
        ClassifierOutputTarget,
    )

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(16, 3),
    ).eval()
    x = torch.rand(6, 3, 10, 12)
    cams = np.random.default_rng(1).random((6, 10, 12)).astype(np.float32)  # in [0, 1]
    target = model(x).argmax(1)
    attr = torch.from_numpy(cams).unsqueeze(1)
    for kind, make in (
        ("probability", ClassifierOutputSoftmaxTarget),
        ("logit", ClassifierOutputTarget),
    ):
        targets = [make(int(t)) for t in target]
        theirs_drop = DropInConfidence()(x, cams, targets, model)
        theirs_increase = IncreaseInConfidence()(x, cams, targets, model)
        kw = {"score": kind, "normalize": False}
        ours_drop = average_drop(model, x, attr, target, relative=False, **kw)
        ours_increase = increase_in_confidence(model, x, attr, target, **kw)
        torch.testing.assert_close(ours_drop, torch.from_numpy(theirs_drop.reshape(-1)))
        torch.testing.assert_close(ours_increase, torch.from_numpy(theirs_increase.reshape(-1)))
        assert 0 < float(ours_increase.sum()) < 6 or kind == "logit"


def test_batch_chunk_invariance_and_nothing_changed(dims: int) -> None:
    model = small_cnn(dims)
    x = torch.rand(4, 2, *SHAPES[dims], dtype=torch.float64)
    attr = torch.randn(4, 1, *SHAPES[dims], dtype=torch.float64)
    copies = x.clone(), attr.clone()
    before = model_state(model)
    target = torch.tensor([2, 0, 1, 1])
    full = average_drop(model, x, attr, target, max_examples_per_batch=None)
    torch.testing.assert_close(average_drop(model, x, attr, target, max_examples_per_batch=1), full)
    for i in range(4):
        alone = average_drop(model, x[i : i + 1], attr[i : i + 1], target[i : i + 1])
        torch.testing.assert_close(alone, full[i : i + 1])
    assert torch.equal(x, copies[0]) and torch.equal(attr, copies[1])
    assert_unchanged(model, before)


def test_metatensor_and_additional_forward_args() -> None:
    from monai.data import MetaTensor

    class Scaled(nn.Module):
        def forward(self, x, scale):
            return x.flatten(1)[:, :3] * scale.view(-1, 1)

    x = torch.rand(2, 1, 6, 6, dtype=torch.float64)
    scale = torch.tensor([1.0, 3.0], dtype=torch.float64)
    attr = torch.rand(2, 1, 6, 6, dtype=torch.float64)
    plain = average_drop(Scaled().eval(), x, attr, 1, scale)
    meta = average_drop(Scaled().eval(), MetaTensor(x), MetaTensor(attr), 1, scale)
    torch.testing.assert_close(torch.as_tensor(meta), plain)
    alone = average_drop(Scaled().eval(), x[1:], attr[1:], 1, scale[1:])
    torch.testing.assert_close(alone, plain[1:])


def test_errors() -> None:
    model = small_cnn(2)
    x = torch.rand(2, 2, 8, 8, dtype=torch.float64)
    with pytest.raises(ValueError, match="score"):
        average_drop(model, x, x, score="correct")
    with pytest.raises(ValueError, match="relative"):
        average_drop(lambda v: -1 - v.flatten(1)[:, :3], x, x, 0, score="logit")  # logit < 0
    with pytest.raises(TypeError, match="relative"):
        average_drop(model, x, x, relative="yes")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="normalize"):
        increase_in_confidence(model, x, x, normalize=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="upsampled"):
        increase_in_confidence(model, x, x[..., :4, :4])
