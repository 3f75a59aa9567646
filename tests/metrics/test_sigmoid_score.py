"""score="sigmoid" (multi-label heads) against hand computations, in Score-CAM and the metrics."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from captum_medcam import ScoreCAM, evaluate_dataset
from captum_medcam.evaluation import default_metrics
from captum_medcam.metrics import aopc, deletion_curve, insertion_auc
from tests.conftest import small_cnn


def test_score_cam_sigmoid_is_the_per_channel_loop_with_sigmoid_weights(dims: int) -> None:
    model = small_cnn(dims, classes=4)  # 4 independent labels
    x = torch.randn(2, 2, *([8] * dims), dtype=torch.float64)
    target = [3, 1]
    got = ScoreCAM(model, model[4]).attribute(x, target=target, score="sigmoid")

    acts = model[:5](x)  # (N, 8, *S/2)
    mode = {2: "bilinear", 3: "trilinear"}[dims]
    up = F.interpolate(acts, size=x.shape[2:], mode=mode, align_corners=False)
    want = torch.zeros(2, 1, *x.shape[2:], dtype=torch.float64)
    for n in range(2):
        for k in range(acts.shape[1]):
            m = up[n, k]
            if m.max() == m.min():
                continue  # constant channel: weight 0 (official code)
            mask = (m - m.min()) / (m.max() - m.min())
            logit = model(x[n : n + 1] * mask)[0, target[n]]
            want[n, 0] += 1 / (1 + torch.exp(-logit)) * up[n, k]
    torch.testing.assert_close(got, want.clamp(min=0))
    softmax = ScoreCAM(model, model[4]).attribute(x, target=target)
    assert not torch.allclose(got, softmax)  # the softmax over labels is a different weight


def test_deletion_curve_sigmoid_is_the_target_labels_sigmoid() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(8, 5)).double().eval()
    x = torch.randn(2, 1, 2, 4, dtype=torch.float64)
    attributions = torch.randn(2, 1, 2, 4, dtype=torch.float64)
    curve = deletion_curve(model, x, attributions, target=[4, 0], n_steps=8, score="sigmoid")
    w, b = model[1].weight, model[1].bias
    for n, t in enumerate([4, 0]):
        order = attributions[n].flatten().argsort(descending=True)
        v = x[n].flatten().clone()
        want = [torch.sigmoid(w[t] @ v + b[t])]
        for i in order:  # one voxel per step
            v[i] = 0.0
            want.append(torch.sigmoid(w[t] @ v + b[t]))
        torch.testing.assert_close(curve.scores[n], torch.stack(want))


def test_metrics_accept_sigmoid_and_reject_unknown_scores() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 3)).double().eval()
    x = torch.randn(2, 1, 4, 4, 4, dtype=torch.float64)
    maps = x.abs()
    logits = model(x)
    # the clean point of the insertion curve's end and AOPC's start: sigmoid of the target
    one = aopc(model, x, maps, target=2, region_size=2, n_regions=1, baselines=0.0, score="sigmoid")
    zeroed = x.clone()
    regions = maps.view(2, 2, 2, 2, 2, 2, 2).permute(0, 1, 3, 5, 2, 4, 6).reshape(2, 8, 8)
    top = regions.mean(-1).argmax(1)
    blocks = zeroed.view(2, 2, 2, 2, 2, 2, 2).permute(0, 1, 3, 5, 2, 4, 6).reshape(2, 8, 8)
    blocks[torch.arange(2), top] = 0.0
    zeroed = blocks.view(2, 2, 2, 2, 2, 2, 2).permute(0, 1, 4, 2, 5, 3, 6).reshape(2, 1, 4, 4, 4)
    drop = logits[:, 2].sigmoid() - model(zeroed)[:, 2].sigmoid()
    torch.testing.assert_close(one, drop / 2)
    assert insertion_auc(model, x, maps, target=0, n_steps=4, score="sigmoid").shape == (2,)
    with pytest.raises(ValueError, match="'sigmoid'"):
        insertion_auc(model, x, maps, target=0, score="softmax")
    with pytest.raises(ValueError, match="'sigmoid'"):
        ScoreCAM(model, model[0]).attribute(x, target=0, score="softmax")


def test_evaluate_dataset_with_sigmoid_metrics() -> None:
    model = small_cnn(3, in_channels=1, classes=4)
    data = [
        (torch.randn(1, 8, 8, 8, dtype=torch.float64), torch.tensor([1, 0, 0, 1])) for _ in range(2)
    ]
    metrics = default_metrics(score="sigmoid")
    result = evaluate_dataset(
        model, ScoreCAM(model, model[4]), data, metrics, target=3, show_progress=False
    )
    x = torch.stack([d[0] for d in data])
    maps = ScoreCAM(model, model[4]).attribute(x, target=3)
    for name, metric in default_metrics().items():
        if name == "aopc":  # its default baseline is random noise
            assert torch.isfinite(result.values[name]).all()
            continue
        want = metric(model, x, maps, target=3, score="sigmoid")
        torch.testing.assert_close(result.values[name], want)
    with pytest.raises(ValueError, match="score must be"):
        default_metrics(score="softmax")
