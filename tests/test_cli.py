"""`captum-medcam evaluate` and `explain` on data made in the real on-disk formats (MedMNIST
.npz files, NIfTI volumes with masks, .npy), offline, with tiny networks."""

from __future__ import annotations

import csv
import json
import pickle

import nibabel as nib
import numpy as np
import pytest
import torch
from medmnist.info import INFO

from captum_medcam._loading import load_network, load_weights
from captum_medcam.cli import main
from captum_medcam.pipeline import PRESETS, apply_preset, config_from_options

# The networks here are tiny and barely trained: their curves are flat, and the library rightly
# says so. These tests check the command's plumbing, not the metrics' power (that is
# tests/metrics/test_metric_sanity.py).
pytestmark = pytest.mark.filterwarnings("ignore::captum_medcam.metrics.DegenerateCurveWarning")

NET_3D = (
    '{"_target_": "monai.networks.nets.resnet10", "spatial_dims": 3, "n_input_channels": 1, '
    '"num_classes": %d, "widen_factor": 0.125}'
)
NET_2D = (
    '{"_target_": "monai.networks.nets.resnet10", "spatial_dims": 2, "n_input_channels": %d, '
    '"num_classes": %d, "widen_factor": 0.125}'
)
COUNTS = {"train": 1, "val": 1, "test": 3}


def write_medmnist(root, flag, shape, monkeypatch, seed=0):
    """``{flag}.npz`` (size 28) or ``{flag}_{size}.npz`` with medmnist's keys; INFO patched to
    expect our small sample counts."""
    monkeypatch.setitem(INFO[flag], "n_samples", dict(COUNTS))
    rng = np.random.default_rng(seed)
    k = len(INFO[flag]["label"])
    multi = INFO[flag]["task"].startswith("multi-label")
    arrays = {}
    for split, n in COUNTS.items():
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, *shape), dtype=np.uint8)
        arrays[f"{split}_labels"] = (
            rng.integers(0, 2, (n, k), dtype=np.uint8)
            if multi
            else rng.integers(0, k, (n, 1), dtype=np.uint8)
        )
    size = shape[0]
    np.savez_compressed(root / (f"{flag}.npz" if size == 28 else f"{flag}_{size}.npz"), **arrays)
    return arrays


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def run(argv, capsys):
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 0, captured.err[-3000:]
    return captured


@pytest.mark.filterwarnings("ignore:no --weights given")
def test_evaluate_medmnist_3d(tmp_path, monkeypatch, capsys):
    arrays = write_medmnist(tmp_path, "organmnist3d", (28, 28, 28), monkeypatch)
    out = tmp_path / "out"
    captured = run(
        [
            "evaluate",
            "--medmnist",
            "organmnist3d",
            "--root",
            str(tmp_path),
            "--network",
            NET_3D % 11,
            "--layer",
            "layer4",
            "--methods",
            "gradcam,random",
            "--metrics",
            "deletion,insertion",
            "--n-steps",
            "4",
            "--limit",
            "2",
            "--output",
            str(out),
            "--no-report",
        ],
        capsys,
    )
    rows = read_rows(out / "results.csv")
    assert list(rows[0]) == [
        "index",
        "label",
        "prediction",
        "correct",
        "target",
        "method",
        "deletion_auc",
        "insertion_auc",
    ]
    assert [(r["index"], r["method"]) for r in rows] == [
        ("0", "gradcam"),
        ("0", "random"),
        ("1", "gradcam"),
        ("1", "random"),
    ]
    for r in rows:
        assert int(r["label"]) == int(arrays["test_labels"][int(r["index"]), 0])
        assert r["correct"] == str(r["prediction"] == r["label"])
        assert r["target"] == r["prediction"]  # the predicted class is explained
        assert 0 <= float(r["deletion_auc"]) <= 1
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) == {"gradcam", "random"}
    values = [float(r["deletion_auc"]) for r in rows if r["method"] == "gradcam"]
    assert summary["gradcam"]["deletion_auc"]["mean"] == pytest.approx(np.mean(values))
    assert summary["gradcam"]["deletion_auc"]["std"] == pytest.approx(np.std(values))
    assert summary["gradcam"]["deletion_auc"]["n"] == 2
    assert "gradcam" in captured.out and "results.csv" in captured.out
    assert "gradcam (rank 0 of 1)" in captured.err  # the progress bar, on stderr


