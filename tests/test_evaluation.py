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


@pytest.mark.slow
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


def masked_data(n: int = 5, size: int = 8):
    """dict samples with labels and masks (empty for even indices)."""
    data = dict_data(n, size)
    for i, d in enumerate(data):
        mask = torch.zeros(1, size, size, size, dtype=torch.bool)
        if i % 2:
            mask[:, 1:4, 2:6, 0:3] = True
        d["mask"] = mask
    return data


@pytest.mark.parametrize("batch_size", [1, 2])
def test_masks_labels_predictions_correctness(batch_size):
    """Localization metrics get each sample's mask (NaN for an empty one, left out of the
    summary); the result holds labels, predictions and correctness."""
    from captum_medcam.evaluation import localization_metric
    from captum_medcam.metrics import energy_pointing_game, pointing_game

    model = small_cnn(3, in_channels=1)
    cam = ScoreCAM3D(model, model[4])
    data = masked_data()
    metrics = {
        "pointing_game": localization_metric(pointing_game, tolerance=1),
        "energy": localization_metric(energy_pointing_game),
    }
    result = evaluate_dataset(
        model, cam, data, metrics, batch_size=batch_size, method="scorecam", show_progress=False
    )
    x = torch.stack([d["image"] for d in data])
    masks = torch.stack([d["mask"] for d in data])
    predictions = model(x).argmax(1)
    maps = cam.attribute(x, target=predictions)
    expected = energy_pointing_game(maps, masks, empty_mask="nan")
    torch.testing.assert_close(result.values["energy"], expected, equal_nan=True)
    assert torch.isnan(result.values["energy"][0::2]).all()
    torch.testing.assert_close(
        result.values["pointing_game"],
        pointing_game(maps, masks, tolerance=1, empty_mask="nan"),
        equal_nan=True,
    )
    mean, std = result.summary["energy"]
    assert result.counts["energy"] == 2
    assert mean == pytest.approx(float(expected[1::2].mean()))
    assert std == pytest.approx(float(np.std(expected[1::2].numpy())))
    assert result.predictions.tolist() == predictions.tolist()
    assert result.labels.tolist() == [d["label"] for d in data]
    assert result.correct.tolist() == (predictions == result.labels).tolist()


def test_mask_metric_without_masks_says_so(toy_metrics):
    from captum_medcam.evaluation import localization_metric
    from captum_medcam.metrics import pointing_game

    model = small_cnn(3, in_channels=1)
    with pytest.raises(ValueError, match="metric 'pg' compares the maps with ground-truth masks"):
        evaluate_dataset(
            model,
            ScoreCAM3D(model, model[4]),
            dict_data(2),
            {"pg": localization_metric(pointing_game)},
            show_progress=False,
        )


def test_correct_only_and_on_batch(toy_metrics):
    """correct_only keeps the correctly classified samples (their own values, their data-set
    indices); on_batch sees every evaluated batch with its maps."""
    model = small_cnn(3, in_channels=1)
    cam = ScoreCAM3D(model, model[4])
    data = dict_data(9)
    full = evaluate_dataset(model, cam, data, toy_metrics, show_progress=False)
    right = full.correct.nonzero().reshape(-1)
    assert 0 < len(right) < 9  # the fixture model gets some right and some wrong
    seen = []
    part = evaluate_dataset(
        model,
        cam,
        data,
        toy_metrics,
        batch_size=4,
        correct_only=True,
        show_progress=False,
        on_batch=lambda b: seen.append(b),
    )
    assert part.indices.tolist() == right.tolist()
    assert part.correct.all()
    for name in toy_metrics:
        torch.testing.assert_close(part.values[name], full.values[name][right])
    assert sum(len(b.indices) for b in seen) == len(right)
    b = seen[0]
    assert b.maps.shape == (len(b.indices), 1, 8, 8, 8) and b.inputs.shape[0] == len(b.indices)
    torch.testing.assert_close(b.values["mean_map"], b.maps.flatten(1).mean(1))
    with pytest.raises(ValueError, match="correct_only=True needs labels"):
        evaluate_dataset(
            model,
            cam,
            [{"image": d["image"]} for d in data],
            toy_metrics,
            correct_only=True,
            show_progress=False,
        )


def test_exports(tmp_path, toy_metrics):
    import csv
    import json

    pd = pytest.importorskip("pandas")
    model = small_cnn(3, in_channels=1)
    result = evaluate_dataset(
        model,
        ScoreCAM3D(model, model[4]),
        dict_data(3),
        toy_metrics,
        method="scorecam",
        show_progress=False,
    )
    rows = result.rows()
    assert [r["index"] for r in rows] == [0, 1, 2]
    assert list(rows[0])[:6] == ["index", "label", "prediction", "correct", "target", "method"]
    assert rows[1]["label"] == 1 and rows[1]["method"] == "scorecam"
    assert rows[2]["mean_map"] == pytest.approx(float(result.values["mean_map"][2]))
    as_dict = result.to_dict()
    json.dumps(as_dict)  # plain Python values
    assert as_dict["summary"]["mean_map"]["n"] == 3
    assert as_dict["summary"]["mean_map"]["mean"] == pytest.approx(result.summary["mean_map"][0])
    path = result.to_csv(tmp_path / "r.csv")
    with open(path, newline="") as f:
        read = list(csv.DictReader(f))
    assert [int(r["prediction"]) for r in read] == result.predictions.tolist()
    assert float(read[0]["masked_score"]) == pytest.approx(rows[0]["masked_score"])
    frame = result.to_pandas()
    assert isinstance(frame, pd.DataFrame) and len(frame) == 3
    assert frame["mean_map"].tolist() == pytest.approx(result.values["mean_map"].tolist())


def test_progress_counts_volumes(capsys, toy_metrics):
    """The bar counts volumes (not batches), names the method and goes to stderr."""
    model = small_cnn(3, in_channels=1)
    evaluate_dataset(
        model,
        ScoreCAM3D(model, model[4]),
        dict_data(5),
        toy_metrics,
        batch_size=2,
        method="scorecam",
        show_progress=True,
    )
    err = capsys.readouterr().err
    assert "scorecam (rank 0 of 1)" in err and "5/5" in err and "volume" in err
