"""captum-medcam: explain medical image classifiers and measure how faithful the maps are.

Commands:
  demo       the whole story without a download: train a small 3D network on brain
             volumes with lesions, compare six methods, write the report
  evaluate   a model and a data set in; results.csv, summary.json, NIfTI maps, report.html out
  explain    a model and one volume (NIfTI or .npy) in; maps as NIfTI and PNG slices out

Run `captum-medcam COMMAND --help` for the options of each command.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["main"]

_EVALUATE_EPILOG = """\
examples:
  # the published OrganMNIST3D protocol (3D Score-CAM, DAUC/IAUC with the 0/1 score, 130 points)
  captum-medcam evaluate --preset organmnist3d-scorecam --root ~/.medmnist \\
      --weights organmnist3d_resnet18.pt --output out/

  # your NIfTI volumes: a CSV with the columns image,label,mask (mask optional)
  captum-medcam evaluate --data table.csv --network net.json --weights net.pt \\
      --layer layer4 --methods scorecam,gradcam,gradcampp,crm,integrated_gradients,random \\
      --metrics deletion,insertion,aopc,pointing_game,energy_pointing_game,iou --output out/

  # a 2D chest X-ray model, X-ray AOPC protocol (81 regions, noise std 0.1, correct only)
  captum-medcam evaluate --preset xray-aopc --medmnist pneumoniamnist --size 224 \\
      --network mymodels:pneumonia_net --weights pneumonia.pt --layer features.denseblock4 --output out/

  # faster SS-CAM and approximate Score-CAM, perturbed forwards in bfloat16
  captum-medcam evaluate --medmnist organmnist3d --size 64 --network net.json --weights net.pt \\
      --layer layer4 --methods scorecam,sscam --method-option sscam.num_samples=8 \\
      --method-option scorecam.max_channels=0.1 --autocast bfloat16 --output out/

  # several processes (one per GPU, or gloo on the CPU): the same results as one process
  torchrun --nproc_per_node=2 -m captum_medcam.cli evaluate ...

presets:
{presets}

--network takes a MONAI bundle-style definition (a JSON string or a .json/.yaml file,
built with monai.bundle.ConfigParser as bundles are), e.g.
  '{{"_target_": "monai.networks.nets.resnet18", "spatial_dims": 3, "n_input_channels": 1, "num_classes": 11}}'
or 'module:callable', a function on PYTHONPATH that returns the nn.Module.
--weights is a state dict (torch.save(model.state_dict(), path)), read with
torch.load(weights_only=True): a checkpoint that needs arbitrary objects unpickled is refused.

methods: {methods}
metrics: {metrics} (the last five need masks)