def test_evaluate_medmnist_2d_multilabel_correct_only(tmp_path, monkeypatch, capsys):
    """ChestMNIST (multi-label, 14 findings): the label vector is kept, a prediction is
    correct when it is one of the positive findings, --correct-only drops the others."""
    arrays = write_medmnist(tmp_path, "chestmnist", (28, 28), monkeypatch)
    _, weights = save_weights(tmp_path, NET_2D % (1, 14))
    out = tmp_path / "out"
    run(
        [
            "evaluate",
            "--medmnist",
            "chestmnist",
            "--root",
            str(tmp_path),
            "--network",
            NET_2D % (1, 14),
            "--weights",
            str(weights),
            "--layer",
            "layer3",
            "--methods",
            "gradcampp",
            "--metrics",
            "aopc",
            "--aopc-grid",
            "3",
            "--aopc-regions",
            "9",
            "--output",
            str(out),
            "--no-progress",
            "--no-report",
        ],
        capsys,
    )
    rows = read_rows(out / "results.csv")
    assert len(rows) == 3
    for r in rows:
        label = [int(v) for v in r["label"].split()]
        assert label == arrays["test_labels"][int(r["index"])].tolist()
        assert r["correct"] == str(label[int(r["prediction"])] == 1)
    curve = read_rows(out / "aopc_curve.csv")
    assert len(curve) == 10  # 3 x 3 regions: L = 0 .. 9
    assert float(curve[0]["gradcampp"]) == 0.0
    assert float(curve[-1]["gradcampp"]) == pytest.approx(
        np.mean([float(r["aopc"]) for r in rows]), abs=1e-6
    )

    out2 = tmp_path / "correct"
    run(
        [
            "evaluate",
            "--medmnist",
            "chestmnist",
            "--root",
            str(tmp_path),
            "--network",
            NET_2D % (1, 14),
            "--weights",
            str(weights),
            "--layer",
            "layer3",
            "--methods",
            "gradcampp",
            "--metrics",
            "aopc",
            "--aopc-grid",
            "3",
            "--aopc-regions",
            "9",
            "--correct-only",
            "--output",
            str(out2),
            "--no-progress",
            "--no-report",
        ],
        capsys,
    )
    kept = read_rows(out2 / "results.csv")
    assert any(r["correct"] == "True" for r in rows) and any(r["correct"] == "False" for r in rows)
    assert [r["index"] for r in kept] == [r["index"] for r in rows if r["correct"] == "True"]
    for a in kept:
        b = next(r for r in rows if r["index"] == a["index"])
        assert float(a["aopc"]) == pytest.approx(float(b["aopc"]))


@pytest.mark.filterwarnings("ignore:no --weights given")
def test_evaluate_medmnist_2d_colour(tmp_path, monkeypatch, capsys):
    write_medmnist(tmp_path, "pathmnist", (28, 28, 3), monkeypatch)
    out = tmp_path / "out"
    run(
        [
            "evaluate",
            "--medmnist",
            "pathmnist",
            "--root",
            str(tmp_path),
            "--network",
            NET_2D % (3, 9),
            "--layer",
            "layer4",
            "--methods",
            "saliency",
            "--metrics",
            "deletion",
            "--n-steps",
            "4",
            "--output",
            str(out),
            "--no-progress",
            "--no-report",
        ],
        capsys,
    )
    assert len(read_rows(out / "results.csv")) == 3


