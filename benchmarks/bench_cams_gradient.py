"""Grad-CAM element-wise, Shapley-CAM, Finer-CAM, FullGrad, Smooth Grad-CAM++ vs. the peers.

One line per method and peer: process CPU time (median over interleaved rounds, the machine
is shared) of the peer's implementation and ours on a MONAI ResNet-18 in 2D, their ratio,
and the agreement of the maps (max abs difference after the peer's own normalisation:
pytorch-grad-cam's ``scale_cam_image`` applied to our map at layer resolution; torchcam's
min-max at layer resolution; FullGrad min-max normalised at input resolution). Then ours
on the 3D ResNet-18 (64^3), with the peer on the same volume, or its error where it fails.

    python benchmarks/bench_cams_gradient.py --quick   # 112^2 and 32^3, one round
    python benchmarks/bench_cams_gradient.py           # 224^2 and 64^3, three rounds
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).parent))

import numpy as np
import torch
from _common import interleaved
from monai.networks.nets import resnet18

import captum_medcam as cm

Run = Callable[[], Any]


def _norm(maps: np.ndarray, eps: float = 0.0) -> np.ndarray:
    flat = maps.reshape(maps.shape[0], -1)
    flat = flat - flat.min(1, keepdims=True)
    return (flat / (flat.max(1, keepdims=True) + eps)).reshape(maps.shape)


def pgc_scaled(ours_low: torch.Tensor, size: tuple[int, ...]) -> np.ndarray:
    """Our layer-resolution map through pytorch-grad-cam's own post-processing: min-max and
    resize per example (``scale_cam_image``), then its one-layer ``aggregate_multi_layers``
    (clamp at 0, min-max again)."""
    from pytorch_grad_cam.utils.image import scale_cam_image

    scaled = scale_cam_image(ours_low[:, 0].detach().numpy(), tuple(reversed(size)))
    return np.asarray(scale_cam_image(np.maximum(scaled, 0)))


def fullgrad_channel(
    fullgrad: cm.FullGrad, x: torch.Tensor, target: list[int], eps: float = 0.0
) -> np.ndarray:
    """Our FullGrad with psi per channel, min-max normalised; with ``eps``, psi and the
    final min-max divide by ``max + eps`` as pytorch-grad-cam's do."""
    from captum_medcam.attr import _full_grad

    exact = _full_grad.fullgrad_postprocess

    def psi(t: torch.Tensor, normalize: str = "channel") -> torch.Tensor:
        flat = t.abs().flatten(2)
        flat = flat - flat.amin(-1, keepdim=True)
        return (flat / (flat.amax(-1, keepdim=True) + eps)).view_as(t)

    if eps:
        _full_grad.fullgrad_postprocess = psi
    try:
        maps = fullgrad.attribute(x, target=target, normalize="channel")[:, 0]
    finally:
        _full_grad.fullgrad_postprocess = exact
    return _norm(maps.detach().numpy(), eps)


