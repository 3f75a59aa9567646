"""Slice views are named from the image's orientation (sagittal, coronal, axial) when it is
known, by array axis when it is not: on nibabel's ``anatomical.nii`` loaded by nibabel and by
MONAI, on a reoriented copy, in ``plot_slices``, the HTML report and the pipeline."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

pytest.importorskip("matplotlib")
nib = pytest.importorskip("nibabel")

from nibabel.testing import data_path  # noqa: E402

from captum_medcam.visualization import ReportExample, plot_slices, write_report  # noqa: E402
from captum_medcam.visualization._orientation import axis_codes, view_names  # noqa: E402

ANATOMICAL = os.path.join(data_path, "anatomical.nii")  # LAS, (33, 41, 25)
RAS_VIEWS = ["sagittal", "coronal", "axial"]
AXIS_VIEWS = ["axis 0 (D)", "axis 1 (H)", "axis 2 (W)"]


def _titles(fig):
    return [ax.get_title().rsplit(" slice ", 1)[0] for ax in fig.axes[:3]]


def _panels(fig):
    """View name -> the grey slice drawn in that panel."""
    return {
        ax.get_title().rsplit(" slice ", 1)[0]: np.asarray(ax.get_images()[0].get_array())
        for ax in fig.axes[:3]
    }


def _same_up_to_flips(a, b):
    """``b`` is ``a`` or its transpose, each axis possibly reversed (the in-plane layout of a
    view depends on the voxel order; its content does not)."""
    for m in (a, a.T):
        for f0 in (slice(None), slice(None, None, -1)):
            for f1 in (slice(None), slice(None, None, -1)):
                if m[f0, f1].shape == b.shape and np.array_equal(m[f0, f1], b):
                    return True
    return False


def _monai(axcodes=None):
    from monai.transforms import EnsureChannelFirst, LoadImage, Orientation

    x = EnsureChannelFirst()(LoadImage(image_only=True)(ANATOMICAL))
    return x if axcodes is None else Orientation(axcodes=axcodes)(x)


def test_axis_codes_match_nibabel_also_for_oblique_and_permuted_affines():
    g = np.random.default_rng(0)
    affines = [nib.load(ANATOMICAL).affine, np.diag([-1.0, -1.0, 1.0, 1.0])]
    for _ in range(20):
        q, _ = np.linalg.qr(g.normal(size=(3, 3)))  # a random rotation, often very oblique
        a = np.eye(4)
        a[:3, :3] = q * g.uniform(0.5, 3.0, size=3)
        a[:3, 3] = g.normal(size=3) * 50
        affines.append(a)
    for a in affines:
        assert axis_codes(a) == nib.aff2axcodes(a)
        assert axis_codes(torch.from_numpy(a)) == nib.aff2axcodes(a)


def test_anatomical_nii_loaded_by_nibabel_and_by_monai_and_reoriented():
    img = nib.load(ANATOMICAL)
    volume = torch.from_numpy(np.asarray(img.dataobj, dtype=np.float32))
    center = (16, 20, 12)
    by_nibabel = plot_slices(volume, volume, center=center, affine=img.affine)
    assert _titles(by_nibabel) == RAS_VIEWS

    x = _monai()  # (1, 33, 41, 25) MetaTensor with the file's affine
    by_monai = plot_slices(x, x, center=center)
    assert _titles(by_monai) == RAS_VIEWS

    # the same image with its voxel axes reordered to S, P, L: the names follow the anatomy
    y = _monai("SPL")
    assert tuple(y.shape[1:]) == (25, 41, 33)
    moved = (center[2], 40 - center[1], center[0])  # the same voxel in the SPL grid
    reoriented = plot_slices(y, y, center=moved)
    assert _titles(reoriented) == ["axial", "coronal", "sagittal"]
    before, after = _panels(by_monai), _panels(reoriented)
    for view in RAS_VIEWS:  # each named view shows the same plane of the head
        assert _same_up_to_flips(before[view], after[view]), view
    assert not _same_up_to_flips(before["sagittal"], after["axial"])

    # a transposed array with the matching affine (columns permuted), as numpy users make it
    permuted = img.affine[:, [2, 0, 1, 3]]
    t = volume.permute(2, 0, 1)
    assert _titles(plot_slices(t, t, center=(12, 16, 20), affine=permuted)) == [
        "axial",
        "sagittal",
        "coronal",
    ]


def test_unknown_orientation_is_named_by_axis_and_an_explicit_one_is_used():
    volume = torch.rand(6, 7, 8, generator=torch.Generator().manual_seed(0))
    assert _titles(plot_slices(volume, volume)) == AXIS_VIEWS
    assert _titles(plot_slices(volume, volume, orientation="SPL")) == [
        "axial",
        "coronal",
        "sagittal",
    ]
    assert _titles(plot_slices(volume, volume, orientation="las")) == RAS_VIEWS
    # a batch of MetaTensors has one affine per sample: not this one volume's
    from monai.data import MetaTensor

    batch = MetaTensor(
        volume[None, None].repeat(2, 1, 1, 1, 1), affine=torch.eye(4).repeat(2, 1, 1)
    )
    assert view_names(like=batch) == tuple(AXIS_VIEWS)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"orientation": "RAA"}, ValueError, "one each of L/R, A/P and S/I"),
        ({"orientation": "RA"}, ValueError, "3 axis codes"),
        ({"orientation": 3}, TypeError, "orientation"),
        ({"affine": np.eye(3)}, ValueError, r"\(4, 4\)"),
        ({"affine": np.diag([1.0, 0.0, 1.0, 1.0])}, ValueError, "singular"),
        ({"affine": np.diag([1.0, np.nan, 1.0, 1.0])}, ValueError, "finite"),
        ({"affine": np.eye(4), "orientation": "RAS"}, ValueError, "not both"),
    ],
)
def test_bad_orientation_is_refused(kwargs, error, match):
    volume = torch.rand(4, 4, 4)
    with pytest.raises(error, match=match):
        plot_slices(volume, volume, **kwargs)


def test_report_names_views_from_the_affine(tmp_path):
    x = _monai("SPL")[:, ::3, ::4, ::3]  # a small MetaTensor, its affine updated by MONAI
    plain = torch.rand(1, 6, 7, 8, generator=torch.Generator().manual_seed(1))
    examples = [
        ReportExample(index=0, image=x, maps={"m": x.as_tensor() * 1.0}, target=0),
        ReportExample(
            index=1, image=plain, maps={"m": plain}, target=0, affine=nib.load(ANATOMICAL).affine
        ),
        ReportExample(index=2, image=plain, maps={"m": plain}, target=0),
        ReportExample(index=3, image=plain, maps={"m": plain}, target=0, orientation="IRP"),
    ]
    rows = [{"index": e.index, "method": "m", "deletion": 0.5} for e in examples]
    summary = {"m": {"deletion": {"mean": 0.5, "std": 0.0, "n": 4}}}
    path = write_report(tmp_path, results=rows, summary=summary, examples=examples)
    numbers = json.loads((tmp_path / "report.json").read_text())
    assert [e["views"] for e in numbers["examples"]] == [
        ["axial", "coronal", "sagittal"],
        RAS_VIEWS,
        AXIS_VIEWS,
        ["axial", "sagittal", "coronal"],
    ]
    page = path.read_text()
    viewers = page.split('<div class="viewer"')[1:]
    assert len(viewers) == 4
    captions = [v.split("<figcaption>")[1:4] for v in viewers]
    assert [[c.split("<")[0] for c in cap] for cap in captions][1] == RAS_VIEWS
    assert [c.split("<")[0] for c in captions[2]] == AXIS_VIEWS
    assert "axial" not in viewers[2] and "sagittal" not in viewers[2]
    with pytest.raises(ValueError, match=r"examples\[0\].*one each of L/R"):
        write_report(
            tmp_path,
            results=rows,
            summary=summary,
            examples=[
                ReportExample(index=0, image=plain, maps={"m": plain}, target=0, orientation="LRS")
            ],
        )


def test_evaluation_keeps_each_samples_affine_for_the_report(tmp_path):
    """A MONAI batch with one affine per sample (list_data_collate) reaches the report's
    examples; one affine shared by a batch of several does not."""
    from monai.data import DataLoader, MetaTensor

    from captum_medcam.attr import GradCAM3D
    from captum_medcam.evaluation import evaluate_dataset
    from tests.conftest import small_cnn

    model = small_cnn(3, in_channels=1)
    ras, spl = torch.eye(4, dtype=torch.float64), torch.zeros(4, 4, dtype=torch.float64)
    spl[2, 0], spl[1, 1], spl[0, 2], spl[3, 3] = 1, -1, -1, 1  # axis 0 S, axis 1 P, axis 2 L
    g = torch.Generator().manual_seed(0)
    data = [
        {"image": MetaTensor(torch.rand(1, 8, 8, 8, generator=g, dtype=torch.float64), affine=a)}
        for a in (ras, spl, spl)
    ]
    seen = []
    metrics = {"peak": lambda model, x, maps, target: maps.flatten(1).amax(1)}
    evaluate_dataset(
        model,
        GradCAM3D(model, model[4]),
        DataLoader(data, batch_size=3),
        metrics,
        show_progress=False,
        on_batch=seen.append,
    )
    affines = seen[0].affines
    assert affines is not None and affines.shape == (3, 4, 4)
    assert [view_names(a) for a in affines] == [
        tuple(RAS_VIEWS),
        ("axial", "coronal", "sagittal"),
        ("axial", "coronal", "sagittal"),
    ]
    # through compare_methods and write_outputs into the report
    from captum_medcam.pipeline import EvaluationConfig, compare_methods, write_outputs

    config = EvaluationConfig(
        methods=("gradcam",), layer="4", metrics=("deletion",), n_steps=2, examples=3
    )
    comparison = compare_methods(model, DataLoader(data, batch_size=3), config, show_progress=False)
    write_outputs(comparison, tmp_path)
    numbers = json.loads((tmp_path / "report.json").read_text())
    assert [e["views"] for e in numbers["examples"]] == [
        RAS_VIEWS,
        ["axial", "coronal", "sagittal"],
        ["axial", "coronal", "sagittal"],
    ]
    # a batch that carries one affine for all its samples (torch's default collate of some
    # MONAI data) names no sample's views, unless it is a batch of one
    from captum_medcam.evaluation import _batch_affines

    shared = MetaTensor(torch.rand(2, 1, 4, 4, 4), affine=spl)
    assert _batch_affines(shared, 2) is None
    assert torch.equal(_batch_affines(shared[:1], 1)[0], spl)
    assert _batch_affines(torch.rand(1, 1, 4, 4, 4), 1) is None
