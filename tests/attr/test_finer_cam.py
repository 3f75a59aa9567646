"""Finer-CAM: the reference classes and the objective by hand, and the peers' FinerCAM."""

from __future__ import annotations

import torch

from captum_medcam.attr._finer_cam import finer_references, finer_scores


def test_references_are_the_closest_logits_without_the_target() -> None:
    z = torch.tensor([[5.0, 4.5, 0.0, 5.2, 3.0], [1.0, 1.0, 1.0, -2.0, 0.9]], dtype=torch.float64)
    refs = finer_references(z, torch.tensor([0, 1]), 3)
    # row 0: distances to 5.0 are 0.5, 5.0, 0.2, 2.0; row 1: ties at 0 broken by index
    assert refs.tolist() == [[3, 1, 4], [0, 2, 4]]
    assert finer_references(z[:, :2], torch.tensor([0, 1]), 3).tolist() == [[1], [0]]


def test_objective_by_hand() -> None:
    z = torch.tensor([[2.0, 1.0, 0.5, -1.0]], dtype=torch.float64)
    t, refs = torch.tensor([0]), torch.tensor([[1, 2]])
    p = z.softmax(1)[0]
    weighted = (p[1] * (2.0 - 0.7 * 1.0) + p[2] * (2.0 - 0.7 * 0.5)) / (p[1] + p[2])
    torch.testing.assert_close(finer_scores(z, t, refs, 0.7), weighted.view(1))
    torch.testing.assert_close(
        finer_scores(z, t, refs, 0.6, "uniform"),
        torch.tensor([2.0 - 0.6 * 0.75], dtype=torch.float64),
    )


def test_probability_weights_stay_in_the_graph() -> None:
    """The gradient includes the derivative of the reference weights, as in the peers."""
    z = torch.tensor([[2.0, 1.0, 0.5, -1.0]], dtype=torch.float64, requires_grad=True)
    t, refs = torch.tensor([0]), torch.tensor([[1, 2]])
    (grad,) = torch.autograd.grad(finer_scores(z, t, refs, 1.0).sum(), z)
    zd = z.detach().clone().requires_grad_(True)
    p = zd.softmax(1)[0]
    peer = (p[1] * (zd[0, 0] - zd[0, 1]) + p[2] * (zd[0, 0] - zd[0, 2])) / (p[1] + p[2] + 1e-9)
    (expected,) = torch.autograd.grad(peer, zd)
    torch.testing.assert_close(grad, expected)
    assert grad[0, 1] != -grad[0, 2]  # not the gradient with the weights held constant
