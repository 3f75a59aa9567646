"""Per-method options (``--method-option``, ``EvaluationConfig.method_options``), the speed
options (``--autocast``, ``--chunk-size``, ``--compile``), ``explain --seed`` and the
class-agnostic note of ``explain``, on tiny networks and data in the real on-disk formats."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch
from torch import nn

from captum_medcam._core.engine import current_options, perturbation_options
from captum_medcam._loading import load_volume
from captum_medcam.attr import SSCAM, ScoreCAM
from captum_medcam.cli import _option_value, main
from captum_medcam.pipeline import (
    METHODS,
    Comparison,
    EvaluationConfig,
    build_method,
    compare_methods,
    config_from_options,
    method_keywords,
    write_outputs,
)
from tests.test_cli import NET_3D, run, save_weights, write_medmnist, write_nifti_table

pytestmark = pytest.mark.filterwarnings("ignore::captum_medcam.metrics.DegenerateCurveWarning")

#: Every forward of :func:`recording_net`'s model: ``(rows, autocast dtype or None)``.
FORWARDS: list[tuple[int, torch.dtype | None]] = []
BUILT: list[int] = []


class _Recording(nn.Module):
    """conv -> ReLU -> GAP -> Linear on 3D volumes; records each forward's autocast state."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv3d(1, 4, 3, padding=1)
        self.act = nn.ReLU()
        self.fc = nn.Linear(4, 11)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        on = torch.is_autocast_enabled("cpu")
        FORWARDS.append((x.shape[0], torch.get_autocast_dtype("cpu") if on else None))
        return self.fc(self.act(self.conv(x)).mean((2, 3, 4)))


def recording_net() -> nn.Module:
    """``--network tests.test_cli_options:recording_net``."""
    BUILT.append(1)
    return _Recording()


def test_method_keywords_of_every_method():
    for name, spec in METHODS.items():
        keywords = method_keywords(name)  # every class resolves
        assert spec.classes, name
        assert not {"target", "inputs", "fc_layer", "seed"} & set(keywords), name
    assert method_keywords("sscam")["num_samples"][0] == "attribute"
    assert {"max_channels", "channel_criterion"} <= set(method_keywords("scorecam"))
    assert method_keywords("finercam")["base_method"][0] == "init"
    assert method_keywords("random") == {}
    # guided_gradcam builds captum's GuidedGradCam in 2D and ours in 3D: what both take
    assert set(method_keywords("guided_gradcam")) == {
        "device_ids",
        "interpolate_mode",
        "attribute_to_layer_input",
    }
    assert [m for m, s in METHODS.items() if s.class_agnostic] == ["eigencam", "kpcacam", "fem"]


def test_options_reach_the_constructor_and_attribute():
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(64, 2))
    config = EvaluationConfig(
        methods=("integrated_gradients", "sscam"),
        layer="1",
        method_options={
            "integrated_gradients": {"multiply_by_inputs": False, "n_steps": 4},
            "sscam": {"num_samples": 2, "perturbations_per_eval": 3, "generator": 5},
        },
    )
    ig, kwargs = build_method("integrated_gradients", model, config, 2)
    assert ig.method.multiplies_by_inputs is False  # the constructor got it
    assert kwargs["n_steps"] == 4
    _, kwargs = build_method("sscam", model, config, 2)
    assert kwargs == {"num_samples": 2, "perturbations_per_eval": 3, "generator": 5}
    _, kwargs = build_method(
        "scorecam", model, EvaluationConfig(methods=("scorecam",), layer="1"), 2
    )
    assert kwargs == {"perturbations_per_eval": 16}  # nothing added when no option is given


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"sscam": {"num_sample": 8}},
            "takes no option 'num_sample' (did you mean 'num_samples'?); its options",
        ),
        ({"sscam": {"target": 1}}, "'target' is set by --target"),
        ({"scorcam": {"max_channels": 2}}, "unknown method 'scorcam' (did you mean 'scorecam'?)"),
        ({"gradcam": {"relu_attributions": False}}, "'gradcam', which is not among the methods"),
        ({"sscam": {"num_samples": "eight"}}, "sscam.num_samples must be an int"),
        ({"sscam": {"num_samples": True}}, "sscam.num_samples must be an int"),
        ({"scorecam": {"channel_criterion": "varience"}}, "must be one of ['mean', 'variance']"),
        ({"scorecam": {"relu_attributions": 1}}, "must be true or false"),
    ],
)
def test_bad_options_are_refused_by_the_config(options, message):
    with pytest.raises(ValueError) as error:
        EvaluationConfig(methods=("scorecam", "sscam"), layer="x", method_options=options)
    assert message in str(error.value)
    if "num_sample'" in message:
        assert "num_samples" in str(error.value) and "std" in str(error.value)