def write_nifti_table(folder, n=4, shape=(12, 14, 10)):
    """NIfTI volumes with a non-identity affine, masks (empty for label 0) and table.csv."""
    rng = np.random.default_rng(1)
    affine = np.diag([1.5, 2.0, 2.5, 1.0])
    affine[:3, 3] = [-10.0, 5.0, 3.0]
    rows = ["image,label,mask"]
    for i in range(n):
        nib.save(
            nib.Nifti1Image(rng.random(shape).astype(np.float32), affine), folder / f"v{i}.nii.gz"
        )
        mask = np.zeros(shape, np.uint8)
        if i % 2:
            mask[3:7, 4:9, 2:6] = 1
        nib.save(nib.Nifti1Image(mask, affine), folder / f"v{i}_mask.nii.gz")
        rows.append(f"v{i}.nii.gz,{i % 2},v{i}_mask.nii.gz")
    (folder / "table.csv").write_text("\n".join(rows) + "\n")
    return affine


def save_weights(tmp_path, spec):
    torch.manual_seed(0)
    net = load_network(spec)
    path = tmp_path / "weights.pt"
    torch.save(net.state_dict(), path)
    return net.eval(), path


def test_evaluate_nifti_table_with_masks(tmp_path, capsys):
    """Localization metrics get each volume's mask (NaN without a lesion, left out of the
    summary); maps are written as NIfTI with the input's affine, back at its own size after
    --spatial-size resized it for the model."""
    affine = write_nifti_table(tmp_path)
    net, weights = save_weights(tmp_path, NET_3D % 2)
    out = tmp_path / "out"
    run(
        [
            "evaluate",
            "--data",
            str(tmp_path / "table.csv"),
            "--network",
            NET_3D % 2,
            "--weights",
            str(weights),
            "--layer",
            "layer3",
            "--spatial-size",
            "16,16,16",
            "--methods",
            "gradcam,random",
            "--metrics",
            "deletion,pointing_game,energy_pointing_game,iou,dice",
            "--n-steps",
            "4",
            "--output",
            str(out),
            "--no-progress",
            "--no-report",
        ],
        capsys,
    )
    rows = read_rows(out / "results.csv")
    assert len(rows) == 8
    for r in rows:
        has_lesion = int(r["index"]) % 2 == 1
        assert (r["pointing_game"] != "nan") == has_lesion
        if not has_lesion:  # no mask: no value (a map without positive values has none either)
            assert r["energy_pointing_game"] == r["iou"] == r["dice"] == "nan"
        if r["method"] == "random":
            assert (r["energy_pointing_game"] != "nan") == has_lesion
    summary = json.loads((out / "summary.json").read_text())
    assert summary["random"]["energy_pointing_game"]["n"] == 2
    assert summary["gradcam"]["pointing_game"]["n"] == 2
    assert summary["gradcam"]["deletion_auc"]["n"] == 4
    maps = sorted(p.name for p in (out / "maps").iterdir())
    assert maps[:2] == ["00000_v0_gradcam.nii.gz", "00000_v0_random.nii.gz"]
    assert len(maps) == 8
    saved = nib.load(out / "maps" / "00001_v1_gradcam.nii.gz")
    assert saved.shape == (12, 14, 10)
    np.testing.assert_allclose(saved.affine, affine)
    # the map equals Grad-CAM on the resized volume, resized back to the volume
    from captum.attr import LayerGradCam

    from captum_medcam._core.spatial import resize

    x = torch.from_numpy(nib.load(tmp_path / "v1.nii.gz").get_fdata().astype(np.float32))
    x16 = resize(x[None, None], (16, 16, 16))
    target = int(net(x16).argmax(1))
    expected = LayerGradCam(net, net.layer3).attribute(x16, target=target, relu_attributions=True)
    expected = resize(resize(expected.detach(), (16, 16, 16)), (12, 14, 10))[0, 0]
    np.testing.assert_allclose(saved.get_fdata(), expected.numpy(), rtol=1e-4, atol=1e-6)


