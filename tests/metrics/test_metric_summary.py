"""Correct-only filtering and mean ± std summaries."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from captum_medcam.metrics import correctly_classified, summarize


def test_correctly_classified_in_chunks() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3)).double().eval()
    torch.manual_seed(0)
    x = torch.randn(7, 1, 2, 2, dtype=torch.float64)
    with torch.no_grad():
        predicted = model(x).argmax(1)
    labels = predicted.clone()
    labels[[1, 4]] = (labels[[1, 4]] + 1) % 3
    expected = torch.tensor([True, False, True, True, False, True, True])
    assert torch.equal(
        correctly_classified(model, x, labels.view(7, 1), max_examples_per_batch=3), expected
    )
    with pytest.raises(ValueError, match="one label per example"):
        correctly_classified(model, x, labels[:3])
    with pytest.raises(TypeError, match="integer"):
        correctly_classified(model, x, labels.double())


def test_summarize_matches_numpy() -> None:
    values = torch.tensor([0.1, 0.5, 0.25, 0.9, 0.3], dtype=torch.float64)
    where = torch.tensor([True, True, False, True, True])
    s = summarize(values, where)
    kept = values.numpy()[where.numpy()]
    assert s.n == 4
    assert s.mean == pytest.approx(float(np.mean(kept)))
    assert s.std == pytest.approx(float(np.std(kept)))
    assert summarize(values, correction=1).std == pytest.approx(
        float(np.std(values.numpy(), ddof=1))
    )
    assert str(s) == f"{np.mean(kept):.4f} ± {np.std(kept):.4f}"
    with pytest.raises(ValueError, match="keeps none"):
        summarize(values, torch.zeros(5, dtype=torch.bool))
    with pytest.raises(ValueError, match="bool"):
        summarize(values, torch.ones(4, dtype=torch.bool))


def test_summarize_old_keyword_mask_still_works_with_a_future_warning() -> None:
    """``mask=`` was renamed ``where=`` (a mask is a ground-truth region everywhere else)."""
    values = torch.tensor([0.1, 0.5, 0.25], dtype=torch.float64)
    where = torch.tensor([True, False, True])
    with pytest.warns(FutureWarning, match=r"mask= is now called where="):
        old = summarize(values, mask=where)
    assert old == summarize(values, where=where) == summarize(values, where)
    with pytest.raises(TypeError, match="both mask= and where="):
        summarize(values, mask=where, where=where)
