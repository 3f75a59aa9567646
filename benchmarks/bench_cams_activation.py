"""CAM, Eigen-CAM, EigenGrad-CAM, KPCA-CAM and FEM: captum_medcam vs. pytorch-grad-cam and torchcam.

One line per method: the peer's implementation and ours on a MONAI ResNet-18 in 2D (process
CPU time, median of interleaved rounds, OMP_WAIT_POLICY=PASSIVE), the same in 3D (a peer that
fails prints its error), and the agreement of the maps: our map at layer resolution is put
through the peer's own post-processing (pytorch-grad-cam: ReLU, per-image min-max, OpenCV
resize in 2D / SciPy zoom in 3D, min-max again; torchcam: min-max at layer resolution), and
the max absolute difference with the peer's map is printed. Options match the peer's:
Eigen-CAM and EigenGrad-CAM with ``center=True``, KPCA-CAM with ``sign="largest_entry"``
(scikit-learn's sign rule; sigmoid kernel), FEM with ``variant="pytorch-grad-cam"``, CAM
without ReLU. pytorch-grad-cam keeps LAPACK's sign for Eigen-CAM and EigenGrad-CAM:
examples where its sign is the opposite of ours (our default, ``sign="channel_sum"``) are
counted, and the difference is given with the sign aligned.

    python benchmarks/bench_cams_activation.py --quick   # 2D 112^2, 3D 32^3, batch 2
    python benchmarks/bench_cams_activation.py           # 2D 224^2, 3D 64^3, batch 4
"""

from __future__ import annotations

import argparse
import copy
import os
from collections.abc import Callable
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import torch
from monai.networks.nets import resnet18

import captum_medcam as cm
from benchmarks._common import interleaved
from captum_medcam._core.spatial import minmax_normalize

#: method -> (our N-D class, options matching the peer, the peer's name)
METHODS: dict[str, tuple[str, dict[str, Any], str]] = {
    "CAM": ("CAM", {}, "torchcam CAM"),
    "Eigen-CAM": ("EigenCAM", {"center": True}, "pytorch-grad-cam EigenCAM"),
    "EigenGrad-CAM": ("EigenGradCAM", {"center": True}, "pytorch-grad-cam EigenGradCAM"),
    "KPCA-CAM": ("KPCACAM", {"sign": "largest_entry"}, "pytorch-grad-cam KPCA_CAM"),
    "FEM": ("FEM", {"variant": "pytorch-grad-cam"}, "pytorch-grad-cam FEM"),
}
PGC_CLASS = {
    "Eigen-CAM": "EigenCAM",
    "EigenGrad-CAM": "EigenGradCAM",
    "KPCA-CAM": "KPCA_CAM",
    "FEM": "FEM",
}


def ours(method: str, net: torch.nn.Module) -> Callable[..., torch.Tensor]:
    name, options, _ = METHODS[method]
    cls = getattr(cm, name)
    cam = cls(net, net.layer4, fc_layer=net.fc) if name == "CAM" else cls(net, net.layer4)
    return lambda x, target, **kw: cam.attribute(x, target=target, **{**options, **kw})


def peer(method: str, net: torch.nn.Module) -> Callable[[torch.Tensor, list[int]], Any]:
    model = copy.deepcopy(net)  # pytorch-grad-cam calls model.eval(); torchcam hooks it
    if method == "CAM":
        from torchcam.methods import CAM

        def run_torchcam(x: torch.Tensor, target: list[int]) -> Any:
            with CAM(model, model.layer4, model.fc, input_shape=tuple(x.shape[1:])) as extractor:
                with torch.no_grad():
                    model(x)
                return extractor(class_idx=target)[0]

        return run_torchcam
    import pytorch_grad_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cls = getattr(pytorch_grad_cam, PGC_CLASS[method])

    def run_pgc(x: torch.Tensor, target: list[int]) -> Any:
        with cls(model, [model.layer4]) as cam:
            return cam(x, targets=[ClassifierOutputTarget(t) for t in target])

    return run_pgc