def test_presets():
    """The presets fix the published protocols' settings; explicit options win."""
    organ = config_from_options(apply_preset("organmnist3d-scorecam", {}))
    assert organ.methods == ("scorecam",) and organ.layer == "layer4"
    assert organ.metrics == ("deletion", "insertion")
    assert organ.score == "correct" and organ.n_steps == 129  # 130 curve points
    options = apply_preset("organmnist3d-scorecam", {"size": None, "n_steps": 64})
    assert options["size"] == 64 and options["medmnist"] == "organmnist3d"
    assert options["n_steps"] == 64
    assert json.loads(options["network"])["num_classes"] == 11

    xray = config_from_options(apply_preset("xray-aopc", {"layer": "features"}))
    assert xray.metrics == ("aopc",) and xray.aopc_grid == 9 and xray.aopc_noise_std == 0.1
    assert xray.correct_only and xray.score == "probability" and xray.aopc_regions == 81
    for name in PRESETS:
        assert name in main_help()


def main_help():
    import contextlib
    import io

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer), pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    return buffer.getvalue()


def test_xray_preset_grid_has_81_regions():
    """9 x 9 regions on any image size (the study's 299 px: 34-px bands, the last smaller)."""
    from captum_medcam.pipeline import _grid_labels

    labels = _grid_labels((299, 299), 9, torch.device("cpu"))
    assert labels.shape == (1, 1, 299, 299) and labels.unique().numel() == 81
    assert (labels[0, 0, :, 0] == 0).sum() == 34 or (labels[0, 0, :, 0] == 0).sum() == 33
    labels28 = _grid_labels((28, 28), 9, torch.device("cpu"))
    assert labels28.unique().numel() == 81


@pytest.mark.slow
def test_preset_run_on_medmnist_files(tmp_path, monkeypatch, capsys):
    """--preset organmnist3d-scorecam end to end on an OrganMNIST3D-format file (28^3 with
    --size 28 and a narrower network, for speed): the 0/1-correctness score over 130 points
    makes every AUC a trapezoid sum of 0/1 values over 129 steps, a multiple of 1/258
    ((k - 1/2) / 129 when the curve starts at 1 and ends at 0, as in the published values)."""
    write_medmnist(tmp_path, "organmnist3d", (28, 28, 28), monkeypatch)
    _, weights = save_weights(tmp_path, NET_3D % 11)
    out = tmp_path / "out"
    run(
        [
            "evaluate",
            "--preset",
            "organmnist3d-scorecam",
            "--size",
            "28",
            "--root",
            str(tmp_path),
            "--network",
            NET_3D % 11,
            "--weights",
            str(weights),
            "--limit",
            "1",
            "--perturbations-per-eval",
            "64",
            "--output",
            str(out),
            "--no-progress",
            "--no-report",
        ],
        capsys,
    )
    rows = read_rows(out / "results.csv")
    assert [r["method"] for r in rows] == ["scorecam"]
    for column in ("deletion_auc", "insertion_auc"):
        halves = float(rows[0][column]) * 258
        assert abs(halves - round(halves)) < 1e-4


def test_explain_nifti_and_npy(tmp_path, capsys):
    affine = write_nifti_table(tmp_path, n=1)
    _, weights = save_weights(tmp_path, NET_3D % 2)
    out = tmp_path / "maps"
    captured = run(
        [
            "explain",
            "--network",
            NET_3D % 2,
            "--weights",
            str(weights),
            "--layer",
            "layer3",
            "--input",
            str(tmp_path / "v0.nii.gz"),
            "--methods",
            "gradcam,crm",
            "--target",
            "1",
            "--output",
            str(out),
        ],
        capsys,
    )
    assert "explaining class 1" in captured.out
    for method in ("gradcam", "crm"):
        saved = nib.load(out / f"v0_{method}.nii.gz")
        assert saved.shape == (12, 14, 10)
        np.testing.assert_allclose(saved.affine, affine)
        assert (out / f"v0_{method}.png").stat().st_size > 1000

    np.save(tmp_path / "vol.npy", np.random.default_rng(0).random((12, 14, 10), dtype=np.float32))
    run(
        [
            "explain",
            "--network",
            NET_3D % 2,
            "--weights",
            str(weights),
            "--layer",
            "layer3",
            "--input",
            str(tmp_path / "vol.npy"),
            "--output",
            str(out),
        ],
        capsys,
    )
    saved = nib.load(out / "vol_gradcam.nii.gz")
    assert saved.shape == (12, 14, 10)
    np.testing.assert_allclose(saved.affine, np.eye(4))


