"""The HTML report: its files, its numbers, and its checks on the input."""

from __future__ import annotations

import json
import math
import re

import pytest
import torch

from captum_medcam.visualization import ReportExample, write_report

pytest.importorskip("matplotlib")


def _case(spatial: tuple[int, ...], channels: int = 1, n_examples: int = 2):
    """Examples with a lesion mask, maps peaking at known voxels, and closed-form curves."""
    g = torch.Generator().manual_seed(0)
    methods = ("gradcam", "scorecam", "random")
    examples, rows = [], []
    steps = torch.linspace(0, 1, 9, dtype=torch.float64)
    for k in range(n_examples):
        image = torch.rand(channels, *spatial, generator=g)
        peak = tuple(2 + k + a for a in range(len(spatial)))
        mask = torch.zeros(1, *spatial, dtype=torch.bool)
        mask[(0, *(slice(p - 1, p + 2) for p in peak))] = True
        maps = {}
        for j, name in enumerate(methods):
            m = torch.rand(1, *spatial, generator=g) * 0.5
            m[(0, *peak)] = 1.0 + j
            maps[name] = m
        curves = {
            "gradcam": {"deletion": 1 - steps, "insertion": steps},
            "scorecam": {"deletion": (1 - steps) ** 2},
        }
        examples.append(
            ReportExample(
                index=10 + k,
                image=image,
                maps=maps,
                target=1,
                label=1,
                prediction=1 - k % 2,
                mask=mask,
                curves=curves,
                class_names=["normal", "lesion"],
            )
        )
        for j, name in enumerate(methods):
            rows.append(
                {
                    "index": 10 + k,
                    "label": 1,
                    "prediction": 1 - k % 2,
                    "correct": k % 2 == 0,
                    "target": 1,
                    "method": name,
                    "deletion": 0.1 * (j + 1) + 0.01 * k,
                    "pointing_game": float(j != 2),
                }
            )
    summary = {
        name: {
            metric: {
                "mean": sum(r[metric] for r in rows if r["method"] == name) / n_examples,
                "std": 0.01,
                "n": n_examples,
            }
            for metric in ("deletion", "pointing_game")
        }
        for name in methods
    }
    return examples, rows, summary