def same_postprocessing(method: str, layer_maps: torch.Tensor, x: torch.Tensor) -> np.ndarray:
    """Our layer-resolution maps ``(N, 1, *S')`` through the peer's post-processing."""
    if method == "CAM":
        return minmax_normalize(layer_maps)[0][:, 0].numpy()
    from pytorch_grad_cam.utils.image import scale_cam_image

    size = tuple(reversed(x.shape[2:]))
    cams = np.maximum(layer_maps[:, 0].detach().numpy(), 0)
    return scale_cam_image(np.maximum(scale_cam_image(cams, size), 0))


def agreement(method: str, run: Callable[..., torch.Tensor], x, target, theirs) -> str:
    """Max |ours - peer| after the peer's normalisation (and, for the Eigen methods, the
    number of examples where the peer's SVD sign is the opposite of ours)."""
    theirs = np.asarray(theirs.detach() if isinstance(theirs, torch.Tensor) else theirs)
    if method in ("Eigen-CAM", "EigenGrad-CAM"):
        signed = run(x, target, upsample=False, relu_attributions=False)
        same = same_postprocessing(method, signed, x)
        flipped = same_postprocessing(method, -signed, x)
        errors, flips = [], 0
        for t, s, f in zip(theirs, same, flipped, strict=True):
            if np.abs(t - s).max() <= np.abs(t - f).max():
                errors.append(np.abs(t - s).max())
            else:
                flips += 1
                errors.append(np.abs(t - f).max())
        return f"{max(errors):.1e} ({flips}/{len(theirs)} with its sign flipped)"
    mine = same_postprocessing(method, run(x, target, upsample=False), x)
    return f"{np.abs(mine - theirs).max():.1e}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, batch 2")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    batch = 2 if args.quick else 4
    size2d, size3d = (112, 32) if args.quick else (224, 64)
    torch.manual_seed(0)
    nets = {
        2: resnet18(spatial_dims=2, n_input_channels=3, num_classes=10).eval(),
        3: resnet18(spatial_dims=3, n_input_channels=1, num_classes=3).eval(),
    }
    inputs = {
        2: torch.randn(batch, 3, size2d, size2d),
        3: torch.randn(batch, 1, size3d, size3d, size3d),
    }
    target = [i % 3 for i in range(batch)]
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; MONAI resnet18 layer4; "
        f"2D {size2d}^2, 3D {size3d}^3, batch {batch}; median process CPU s of {args.rounds} "
        "interleaved rounds"
    )
    lines = []
    for method, (_, _, peer_name) in METHODS.items():
        row: dict[str, Any] = {"method": method, "peer": peer_name}
        for dims in (2, 3):
            net, x = nets[dims], inputs[dims]
            ours_run, peer_run = ours(method, net), peer(method, net)
            stats = interleaved(
                {
                    "peer": lambda run=peer_run, x=x: run(x, target),
                    "ours": lambda run=ours_run, x=x: run(x, target),
                },
                args.rounds,
            )
            row[dims] = stats
            if stats["peer"]["error"] is None:
                row[f"agree{dims}"] = agreement(
                    method, ours_run, x, target, stats["peer"]["result"]
                )
            else:
                row[f"agree{dims}"] = "-"
        lines.append(row)
    print(
        f"\n{'method':<14} {'peer':<30} {'2D peer s':>9} {'2D ours s':>9} {'peer/ours':>9} "
        f"{'3D peer s':>9} {'3D ours s':>9} {'peer/ours':>9}  agreement 2D | 3D"
    )
    for row in lines:
        cells = []
        for dims in (2, 3):
            p, o = row[dims]["peer"], row[dims]["ours"]
            peer_cell = f"{p['median']:9.3f}" if p["error"] is None else f"{'fails':>9}"
            ratio = p["median"] / o["median"] if p["error"] is None else float("nan")
            cells.append(f"{peer_cell} {o['median']:9.3f} {ratio:9.2f}")
        print(
            f"{row['method']:<14} {row['peer']:<30} {cells[0]} {cells[1]}  "
            f"{row['agree2']} | {row['agree3']}"
        )
        for dims in (2, 3):
            if row[dims]["peer"]["error"] is not None:
                print(f"    {dims}D peer error: {row[dims]['peer']['error']}")
            if row[dims]["ours"]["error"] is not None:
                print(f"    {dims}D ours error: {row[dims]['ours']['error']}")


if __name__ == "__main__":
    main()