outputs in --output: results.csv (a row per sample and method: index, label, prediction,
correct, target, method, one column per metric), summary.json (method -> metric -> mean,
std, n), config.json (the settings), aopc_curve.csv (with aopc), maps/*.nii.gz in each
volume's space (NIfTI inputs), report.html.
"""


def _csv_list(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _size(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in text.replace("x", ",").split(",") if p.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected sizes such as 64,64,64 or 64x64x64, got {text!r}"
        ) from None


def _add_model_args(parser: argparse.ArgumentParser, required: bool) -> None:
    group = parser.add_argument_group("model")
    group.add_argument(
        "--network",
        required=required,
        help="MONAI bundle-style JSON definition (string or .json/.yaml file) or 'module:callable'",
    )
    group.add_argument(
        "--weights", help="state dict file (torch.save(model.state_dict(), path)); weights_only"
    )
    group.add_argument(
        "--layer", help="dotted name of the layer the CAMs explain, e.g. layer4 (MONAI ResNet)"
    )
    group.add_argument(
        "--fc-layer",
        help="dotted name of the Linear after global pooling (CRM's exact fast path; needed "
        "by cam), e.g. fc",
    )
    group.add_argument(
        "--device", help="cpu, cuda, cuda:1 ... (default: cuda when available, else cpu)"
    )


def _option_value(text: str) -> Any:
    """A method option's value: true/false, none, an int, a float, else the string."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text


def _method_option(text: str) -> tuple[str, str, Any]:
    """``METHOD.KEYWORD=VALUE`` -> ``(method, keyword, value)``."""
    name, eq, value = text.partition("=")
    method, dot, key = name.strip().partition(".")
    if not (eq and dot and method and key.isidentifier()):
        raise argparse.ArgumentTypeError(
            f"expected METHOD.KEYWORD=VALUE, e.g. sscam.num_samples=8, got {text!r}"
        )
    return method, key, _option_value(value)


def _method_options(given: Sequence[tuple[str, str, Any]] | None) -> dict[str, dict[str, Any]]:
    """The ``--method-option`` triples as ``{method: {keyword: value}}`` (the last wins)."""
    out: dict[str, dict[str, Any]] = {}
    for method, key, value in given or ():
        out.setdefault(method, {})[key] = value
    return out


def _add_speed_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "per-method options and speed (see captum_medcam.perturbation_options)"
    )
    group.add_argument(
        "--method-option",
        dest="method_options",
        metavar="METHOD.KEYWORD=VALUE",
        action="append",
        type=_method_option,
        help="a keyword of a method's constructor or attribute() call, repeatable, e.g. "
        "sscam.num_samples=8 (default 35 noisy masks per channel), iscam.num_samples=4, "
        "scorecam.max_channels=0.1 (approximate Score-CAM), "
        "scorecam.channel_criterion=mean; values are true/false, none, ints, floats or "
        "strings; an unknown keyword is refused with the method's options before any "
        "model runs",
    )
    group.add_argument(
        "--autocast",
        choices=("bfloat16", "float16"),
        help="run the perturbed forwards (Score-CAM family, Ablation-CAM, the metrics; CRM "
        "keeps full precision) under torch.autocast in this dtype (bfloat16 runs on a CPU "
        "too; default: full precision)",
    )
    group.add_argument(
        "--chunk-size",
        choices=("auto",),
        help="auto: size the chunks of perturbed forwards from free GPU memory (CUDA only; "
        "default: --perturbations-per-eval)",
    )
    group.add_argument(
        "--compile",
        nargs="?",
        const=True,
        metavar="BACKEND",
        help="run the perturbed forwards through torch.compile (optionally naming a backend, "
        "e.g. inductor); pays off only over long runs",
    )


def _add_image_args(group: Any) -> None:
    group.add_argument(
        "--spatial-size",
        type=_size,
        help="resize images to this size for the model (e.g. 64,64,64); maps are written "
        "back at each image's own size",
    )
    group.add_argument(
        "--intensity",
        choices=("none", "minmax"),
        default="none",
        help="scale each image: none (as stored, default) or minmax (to [0, 1], as MedMNIST)",
    )
    group.add_argument(
        "--spatial-dims",
        type=int,
        choices=(2, 3),
        help="for .npy files: 2 (images) or 3 (volumes, default)",
    )


def _build_parser() -> argparse.ArgumentParser:
    from captum_medcam.pipeline import METHODS, METRICS, PRESETS

    summary, _, _ = (__doc__ or "").partition("\n")  # the commands list below says the rest
    parser = argparse.ArgumentParser(
        prog="captum-medcam",
        description=summary,
        epilog="Run `captum-medcam COMMAND --help` for the options of each command.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", title="commands")

    demo = sub.add_parser(
        "demo",
        help="train a small 3D network on brain volumes with lesions and compare six methods "
        "(no download, CPU)",
        description="The whole story without a download: brain volumes (nilearn's MNI152 "
        "template) with tumours and infarcts and their true masks, a small 3D CNN of MONAI blocks "
        "trained on the CPU, Score-CAM, Grad-CAM, Grad-CAM++, CRM, Integrated Gradients and a "
        "random map scored with DAUC, IAUC, AOPC and the localization metrics, by the same "
        "pipeline as `captum-medcam evaluate`; writes results.csv, summary.json, NIfTI maps "
        "and report.html.",
    )
    demo.add_argument("--output", default="demo_output", help="output folder")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument(
        "--quick", action="store_true", help="a tiny run (a few seconds) for tests and smoke checks"
    )
    demo.add_argument("--no-progress", action="store_true", help="no progress bars")
    demo.set_defaults(run=_demo)

    preset_lines = "\n".join(f"  {name}: {p['description']}" for name, p in PRESETS.items())
    evaluate = sub.add_parser(
        "evaluate",
        help="compare methods on a data set: results.csv, summary.json, maps, report.html",
        description="Explain every sample of a data set with several methods and score each "
        "map with faithfulness (deletion/insertion AUC, AOPC, ROAD, average drop / increase in "
        "confidence) and localization metrics.",
        epilog=_EVALUATE_EPILOG.format(
            presets=preset_lines,
            methods=", ".join(METHODS),
            metrics=", ".join(METRICS),
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    evaluate.add_argument(
        "--preset", choices=sorted(PRESETS), help="settings of a published protocol (see below)"
    )
    data = evaluate.add_argument_group("data (one of --medmnist or --data)")
    data.add_argument("--medmnist", metavar="FLAG", help="a MedMNIST data set, e.g. organmnist3d")
    data.add_argument(
        "--size",
        type=int,
        help="MedMNIST size (default 28): 28 or 64 (3D); 28, 64, 128 or 224 (2D)",
    )
    data.add_argument(
        "--root",
        help="folder of the MedMNIST .npz files (default ~/.medmnist); a missing file is "
        "downloaded with medmnist",
    )
    data.add_argument("--split", default="test", choices=("train", "val", "test"))
    data.add_argument(
        "--data",
        metavar="TABLE.csv",
        help="CSV with the columns image,label,mask (NIfTI, .npy or PNG paths; mask optional)",
    )
    _add_image_args(data)
    data.add_argument("--limit", type=int, help="evaluate only the first N samples")
    _add_model_args(evaluate, required=False)
    options = evaluate.add_argument_group("methods and metrics")
    options.add_argument(
        "--methods",
        type=_csv_list,
        help="comma-separated (default gradcam,random), e.g. scorecam,gradcam,crm,random",
    )
    options.add_argument(
        "--metrics",
        type=_csv_list,
        help="comma-separated (default deletion,insertion,aopc), e.g. deletion,iou",
    )
    options.add_argument(
        "--score",
        choices=("probability", "logit", "sigmoid", "correct"),
        help="score of the curves (default probability; sigmoid: multi-label heads; correct: "
        "0/1 argmax)",
    )
    options.add_argument("--n-steps", type=int, help="deletion/insertion steps (default 100)")
    options.add_argument(
        "--deletion-baseline",
        choices=("zero", "mean", "blur"),
        help="what deleted voxels become (default zero, as RISE; blur where zero is itself a "
        "finding, e.g. dark lesions)",
    )
    options.add_argument("--aopc-grid", type=int, help="AOPC regions per spatial dim (9: 9x9)")
    options.add_argument("--aopc-region-size", type=int, help="AOPC patch edge in voxels")
    options.add_argument(
        "--aopc-regions", type=int, help="AOPC: regions perturbed (default the first 20%%)"
    )
    options.add_argument(
        "--aopc-baseline",
        choices=("mean", "blur", "uniform"),
        help="AOPC: what replaces a region (default mean; uniform noise can saturate a lesion "
        "detector)",
    )
    options.add_argument(
        "--aopc-noise-std",
        type=float,
        help="AOPC: perturb with normal noise of this std instead (the X-ray preset: 0.1)",
    )
    options.add_argument(
        "--target", choices=("pred", "label"), help="class to explain (default: the prediction)"
    )
    options.add_argument(
        "--correct-only",
        action="store_true",
        default=None,
        help="only correctly classified samples",
    )
    options.add_argument("--batch-size", type=int, help="samples per batch (default 1)")
    options.add_argument(
        "--perturbations-per-eval",
        type=int,
        help="perturbed copies per forward (scorecam, crm, ablationcam, sscam, iscam; default "
        "16): memory vs. speed",
    )
    options.add_argument("--examples", type=int, help="samples shown in the report (default 4)")
    options.add_argument("--seed", type=int, help="seed of the random map and noise (default 0)")
    _add_speed_args(evaluate)
    evaluate.add_argument("--output", required=True, help="output folder")
    evaluate.add_argument("--no-progress", action="store_true", help="no progress bars")
    evaluate.add_argument("--no-report", action="store_true", help="skip report.html")
    evaluate.set_defaults(run=_evaluate)

    explain = sub.add_parser(
        "explain",
        help="explain one volume: maps as NIfTI (in the volume's space) and PNG slices",
        description="Explain one image (NIfTI or .npy) with one or more methods.",
        epilog="example:\n  captum-medcam explain --network net.json --weights net.pt "
        "--layer layer4 --input scan.nii.gz --methods gradcam,scorecam --output maps/\n\n"
        f"methods: {', '.join(METHODS)}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    explain.add_argument("--input", required=True, help="the image: .nii/.nii.gz or .npy")
    _add_image_args(explain)
    _add_model_args(explain, required=True)
    explain.add_argument(
        "--methods", type=_csv_list, default=("gradcam",), help="comma-separated (default gradcam)"
    )
    explain.add_argument(
        "--target", default="pred", help="class index to explain, or pred (default)"
    )
    explain.add_argument(
        "--perturbations-per-eval",
        type=int,
        default=16,
        help="perturbed copies per forward (scorecam, crm, ablationcam, sscam, iscam; default "
        "16): memory vs. speed",
    )
    explain.add_argument(
        "--seed", type=int, default=0, help="seed of sscam's noise and the random map (default 0)"
    )
    _add_speed_args(explain)
    explain.add_argument("--output", required=True, help="output folder")
    explain.set_defaults(run=_explain)
    return parser


def _device(name: str | None) -> Any:
    import torch

    if name:
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}")
    return torch.device("cpu")


def _load_model(args: argparse.Namespace, device: Any) -> Any:
    import warnings

    from captum_medcam._loading import load_network, load_weights

    model = load_network(args.network)
    if args.weights:
        load_weights(model, args.weights)
    else:
        warnings.warn(
            "no --weights given: explaining a randomly initialised network",
            UserWarning,
            stacklevel=2,
        )
    return model.to(device).eval()


def _evaluate(args: argparse.Namespace) -> int:
    from captum_medcam.pipeline import PRESETS, apply_preset

    options = vars(args).copy()
    if args.preset:
        options = apply_preset(args.preset, options)
    return run_evaluate(options, title=PRESETS[args.preset]["description"] if args.preset else None)


def run_evaluate(options: dict[str, Any], title: str | None = None) -> int:
    """``captum-medcam evaluate`` with its options as a dict (None: not given)."""
    from torch.utils.data import Subset

    from captum_medcam._core.spatial import resize
    from captum_medcam._loading import TableDataset, medmnist_dataset, save_nifti
    from captum_medcam.evaluation import EvaluatedBatch, _world, run_distributed
    from captum_medcam.pipeline import (
        _LOCALIZATION,
        compare_methods,
        config_from_options,
        write_outputs,
    )

    if bool(options.get("medmnist")) == bool(options.get("data")):
        raise SystemExit(
            "evaluate: give the data with exactly one of --medmnist FLAG (with --size, --root) "
            "or --data TABLE.csv"
        )
    if not options.get("network"):
        raise SystemExit(
            "evaluate: --network is required (a MONAI bundle-style JSON definition or "
            "'module:callable'), unless a --preset names one"
        )
    if not isinstance(options.get("method_options") or {}, dict):  # --method-option triples
        options = {**options, "method_options": _method_options(options["method_options"])}
    config = config_from_options(options)
    masked = [m for m in config.metrics if m in _LOCALIZATION]
    if options.get("medmnist") and masked:
        raise SystemExit(
            f"evaluate: the metrics {masked} compare the maps with ground-truth masks, and "
            "MedMNIST has none: give --data TABLE.csv with a mask column, or drop them"
        )
    device = _device(options.get("device"))
    model = _load_model(argparse.Namespace(**options), device)
    table: TableDataset | None = None
    class_names = None
    if options.get("data"):
        table = TableDataset(
            options["data"],
            spatial_size=options.get("spatial_size"),
            intensity=options.get("intensity") or "none",
            spatial_dims=options.get("spatial_dims"),
        )
        dataset: Any = table
    else:
        dataset = medmnist_dataset(
            options["medmnist"], options.get("size") or 28, options.get("root"), options["split"]
        )
        class_names = getattr(dataset, "classes", None)
    if options.get("limit"):
        dataset = Subset(dataset, range(min(int(options["limit"]), len(dataset))))
    output = Path(options["output"])
    output.mkdir(parents=True, exist_ok=True)

    def save_maps(method: str, batch: EvaluatedBatch) -> None:
        assert table is not None
        folder = output / "maps"
        for i, index in enumerate(batch.indices.tolist()):
            affine, shape = table.space(index)
            if affine is None:  # maps go to NIfTI only where the input was NIfTI
                continue
            folder.mkdir(exist_ok=True)
            att = batch.maps[i].detach().sum(0, keepdim=True).float().cpu()
            att = resize(att[None], shape)[0] if tuple(att.shape[1:]) != tuple(shape) else att
            stem = table.path(index).name.removesuffix(".gz").removesuffix(".nii")
            save_nifti(att[0], affine, folder / f"{index:05d}_{Path(stem).stem}_{method}.nii.gz")

    show = not options.get("no_progress")
    comparison = run_distributed(
        compare_methods,
        model,
        dataset,
        config,
        device=device,
        show_progress=show,
        on_batch=save_maps if table is not None else None,
    )
    rank = _world()[0]
    if rank != 0 or int(os.environ.get("RANK", 0)) != 0:
        return 0
    run_config = {
        "data": options.get("data")
        or f"{options['medmnist']} size {options.get('size') or 28} split {options['split']}",
        "network": options["network"],
        "weights": options.get("weights"),
        "preset": options.get("preset"),
        "samples": len(dataset),
    }
    paths = write_outputs(
        comparison,
        output,
        title=title or "captum_medcam evaluate",
        run_config=run_config,
        class_names=class_names,
        report=not options.get("no_report"),
        # the files' affines name the report's slice views (NIfTI only; others get None)
        affines=(lambda index: table.space(index)[0]) if table is not None else None,
    )
    _print_summary(comparison.summary())
    for name, path in paths.items():
        print(f"  {name}: {path}")
    if table is not None and any((output / "maps").glob("*.nii.gz")):
        print(f"  NIfTI maps (each in its volume's space): {output / 'maps'}")
    return 0


def _print_summary(summary: dict[str, dict[str, dict[str, float]]]) -> None:
    metrics = list(next(iter(summary.values())))
    width = max(len(m) for m in summary) + 2
    print("method".ljust(width) + "".join(f"{m:>24}" for m in metrics))
    for method, values in summary.items():
        cells = []
        for m in metrics:
            v = values[m]
            cells.append(
                f"{v['mean']:.4f} +- {v['std']:.4f} (n={v['n']})".rjust(24)
                if v["n"]
                else "-".rjust(24)
            )
        print(method.ljust(width) + "".join(cells))


def _explain(args: argparse.Namespace) -> int:
    import torch

    from captum_medcam._loading import _resize, load_volume, save_nifti
    from captum_medcam.evaluation import attribute_batch
    from captum_medcam.pipeline import METHODS, EvaluationConfig, _speed_options, build_method

    config = EvaluationConfig(  # checked before the model is loaded
        methods=args.methods,
        layer=args.layer,
        metrics=("deletion",),
        fc_layer=args.fc_layer,
        perturbations_per_eval=args.perturbations_per_eval,
        seed=args.seed,
        method_options=_method_options(args.method_options),
        autocast=args.autocast,
        chunk_size=args.chunk_size,
        compile=False if args.compile is None else args.compile,
    )
    device = _device(args.device)
    model = _load_model(args, device)
    volume = load_volume(args.input, args.spatial_dims)
    image = volume.array
    if args.intensity == "minmax":
        lo, hi = image.min(), image.max()
        image = (image - lo) / (hi - lo) if hi > lo else torch.zeros_like(image)
    original = tuple(image.shape[1:])
    if args.spatial_size:
        image = _resize(image, args.spatial_size, "linear")
    x = image[None].to(device)
    with torch.no_grad():
        output = model(x)
    predicted = int(output.argmax(1)[0])
    if args.target == "pred":
        target = predicted
    else:
        try:
            target = int(args.target)
        except ValueError:
            raise SystemExit(
                f"explain: --target must be a class index or 'pred', got {args.target!r}"
            ) from None
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    stem = Path(volume.path.name.removesuffix(".gz").removesuffix(".nii")).stem
    dims = x.dim() - 2
    agnostic = [m for m in config.methods if METHODS[m].class_agnostic]
    explained = (
        f"explaining class {target}"
        if len(agnostic) < len(config.methods)
        else "no class explained"
    )
    if agnostic:
        explained += (
            f"; the maps of {', '.join(agnostic)} do not depend on the class (class-agnostic)"
        )
    print(f"{volume.path.name}: predicted class {predicted}, {explained}")
    for method in config.methods:
        attribution, kwargs = build_method(method, model, config, dims)
        with _speed_options(config):
            maps = attribute_batch(attribution, x, torch.tensor([target], device=device), **kwargs)
        att = maps[0].sum(0, keepdim=True).float().cpu()
        if tuple(att.shape[1:]) != original:
            att = _resize(att, original, "linear")
        png = out / f"{stem}_{method}.png"
        shown = "class-agnostic" if METHODS[method].class_agnostic else f"class {target}"
        if dims == 3:
            from captum_medcam.visualization import plot_slices

            nii = save_nifti(att[0], volume.affine, out / f"{stem}_{method}.nii.gz")
            fig = plot_slices(
                volume.array[:1],
                att,
                title=f"{method}, {shown} ({volume.path.name})",
                affine=volume.affine if volume.is_nifti else None,  # names the views
            )
            fig.savefig(png, dpi=100)
            print(f"  {method}: {nii} and {png}")
        else:
            _save_2d(volume.array, att, png, f"{method}, {shown}")
            npy = out / f"{stem}_{method}.npy"
            import numpy as np

            np.save(npy, att[0].numpy())
            print(f"  {method}: {npy} and {png}")
    return 0


def _save_2d(image: Any, att: Any, path: Path, title: str) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 4.6), layout="constrained")
    ax = fig.subplots()
    shown = image[0] if image.shape[0] == 1 else image.permute(1, 2, 0)
    ax.imshow(shown.numpy(), cmap="gray")
    a = att[0]
    span = float(a.max() - a.min())
    ax.imshow(((a - a.min()) / span if span > 0 else a * 0).numpy(), cmap="jet", alpha=0.45)
    ax.set_title(title)
    ax.set_axis_off()
    fig.savefig(path, dpi=100)


def _demo(args: argparse.Namespace) -> int:
    from captum_medcam._demo import run_demo

    run_demo(args.output, seed=args.seed, quick=args.quick, show_progress=not args.no_progress)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``captum-medcam`` and ``python -m captum_medcam.cli``."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except (ValueError, TypeError) as error:
        if os.environ.get("CAPTUM_MEDCAM_TRACEBACK"):
            raise
        print(f"captum-medcam {args.command}: error: {error}", file=sys.stderr)
        print("(set CAPTUM_MEDCAM_TRACEBACK=1 for the full traceback)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
