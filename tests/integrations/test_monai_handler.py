"""AttributionHandler in a MONAI SupervisedEvaluator: metrics per batch, mean +- std per epoch."""

from __future__ import annotations

import pytest
import torch
from captum.attr import LayerGradCam
from tests.conftest import hook_count, mean_map_metric
from monai.engines import SupervisedEvaluator
from monai.networks.nets import resnet10

from captum_medcam import ScoreCAM3D
from captum_medcam.evaluation import attribute_batch
from captum_medcam.integrations.monai import AttributionHandler


def bn_net() -> torch.nn.Module:
    """A MONAI ResNet with batch norm, so train and eval mode give different maps."""
    torch.manual_seed(0)
    return resnet10(spatial_dims=3, n_input_channels=1, num_classes=3, widen_factor=0.25)


def samples(n: int = 5, size: int = 16) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    return [
        {"image": torch.randn(1, size, size, size, generator=g), "label": torch.tensor(i % 3)}
        for i in range(n)
    ]


def loader(data, batch_size: int):
    return torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=False)


def expected_values(net, make_attribution, data, target_kind, metrics):
    """Per-sample values computed one sample at a time, in eval mode, outside any engine."""
    net.eval()
    out = {name: [] for name in metrics}
    for d in data:
        x = d["image"].unsqueeze(0)
        with torch.no_grad():
            t = net(x).argmax(1) if target_kind == "pred" else d["label"].reshape(1)
        maps = attribute_batch(make_attribution(net), x, t)
        for name, metric in metrics.items():
            with torch.no_grad():
                out[name].append(metric(net, x, maps, target=t))
    return {k: torch.cat(v) for k, v in out.items()}


@pytest.mark.parametrize("decollate", [True, False], ids=["decollate", "collated"])
@pytest.mark.parametrize(
    "make_attribution",
    [lambda net: ScoreCAM3D(net, net.layer2), lambda net: LayerGradCam(net, net.layer2)],
    ids=["scorecam", "layergradcam"],
)
@pytest.mark.parametrize("target", ["pred", "label"])
def test_handler_reports_mean_and_std(decollate, make_attribution, target, toy_metrics):
    net = bn_net()
    data = samples()
    expected = expected_values(net, make_attribution, data, target, toy_metrics)
    assert bool((expected["mean_map"] != 0).any())  # not a degenerate all-zero map
    net.train()  # as during training, when a ValidationHandler runs the evaluator
    running_mean = net.bn1.running_mean.clone()
    evaluator = SupervisedEvaluator(
        device=torch.device("cpu"),
        val_data_loader=loader(data, 2),
        network=net,
        decollate=decollate,
    )
    handler = AttributionHandler(make_attribution(net), toy_metrics, target=target)
    handler.attach(evaluator)
    evaluator.run()
    for name, values in expected.items():
        torch.testing.assert_close(handler.values[name], values, rtol=1e-5, atol=1e-6)
        v = values.double()
        assert evaluator.state.metrics[name] == pytest.approx(float(v.mean()), rel=1e-5, abs=1e-7)
        assert evaluator.state.metrics[f"{name}_std"] == pytest.approx(
            float(v.std(correction=0)), rel=1e-4, abs=1e-7
        )
    # maps were computed in the evaluator's eval mode; the model is back in train mode, and
    # batch norm statistics were not touched
    assert net.training and all(m.training for m in net.modules())
    assert torch.equal(net.bn1.running_mean, running_mean)
    assert hook_count(net) == 0


def test_second_epoch_starts_afresh():
    net = bn_net().eval()
    data = samples(3)
    evaluator = SupervisedEvaluator(
        device=torch.device("cpu"), val_data_loader=loader(data, 2), network=net
    )
    handler = AttributionHandler(ScoreCAM3D(net, net.layer2), {"mean_map": mean_map_metric})
    handler.attach(evaluator)
    evaluator.run()
    first = handler.values["mean_map"].clone()
    evaluator.run()
    assert handler.values["mean_map"].shape == (3,)
    torch.testing.assert_close(handler.values["mean_map"], first)


def test_handler_errors():
    net = bn_net().eval()
    with pytest.raises(TypeError, match="attribute"):
        AttributionHandler(net, {"m": mean_map_metric})
    with pytest.raises(TypeError, match="must be callable"):
        AttributionHandler(ScoreCAM3D(net, net.layer2), {"m": 3})
    with pytest.raises(ValueError, match="metrics is empty"):
        AttributionHandler(ScoreCAM3D(net, net.layer2), {})
    handler = AttributionHandler(
        ScoreCAM3D(net, net.layer2), {"m": mean_map_metric}, image_key="img"
    )
    evaluator = SupervisedEvaluator(
        device=torch.device("cpu"),
        val_data_loader=loader(samples(2), 2),
        network=net,
        decollate=False,
    )
    handler.attach(evaluator)
    with pytest.raises(KeyError, match="image_key 'img' is not in the engine's output"):
        evaluator.run()