def test_explain_with_the_newer_method_families(tmp_path, capsys):
    """`explain` with a class-weight CAM (needs --fc-layer), a class-agnostic one, a
    perturbation CAM and FullGrad (no layer): NIfTI maps in the volume's space; the
    class-agnostic map is the same for every --target, CAM's is not."""
    affine = write_nifti_table(tmp_path, n=1)
    _, weights = save_weights(tmp_path, NET_3D % 2)
    methods = ("cam", "eigencam", "ablationcam", "fullgrad")
    maps = {}
    for target in ("0", "1"):
        out = tmp_path / f"maps{target}"
        captured = run(
            [
                "explain",
                "--network",
                NET_3D % 2,
                "--weights",
                str(weights),
                "--layer",
                "layer4",
                "--fc-layer",
                "fc",
                "--input",
                str(tmp_path / "v0.nii.gz"),
                "--methods",
                ",".join(methods),
                "--target",
                target,
                "--output",
                str(out),
            ],
            capsys,
        )
        assert f"explaining class {target}" in captured.out
        for method in methods:
            saved = nib.load(out / f"v0_{method}.nii.gz")
            assert saved.shape == (12, 14, 10)
            np.testing.assert_allclose(saved.affine, affine)
            maps[method, target] = np.asarray(saved.dataobj)
            assert np.isfinite(maps[method, target]).all()
    np.testing.assert_array_equal(maps["eigencam", "0"], maps["eigencam", "1"])
    assert not np.allclose(maps["cam", "0"], maps["cam", "1"])