def cases(net: torch.nn.Module, x: torch.Tensor, target: list[int]) -> list[dict[str, Any]]:
    """Per method: our call, our layer-resolution call for the comparison, the peers."""
    import pytorch_grad_cam as pgc
    import torchcam.methods as tc
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputReST, ClassifierOutputTarget

    peer_net = copy.deepcopy(net)  # pytorch-grad-cam calls .eval(); torchcam leaves hooks on
    layer, peer_layer = net.layer4, peer_net.layer4
    size = tuple(x.shape[2:])
    predicted = net(x).argmax(1).tolist()

    def pgc_call(cls: type, targets: Any, **kw: Any) -> Run:
        def run() -> Any:
            with cls(model=peer_net, target_layers=[peer_layer]) as cam:
                return cam(input_tensor=x, targets=targets, **kw)

        return run

    def torchcam_finer() -> Any:
        with tc.FinerCAM(peer_net, peer_layer, input_shape=tuple(x.shape[1:])) as extractor:
            return extractor(class_idx=target, scores=peer_net(x))[0].numpy()

    def torchcam_smooth() -> Any:
        with tc.SmoothGradCAMpp(peer_net, peer_layer, input_shape=tuple(x.shape[1:])) as ex:
            peer_net(x)
            torch.manual_seed(0)
            return ex(class_idx=target)[0].numpy()

    def pgc_fullgrad() -> Any:
        with pgc.FullGrad(model=peer_net, target_layers=[]) as cam:
            return cam(input_tensor=x, targets=[ClassifierOutputTarget(t) for t in target])

    elementwise = cm.GradCAMElementWise(net, layer)
    shapley = cm.ShapleyCAM(net, layer)
    finer = cm.FinerCAM(net, layer)
    smooth = cm.SmoothGradCAMPlusPlus(net, layer)
    fullgrad = cm.FullGrad(net)
    return [
        {
            "method": "Grad-CAM element-wise",
            "ours": lambda: elementwise.attribute(x, target=target),
            "peers": {
                "pytorch-grad-cam GradCAMElementWise": (
                    pgc_call(pgc.GradCAMElementWise, [ClassifierOutputTarget(t) for t in target]),
                    lambda: pgc_scaled(
                        elementwise.attribute(x, target=target, upsample=False), size
                    ),
                )
            },
        },
        {
            "method": "Shapley-CAM (ReST)",
            "ours": lambda: shapley.attribute(x, target=target),
            "peers": {
                "pytorch-grad-cam ShapleyCAM + ReST": (
                    pgc_call(pgc.ShapleyCAM, [ClassifierOutputReST(t) for t in target]),
                    lambda: pgc_scaled(shapley.attribute(x, target=target, upsample=False), size),
                )
            },
        },
        {
            "method": "Finer-CAM",
            "ours": lambda: finer.attribute(x, target=predicted),
            "peers": {
                "pytorch-grad-cam FinerCAM (defaults)": (
                    pgc_call(pgc.FinerCAM, None),
                    lambda: pgc_scaled(finer.attribute(x, target=predicted, upsample=False), size),
                ),
                "torchcam FinerCAM (gamma 0.6, uniform)": (
                    torchcam_finer,
                    lambda: _norm(
                        finer.attribute(
                            x,
                            target=target,
                            alpha=0.6,
                            reference_weights="uniform",
                            upsample=False,
                        )[:, 0]
                        .detach()
                        .numpy(),
                        1e-8,
                    ),
                ),
            },
        },
        {
            "method": "FullGrad",
            "ours": lambda: fullgrad.attribute(x, target=target),
            "peers": {
                "pytorch-grad-cam FullGrad": (
                    pgc_fullgrad,
                    lambda: {
                        "": fullgrad_channel(fullgrad, x, target),
                        "with its 1e-7 in psi": fullgrad_channel(fullgrad, x, target, 1e-7),
                    },
                )
            },
        },
        {
            "method": "Smooth Grad-CAM++ (4 copies, std 0.3)",
            "ours": lambda: smooth.attribute(x, target=target),
            "peers": {
                "torchcam SmoothGradCAMpp (4, 0.3)": (
                    torchcam_smooth,
                    lambda: {
                        "(other definition and noise: see the docstring)": _norm(
                            smooth.attribute(x, target=target, exp_score=False, upsample=False)[
                                :, 0
                            ]
                            .detach()
                            .numpy(),
                            1e-8,
                        )
                    },
                )
            },
        },
    ]


def run_dims(net: torch.nn.Module, x: torch.Tensor, rounds: int, label: str) -> None:
    target = [1]
    print(f"\n{label}: MONAI resnet18, layer4, input {tuple(x.shape)}, CPU s (median)")
    width = 40
    for case in cases(net, x, target):
        runs: dict[str, Run] = {"ours": case["ours"]}
        for name, (peer_run, _) in case["peers"].items():
            runs[name] = peer_run
        stats = interleaved(runs, rounds)
        ours = stats["ours"]["median"]
        print(f"  {case['method']:<{width}} captum_medcam {ours:8.3f}")
        for name, (_, ours_scaled) in case["peers"].items():
            s = stats[name]
            if s["error"] is not None:
                print(f"    {name:<{width - 2}} FAILED: {s['error']}")
                continue
            theirs = np.asarray(s["result"], dtype=np.float64)
            try:
                mine = ours_scaled()
                mine = mine if isinstance(mine, dict) else {"": mine}
                diff = ", ".join(
                    f"max |diff|{' ' + k if k else ''} "
                    f"{np.abs(np.asarray(v, np.float64).reshape(theirs.shape) - theirs).max():.2e}"
                    for k, v in mine.items()
                )
            except Exception as error:  # an agreement that cannot be computed is printed
                diff = f"agreement not computed: {type(error).__name__}: {error}"[:100]
            print(
                f"    {name:<{width - 2}} {s['median']:8.3f}  ours/peer "
                f"{ours / s['median']:5.2f}x  {diff}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="112^2 and 32^3, one round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rounds = 1 if args.quick else args.rounds
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, rounds {rounds}")
    torch.manual_seed(0)
    net2 = resnet18(spatial_dims=2, n_input_channels=3, num_classes=10).eval()
    side = 112 if args.quick else 224
    run_dims(net2, torch.randn(1, 3, side, side), rounds, "2D")
    torch.manual_seed(0)
    net3 = resnet18(spatial_dims=3, n_input_channels=1, num_classes=10).eval()
    edge = 32 if args.quick else 64
    run_dims(net3, torch.randn(1, 1, edge, edge, edge), rounds, "3D")


if __name__ == "__main__":
    main()
