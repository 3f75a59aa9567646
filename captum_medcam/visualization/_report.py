"""A self-contained HTML report of a data-set evaluation: numbers, slices, curves, a viewer.

One file, ``report.html``, opens offline: every figure is an embedded base64 PNG and the
interactive view is a small slice scroller written in plain JavaScript. The scroller gets
each volume as an 8-bit PNG mosaic of its slices, which the browser decodes natively: a
smooth 64^3 CAM takes 40-75 kB this way (a voxel-noise map 350 kB), where plotly would add
its 4.8 MB library and a JSON array of 262,144 numbers per volume and method. Four volumes
and five methods make a 0.9 MB page at 32^3 and 4.8 MB at 64^3. Beside it,
``report_figures/*.png`` holds the same figures and ``report.json`` every number the page
shows.

matplotlib (and Pillow, which it requires) are imported inside the functions.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from captum_medcam.visualization._orientation import view_names

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["ReportExample", "write_report"]

_KINDS = ("deletion", "insertion")
_ROW_KEYS = ("index", "label", "prediction", "correct", "target", "method")


@dataclass
class ReportExample:
    """One sample shown in the report.

    Attributes:
        index: the sample's index in the data set.
        image: ``(C, *S)``, the model's input, with ``S = (H, W)`` or ``(D, H, W)``.
        maps: method name -> ``(1, *S)`` map at input resolution.
        target: the class explained.
        label: an int, a multi-label vector, or None.
        prediction: the predicted class, or None.
        mask: ``(1, *S)`` boolean ground truth, outlined on the slices, or None.
        curves: method -> ``{"deletion": (n_steps + 1,), "insertion": (n_steps + 1,)}``
            (either may be missing), the example's curves on ``x = linspace(0, 1, n_steps + 1)``.
        class_names: names of the classes, to label target, label and prediction.
        affine: the volume's ``(4, 4)`` voxel-to-world matrix, or None. It names the slice
            views: a slice across the voxel axis that runs left-right is "sagittal",
            anterior-posterior "coronal", superior-inferior "axial". Without it (and without
            ``orientation``) the affine of a MONAI ``MetaTensor`` ``image`` is used; a plain
            tensor, e.g. a MedMNIST volume, has its views named by array axis ("axis 0 (D)",
            "axis 1 (H)", "axis 2 (W)").
        orientation: instead of ``affine``, the axis codes of the voxel axes, e.g. ``"RAS"``.
    """

    index: int
    image: Tensor
    maps: dict[str, Tensor]
    target: int
    label: Any = None
    prediction: int | None = None
    mask: Tensor | None = None
    curves: dict[str, dict[str, Tensor]] = field(default_factory=dict)
    class_names: Sequence[str] | None = None
    affine: Any = None
    orientation: str | None = None


@dataclass
class _Checked:
    """A ReportExample converted for drawing: CPU tensors, spatial shapes checked."""

    index: int
    image: Tensor  # (*S) grey or (H, W, 3) RGB, in [0, 1]
    rgb: bool
    maps: dict[str, Tensor]  # (*S) float64
    mask: Tensor | None  # (*S) bool
    curves: dict[str, dict[str, Tensor]]  # 1-D float64
    peaks: dict[str, tuple[int, ...]]
    shape: tuple[int, ...]  # S
    source: ReportExample
    views: tuple[str, ...]  # names of the slices across axes 0, 1, 2 ("image" in 2D)


def write_report(
    output_dir: str | os.PathLike[str],
    *,
    results: Sequence[Mapping[str, Any]],
    summary: Mapping[str, Mapping[str, Mapping[str, float]]],
    examples: Sequence[ReportExample] = (),
    title: str = "captum_medcam report",
    config: Mapping[str, Any] | None = None,
) -> Path:
    """Write a self-contained HTML report of an evaluation, with its figures and numbers.

    The page has the run's settings, a table per method with mean ± std (and n) of every
    metric, a comparison table, box plots of the per-sample values, and for each example
    and method three orthogonal slices through the map's peak (2D inputs: the image itself),
    named sagittal, coronal and axial from the example's affine where it is known and by
    array axis otherwise (see :class:`ReportExample`), with the mask outlined, the deletion
    and insertion curves, and a slice scroller to browse every map. Maps are min-max scaled
    for display only.

    Args:
        output_dir: the folder to write to (created if missing).
        results: one row per (sample, method) with the keys ``"index"``, ``"label"``,
            ``"prediction"``, ``"correct"``, ``"target"``, ``"method"`` and one float per
            metric name.
        summary: method -> metric -> ``{"mean": float, "std": float, "n": int}``.
        examples: the samples to show with their maps, masks and curves.
        title: the page title.
        config: the run's settings (model, data, methods, ...), shown as a table.

    Returns:
        The path of ``output_dir/report.html``. Beside it: ``report_figures/*.png`` and
        ``report.json`` (every number of the report, NaN as null).

    Raises:
        TypeError: an argument of the wrong type.
        ValueError: a row without ``"method"``, a summary entry without mean/std/n, or an
            example whose image, maps, mask or curves do not fit together.

    Example:
        >>> import tempfile, torch
        >>> from captum_medcam.visualization import ReportExample, write_report
        >>> ex = ReportExample(index=0, image=torch.rand(1, 8, 8, 8), target=1,
        ...                    maps={"gradcam": torch.rand(1, 8, 8, 8)})
        >>> rows = [{"index": 0, "label": 1, "prediction": 1, "correct": True, "target": 1,
        ...          "method": "gradcam", "deletion": 0.25}]
        >>> summary = {"gradcam": {"deletion": {"mean": 0.25, "std": 0.0, "n": 1}}}
        >>> path = write_report(tempfile.mkdtemp(), results=rows, summary=summary, examples=[ex])
        >>> path.name, (path.parent / "report.json").exists()
        ('report.html', True)
    """
    out = Path(output_dir)
    rows = _check_results(results)
    summ = _check_summary(summary)
    if isinstance(examples, ReportExample) or not isinstance(examples, Sequence):
        raise TypeError(
            f"examples must be a sequence of ReportExample, got {type(examples).__name__}"
        )
    checked = [_check_example(ex, i) for i, ex in enumerate(examples)]
    if not isinstance(title, str):
        raise TypeError(f"title must be a str, got {type(title).__name__}")
    if config is not None and not isinstance(config, Mapping):
        raise TypeError(f"config must be a mapping or None, got {type(config).__name__}")

    methods = _ordered_methods(summ, rows, checked)
    metrics = _ordered_metrics(summ, rows)
    figures_dir = out / "report_figures"
    figures_dir.mkdir(parents=True, exist_ok=True)

    figures: dict[str, Path] = {}
    if rows and metrics:
        box = _summary_figure(rows, methods, metrics)
        if box is not None:
            figures["summary"] = _save(box, figures_dir / "summary.png")
    example_figures: list[dict[str, Path]] = []
    for ex in checked:
        own: dict[str, Path] = {}
        for method in methods:
            if method in ex.maps:
                fig = _example_figure(ex, method)
                own[method] = _save(fig, figures_dir / f"sample{ex.index}_{_slug(method)}.png")
        if ex.curves:
            fig = _curves_figure(ex, methods)
            own["curves"] = _save(fig, figures_dir / f"sample{ex.index}_curves.png")
        example_figures.append(own)

    numbers = _report_numbers(title, config, summ, rows, checked, methods, metrics)
    numbers["figures"] = {k: str(p.relative_to(out)) for k, p in figures.items()}
    for entry, own in zip(numbers["examples"], example_figures, strict=True):
        entry["figures"] = {k: str(p.relative_to(out)) for k, p in own.items()}
    (out / "report.json").write_text(
        json.dumps(numbers, indent=1, allow_nan=False) + "\n", encoding="utf-8"
    )

    page = _html_page(
        title, config, summ, rows, checked, methods, metrics, figures, example_figures
    )
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    return path


# ----------------------------------------------------------------------------- checks


def _check_results(results: Any) -> list[dict[str, Any]]:
    if isinstance(results, Mapping | str) or not isinstance(results, Sequence):
        raise TypeError(f"results must be a sequence of row mappings, got {type(results).__name__}")
    rows = []
    for i, row in enumerate(results):
        if not isinstance(row, Mapping):
            raise TypeError(f"results[{i}] must be a mapping, got {type(row).__name__}")
        if "method" not in row:
            raise ValueError(f"results[{i}] has no 'method' key; its keys are {sorted(row)}")
        rows.append(dict(row))
    return rows


def _check_summary(summary: Any) -> dict[str, dict[str, dict[str, float]]]:
    if not isinstance(summary, Mapping):
        raise TypeError(
            f"summary must be a mapping method -> metric -> stats, got {type(summary).__name__}"
        )
    checked: dict[str, dict[str, dict[str, float]]] = {}
    for method, per_metric in summary.items():
        if not isinstance(per_metric, Mapping):
            raise TypeError(
                f"summary[{method!r}] must be a mapping metric -> stats, "
                f"got {type(per_metric).__name__}"
            )
        checked[str(method)] = {}
        for metric, stats in per_metric.items():
            if not isinstance(stats, Mapping) or not {"mean", "std", "n"} <= set(stats):
                raise ValueError(
                    f"summary[{method!r}][{metric!r}] must have the keys 'mean', 'std' and "
                    f"'n', got {stats!r}"
                )
            checked[str(method)][str(metric)] = {
                "mean": _float(stats["mean"]),
                "std": _float(stats["std"]),
                "n": _float(stats["n"]),
            }
    return checked


def _check_example(ex: Any, i: int) -> _Checked:
    if not isinstance(ex, ReportExample):
        raise TypeError(f"examples[{i}] must be a ReportExample, got {type(ex).__name__}")
    image = _plain(ex.image, f"examples[{i}].image")
    if image.dim() not in (3, 4):
        raise ValueError(
            f"examples[{i}].image must be (C, H, W) or (C, D, H, W), got shape {tuple(image.shape)}"
        )
    shape = tuple(image.shape[1:])
    if not isinstance(ex.maps, Mapping) or not ex.maps:
        raise ValueError(f"examples[{i}].maps must be a non-empty dict method -> map")
    maps: dict[str, Tensor] = {}
    peaks: dict[str, tuple[int, ...]] = {}
    for name, m in ex.maps.items():
        t = _plain(m, f"examples[{i}].maps[{name!r}]")
        if t.dim() == len(shape) + 1 and t.shape[0] == 1:
            t = t[0]
        if tuple(t.shape) != shape:
            raise ValueError(
                f"examples[{i}].maps[{name!r}] has shape {tuple(m.shape)}, expected "
                f"(1, {', '.join(map(str, shape))}) like the image's spatial shape"
            )
        t = torch.nan_to_num(t.double(), nan=0.0, posinf=0.0, neginf=0.0)
        maps[str(name)] = t
        flat, peak = int(t.argmax()), []
        for size in reversed(shape):
            flat, rest = divmod(flat, size)
            peak.append(rest)
        peaks[str(name)] = tuple(reversed(peak))
    mask = None
    if ex.mask is not None:
        mask = _plain(ex.mask, f"examples[{i}].mask")
        if mask.dim() == len(shape) + 1 and mask.shape[0] == 1:
            mask = mask[0]
        if tuple(mask.shape) != shape:
            raise ValueError(
                f"examples[{i}].mask has shape {tuple(ex.mask.shape)}, expected "
                f"(1, {', '.join(map(str, shape))})"
            )
        mask = mask.bool()
    if not isinstance(ex.curves, Mapping):
        raise TypeError(
            f"examples[{i}].curves must be a dict method -> {{kind: curve}}, "
            f"got {type(ex.curves).__name__}"
        )
    curves: dict[str, dict[str, Tensor]] = {}
    for name, per_kind in ex.curves.items():
        if not isinstance(per_kind, Mapping):
            raise TypeError(
                f"examples[{i}].curves[{name!r}] must be a dict with 'deletion' and/or "
                f"'insertion', got {type(per_kind).__name__}"
            )
        unknown = set(per_kind) - set(_KINDS)
        if unknown:
            raise ValueError(
                f"examples[{i}].curves[{name!r}] has keys {sorted(unknown)}; "
                f"expected 'deletion' and/or 'insertion'"
            )
        kept = {}
        for kind, c in per_kind.items():
            if c is None:
                continue
            t = _plain(c, f"examples[{i}].curves[{name!r}][{kind!r}]").double().flatten()
            if t.numel() < 2:
                raise ValueError(
                    f"examples[{i}].curves[{name!r}][{kind!r}] needs n_steps + 1 >= 2 points, "
                    f"got {t.numel()}"
                )
            kept[kind] = t
        if kept:
            curves[str(name)] = kept
    if len(shape) == 2:
        views: tuple[str, ...] = ("image",)
    else:
        try:
            views = view_names(ex.affine, ex.orientation, ex.image)
        except (TypeError, ValueError) as error:
            raise type(error)(f"examples[{i}]: {error}") from None
    display = image.double()
    rgb = len(shape) == 2 and image.shape[0] == 3
    display = display.permute(1, 2, 0) if rgb else display.mean(0)
    lo, hi = float(display.min()), float(display.max())
    display = (display - lo) / (hi - lo) if hi > lo else torch.zeros_like(display)
    return _Checked(ex.index, display, rgb, maps, mask, curves, peaks, shape, ex, views)


def _plain(x: Any, name: str) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    t = x.detach()
    t = t.as_tensor() if hasattr(t, "as_tensor") else t  # a MONAI MetaTensor
    return t.cpu()


def _float(v: Any) -> float:
    if isinstance(v, Tensor):
        v = v.item()
    try:
        return float(v)
    except (TypeError, ValueError):
        raise TypeError(f"expected a number, got {v!r}") from None


def _ordered_methods(
    summary: Mapping[str, Any], rows: Sequence[Mapping[str, Any]], examples: Sequence[_Checked]
) -> list[str]:
    seen: dict[str, None] = dict.fromkeys(summary)
    for row in rows:
        seen.setdefault(str(row["method"]), None)
    for ex in examples:
        for name in ex.maps:
            seen.setdefault(name, None)
    return list(seen)


def _ordered_metrics(
    summary: Mapping[str, Mapping[str, Any]], rows: Sequence[Mapping[str, Any]]
) -> list[str]:
    seen: dict[str, None] = {}
    for per_metric in summary.values():
        for metric in per_metric:
            seen.setdefault(metric, None)
    for row in rows:
        for key, value in row.items():
            if key not in _ROW_KEYS and _is_number(value):
                seen.setdefault(str(key), None)
    return list(seen)


def _is_number(v: Any) -> bool:
    if isinstance(v, bool):
        return False
    if isinstance(v, Tensor):
        return v.numel() == 1 and v.is_floating_point()
    return isinstance(v, int | float)


def _lower_is_better(metric: str) -> bool:
    name = metric.lower()
    return "deletion" in name or name in {"dauc", "aopc_lerf", "road_morf", "average_drop"}


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "method"


# ---------------------------------------------------------------------------- figures


def _save(fig: Figure, path: Path) -> Path:
    """Save as a 256-colour PNG: a third of the RGBA file's size, with no visible change
    for these figures (grey, jet and a few line colours)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from PIL import Image

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    rgb = Image.frombuffer("RGBA", canvas.get_width_height(), canvas.buffer_rgba()).convert("RGB")
    palette = rgb.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    palette.save(path, format="PNG")
    return path


def _slices(ex: _Checked, peak: Sequence[int]) -> list[tuple[str, tuple[int | slice, ...]]]:
    """The panels through ``peak``: (title, index into a (*S) tensor)."""
    if len(ex.shape) == 2:
        return [("image", (slice(None), slice(None)))]
    panels = []
    for axis, name in enumerate(ex.views):
        index: list[int | slice] = [slice(None)] * 3
        index[axis] = int(peak[axis])
        panels.append((f"{name} {int(peak[axis])}", tuple(index)))
    return panels


def _example_figure(ex: _Checked, method: str) -> Figure:
    from matplotlib.figure import Figure

    from captum_medcam.metrics import PerturbationCurve
    from captum_medcam.visualization._curves import plot_deletion_insertion

    att = ex.maps[method]
    span = float(att.max() - att.min())
    shown = (att - att.min()) / span if span > 0 else torch.zeros_like(att)
    panels = _slices(ex, ex.peaks[method])
    two_d = len(ex.shape) == 2
    n_panels = len(panels) + (1 if two_d else 0) + (1 if method in ex.curves else 0)
    # A fixed layout: the constrained one costs half the time of a figure, 20 times a report.
    fig = Figure(figsize=(3.0 * n_panels, 3.0), dpi=80)
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.16, top=0.84, wspace=0.3)
    axes = list(fig.subplots(1, n_panels, squeeze=False)[0])
    # volumes as plot_slices draws them (origin lower); 2D images the usual way up
    origin = "upper" if two_d else "lower"
    if two_d:  # the image itself, then the overlay
        _draw_image(axes.pop(0), ex.image, ex.rgb, origin)
    for ax, (name, index) in zip(axes, panels, strict=False):
        _draw_image(ax, ex.image[index], ex.rgb, origin)
        if span > 0:  # a constant map has nothing to show
            ax.imshow(shown[index].numpy(), cmap="jet", alpha=0.45, vmin=0, vmax=1, origin=origin)
        if ex.mask is not None and bool(ex.mask[index].any()):
            ax.contour(ex.mask[index].float().numpy(), levels=[0.5], colors="white", linewidths=1.2)
        title = method if two_d else name
        ax.set_title(title if span > 0 else f"{title} (constant map)", fontsize=10)
    if method in ex.curves:
        ax = axes[len(panels)]
        given = ex.curves[method]
        plot_deletion_insertion(
            *(
                PerturbationCurve(torch.linspace(0, 1, c.numel(), dtype=c.dtype), c[None])
                if (c := given.get(kind)) is not None
                else None
                for kind in _KINDS
            ),
            ax=ax,
        )
        ax.set_xlabel("fraction perturbed", fontsize=9)
        ax.legend(loc="best", fontsize=7)
        ax.tick_params(labelsize=8)
    fig.suptitle(f"sample {ex.index}: {method}", fontsize=11)
    return fig


def _draw_image(ax: Any, image: Tensor, rgb: bool, origin: str) -> None:
    if rgb:
        ax.imshow(image.numpy(), origin=origin)
    else:
        ax.imshow(image.numpy(), cmap="gray", vmin=0, vmax=1, origin=origin)
    ax.set_title("image", fontsize=10)
    ax.set_axis_off()


def _curves_figure(ex: _Checked, methods: Sequence[str]) -> Figure:
    from matplotlib.figure import Figure

    from captum_medcam.metrics import PerturbationCurve, auc

    fig = Figure(figsize=(9.0, 3.2), dpi=80, layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, kind in zip(axes, _KINDS, strict=True):
        for method in methods:
            c = ex.curves.get(method, {}).get(kind)
            if c is None:
                continue
            x = torch.linspace(0, 1, c.numel(), dtype=c.dtype)
            area = float(auc(PerturbationCurve(x, c[None]))[0])
            ax.plot(x.numpy(), c.numpy(), label=f"{method} ({area:.3f})")
        ax.set_title(f"{kind} (AUC in the legend)", fontsize=10)
        ax.set_xlabel("fraction of voxels " + ("deleted" if kind == "deletion" else "inserted"))
        ax.set_ylabel("score")
        ax.set_xlim(0, 1)
        if ax.get_lines():
            ax.legend(fontsize=7, loc="best")
    fig.suptitle(f"sample {ex.index}: all methods", fontsize=11)
    return fig


def _summary_figure(
    rows: Sequence[Mapping[str, Any]], methods: Sequence[str], metrics: Sequence[str]
) -> Figure | None:
    from matplotlib.figure import Figure

    panels = []
    for metric in metrics:
        data, labels = [], []
        for method in methods:
            values = [
                v
                for row in rows
                if str(row["method"]) == method and metric in row
                for v in [_maybe_float(row[metric])]
                if v is not None and math.isfinite(v)
            ]
            if values:
                data.append(values)
                labels.append(method)
        if data:
            panels.append((metric, data, labels))
    if not panels:
        return None
    cols = min(4, len(panels))
    nrows = math.ceil(len(panels) / cols)
    fig = Figure(figsize=(3.4 * cols, 2.9 * nrows), dpi=80, layout="constrained")
    axes = fig.subplots(nrows, cols, squeeze=False).ravel()
    for ax, (metric, data, labels) in zip(axes, panels, strict=False):
        ax.boxplot(data, showmeans=True)
        ax.set_xticks(range(1, len(labels) + 1), labels, rotation=30, ha="right", fontsize=8)
        arrow = "lower is better" if _lower_is_better(metric) else "higher is better"
        ax.set_title(f"{metric} ({arrow})", fontsize=10)
        ax.tick_params(axis="y", labelsize=8)
    for ax in axes[len(panels) :]:
        ax.set_axis_off()
    fig.suptitle("per-sample values (box: quartiles, triangle: mean)", fontsize=11)
    return fig


def _maybe_float(v: Any) -> float | None:
    if not _is_number(v):
        return None
    return float(v.item() if isinstance(v, Tensor) else v)


# ------------------------------------------------------------------------------ JSON


def _jsonable(v: Any) -> Any:
    if isinstance(v, Tensor):
        v = v.detach().cpu()
        v = v.as_tensor() if hasattr(v, "as_tensor") else v
        return _jsonable(v.item() if v.numel() == 1 and v.dim() == 0 else v.tolist())
    if isinstance(v, bool) or v is None or isinstance(v, str | int):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, Mapping):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    if hasattr(v, "tolist"):  # NumPy arrays and scalars
        return _jsonable(v.tolist())
    if isinstance(v, os.PathLike):
        return os.fspath(v)
    return str(v)


def _report_numbers(
    title: str,
    config: Mapping[str, Any] | None,
    summary: Mapping[str, Any],
    rows: Sequence[Mapping[str, Any]],
    examples: Sequence[_Checked],
    methods: Sequence[str],
    metrics: Sequence[str],
) -> dict[str, Any]:
    from captum_medcam.metrics import PerturbationCurve, auc

    entries = []
    for ex in examples:
        curves: dict[str, Any] = {}
        for method, per_kind in ex.curves.items():
            curves[method] = {}
            for kind, c in per_kind.items():
                x = torch.linspace(0, 1, c.numel(), dtype=c.dtype)
                curves[method][kind] = c.tolist()
                curves[method][f"{kind}_auc"] = float(auc(PerturbationCurve(x, c[None]))[0])
        entries.append(
            {
                "index": ex.index,
                "target": ex.source.target,
                "label": ex.source.label,
                "prediction": ex.source.prediction,
                "shape": list(ex.shape),
                "views": list(ex.views),
                "mask_voxels": None if ex.mask is None else int(ex.mask.sum()),
                "peaks": {m: list(p) for m, p in ex.peaks.items()},
                "map_range": {m: [float(t.min()), float(t.max())] for m, t in ex.maps.items()},
                "curves": curves,
            }
        )
    return _jsonable(
        {
            "title": title,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "captum_medcam_version": _version(),
            "config": dict(config or {}),
            "methods": list(methods),
            "metrics": list(metrics),
            "summary": summary,
            "results": list(rows),
            "examples": entries,
        }
    )


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("captum-medcam")
    except PackageNotFoundError:  # a source tree without install
        return "0+unknown"


# ------------------------------------------------------------------------------ HTML


def _png_data_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _mosaic_uri(volume: Tensor) -> tuple[str, int]:
    """An 8-bit PNG of the slices of ``volume`` ``(D, H, W)`` or ``(D, H, W, 3)`` in a grid.

    Returns the data URI and the number of tiles per mosaic row.
    """
    from PIL import Image

    d, h, w = volume.shape[:3]
    cols = max(1, math.ceil(math.sqrt(d)))
    rows = math.ceil(d / cols)
    grid = torch.zeros((rows * h, cols * w, *volume.shape[3:]), dtype=torch.uint8)
    for k in range(d):
        r, c = divmod(k, cols)
        grid[r * h : (r + 1) * h, c * w : (c + 1) * w] = volume[k]
    buffer = io.BytesIO()
    Image.fromarray(grid.numpy()).save(buffer, format="PNG")
    return _png_data_uri(buffer.getvalue()), cols


def _to_uint8(x: Tensor) -> Tensor:
    lo, hi = float(x.min()), float(x.max())
    scaled = (x - lo) / (hi - lo) if hi > lo else torch.zeros_like(x, dtype=torch.float64)
    return (scaled * 255).round().clamp(0, 255).to(torch.uint8)


def _viewer_data(ex: _Checked, methods: Sequence[str]) -> dict[str, Any]:
    """What the slice scroller needs for one example: PNG mosaics and the peaks."""
    as_volume = (lambda t: t[None]) if len(ex.shape) == 2 else (lambda t: t)
    image = (ex.image * 255).round().clamp(0, 255).to(torch.uint8)
    image_uri, cols = _mosaic_uri(as_volume(image))
    shape = list(as_volume(ex.maps[next(iter(ex.maps))]).shape)
    data: dict[str, Any] = {"shape": shape, "cols": cols, "image": image_uri, "maps": {}}
    if ex.mask is not None:
        data["mask"] = _mosaic_uri(as_volume(ex.mask.to(torch.uint8) * 255))[0]
    for method in methods:
        if method in ex.maps:
            peak = list(ex.peaks[method])
            data["maps"][method] = {
                "uri": _mosaic_uri(as_volume(_to_uint8(ex.maps[method])))[0],
                "peak": [0, *peak] if len(ex.shape) == 2 else peak,
            }
    return data


def _jet_lut() -> list[int]:
    from matplotlib import colormaps

    jet = colormaps["jet"]
    return [round(255 * channel) for i in range(256) for channel in jet(i / 255)[:3]]


def _fmt(v: Any, digits: int = 4) -> str:
    if isinstance(v, int) and not isinstance(v, bool):
        return str(v)
    f = _maybe_float(v)
    if f is None:
        return html.escape(str(_jsonable(v))) if v is not None else ""
    return "nan" if math.isnan(f) else f"{f:.{digits}f}"


def _fmt_n(n: float) -> str:
    return str(int(n)) if math.isfinite(n) else "nan"


def _named(value: Any, names: Sequence[str] | None) -> str:
    if value is None:
        return "–"
    plain = _jsonable(value)
    while isinstance(plain, list) and len(plain) == 1 and (names is None or len(names) > 1):
        plain = plain[0]  # a class index stored as a one-element vector, as MedMNIST does
    if isinstance(plain, list):
        if names is not None and all(v in (0, 1) for v in plain) and len(plain) == len(names):
            on = [names[i] for i, v in enumerate(plain) if v]
            return html.escape(", ".join(on) if on else "none")
        return html.escape(str(plain))
    if names is not None and isinstance(plain, int) and 0 <= plain < len(names):
        return f"{plain} ({html.escape(str(names[plain]))})"
    return html.escape(str(plain))


def _html_page(
    title: str,
    config: Mapping[str, Any] | None,
    summary: Mapping[str, Mapping[str, Mapping[str, float]]],
    rows: Sequence[Mapping[str, Any]],
    examples: Sequence[_Checked],
    methods: Sequence[str],
    metrics: Sequence[str],
    figures: Mapping[str, Path],
    example_figures: Sequence[Mapping[str, Path]],
) -> str:
    esc = html.escape
    parts: list[str] = []
    add = parts.append
    add(f"<h1>{esc(title)}</h1>")
    add(
        f'<p class="meta">captum_medcam {esc(_version())}, written '
        f"{datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}. Maps are min-max "
        "scaled for display only. Every number on this page is in <code>report.json</code>; "
        "the figures are in <code>report_figures/</code>.</p>"
    )
    add('<nav><a href="#summary">Summary</a> · <a href="#examples">Examples</a>')
    if rows:
        add(' · <a href="#results">Per-sample results</a>')
    if config:
        add(' · <a href="#config">Settings</a>')
    add("</nav>")

    add('<h2 id="summary">Summary</h2>')
    if summary and metrics:
        add(_comparison_table(summary, methods, metrics))
        add('<div class="cards">')
        for method in methods:
            if method not in summary:
                continue
            add(f'<table class="method"><caption>{esc(method)}</caption>')
            add("<tr><th>metric</th><th>mean</th><th>std</th><th>n</th></tr>")
            for metric, stats in summary[method].items():
                add(
                    f"<tr><td>{esc(metric)} {_arrow(metric)}</td><td>{_fmt(stats['mean'])}</td>"
                    f"<td>{_fmt(stats['std'])}</td><td>{_fmt_n(stats['n'])}</td></tr>"
                )
            add("</table>")
        add("</div>")
    else:
        add("<p>No summary was given.</p>")
    if "summary" in figures:
        add(_img(figures["summary"], "per-sample values of every metric"))

    add('<h2 id="examples">Examples</h2>')
    if not examples:
        add("<p>No examples were given.</p>")
    viewer_data = []
    for n, (ex, own) in enumerate(zip(examples, example_figures, strict=True)):
        src = ex.source
        names = src.class_names
        add(f'<section class="example" id="sample{ex.index}">')
        add(
            f"<h3>Sample {ex.index}</h3><p>target {_named(src.target, names)} · label "
            f"{_named(src.label, names)} · prediction {_named(src.prediction, names)} · shape "
            f"{' × '.join(map(str, ex.shape))}"
            + ("" if ex.mask is None else f" · mask {int(ex.mask.sum())} voxels (outlined)")
            + "</p>"
        )
        for method in methods:
            if method in own:
                add(_img(own[method], f"sample {ex.index}, {method}"))
        if "curves" in own:
            add(_img(own["curves"], f"sample {ex.index}, deletion and insertion curves"))
        add(_viewer_html(n, ex, methods))
        viewer_data.append(_viewer_data(ex, methods))
        add("</section>")

    if rows:
        add('<h2 id="results">Per-sample results</h2>')
        add(_results_table(rows, metrics))
    if config:
        add('<h2 id="config">Settings</h2><table class="config">')
        for key, value in config.items():
            shown = value if isinstance(value, str) else json.dumps(_jsonable(value))
            add(f"<tr><th>{esc(str(key))}</th><td><code>{esc(shown)}</code></td></tr>")
        add("</table>")

    payload = json.dumps({"lut": _jet_lut(), "examples": viewer_data}, allow_nan=False)
    payload = payload.replace("</", "<\\/")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>"
        + "\n".join(parts)
        + f'\n<script type="application/json" id="viewer-data">{payload}</script>'
        + f"\n<script>{_JS}</script></body></html>\n"
    )


def _arrow(metric: str) -> str:
    return "↓" if _lower_is_better(metric) else "↑"


def _img(path: Path, alt: str) -> str:
    uri = _png_data_uri(path.read_bytes())
    return f'<img class="figure" alt="{html.escape(alt)}" src="{uri}">'


def _comparison_table(
    summary: Mapping[str, Mapping[str, Mapping[str, float]]],
    methods: Sequence[str],
    metrics: Sequence[str],
) -> str:
    esc = html.escape
    best: dict[str, float] = {}
    for metric in metrics:
        means = [
            summary[m][metric]["mean"]
            for m in methods
            if m in summary and metric in summary[m] and math.isfinite(summary[m][metric]["mean"])
        ]
        if len(means) > 1:
            best[metric] = min(means) if _lower_is_better(metric) else max(means)
    out = [
        '<div class="wide"><table class="compare">'
        "<caption>mean ± std (n) per method; best in bold</caption>"
    ]
    out.append(
        "<tr><th>method</th>" + "".join(f"<th>{esc(m)} {_arrow(m)}</th>" for m in metrics) + "</tr>"
    )
    for method in methods:
        if method not in summary:
            continue
        cells = []
        for metric in metrics:
            stats = summary[method].get(metric)
            if stats is None:
                cells.append("<td>–</td>")
                continue
            text = f"{_fmt(stats['mean'])} ± {_fmt(stats['std'])} ({_fmt_n(stats['n'])})"
            bold = metric in best and stats["mean"] == best[metric]
            cells.append(f"<td><b>{text}</b></td>" if bold else f"<td>{text}</td>")
        out.append(f"<tr><th>{esc(method)}</th>{''.join(cells)}</tr>")
    out.append("</table></div>")
    return "".join(out)


_MAX_ROWS_SHOWN = 2000


def _results_table(rows: Sequence[Mapping[str, Any]], metrics: Sequence[str]) -> str:
    esc = html.escape
    keys = [k for k in _ROW_KEYS if any(k in r for r in rows)] + list(metrics)
    shown = rows[:_MAX_ROWS_SHOWN]
    note = (
        f" (the first {_MAX_ROWS_SHOWN} of {len(rows)}; all are in report.json)"
        if len(rows) > _MAX_ROWS_SHOWN
        else ""
    )
    out = [f'<details><summary>{len(rows)} rows{note}</summary><table class="results">']
    out.append("<tr>" + "".join(f"<th>{esc(k)}</th>" for k in keys) + "</tr>")
    for row in shown:
        out.append("<tr>" + "".join(f"<td>{_fmt(row.get(k))}</td>" for k in keys) + "</tr>")
    out.append("</table></details>")
    return "".join(out)


def _viewer_html(n: int, ex: _Checked, methods: Sequence[str]) -> str:
    esc = html.escape
    options = "".join(
        f'<option value="{esc(m)}">{esc(m)}</option>' for m in methods if m in ex.maps
    )
    three_d = len(ex.shape) == 3
    sliders = ""
    if three_d:
        sliders = "".join(
            f'<label>{name} <input type="range" data-axis="{axis}" min="0" '
            f'max="{ex.shape[axis] - 1}" value="0"><span></span></label>'
            for axis, name in enumerate(ex.views)
        )
    panels = "".join(
        f'<figure><canvas data-axis="{axis}"></canvas><figcaption>{name}</figcaption></figure>'
        for axis, name in enumerate(ex.views)
    )
    return (
        f'<div class="viewer" data-example="{n}" data-state="loading"><h4>Interactive view</h4>'
        f'<div class="controls"><label>method <select>{options}</select></label>'
        '<label>opacity <input type="range" class="alpha" min="0" max="100" value="45"></label>'
        '<label><input type="checkbox" class="showmask" checked> mask</label>'
        '<button type="button" class="peak">go to peak</button>'
        f'{sliders}</div><div class="panels">{panels}</div>'
        '<p class="status">loading…</p></div>'
    )


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5em auto;
       max-width: 1400px; padding: 0 1em; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; margin-top: 1.6em; }
.meta, nav { color: #555; font-size: 0.9em; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: right; }
th:first-child, caption { text-align: left; } caption { font-weight: bold; padding: 2px 0; }
.cards { display: flex; flex-wrap: wrap; gap: 1em; }
table.config td { text-align: left; }
table.compare td, table.compare th { white-space: nowrap; }
.wide { overflow-x: auto; }
img.figure { display: block; max-width: 100%; margin: 0.5em 0; }
section.example { border-top: 1px solid #eee; margin-top: 1em; }
.viewer { background: #f6f6f6; padding: 0.5em 0.8em; border-radius: 6px; }
.viewer h4 { margin: 0.2em 0; }
.controls { display: flex; flex-wrap: wrap; gap: 1em; align-items: center; font-size: 0.9em; }
.controls span { display: inline-block; min-width: 2.5em; }
.panels { display: flex; gap: 0.8em; flex-wrap: wrap; }
.panels figure { margin: 0.4em 0; text-align: center; font-size: 0.85em; }
.panels canvas { width: 256px; image-rendering: pixelated; background: #000; cursor: crosshair; }
.status { font-size: 0.8em; color: #777; margin: 0; }
"""

# The slice scroller: decodes each PNG mosaic once into a byte array, then draws the
# three planes through the current position, the map in jet over the grey image and the
# mask's outline in white. Like the PNG figures, volume planes are drawn bottom-up (origin
# lower, as plot_slices does) and 2D images top-down.
_JS = r"""
(function () {
  const DATA = JSON.parse(document.getElementById("viewer-data").textContent);
  const LUT = DATA.lut;
  async function decode(uri, shape, cols, rgb) {
    const img = new Image();
    img.src = uri;
    await img.decode();
    const c = document.createElement("canvas");
    c.width = img.width; c.height = img.height;
    const ctx = c.getContext("2d");
    ctx.drawImage(img, 0, 0);
    const px = ctx.getImageData(0, 0, c.width, c.height).data;
    const [D, H, W] = shape, ch = rgb ? 3 : 1;
    const out = new Uint8Array(D * H * W * ch);
    for (let d = 0; d < D; d++) {
      const r0 = Math.floor(d / cols) * H, c0 = (d % cols) * W;
      for (let h = 0; h < H; h++) for (let w = 0; w < W; w++) {
        const p = ((r0 + h) * c.width + c0 + w) * 4, v = ((d * H + h) * W + w) * ch;
        for (let k = 0; k < ch; k++) out[v + k] = px[p + k];
      }
    }
    return out;
  }
  function plane(axis, shape, pos) {
    const [D, H, W] = shape;
    if (axis === 0) return [H, W, (r, c) => (pos[0] * H + r) * W + c];
    if (axis === 1) return [D, W, (r, c) => (r * H + pos[1]) * W + c];
    return [D, H, (r, c) => (r * H + c) * W + pos[2]];
  }
  async function setup(el) {
    const ex = DATA.examples[+el.dataset.example];
    const shape = ex.shape;
    const image = await decode(ex.image, shape, ex.cols, true);
    const mask = ex.mask ? await decode(ex.mask, shape, ex.cols, false) : null;
    const maps = {};
    for (const [name, m] of Object.entries(ex.maps)) {
      maps[name] = await decode(m.uri, shape, ex.cols, false);
    }
    const select = el.querySelector("select"), alpha = el.querySelector(".alpha");
    const showMask = el.querySelector(".showmask");
    const sliders = Array.from(el.querySelectorAll("input[data-axis]"));
    const canvases = Array.from(el.querySelectorAll("canvas"));
    const pos = ex.maps[select.value].peak.slice();
    const flip = shape[0] > 1;  // volumes bottom-up like the PNGs; 2D images top-down
    function draw() {
      const map = maps[select.value], a = alpha.value / 100;
      sliders.forEach(s => { s.value = pos[+s.dataset.axis]; s.nextSibling.textContent = pos[+s.dataset.axis]; });
      let lit = 0;
      for (const cv of canvases) {
        const [R, C, at] = plane(+cv.dataset.axis, shape, pos);
        // each voxel is a k x k block, so the mask's outline can run between voxels
        const k = Math.max(1, Math.floor(256 / Math.max(R, C)));
        cv.width = C * k; cv.height = R * k;
        const ctx = cv.getContext("2d"), img = ctx.createImageData(C * k, R * k);
        const inMask = (r, c) => r >= 0 && c >= 0 && r < R && c < C && mask[at(r, c)] > 127;
        for (let r = 0; r < R; r++) for (let c = 0; c < C; c++) {
          const v = at(r, c), j = map[v] * 3;
          const rgb = [0, 1, 2].map(i => (1 - a) * image[v * 3 + i] + a * LUT[j + i]);
          if (rgb[0] + rgb[1] + rgb[2] > 30) lit++;
          const edge = mask && showMask.checked && inMask(r, c)
            ? [!inMask(r + (flip ? 1 : -1), c), !inMask(r + (flip ? -1 : 1), c),
               !inMask(r, c - 1), !inMask(r, c + 1)]
            : null;  // top, bottom, left, right as drawn
          for (let y = 0; y < k; y++) for (let x = 0; x < k; x++) {
            const o = (((flip ? R - 1 - r : r) * k + y) * C * k + c * k + x) * 4;
            const white = edge && ((edge[0] && y === 0) || (edge[1] && y === k - 1) ||
                                   (edge[2] && x === 0) || (edge[3] && x === k - 1));
            for (let i = 0; i < 3; i++) img.data[o + i] = white ? 255 : rgb[i];
            img.data[o + 3] = 255;
          }
        }
        ctx.putImageData(img, 0, 0);
      }
      el.dataset.lit = lit;
    }
    sliders.forEach(s => s.addEventListener("input", () => { pos[+s.dataset.axis] = +s.value; draw(); }));
    canvases.forEach(cv => cv.addEventListener("click", ev => {
      const axis = +cv.dataset.axis, rect = cv.getBoundingClientRect();
      const [R, C] = plane(axis, shape, pos);
      const c = Math.min(C - 1, Math.floor((ev.clientX - rect.left) / rect.width * C));
      const row = Math.min(R - 1, Math.floor((ev.clientY - rect.top) / rect.height * R));
      const r = flip ? R - 1 - row : row;
      const free = [0, 1, 2].filter(k => k !== axis);
      pos[free[0]] = r; pos[free[1]] = c;
      draw();
    }));
    select.addEventListener("change", () => { ex.maps[select.value].peak.forEach((v, k) => pos[k] = v); draw(); });
    el.querySelector(".peak").addEventListener("click", () => { ex.maps[select.value].peak.forEach((v, k) => pos[k] = v); draw(); });
    alpha.addEventListener("input", draw);
    showMask.addEventListener("change", draw);
    draw();
    el.dataset.state = "ready";
    el.querySelector(".status").textContent =
      "Move the sliders or click a plane to move through the volume; the panels start at the map's peak.";
  }
  document.querySelectorAll(".viewer").forEach(el => setup(el).catch(err => {
    el.dataset.state = "error";
    el.querySelector(".status").textContent = "The viewer could not start: " + err;
  }));
})();
"""
