"""evaluate_dataset: per-sample maps and metrics over a data set, on one process or two (gloo)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from captum.attr import LayerGradCam
from torch.utils.data import DataLoader

from captum_medcam import ScoreCAM3D, evaluate_dataset
from captum_medcam.evaluation import attribute_batch
from tests.conftest import assert_unchanged, mean_map_metric, model_state, small_cnn

TESTS = Path(__file__).parent


def dict_data(n: int = 5, size: int = 8):
    g = torch.Generator().manual_seed(3)
    return [
        {
            "image": torch.randn(1, size, size, size, generator=g, dtype=torch.float64),
            "label": i % 3,
        }
        for i in range(n)
    ]


def per_sample(model, attribution, data, metrics, target):
    """The definition: one sample at a time."""
    out = {name: [] for name in metrics}
    for d in data:
        x = d["image"].unsqueeze(0)
        t = model(x).argmax(1) if target == "pred" else torch.tensor([d["label"]])
        maps = attribute_batch(attribution, x, t)
        with torch.no_grad():
            for name, metric in metrics.items():
                out[name].append(metric(model, x, maps, target=t))
    return {k: torch.cat(v) for k, v in out.items()}


@pytest.mark.parametrize("target", ["pred", "label"])
@pytest.mark.parametrize("batch_size", [1, 3])
def test_matches_per_sample_definition(target, batch_size, toy_metrics):
    model = small_cnn(3, in_channels=1)
    before = model_state(model)
    cam = ScoreCAM3D(model, model[4])
    data = dict_data()
    result = evaluate_dataset(
        model, cam, data, toy_metrics, target=target, batch_size=batch_size, show_progress=False
    )
    expected = per_sample(model, cam, data, toy_metrics, target)
    for name in toy_metrics:
        torch.testing.assert_close(result.values[name], expected[name])
        mean, std = result.summary[name]
        assert mean == pytest.approx(float(np.mean(expected[name].numpy())))
        assert std == pytest.approx(float(np.std(expected[name].numpy())))
    assert result.indices.tolist() == list(range(5))
    assert_unchanged(model, before)


def test_tuple_samples_loader_order_and_gradient_method(toy_metrics):
    """(image, label) tuples, a shuffling DataLoader (its order is not used), LayerGradCam."""
    model = small_cnn(3, in_channels=1)
    data = [(d["image"], d["label"]) for d in dict_data()]
    gc = LayerGradCam(model, model[4])
    loader = DataLoader(data, batch_size=2, shuffle=True)
    result = evaluate_dataset(model, gc, loader, toy_metrics, target="label", show_progress=False)
    expected = per_sample(
        model, gc, [{"image": x, "label": y} for x, y in data], toy_metrics, "label"
    )
    for name in toy_metrics:
        torch.testing.assert_close(result.values[name], expected[name])
    assert result.targets.tolist() == [y for _, y in data]
    assert "5 samples" in str(result) and "masked_score: " in str(result)


def test_fixed_target(toy_metrics):
    model = small_cnn(3, in_channels=1)
    cam = ScoreCAM3D(model, model[4])
    result = evaluate_dataset(model, cam, dict_data(3), toy_metrics, target=2, show_progress=False)
    assert result.targets.tolist() == [2, 2, 2]
    direct = cam.attribute(torch.stack([d["image"] for d in dict_data(3)]), target=2)
    torch.testing.assert_close(result.values["mean_map"], direct.flatten(1).mean(1))


def test_errors(toy_metrics):
    model = small_cnn(3, in_channels=1)
    cam = ScoreCAM3D(model, model[4])
    with pytest.raises(
        KeyError, match=r"image_key 'img' is not in the batch; its keys are \['image', 'label'\]"
    ):
        evaluate_dataset(
            model, cam, dict_data(2), toy_metrics, image_key="img", show_progress=False
        )

    def whole_batch(forward_func, inputs, attributions, target=None, additional_forward_args=None):
        return attributions.mean()

    with pytest.raises(
        ValueError, match=r"metric 'bad' returned \(\); a metric must return .* shape \(2,\)"
    ):
        evaluate_dataset(
            model, cam, dict_data(2), {"bad": whole_batch}, batch_size=2, show_progress=False
        )
    with pytest.raises(TypeError, match="map-style data set"):
        evaluate_dataset(model, cam, iter(dict_data(2)), toy_metrics, show_progress=False)
    with pytest.raises(TypeError, match="mapping of names to metric functions"):
        evaluate_dataset(model, cam, dict_data(2), [mean_map_metric], show_progress=False)
    with pytest.raises(ValueError, match="target must be 'pred', 'label'"):
        evaluate_dataset(
            model, cam, dict_data(2), toy_metrics, target="prediction", show_progress=False
        )
    with pytest.raises(TypeError, match="attribute"):
        evaluate_dataset(model, model, dict_data(2), toy_metrics, show_progress=False)


def test_two_processes_gloo_equal_one_process(tmp_path):
    """torchrun --nproc_per_node=2 with gloo on the CPU: 7 samples split 4 + 3 (no padding
    duplicate), gathered on both ranks, equal to the single-process result."""
    worker = _worker()
    model, cam, data, metrics = worker.setup()
    single = evaluate_dataset(model, cam, data, metrics, batch_size=2, show_progress=False)

    _, wall = _torchrun(tmp_path)
    for rank in (0, 1):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        assert got["targets"].tolist() == single.targets.tolist()
        for name in metrics:
            assert got["values"][name].shape == (worker.N_SAMPLES,)
            torch.testing.assert_close(got["values"][name], single.values[name])
        print(f"rank {rank}: {got['seconds']:.2f} s inside the worker; torchrun wall {wall:.2f} s")


def _torchrun(tmp_path, *extra):
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(TESTS.parent), str(TESTS)]),
        "OMP_NUM_THREADS": "1",
    }
    start = time.perf_counter()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            str(TESTS / "_distributed_eval.py"),
            str(tmp_path),
            *extra,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc, time.perf_counter() - start


def _worker():
    spec = importlib.util.spec_from_file_location(
        "_distributed_eval", TESTS / "_distributed_eval.py"
    )
    worker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(worker)
    return worker


def test_two_processes_pipeline_equal_one_process(tmp_path):
    """The pipeline of `captum-medcam evaluate` (Score-CAM, Grad-CAM, the random map; curves,
    AOPC with seeded noise, masks) under torchrun with gloo: the same rows and curves on both
    ranks as one process."""
    from captum_medcam.pipeline import compare_methods

    model, data, config = _worker().setup_pipeline()
    single = compare_methods(model, data, config, show_progress=False)
    _torchrun(tmp_path, "pipeline")
    expected = single.rows()
    assert len(expected) == 3 * len(data)
    for rank in (0, 1):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        assert [r["index"] for r in got["rows"]] == [r["index"] for r in expected]
        for a, b in zip(got["rows"], expected, strict=True):
            assert a.keys() == b.keys()
            for key in a:
                if isinstance(a[key], float):
                    assert a[key] == pytest.approx(b[key], nan_ok=True, rel=1e-9, abs=1e-12), key
                else:
                    assert a[key] == b[key], key
        for method, by_metric in single.curves.items():
            for column, curves in by_metric.items():
                assert sorted(got["curves"][method][column]) == sorted(curves)
                for index, curve in curves.items():
                    torch.testing.assert_close(got["curves"][method][column][index], curve)
