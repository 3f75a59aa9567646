"""Shared clean forwards in the data-set evaluation: fewer forwards, the same numbers."""

from __future__ import annotations

from contextlib import nullcontext
from functools import partial
from typing import Any

import pytest
import torch
from torch import Tensor, nn

import captum_medcam.evaluation as evaluation
from captum_medcam import ScoreCAM3D, evaluate_dataset, perturbation_options
from captum_medcam._core.engine import forward_in_chunks, shared_forward
from captum_medcam.metrics import aopc, deletion_auc, insertion_auc
from tests.conftest import small_cnn
from tests.test_evaluation import dict_data


class Counting(nn.Module):
    """Counts forward calls and the examples they carry."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.calls = 0
        self.rows = 0
        self.eval()

    def forward(self, x: Tensor) -> Tensor:
        self.calls += 1
        self.rows += x.shape[0]
        return self.model(x)


METRICS = {
    "deletion_auc": partial(deletion_auc, n_steps=4),
    "insertion_auc": partial(insertion_auc, n_steps=4),
    "aopc": partial(aopc, region_size=4, n_regions=3),
}


def run(monkeypatch: pytest.MonkeyPatch, share: bool, **kwargs: Any) -> tuple[Any, Counting]:
    model = Counting(small_cnn(3, in_channels=1))
    if not share:
        monkeypatch.setattr(evaluation, "shared_forward", lambda *a: nullcontext())
    result = evaluate_dataset(
        model,
        ScoreCAM3D(model, model.model[4]),
        dict_data(5),
        METRICS,
        show_progress=False,
        **kwargs,
    )
    monkeypatch.undo()
    return result, model


@pytest.mark.parametrize(
    "kwargs", [{"batch_size": 1}, {"batch_size": 2}, {"batch_size": 3, "correct_only": True}]
)
def test_shared_clean_forward_gives_identical_values_with_fewer_forwards(
    monkeypatch: pytest.MonkeyPatch, kwargs: dict[str, Any]
) -> None:
    shared, with_sharing = run(monkeypatch, True, **kwargs)
    separate, without = run(monkeypatch, False, **kwargs)
    for name in METRICS:
        assert torch.equal(shared.values[name], separate.values[name]), name
    batches = -(-5 // kwargs["batch_size"])
    if kwargs.get("correct_only"):
        assert with_sharing.calls < without.calls
    else:
        # each of the three metrics skips its clean forward of every batch
        assert without.calls - with_sharing.calls == 3 * batches
        assert without.rows - with_sharing.rows == 3 * 5


def test_shared_output_is_used_only_for_the_same_computation() -> None:
    model = nn.Linear(3, 2)
    x = torch.randn(4, 3)
    with torch.no_grad():
        out = model(x)
    with shared_forward(model, x, out):
        assert forward_in_chunks(model, x, (), chunk_size=4) is out
        assert forward_in_chunks(model, x, (), chunk_size=8) is out
        # another tensor with the same values, another model, extra args, several chunks,
        # or autocast: the forward runs
        assert forward_in_chunks(model, x.clone(), (), chunk_size=4) is not out
        assert forward_in_chunks(nn.Linear(3, 2), x, (), chunk_size=4) is not out
        assert forward_in_chunks(lambda t, s: model(t), x, (1.0,), chunk_size=4) is not out
        assert forward_in_chunks(model, x, (), chunk_size=2) is not out
        with perturbation_options(autocast="bfloat16"):
            assert forward_in_chunks(model, x, (), chunk_size=4) is not out
        with perturbation_options(chunk_size="auto"):
            assert forward_in_chunks(model, x, (), chunk_size=4) is out
    assert forward_in_chunks(model, x, (), chunk_size=4) is not out
