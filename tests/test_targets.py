"""class_indices: every form MONAI's classification postprocessing leaves, read as classes;
class_scores: each score kind by hand."""

from __future__ import annotations

import pytest
import torch
from monai.data import MetaTensor, decollate_batch
from monai.transforms import Activations, AsDiscrete

from captum_medcam._core.targets import METRIC_SCORES, SCORES, class_indices, class_scores
from captum_medcam.evaluation import batch_target

LOGITS = torch.tensor([[0.3, 2.0, -1.0], [1.5, 0.2, 0.1], [-2.0, 0.0, 4.0]])
CLASSES = [1, 0, 2]


def per_sample(transform, logits=LOGITS):
    """MONAI's transforms work on one sample (channel first): apply them per row."""
    return [transform(row) for row in logits]


FORMS = {
    "logits (N, K)": lambda: LOGITS,
    "softmax (N, K)": lambda: torch.softmax(LOGITS, 1),
    "metatensor scores": lambda: MetaTensor(torch.softmax(LOGITS, 1)),
    "one-hot float (N, K)": lambda: torch.eye(3)[CLASSES],
    "one-hot int (N, K)": lambda: torch.eye(3, dtype=torch.long)[CLASSES],
    "indices (N,)": lambda: torch.tensor(CLASSES),
    "indices (N, 1) float": lambda: torch.tensor(CLASSES, dtype=torch.float32).unsqueeze(1),
    "Activations+AsDiscrete(argmax), collated with dim=1": lambda: AsDiscrete(argmax=True, dim=1)(
        Activations(softmax=True, dim=1)(LOGITS)
    ),
    "Activations+AsDiscrete(argmax), decollated list": lambda: per_sample(
        lambda r: AsDiscrete(argmax=True)(Activations(softmax=True)(r))
    ),
    "AsDiscrete(argmax, to_onehot), decollated list": lambda: per_sample(
        lambda r: AsDiscrete(argmax=True, to_onehot=3)(r)
    ),
    "decollate_batch of logits": lambda: decollate_batch(MetaTensor(LOGITS)),
    "list of ints": lambda: CLASSES,
}


@pytest.mark.parametrize("form", list(FORMS))
def test_every_form_gives_the_classes(form):
    got = class_indices(FORMS[form](), 3)
    assert got.dtype == torch.long and type(got) is torch.Tensor
    assert got.tolist() == CLASSES


def test_after_asdiscrete_the_class_is_not_zero():
    """The bug: the argmax of (N, 1) class indices is always 0."""
    pred = AsDiscrete(argmax=True, dim=1)(LOGITS)
    assert pred.shape == (3, 1)
    assert batch_target("pred", None, pred, 3).tolist() == CLASSES
    assert batch_target("label", pred, None, 3).tolist() == CLASSES


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]]), "multi-label"),
        (torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]]), "multi-label"),
        (torch.tensor([[2, 0, 1], [0, 1, 0], [0, 0, 1]]), "not one 1 per row"),
        (torch.tensor([[0.7], [0.2], [0.9]]), r"0\.7 among them, which is not a class index"),
        (torch.tensor([0.7, 1.0, 2.0]), "a score .* names no class"),
        (torch.tensor([1, -1, 0]), "negative class indices: -1"),
        (torch.tensor([[0.1, float("nan"), 0.3]] * 3), "NaN or inf"),
        (torch.zeros(1, 3), r"pass dim=1 to them, or use decollate=True"),
        (torch.zeros(3, 3, 4), "a classification needs"),
        ([torch.zeros(3), torch.zeros(3), torch.zeros(1)], "different shapes"),
        ([torch.zeros(3)] * 2, "a list of 2 samples, expected one per example"),
        (torch.zeros(0), "shape"),
    ],
)
def test_ambiguous_or_bad_values_are_refused(value, message):
    with pytest.raises(ValueError, match=message):
        class_indices(value, 3, name="pred")


def test_bad_types():
    with pytest.raises(TypeError, match=r"dtype torch\.bool"):
        class_indices(torch.ones(3, dtype=torch.bool), 3)
    with pytest.raises(TypeError, match="a list of per-sample tensors, got object"):
        class_indices(object(), 3)


def test_class_scores_by_hand() -> None:
    """Every score kind of the methods and the metrics, for rows 2 and 0 of LOGITS.

    ``output`` holds the rows of the examples ``index`` (a chunk), ``target`` all examples.
    """
    index = torch.tensor([2, 0])
    batch = LOGITS[index]
    target = torch.tensor([1, 1, 1])  # the argmax is 1 for row 0, 2 for row 2
    e = LOGITS.exp()
    expected = {
        "logit": torch.tensor([0.0, 2.0]),
        "probability": torch.stack([e[2, 1] / e[2].sum(), e[0, 1] / e[0].sum()]),
        "sigmoid": torch.tensor([0.5, 1 / (1 + torch.e**-2.0)]),
        "correct": torch.tensor([0.0, 1.0]),
    }
    assert set(SCORES) < set(METRIC_SCORES) == set(expected)
    for score, values in expected.items():
        torch.testing.assert_close(class_scores(batch, target, index, score), values)
    # a single logit per example: "probability" is its sigmoid
    one = batch[:, :1]
    torch.testing.assert_close(class_scores(one, None, index, "probability"), one[:, 0].sigmoid())
    with pytest.raises(ValueError, match="one class index per example"):
        class_scores(batch, [(1,)] * 3, index, "correct")
