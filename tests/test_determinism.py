"""No public function moves the global random state, and the same call gives the same result.

Every public entry point is called twice on tiny fixed models; torch's (CPU and CUDA),
NumPy's and Python's global random states must be exactly as before, and the two results
equal. The random baselines take a seed, so a metric does not depend on how the examples
are batched (which is what makes a multi-process evaluation equal to a single-process one).
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import captum_medcam as cm
from captum_medcam import metrics as M
from captum_medcam.data import SyntheticLesions
from captum_medcam.evaluation import attribute_batch
from captum_medcam.integrations.monai import Attributiond, get_layer, list_layers
from tests.conftest import assert_unchanged, gap_linear, model_state, small_cnn


def _rng_state() -> tuple[Any, ...]:
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
    return torch.get_rng_state(), cuda, np.random.get_state(), random.getstate()  # noqa: NPY002


def _assert_same_rng(before: tuple[Any, ...], after: tuple[Any, ...]) -> None:
    assert torch.equal(before[0], after[0]), "torch's global CPU random state moved"
    assert len(before[1]) == len(after[1])
    for a, b in zip(before[1], after[1], strict=True):
        assert torch.equal(a, b), "torch's CUDA random state moved"
    np_a, np_b = before[2], after[2]
    assert np_a[0] == np_b[0] and np.array_equal(np_a[1], np_b[1]) and np_a[2:] == np_b[2:], (
        "NumPy's global random state moved"
    )
    assert before[3] == after[3], "Python's random state moved"


def _equal(a: Any, b: Any) -> bool:
    """Exact equality of nested results (NaN equals NaN)."""
    if isinstance(a, torch.Tensor):
        return (
            isinstance(b, torch.Tensor)
            and a.shape == b.shape
            and a.dtype == b.dtype
            and bool(torch.equal(a.nan_to_num(0.5), b.nan_to_num(0.5)))
            and bool(torch.equal(a.isnan(), b.isnan()))
        )
    if dataclasses.is_dataclass(a) and not isinstance(a, type):
        return type(a) is type(b) and _equal(dataclasses.asdict(a), dataclasses.asdict(b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (tuple, list)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return a == b


# One tiny setting shared by all calls: a 3D CNN (index 4: the CAM layer), two volumes.
MODEL = small_cnn(3, in_channels=1)
GAP = gap_linear(3, in_channels=1)
X = torch.randn(2, 1, 8, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
MAPS = X.abs()
MASKS = torch.zeros(2, 1, 8, 8, 8, dtype=torch.bool)
MASKS[:, :, 2:5, 2:5, 2:5] = True
TARGET = torch.tensor([0, 2])
CURVE = M.PerturbationCurve(torch.linspace(0, 1, 3), torch.tensor([[1.0, 0.4, 0.1]]))


def _method(cls: type, layer: bool = True, **kw: Any) -> Callable[[], Any]:
    obj = cls(MODEL, MODEL[4]) if layer else cls(MODEL)
    return lambda: obj.attribute(X, target=TARGET, **kw)


def _randomization() -> Any:
    return M.model_parameter_randomization(
        MODEL, lambda m: cm.GradCAMPlusPlus(m, m[4]), X, TARGET, layers=["7", "3"]
    )


def _evaluate() -> Any:
    data = [{"image": X[i], "label": i} for i in range(2)]
    result = cm.evaluate_dataset(
        MODEL,
        cm.ScoreCAM3D(MODEL, MODEL[4]),
        data,
        {"aopc": partial(M.aopc, region_size=4), "deletion": partial(M.deletion_auc, n_steps=4)},
        show_progress=False,
    )
    return result.values, result.targets


def _slices() -> Any:
    from captum_medcam.visualization import plot_slices

    fig = plot_slices(X[0], MAPS[0], mask=MASKS[0])
    return len(fig.axes)


CALLS: dict[str, Callable[[], Any]] = {
    "ScoreCAM": _method(cm.ScoreCAM),
    "ScoreCAM3D": _method(cm.ScoreCAM3D, baselines=0.0, channel_softmax=True),
    "GradCAM3D": _method(cm.GradCAM3D),
    "GuidedGradCAM3D": _method(cm.GuidedGradCAM3D),
    "GradCAMPlusPlus3D": _method(cm.GradCAMPlusPlus3D),
    "LayerCAM": _method(cm.LayerCAM),
    "HiResCAM3D": _method(cm.HiResCAM3D),
    "XGradCAM": _method(cm.XGradCAM),
    "CRM3D": _method(cm.CRM3D),
    "CRM fast path": lambda: cm.CRM(GAP, GAP[0], fc_layer=GAP[3]).attribute(X),
    "CNNFixations": _method(cm.CNNFixations, layer=False, sigma=1.0),
    "CNNFixations.fixations": lambda: cm.CNNFixations(MODEL).fixations(X, TARGET),
    "aopc (default noise)": lambda: M.aopc(MODEL, X, MAPS, TARGET, region_size=4),
    "aopc_curve lerf": lambda: M.aopc_curve(MODEL, X, MAPS, TARGET, region_size=4, order="lerf"),
    "aopc normal noise": lambda: M.aopc(
        MODEL, X, MAPS, TARGET, region_size=4, baselines=M.normal_noise_baseline(0.0, 0.1)
    ),
    "region_labels": lambda: M.region_labels(X, 3),
    "deletion_auc": lambda: M.deletion_auc(MODEL, X, MAPS, TARGET, n_steps=4),
    "insertion_curve": lambda: M.insertion_curve(MODEL, X, MAPS, TARGET, n_steps=4),
    "deletion_insertion_auc": lambda: M.deletion_insertion_auc(
        MODEL, X, MAPS, TARGET, n_steps=4, deletion_baselines=M.uniform_noise_baseline()
    ),
    "uniform_noise_baseline": lambda: M.uniform_noise_baseline()(X),
    "normal_noise_baseline": lambda: M.normal_noise_baseline(0.0, 2.0, generator=3)(X),
    "blur_baseline": lambda: M.blur_baseline(5, 1.0)(X),
    "gaussian_blur": lambda: M.gaussian_blur(X, 3, 1.0, padding_mode="reflect"),
    "mean_baseline": lambda: M.mean_baseline()(X),
    "auc": lambda: M.auc(CURVE),
    "pointing_game": lambda: M.pointing_game(MAPS, MASKS, tolerance=1.5),
    "energy_pointing_game": lambda: M.energy_pointing_game(MAPS, MASKS),
    "relevance_rank_accuracy": lambda: M.relevance_rank_accuracy(MAPS, MASKS),
    "attribution_iou": lambda: M.attribution_iou(MAPS, MASKS, top_k_percent=10),
    "attribution_dice": lambda: M.attribution_dice(MAPS, MASKS, threshold=1.0),
    "spearman_rank_correlation": lambda: M.spearman_rank_correlation(MAPS, X),
    "structural_similarity": lambda: M.structural_similarity(MAPS, X.abs() + 1),
    "correctly_classified": lambda: M.correctly_classified(MODEL, X, TARGET),
    "summarize": lambda: tuple(M.summarize(MAPS.flatten(1).mean(1))),
    "model_parameter_randomization": _randomization,
    "evaluate_dataset": _evaluate,
    "attribute_batch": lambda: attribute_batch(cm.GradCAM3D(MODEL, MODEL[4]), X, TARGET),
    "Attributiond": lambda: Attributiond("image", cm.LayerCAM3D(MODEL, MODEL[4]), target=1)(
        {"image": X[0]}
    )["image_map"],
    "list_layers": lambda: list_layers(MODEL, (1, 1, 8, 8, 8)),
    "get_layer": lambda: get_layer(MODEL, "4") is MODEL[4],
    "SyntheticLesions": lambda: SyntheticLesions(3, size=8)[2],
    "plot_slices": _slices,
}


@pytest.mark.parametrize("name", list(CALLS))
def test_global_random_state_unchanged_and_repeatable(name):
    call = CALLS[name]
    random.seed(123)
    np.random.seed(123)  # noqa: NPY002
    before = _rng_state()
    first = call()
    _assert_same_rng(before, _rng_state())
    second = call()
    _assert_same_rng(before, _rng_state())
    assert _equal(first, second), f"{name}: the same call gave different results"


def _bn_dropout_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv3d(1, 4, 3, padding=1),
        nn.BatchNorm3d(4),
        nn.ReLU(),
        nn.Dropout3d(0.5),
        nn.AdaptiveAvgPool3d(1),
        nn.Flatten(),
        nn.Linear(4, 2),
    )  # left in training mode, as a user's model during training


def test_list_layers_leaves_a_training_model_as_it_was():
    """Batch norm in training mode updates its statistics on every forward, and dropout draws
    from the global generator: list_layers restores both and does not call eval()."""
    net = _bn_dropout_net()
    state = model_state(net)
    before = _rng_state()
    infos = list_layers(net, (2, 1, 6, 6, 6))
    _assert_same_rng(before, _rng_state())
    assert_unchanged(net, state)  # buffers (running_mean, num_batches_tracked) bitwise
    assert net.training and all(m.training for m in net.modules())
    assert [i.name for i in infos] == ["0", "1", "2", "3", "4"]
    # the same forward without list_layers does move them: the check above can fail
    net(torch.zeros(2, 1, 6, 6, 6))
    assert not torch.equal(net[1].num_batches_tracked, state[1]["1.num_batches_tracked"])


def test_list_layers_restores_buffers_when_the_forward_raises():
    net = _bn_dropout_net()
    state = model_state(net)
    with pytest.raises(RuntimeError):
        list_layers(net, (2, 3, 6, 6, 6))  # 3 channels into a 1-channel conv
    assert_unchanged(net, state)


def test_seeded_noise_does_not_depend_on_the_batch():
    """A seed gives each example the same noise whatever batch it is in, so an evaluation
    split across processes (other batches) gives the single-process AOPC."""
    whole = M.aopc(MODEL, X, MAPS, TARGET, region_size=4)
    one_by_one = torch.cat(
        [
            M.aopc(MODEL, X[i : i + 1], MAPS[i : i + 1], TARGET[i : i + 1], region_size=4)
            for i in (0, 1)
        ]
    )
    assert torch.equal(whole, one_by_one)
    other_seed = M.aopc(MODEL, X, MAPS, TARGET, region_size=4, generator=1)
    assert not torch.equal(whole, other_seed)
    same_seed = M.aopc(MODEL, X, MAPS, TARGET, region_size=4, generator=torch.Generator())
    assert same_seed.shape == whole.shape


def test_generator_object_advances_seed_repeats():
    noise = M.uniform_noise_baseline(0.0, 1.0, generator=torch.Generator().manual_seed(5))
    a, b = noise(X), noise(X)
    assert not torch.equal(a, b)  # the caller's generator advances
    assert not torch.equal(a[0], a[1])  # and gives every example its own noise
    seeded = M.uniform_noise_baseline(0.0, 1.0, generator=5)
    assert torch.equal(seeded(X), seeded(X))
    assert torch.equal(seeded(X)[0], seeded(X[1:])[0])
    assert 0 <= float(seeded(X).min()) and float(seeded(X).max()) < 1


def test_uniform_noise_spans_each_example_range():
    x = torch.stack([torch.zeros(1, 4, 4, 4), 10 + torch.ones(1, 4, 4, 4)]).double()
    x[0, 0, 0, 0, 0] = 2.0
    x[1, 0, 0, 0, 0] = 15.0
    noise = M.uniform_noise_baseline()(x)
    assert 0 <= float(noise[0].min()) and float(noise[0].max()) < 2
    assert 11 <= float(noise[1].min()) and float(noise[1].max()) < 15