@pytest.mark.parametrize(("spatial", "channels"), [((12, 10, 8), 1), ((16, 12), 3), ((16, 12), 1)])
def test_report_files_and_numbers(tmp_path, spatial, channels):
    examples, rows, summary = _case(spatial, channels)
    before = [e.maps["gradcam"].clone() for e in examples]
    path = write_report(
        tmp_path / "out",
        results=rows,
        summary=summary,
        examples=examples,
        title="A <test> report",
        config={"model": "tiny", "methods": ["gradcam", "scorecam", "random"]},
    )
    assert path == tmp_path / "out" / "report.html"
    page = path.read_text(encoding="utf-8")
    # offline: nothing is fetched, every figure is embedded
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
    assert "<link" not in page and "<script src" not in page
    figures = sorted(p.name for p in (tmp_path / "out" / "report_figures").iterdir())
    expected = {"summary.png"} | {
        f"sample{e.index}_{m}.png" for e in examples for m in ("gradcam", "scorecam", "random")
    }
    expected |= {f"sample{e.index}_curves.png" for e in examples}
    assert set(figures) == expected
    for name in figures:
        assert (tmp_path / "out" / "report_figures" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert page.count('<img class="figure"') == len(expected)
    assert page.count('class="viewer"') == len(examples)
    assert "A &lt;test&gt; report" in page  # escaped
    # the comparison table: mean ± std (n), the best deletion (lowest) in bold
    best = summary["gradcam"]["deletion"]["mean"]
    assert f"<b>{best:.4f} ± 0.0100 (2)</b>" in page
    assert f"{summary['random']['deletion']['mean']:.4f} ± 0.0100 (2)" in page

    numbers = json.loads((tmp_path / "out" / "report.json").read_text())
    assert numbers["summary"] == summary
    assert numbers["results"] == rows
    assert numbers["methods"] == ["gradcam", "scorecam", "random"]
    assert numbers["metrics"] == ["deletion", "pointing_game"]
    assert numbers["config"]["model"] == "tiny"
    for entry, ex in zip(numbers["examples"], examples, strict=True):
        for j, name in enumerate(("gradcam", "scorecam", "random")):
            peak = list(2 + (entry["index"] - 10) + a for a in range(len(spatial)))
            assert entry["peaks"][name] == peak
            assert entry["map_range"][name][1] == pytest.approx(1.0 + j)
        curves = entry["curves"]
        assert curves["gradcam"]["deletion_auc"] == pytest.approx(0.5)
        assert curves["gradcam"]["insertion_auc"] == pytest.approx(0.5)
        # trapezoid of (1 - x)^2 on 9 points: 1/3 + 1/(6 * 8^2)
        assert curves["scorecam"]["deletion_auc"] == pytest.approx(1 / 3 + 1 / 384)
        assert "insertion" not in curves["scorecam"]
        assert entry["mask_voxels"] == int(ex.mask.sum())
    for ex, m in zip(examples, before, strict=True):
        assert torch.equal(ex.maps["gradcam"], m)


def test_report_json_has_no_nan_and_tensor_values_are_plain(tmp_path):
    examples, rows, summary = _case((8, 8, 8), n_examples=1)
    rows[0]["deletion"] = float("nan")
    rows[1]["deletion"] = torch.tensor(0.25)
    summary["gradcam"]["deletion"]["std"] = math.nan
    write_report(tmp_path, results=rows, summary=summary, examples=examples)
    text = (tmp_path / "report.json").read_text()
    numbers = json.loads(text)
    assert "NaN" not in text
    assert numbers["results"][0]["deletion"] is None
    assert numbers["results"][1]["deletion"] == 0.25
    assert numbers["summary"]["gradcam"]["deletion"]["std"] is None


def test_report_without_examples_or_curves(tmp_path):
    _, rows, summary = _case((8, 8, 8))
    path = write_report(tmp_path, results=rows, summary=summary)
    page = path.read_text()
    assert "No examples were given." in page
    assert [p.name for p in (tmp_path / "report_figures").iterdir()] == ["summary.png"]


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        (
            lambda ex, r, s: ex[0].maps.update(bad=torch.rand(1, 4, 4, 4)),
            ValueError,
            "maps\\['bad'\\]",
        ),
        (lambda ex, r, s: setattr(ex[0], "mask", torch.ones(1, 3, 3, 3)), ValueError, "mask"),
        (lambda ex, r, s: setattr(ex[0], "image", torch.rand(8, 8)), ValueError, "image"),
        (lambda ex, r, s: setattr(ex[0], "maps", {}), ValueError, "non-empty"),
        (lambda ex, r, s: ex[0].curves.update(gradcam={"aopc": torch.rand(5)}), ValueError, "aopc"),
        (
            lambda ex, r, s: ex[0].curves.update(gradcam={"deletion": torch.rand(1)}),
            ValueError,
            ">= 2",
        ),
        (lambda ex, r, s: r[0].pop("method"), ValueError, "'method'"),
        (lambda ex, r, s: s["gradcam"]["deletion"].pop("n"), ValueError, "'n'"),
        (lambda ex, r, s: ex.append("not an example"), TypeError, "examples\\[1\\]"),
        (lambda ex, r, s: setattr(ex[0], "image", [[1.0]]), TypeError, "torch.Tensor"),
    ],
)
def test_report_rejects_bad_input(tmp_path, change, error, match):
    examples, rows, summary = _case((8, 8, 8), n_examples=1)
    change(examples, rows, summary)
    with pytest.raises(error, match=match):
        write_report(tmp_path, results=rows, summary=summary, examples=examples)


def test_report_rejects_a_mapping_as_results(tmp_path):
    with pytest.raises(TypeError, match="results must be a sequence"):
        write_report(tmp_path, results={"method": "x"}, summary={})  # type: ignore[arg-type]


def test_report_names_classes_and_multi_label_vectors(tmp_path):
    examples, rows, summary = _case((12, 10), n_examples=1)
    examples[0].label = torch.tensor([0, 1, 1])
    examples[0].class_names = ["effusion", "mass", "nodule"]
    examples[0].prediction = 2
    page = write_report(tmp_path, results=rows, summary=summary, examples=examples).read_text()
    assert "target 1 (mass) · label mass, nodule · prediction 2 (nodule)" in page
    numbers = json.loads((tmp_path / "report.json").read_text())
    assert numbers["examples"][0]["label"] == [0, 1, 1]
    examples[0].label = torch.tensor([2])  # MedMNIST keeps a class index as (1,)
    page = write_report(tmp_path, results=rows, summary=summary, examples=examples).read_text()
    assert "label 2 (nodule)" in page