def test_speed_fields_are_checked():
    with pytest.raises(ValueError, match="autocast"):
        EvaluationConfig(autocast="float64", layer="x")
    with pytest.raises(ValueError, match="chunk_size"):
        EvaluationConfig(chunk_size="big", layer="x")
    with pytest.raises(ValueError, match=r"not a torch\.compile backend"):
        EvaluationConfig(compile="no-such-backend", layer="x")


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("8", 8),
        ("0.1", 0.1),
        ("true", True),
        ("False", False),
        ("none", None),
        ("mean", "mean"),
        ("'8'", "8"),
        ("1e-3", 1e-3),
    ],
)
def test_option_values(text, value):
    assert _option_value(text) == value and type(_option_value(text)) is type(value)


@pytest.mark.parametrize(
    "option",
    [
        "sscam.num_sample=8",
        "scorecam.num_samples=8",
        "nosuch.x=1",
        "sscam.num_samples=eight",
        "scorecam.channel_criterion=varience",
    ],
)
@pytest.mark.parametrize("command", ["evaluate", "explain"])
def test_cli_refuses_bad_options_before_the_model_is_built(
    option, command, tmp_path, monkeypatch, capsys
):
    write_medmnist(tmp_path, "organmnist3d", (28, 28, 28), monkeypatch)
    np.save(tmp_path / "v.npy", np.zeros((8, 8, 8), np.float32))
    data = (
        ["--medmnist", "organmnist3d", "--root", str(tmp_path)]
        if command == "evaluate"
        else ["--input", str(tmp_path / "v.npy")]
    )
    BUILT.clear()
    FORWARDS.clear()
    code = main(
        [
            command,
            *data,
            *("--network", "tests.test_cli_options:recording_net", "--layer", "act"),
            *("--methods", "sscam", "--method-option", option, "--output", str(tmp_path / "o")),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2, err
    assert BUILT == [] and FORWARDS == []
    assert "sscam" in err or "nosuch" in err
    if "num_sample=" in option:
        assert "its options are:" in err and "num_samples" in err


def test_malformed_method_option_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["explain", "--input", "x", "--network", "n", "--method-option", "sscam=2"])
    assert exit_.value.code == 2
    assert "expected METHOD.KEYWORD=VALUE" in capsys.readouterr().err


@pytest.mark.filterwarnings("ignore:no --weights given")
def test_evaluate_autocast_and_options_round_trip(tmp_path, monkeypatch, capsys):
    """--autocast bfloat16 runs the perturbed forwards under bfloat16 autocast on the CPU,
    nothing is autocast without it; config.json gives the same config back."""
    write_medmnist(tmp_path, "organmnist3d", (28, 28, 28), monkeypatch)
    common = [
        "evaluate",
        "--medmnist",
        "organmnist3d",
        "--root",
        str(tmp_path),
        "--network",
        "tests.test_cli_options:recording_net",
        "--layer",
        "act",
        "--methods",
        "scorecam,sscam",
        "--metrics",
        "deletion",
        "--n-steps",
        "4",
        "--limit",
        "1",
        "--no-report",
        "--no-progress",
        "--method-option",
        "sscam.num_samples=2",
        "--method-option",
        "scorecam.max_channels=2",
    ]
    recorded = {}
    for name, extra in (("plain", []), ("bf16", ["--autocast", "bfloat16"])):
        FORWARDS.clear()
        run([*common, *extra, "--output", str(tmp_path / name)], capsys)
        recorded[name] = list(FORWARDS)
    assert all(dtype is None for _, dtype in recorded["plain"])
    autocast = [dtype for rows, dtype in recorded["bf16"] if dtype is not None]
    assert autocast and set(autocast) == {torch.bfloat16}

    saved = json.loads((tmp_path / "bf16" / "config.json").read_text())
    assert saved["method_options"] == {"sscam": {"num_samples": 2}, "scorecam": {"max_channels": 2}}
    assert saved["autocast"] == "bfloat16" and saved["compile"] is False
    assert saved["network"] == "tests.test_cli_options:recording_net"
    config = config_from_options(saved)
    assert config == EvaluationConfig(
        methods=("scorecam", "sscam"),
        layer="act",
        metrics=("deletion",),
        n_steps=4,
        method_options={"sscam": {"num_samples": 2}, "scorecam": {"max_channels": 2}},
        autocast="bfloat16",
    )
    plain = json.loads((tmp_path / "plain" / "config.json").read_text())
    assert plain["autocast"] is None and plain["chunk_size"] is None


def test_compare_methods_leaves_an_outer_perturbation_block_alone(tmp_path):
    seen = []

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.fc = nn.Conv2d(1, 2, 3, padding=1), nn.Linear(2, 2)

        def forward(self, x):
            seen.append(current_options().autocast)
            return self.fc(self.conv(x).mean((2, 3)))

    torch.manual_seed(0)
    net = Net().eval()
    data = [{"image": torch.rand(1, 6, 6), "label": 0}]
    config = EvaluationConfig(methods=("scorecam",), layer="conv", metrics=("deletion",), n_steps=2)
    with perturbation_options(autocast="bfloat16"):
        comparison = compare_methods(net, data, config, show_progress=False)
    assert set(seen) == {torch.bfloat16}
    seen.clear()
    compare_methods(
        net,
        data,
        EvaluationConfig(**{**config.__dict__, "autocast": "bfloat16"}),
        show_progress=False,
    )
    assert set(seen) == {torch.bfloat16}
    paths = write_outputs(comparison, tmp_path, report=False)
    assert isinstance(comparison, Comparison)
    assert config_from_options(json.loads(paths["config"].read_text())) == config


def test_explain_options_seed_and_class_agnostic_note(tmp_path, capsys):
    """SS-CAM with num_samples=2 and --seed 1 gives the Python API's map with num_samples=2
    and generator=1; Score-CAM with max_channels equals the API's approximate map, which
    differs from the exact one."""
    write_nifti_table(tmp_path, n=1)
    model, weights = save_weights(tmp_path, NET_3D % 2)
    out = tmp_path / "maps"
    captured = run(
        [
            "explain",
            "--network",
            NET_3D % 2,
            "--weights",
            str(weights),
            "--layer",
            "layer2",
            "--input",
            str(tmp_path / "v0.nii.gz"),
            "--methods",
            "sscam,scorecam,eigencam",
            "--method-option",
            "sscam.num_samples=2",
            "--method-option",
            "scorecam.max_channels=3",
            "--method-option",
            "scorecam.channel_criterion=mean",
            "--seed",
            "1",
            "--target",
            "1",
            "--output",
            str(out),
        ],
        capsys,
    )
    assert "explaining class 1; the maps of eigencam do not depend on the class" in captured.out
    x = load_volume(tmp_path / "v0.nii.gz").array[None]
    sscam = SSCAM(model, model.layer2)
    api = {
        seed: sscam.attribute(x, target=1, num_samples=2, generator=seed)[0, 0].numpy()
        for seed in (0, 1)
    }
    approx = (
        ScoreCAM(model, model.layer2)
        .attribute(x, target=1, max_channels=3, channel_criterion="mean")[0, 0]
        .numpy()
    )
    exact = ScoreCAM(model, model.layer2).attribute(x, target=1)[0, 0].numpy()
    cli = {m: np.asarray(nib.load(out / f"v0_{m}.nii.gz").dataobj) for m in ("sscam", "scorecam")}
    np.testing.assert_allclose(cli["sscam"], api[1], rtol=1e-5, atol=1e-7)
    assert not np.allclose(api[0], api[1])  # the seed matters
    np.testing.assert_allclose(cli["scorecam"], approx, rtol=1e-5, atol=1e-7)
    assert exact.max() > 0 and not np.allclose(approx, exact)  # the option changes the map

    captured = run(
        [
            "explain",
            "--network",
            NET_3D % 2,
            "--weights",
            str(weights),
            "--layer",
            "layer2",
            "--input",
            str(tmp_path / "v0.nii.gz"),
            "--methods",
            "fem",
            "--output",
            str(out),
        ],
        capsys,
    )
    assert "explaining class" not in captured.out
    assert "the maps of fem do not depend on the class" in captured.out
