"""The demo behind `make demo`, on a small volume and a short training run."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from captum_medcam.cli import main


@pytest.mark.slow
def test_demo_writes_figure_and_nifti(tmp_path, capsys):
    assert main(["demo", "--output", str(tmp_path), "--size", "16", "--steps", "3"]) == 0
    printed = capsys.readouterr().out
    for name in ("scorecam_slices.png", "scorecam_map.nii.gz", "image.nii.gz"):
        assert (tmp_path / name).stat().st_size > 0
        assert name in printed
    saved = nib.load(tmp_path / "scorecam_map.nii.gz")
    image = nib.load(tmp_path / "image.nii.gz")
    assert saved.shape == image.shape == (16, 16, 16)
    np.testing.assert_allclose(saved.affine, np.diag([1.5, 1.5, 1.5, 1.0]))
    assert np.isfinite(saved.get_fdata()).all() and saved.get_fdata().min() >= 0