class _Exploit:
    """A pickled object whose unpickling would create a file: it must never run."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_weights_loading_and_unsafe_checkpoint_refused(tmp_path):
    net = load_network(NET_3D % 2)
    other = load_network(NET_3D % 2)
    # a plain state dict, and the common nested / DataParallel forms
    torch.save(
        {"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}}, tmp_path / "a.pt"
    )
    load_weights(other, tmp_path / "a.pt")
    for k, v in net.state_dict().items():
        assert torch.equal(other.state_dict()[k], v)

    marker = tmp_path / "executed"
    with open(tmp_path / "evil.pt", "wb") as f:
        pickle.dump({"weight": _Exploit(marker)}, f)
    with pytest.raises(ValueError, match=r"refusing to load --weights .*could run code"):
        load_weights(net, tmp_path / "evil.pt")
    assert not marker.exists()
    torch.save(net, tmp_path / "whole_model.pt")  # a whole pickled model is refused too
    with pytest.raises(ValueError, match="refusing to load"):
        load_weights(net, tmp_path / "whole_model.pt")

    wrong = load_network(NET_3D % 5)
    with pytest.raises(ValueError, match="do not fit the --network"):
        load_weights(wrong, tmp_path / "a.pt")


def test_network_specs(tmp_path):
    (tmp_path / "net.json").write_text(NET_3D % 4)
    assert load_network(str(tmp_path / "net.json")).fc.out_features == 4
    bundle = {"network_def": json.loads(NET_3D % 3), "other": 1}
    (tmp_path / "inference.json").write_text(json.dumps(bundle))
    assert load_network(str(tmp_path / "inference.json")).fc.out_features == 3
    net = load_network("torch.nn:Identity")
    assert isinstance(net, torch.nn.Identity)
    with pytest.raises(ValueError, match="'_target_' key"):
        load_network('{"spatial_dims": 3}')
    with pytest.raises(ValueError, match="cannot import module"):
        load_network("no_such_module_xyz:net")
    with pytest.raises(TypeError, match=r"expected a torch\.nn\.Module"):
        load_network("builtins:dict")


@pytest.mark.filterwarnings("ignore:no --weights given")
def test_errors_say_what_to_do(tmp_path, capsys):
    with pytest.raises(SystemExit, match="exactly one of --medmnist"):
        main(["evaluate", "--network", NET_3D % 2, "--output", str(tmp_path)])
    write_nifti_table(tmp_path, n=2)
    code = main(
        [
            "evaluate",
            "--data",
            str(tmp_path / "table.csv"),
            "--network",
            NET_3D % 2,
            "--methods",
            "gradcam",
            "--output",
            str(tmp_path / "out"),
        ]
    )
    assert code == 2
    assert "name it with --layer" in capsys.readouterr().err
    code = main(
        [
            "evaluate",
            "--data",
            str(tmp_path / "table.csv"),
            "--network",
            NET_3D % 2,
            "--methods",
            "gradcam,nosuch",
            "--layer",
            "layer4",
            "--output",
            str(tmp_path / "out"),
        ]
    )
    assert code == 2
    assert "unknown method 'nosuch'; choose from" in capsys.readouterr().err
    # the name a user reads in results.csv, and a method's usual spelling, point to the names
    base = ["evaluate", "--data", str(tmp_path / "table.csv"), "--network", NET_3D % 2]
    code = main([*base, "--metrics", "deletion_auc", "--output", str(tmp_path / "out")])
    assert code == 2
    assert "'deletion_auc' (did you mean 'deletion'?" in capsys.readouterr().err
    code = main([*base, "--methods", "grad_cam", "--output", str(tmp_path / "out")])
    assert code == 2
    assert "'grad_cam' (did you mean 'gradcam'?)" in capsys.readouterr().err


def test_medmnist_with_a_localization_metric_is_refused_before_any_work(tmp_path):
    """MedMNIST has no masks: the command says so at once, not after the first maps."""
    with pytest.raises(SystemExit, match=r"\['pointing_game', 'iou'\] .* MedMNIST has none"):
        main(
            [
                "evaluate",
                "--medmnist",
                "organmnist3d",
                "--root",
                str(tmp_path),  # empty: the check comes before the data are read
                "--network",
                NET_3D % 11,
                "--layer",
                "layer4",
                "--metrics",
                "deletion,pointing_game,iou",
                "--output",
                str(tmp_path / "out"),
            ]
        )
    assert not (tmp_path / "out").exists()


@pytest.mark.filterwarnings("ignore:no --weights given")
def test_evaluate_png_table(tmp_path, capsys):
    """A CSV of 2D PNG images (grey) with labels and PNG masks."""
    from PIL import Image

    rng = np.random.default_rng(2)
    rows = ["image,label,mask"]
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (20, 24), dtype=np.uint8)).save(tmp_path / f"x{i}.png")
        mask = np.zeros((20, 24), np.uint8)
        mask[4:9, 5:12] = 255
        Image.fromarray(mask).save(tmp_path / f"m{i}.png")
        rows.append(f"x{i}.png,{i % 2},m{i}.png")
    (tmp_path / "table.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "out"
    run(
        [
            "evaluate",
            "--data",
            str(tmp_path / "table.csv"),
            "--network",
            NET_2D % (1, 2),
            "--methods",
            "random,saliency",
            "--metrics",
            "deletion,energy_pointing_game",
            "--n-steps",
            "4",
            "--output",
            str(out),
            "--no-progress",
            "--no-report",
        ],
        capsys,
    )
    rows_out = read_rows(out / "results.csv")
    assert [r["label"] for r in rows_out] == ["0", "0", "1", "1", "0", "0"]
    # the random map's energy inside the mask is about the mask's share of the image
    energy = [float(r["energy_pointing_game"]) for r in rows_out if r["method"] == "random"]
    assert all(0.02 < e < 0.25 for e in energy)  # the mask covers 35 / 480 = 7.3 %
    assert not (out / "maps").exists()  # maps are written as NIfTI for NIfTI inputs only


@pytest.mark.filterwarnings("ignore:no --weights given")
def test_evaluate_road_and_confidence_metrics(tmp_path, monkeypatch, capsys):
    write_medmnist(tmp_path, "pathmnist", (28, 28, 3), monkeypatch)
    out = tmp_path / "out"
    names = "road,road_morf,average_drop,increase_in_confidence"
    run(
        [
            "evaluate",
            "--medmnist",
            "pathmnist",
            "--root",
            str(tmp_path),
            "--network",
            NET_2D % (3, 9),
            "--methods",
            "saliency",
            "--metrics",
            names,
            "--output",
            str(out),
            "--no-progress",
            "--no-report",
        ],
        capsys,
    )
    rows = read_rows(out / "results.csv")
    assert len(rows) == 3
    for row in rows:
        assert 0 <= float(row["average_drop"]) <= 1 and row["increase_in_confidence"] in (
            "0.0",
            "1.0",
        )
        assert abs(float(row["road"])) <= 1 and abs(float(row["road_morf"])) <= 1
    summary = json.loads((out / "summary.json").read_text())
    assert sorted(summary["saliency"]) == sorted(names.split(","))


def test_slice_views_are_named_from_the_files_affine(tmp_path, capsys, monkeypatch):
    """The explain PNG and the evaluate report name the views from each NIfTI's affine
    (here voxel axes S, P, L: axis 0 slices are axial), and by array axis for a .npy."""
    from matplotlib.figure import Figure

    affine = np.zeros((4, 4))
    affine[2, 0], affine[1, 1], affine[0, 2], affine[3, 3] = 2.0, -2.0, -2.0, 1.0
    rng = np.random.default_rng(2)
    rows = ["image,label"]
    for i in range(2):
        data = rng.random((12, 14, 10)).astype(np.float32)
        nib.save(nib.Nifti1Image(data, affine), tmp_path / f"s{i}.nii.gz")
        rows.append(f"s{i}.nii.gz,{i}")
    (tmp_path / "table.csv").write_text("\n".join(rows) + "\n")
    np.save(tmp_path / "plain.npy", rng.random((12, 14, 10)).astype(np.float32))
    _, weights = save_weights(tmp_path, NET_3D % 2)
    common = ["--network", NET_3D % 2, "--weights", str(weights), "--layer", "layer3"]

    titles = {}
    save = Figure.savefig

    def recording_savefig(fig, path, *args, **kwargs):
        titles[path.name] = [ax.get_title() for ax in fig.axes[:3]]
        return save(fig, path, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", recording_savefig)
    for name in ("s0.nii.gz", "plain.npy"):
        run(
            ["explain", *common, "--input", str(tmp_path / name), "--output", str(tmp_path)], capsys
        )
    assert [t.split(" slice ")[0] for t in titles["s0_gradcam.png"]] == [
        "axial",
        "coronal",
        "sagittal",
    ]
    assert [t.split(" slice ")[0] for t in titles["plain_gradcam.png"]] == [
        "axis 0 (D)",
        "axis 1 (H)",
        "axis 2 (W)",
    ]
    out = tmp_path / "out"
    run(
        [
            "evaluate",
            *common,
            "--data",
            str(tmp_path / "table.csv"),
            "--methods",
            "gradcam",
            "--metrics",
            "deletion",
            "--n-steps",
            "2",
            "--output",
            str(out),
            "--no-progress",
        ],
        capsys,
    )
    report = json.loads((out / "report.json").read_text())
    assert [e["views"] for e in report["examples"]] == [["axial", "coronal", "sagittal"]] * 2
    assert "<figcaption>axial</figcaption>" in (out / "report.html").read_text()
