"""report.html rendered in headless Chromium: the page, its figures and its viewer are there.

`make test` finds Chromium or installs Debian's `chromium` package (scripts/ensure-chromium.sh);
where it truly cannot be had the test skips and says how to install it, except on CI
(``CI`` set), where it fails.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from captum_medcam.visualization import ReportExample, write_report

np = pytest.importorskip("numpy")
Image = pytest.importorskip("PIL.Image")

_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
_HINT = (
    "Chromium is needed to render the report: install it with `sudo apt-get install chromium` "
    "(Debian/Ubuntu; `make test` does it when run as root) or set "
    "CAPTUM_MEDCAM_CHROMIUM=/path/to/chrome"
)
_WIDTH, _HEIGHT = 1280, 4600


def _chromium() -> str:
    given = os.environ.get("CAPTUM_MEDCAM_CHROMIUM")
    found = given or next((p for n in _NAMES if (p := shutil.which(n))), None)
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(_HINT)
        pytest.skip(_HINT)
    return found


def _run(browser: str, page: Path, profile: Path, *mode: str) -> str:
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        f"--window-size={_WIDTH},{_HEIGHT}",
        # time for the viewers to decode their PNG volumes before the shot is taken
        "--virtual-time-budget=30000",
    ]
    done = subprocess.run(
        [browser, *flags, *mode, page.as_uri()], capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def _report(tmp_path: Path) -> tuple[Path, dict, int, int]:
    """Two volumes with a lesion, three methods whose maps peak inside it, and curves."""
    g = torch.Generator().manual_seed(0)
    size, methods, examples, rows = 24, ("gradcam", "scorecam", "random"), [], []
    axis = torch.linspace(-1, 1, size)
    zz, yy, xx = torch.meshgrid(axis, axis, axis, indexing="ij")
    steps = torch.linspace(0, 1, 17, dtype=torch.float64)
    for k in range(2):
        c = (0.3 * k - 0.2, 0.1, -0.2)
        r2 = (zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2
        image = (0.3 * (zz**2 + yy**2 + xx**2 < 0.8) + 0.6 * (r2 < 0.04)).float()[None]
        image = image + 0.02 * torch.randn(image.shape, generator=g)
        maps = {
            "gradcam": torch.exp(-r2 / 0.1)[None],
            "scorecam": torch.exp(-r2 / 0.3)[None],
            "random": torch.rand(1, size, size, size, generator=g),
        }
        curves = {
            m: {"deletion": (1 - steps) ** (j + 1), "insertion": steps ** (j + 1)}
            for j, m in enumerate(methods)
        }
        examples.append(
            ReportExample(
                k,
                image,
                maps,
                target=1,
                label=1,
                prediction=1,
                mask=(r2 < 0.04)[None],
                curves=curves,
            )
        )
        for j, m in enumerate(methods):
            rows.append(
                {
                    "index": k,
                    "label": 1,
                    "prediction": 1,
                    "correct": True,
                    "target": 1,
                    "method": m,
                    "deletion": 0.2 * (j + 1) + 0.05 * k,
                    "insertion": 0.8 - 0.2 * j - 0.05 * k,
                }
            )
    summary = {
        m: {
            metric: {"mean": float(v.mean()), "std": float(v.std()), "n": 2}
            for metric in ("deletion", "insertion")
            for v in [torch.tensor([r[metric] for r in rows if r["method"] == m])]
        }
        for m in methods
    }
    path = write_report(tmp_path / "report", results=rows, summary=summary, examples=examples)
    return path, summary, len(examples), len(methods)


def _bands(rows_coloured: np.ndarray, gap: int = 6) -> list[tuple[int, int]]:
    """Runs of screenshot rows with coloured pixels, joined across gaps under ``gap``."""
    bands: list[list[int]] = []
    for y in np.flatnonzero(rows_coloured):
        if bands and y - bands[-1][1] <= gap:
            bands[-1][1] = y
        else:
            bands.append([y, y])
    return [(a, b) for a, b in bands if b - a >= 20]


@pytest.mark.slow
def test_report_renders_in_chromium(tmp_path):
    browser = _chromium()
    page, summary, n_examples, n_methods = _report(tmp_path)
    profile = tmp_path / "profile"

    # The DOM after the scripts ran: every viewer drew its planes, the tables are there.
    for _ in range(3):  # a busy machine may decode the PNG volumes after the budget ends
        dom = _run(browser, page, profile, "--dump-dom")
        states = re.findall(r'class="viewer"[^>]*data-state="(\w+)"(?: data-lit="(\d+)")?', dom)
        if [s for s, _ in states] == ["ready"] * n_examples:
            break
    assert [s for s, _ in states] == ["ready"] * n_examples, states
    assert all(int(lit) > 0 for _, lit in states)
    assert "mean ± std (n) per method; best in bold" in dom
    for m in summary:
        d = summary[m]["deletion"]
        assert f"{d['mean']:.4f} ± {d['std']:.4f} (2)" in dom

    # The screenshot: not blank, the title's text at the top, one coloured band per
    # slice figure (three jet-overlaid planes) and per viewer.
    shot = tmp_path / "report.png"
    for _ in range(3):  # as above: retake the shot if a viewer had not drawn yet
        _run(browser, page, profile, f"--screenshot={shot}")
        pixels = np.asarray(Image.open(shot).convert("RGB")).astype(np.int16)
        coloured = (pixels.max(2) - pixels.min(2)) > 80
        bands = _bands(coloured.sum(1) > 40)
        if len(bands) >= n_examples * (n_methods + 1):
            break
    assert pixels.shape[:2] == (_HEIGHT, _WIDTH)
    grey = pixels.mean(2)
    assert grey.std() > 20, "the screenshot is (nearly) blank"
    assert (grey[:80] < 100).sum() > 300, "no title text at the top of the page"
    assert coloured.mean() > 0.03
    assert len(bands) >= n_examples * (n_methods + 1), bands
    # within a slice figure's band the colour sits in three separate planes side by side
    first = coloured[bands[0][0] : bands[0][1] + 1].any(0)
    edges = np.flatnonzero(np.diff(first.astype(np.int8)) == 1)
    assert len(edges) >= 3, edges
