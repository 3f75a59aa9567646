"""The public surface and a light import."""

from __future__ import annotations

import subprocess
import sys

import captum_medcam


def test_public_names_are_exported():
    for name in captum_medcam.__all__:
        assert getattr(captum_medcam, name) is not None
    assert captum_medcam.__version__.count(".") >= 2


def test_import_does_not_load_optional_dependencies():
    code = (
        "import sys, captum_medcam; "
        "print(sorted(m for m in ('plotly', 'medmnist', 'ignite', 'nibabel') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
