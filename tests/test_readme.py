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
    # Every fence names its language, so no code block escapes the run below unseen; the
    # citation (bibtex) is the one block that is not code.
    assert set(languages) <= {"python", "bash", "bibtex"}
    assert languages.count("bibtex") <= 1
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


def readme_table(header_start: str) -> list[dict[str, str]]:
    """The rows of the README table whose header row starts with ``header_start``."""
    lines = README.read_text().splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith(header_start)]
    assert len(starts) == 1, f"README.md: {len(starts)} tables start with {header_start!r}"
    header = [cell.strip() for cell in lines[starts[0]].strip("|").split("|")]
    rows = []
    for line in lines[starts[0] + 2 :]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        assert len(cells) == len(header), f"README.md: {line!r} has {len(cells)} cells"
        rows.append(dict(zip(header, cells, strict=True)))
    return rows


def code_names(cell: str) -> set[str]:
    return set(re.findall(r"`([^`]+)`", cell))


def test_method_table_lists_every_method_class_and_cli_name():
    """The Methods table names every exported Attribution class and every `--methods` name,
    and nothing that does not exist, so it cannot drift from the package."""
    import captum.attr
    from captum.attr import Attribution

    import captum_medcam
    from captum_medcam.pipeline import METHODS

    rows = readme_table("| method and paper |")
    cells = (code_names(r["N-D class"] + r["3D entry point"]) for r in rows)
    classes = {name for names in cells for name in names if name[0].isupper()}  # not `exp`
    exported = {
        name
        for name in captum_medcam.__all__
        if isinstance(getattr(captum_medcam, name), type)
        and issubclass(getattr(captum_medcam, name), Attribution)
    }
    assert exported - classes == set(), "exported but not in the README's Methods table"
    captum_names = {name for name in classes - exported if hasattr(captum.attr, name)}
    assert classes - exported - captum_names == set(), "in the table, but not a class"
    cli = set().union(*(code_names(r["`--methods`"]) for r in rows))
    cli -= {"--fc-layer"}  # named in the cells that need it
    assert cli == set(METHODS), f"table vs METHODS: {sorted(cli ^ set(METHODS))}"
    for row in rows:  # each row is one method: at most one command-line name
        assert len(code_names(row["`--methods`"]) - {"--fc-layer"}) <= 1, row
    fc = [r for r in rows if "--fc-layer" in r["`--methods`"]]
    assert {next(iter(code_names(r["`--methods`"]) - {"--fc-layer"})) for r in fc} == {"cam", "crm"}


def test_metric_table_lists_every_cli_name_and_real_functions():
    """The Metrics table names every `--metrics` name (with its results.csv column) and only
    functions that captum_medcam.metrics exports."""
    import captum_medcam.metrics
    from captum_medcam.pipeline import METRICS

    rows = readme_table("| metric and paper |")
    functions = set().union(*(code_names(r["functions"]) for r in rows))
    assert functions - set(captum_medcam.metrics.__all__) == set()
    names = set().union(*(code_names(r["`--metrics`"]) for r in rows))
    columns = {column for name, column in METRICS.items() if column != name}
    assert names - columns == set(METRICS), (
        f"table vs METRICS: {sorted((names - columns) ^ set(METRICS))}"
    )
    for name, column in METRICS.items():
        if column != name:  # the column is given beside the name
            (cell,) = [r["`--metrics`"] for r in rows if f"`{name}`" in r["`--metrics`"]]
            assert f"`{column}`" in cell
