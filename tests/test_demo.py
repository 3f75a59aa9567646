"""The demo behind `make demo`, in its quick mode: brain volumes with lesions, a trained CNN,
six methods compared by the evaluate pipeline."""

from __future__ import annotations

import csv
import json

import nibabel as nib
import numpy as np
import pytest
import torch

from captum_medcam._demo import CLASSES, brain_lesions
from captum_medcam.cli import main

METHODS = ["scorecam", "gradcam", "gradcampp", "crm", "integrated_gradients", "random"]
COLUMNS = ["deletion_auc", "insertion_auc", "aopc", "pointing_game", "energy_pointing_game", "iou"]


def test_brain_lesions_have_true_masks():
    samples, affine = brain_lesions(6, seed=3, shape=(16, 20, 16))
    again, _ = brain_lesions(6, seed=3, shape=(16, 20, 16))
    assert affine.shape == (4, 4) and np.linalg.det(affine[:3, :3]) != 0
    for i, s in enumerate(samples):
        assert s["image"].shape == (1, 16, 20, 16) and s["mask"].dtype == torch.bool
        assert int(s["label"]) == i % 3
        assert bool(s["mask"].any()) == (i % 3 != 0)  # healthy volumes have no lesion
        assert torch.equal(s["image"], again[i]["image"])  # reproducible from the seed
    tumour, infarct = samples[1], samples[2]
    # a tumour is bright, an infarct dark, against the rest of the brain
    assert tumour["image"][tumour["mask"]].mean() > 0.85
    assert infarct["image"][infarct["mask"]].mean() < 0.1


@pytest.mark.slow
def test_demo_quick_runs_the_evaluate_pipeline(tmp_path, capsys):
    assert main(["demo", "--quick", "--output", str(tmp_path), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "captum-medcam evaluate --data" in printed  # the equivalent command line
    with open(tmp_path / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 * len(METHODS)
    assert [r["method"] for r in rows[: len(METHODS)]] == METHODS
    assert list(rows[0])[6:] == COLUMNS
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert list(summary) == METHODS
    for method in METHODS:
        assert summary[method]["deletion_auc"]["n"] == 3
        assert summary[method]["pointing_game"]["n"] == 2  # the healthy volume has no mask
    # the report (issue12-report's write_report) with every number of summary.json
    assert (tmp_path / "report.html").stat().st_size > 10_000
    report = json.loads((tmp_path / "report.json").read_text())
    assert "summary" in report
    assert report["summary"]["gradcam"]["deletion_auc"]["mean"] == pytest.approx(
        summary["gradcam"]["deletion_auc"]["mean"]
    )
    # the maps are NIfTI in each volume's space
    with open(tmp_path / "data" / "table.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [int(r["label"]) for r in table] == [1, 2, 0]  # lesions first, for the report
    image = nib.load(tmp_path / "data" / table[0]["image"])
    stem = table[0]["image"].removesuffix(".nii.gz")
    assert CLASSES[1] in stem
    saved = nib.load(tmp_path / "maps" / f"00000_{stem}_gradcam.nii.gz")
    assert saved.shape == image.shape == (16, 20, 16)
    np.testing.assert_allclose(saved.affine, image.affine)
    assert not np.allclose(saved.affine, np.eye(4))
