"""Every python block of README.md runs, in reading order, with deterministic output.

The blocks run as one script (later blocks use names of earlier ones, as a reader's
session would) in a fresh interpreter whose working directory is a temporary folder, so
the files they write land there. To keep the suite fast the test makes the networks
narrower and the volumes smaller (:data:`SMALLER`, each substitution checked to apply,
so a README edit cannot silently drop it). The MedMNIST block downloads nothing: the
test writes ``organmnist3d_64.npz`` in medmnist's format (its real keys) into medmnist's
default folder under a temporary ``HOME``, and tells medmnist the file is there.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

README = Path(__file__).parents[1] / "README.md"
FENCE = re.compile(r"^```(\S*)\s*$")

#: (pattern, replacement, how many times it must apply): smaller networks and volumes.
SMALLER = [
    (
        r"(resnet1[08]\(spatial_dims=3, n_input_channels=1, num_classes=\d+)\)",
        r"\1, widen_factor=0.0625)",
        5,
    ),
    (  # the metrics block's network (the localization block's is cheap already)
        r"widen_factor=0\.25\)(\.eval\(\)\nvolume = torch\.randn\(1, )",
        r"widen_factor=0.0625)\1",
        1,
    ),
    (r"torch\.randn\((\d), 1, 64, 64, 64\)", r"torch.randn(\1, 1, 32, 32, 32)", 2),
    (r"perturbations_per_eval=16", "perturbations_per_eval=64", 1),
    (r"pixdim=\(2\.5, 2\.5, 2\.5\)", "pixdim=(5.0, 5.0, 5.0)", 1),
    (r"size=64, download=True", "size=28, download=True", 1),
    (r"n_steps=129", "n_steps=16", 1),
    (r"region_size=8", "region_size=16", 1),
    (r"\{\"n_steps\": 8\}", '{"n_steps": 2}', 1),
]

#: Run before the blocks: medmnist finds the file written by the test, offline.
PRELUDE = """
import medmnist.dataset, medmnist.info
medmnist.info.INFO["organmnist3d"]["n_samples"] = {"train": 1, "val": 1, "test": 1}
medmnist.dataset.MedMNIST.download = lambda self: None  # the .npz is already in the root
"""


def readme_blocks() -> list[tuple[int, str, str]]:
    """``(line, language, code)`` of every fenced block; every fence must be closed."""
    blocks, open_at, language, lines = [], None, "", []
    for number, line in enumerate(README.read_text().splitlines(), 1):
        match = FENCE.match(line)
        if match and open_at is None:
            assert match.group(1), f"README.md:{number}: a fence opens without a language"
            open_at, language, lines = number, match.group(1), []
        elif match:
            assert not match.group(1), (
                f"README.md:{number}: a fence opens inside the block opened at line {open_at}; "
                "close that block first"
            )
            blocks.append((open_at, language, "\n".join(lines)))
            open_at = None
        elif open_at is not None:
            assert not line.startswith("#" * 2 + " "), (
                f"README.md:{number}: heading inside the code block opened at line {open_at}"
            )
            lines.append(line)
    assert open_at is None, f"README.md: the block opened at line {open_at} is never closed"
    return blocks


def smaller(code: str) -> str:
    for pattern, replacement, count in SMALLER:
        code, n = re.subn(pattern, replacement, code)
        assert n == count, f"{pattern!r} applied {n} times, expected {count}: update SMALLER"
    return code


def test_fences_are_closed_and_blocks_are_python_or_shell():
    languages = [language for _, language, _ in readme_blocks()]
    assert set(languages) <= {"python", "bash", "bibtex"}  # bibtex: "How to cite"
    assert languages.count("python") >= 9


def write_medmnist(root: Path) -> None:
    """organmnist3d.npz (size 28) with medmnist's keys: one sample per split."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in {"train": 1, "val": 1, "test": 1}.items():
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, 28, 28, 28), dtype=np.uint8)
        arrays[f"{split}_labels"] = rng.integers(0, 11, (n, 1), dtype=np.uint8)
    root.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(root / "organmnist3d.npz", **arrays)


def start_readme(folder: Path) -> subprocess.Popen[str]:
    """Start the README's python blocks as one script in ``folder``."""
    folder.mkdir()
    home = folder / "home"
    write_medmnist(home / ".medmnist")
    code = "\n\n".join(
        f"print('--- README.md:{line}', flush=True)\n{block}"
        for line, language, block in readme_blocks()
        if language == "python"
    )
    script = folder / "readme.py"
    script.write_text(PRELUDE + "\n" + smaller(code))
    env = {
        **os.environ,
        "HOME": str(home),
        "MPLBACKEND": "Agg",
        "PYTHONPATH": str(README.parent),
    }
    env.pop("WORLD_SIZE", None)
    return subprocess.Popen(
        [sys.executable, str(script)],
        cwd=folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def output_of(process: subprocess.Popen[str]) -> str:
    stdout, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr[-4000:]
    # MONAI's logger (SaveImaged: "writing: ...") stamps its lines with the time of day
    return re.sub(r"(?m)^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ INFO .*\n", "", stdout)


@pytest.mark.slow
def test_every_python_block_runs_with_deterministic_output(tmp_path):
    """Two runs side by side (each a fresh interpreter) print the same."""
    runs = [start_readme(tmp_path / "first"), start_readme(tmp_path / "second")]
    first, second = (output_of(run) for run in runs)
    assert first.count("--- README.md:") == sum(
        language == "python" for _, language, _ in readme_blocks()
    )
    assert "torch.Size([2, 1, 32, 32, 32])" in first
    assert "1 samples" in first  # the MedMNIST block evaluated the local test split
    assert "nan" not in first.lower()
    for written in ["randomization.png", "curves.png", "maps/anatomical_map.nii.gz"]:
        assert (tmp_path / "first" / written).is_file(), written
    assert second == first
