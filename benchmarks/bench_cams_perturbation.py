"""Ablation-CAM, SS-CAM and IS-CAM side by side with the peer that implements each.

One line per method: the peer in 2D (pytorch-grad-cam's ``AblationCAM``, torchcam's
``SSCAM`` and ``ISCAM``) against captum_medcam in 2D on the same MONAI 2D ResNet-18, with
the largest difference between the two maps (both min-max normalised at layer resolution),
then captum_medcam on the MONAI 3D ResNet-18 and the peer on the same volume (its time, or
its error). Process CPU time, methods interleaved round by round in one process, median of
the rounds (``OMP_WAIT_POLICY=PASSIVE``, ``BENCH_THREADS`` torch threads, default 2).

    python benchmarks/bench_cams_perturbation.py [--quick] [--rounds 3]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import os
import sys
import warnings

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import torch

from benchmarks._common import interleaved
from captum_medcam import ISCAM, ISCAM3D, SSCAM, SSCAM3D, AblationCAM, AblationCAM3D


def quiet(fn):
    """Run ``fn`` with warnings and the peers' progress bars (stderr) silenced."""

    def run():
        with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            return fn()

    return run


def pgc_ablation(model, x, target, batch_size):
    from pytorch_grad_cam import AblationCAM as PGCAblationCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    def run():
        peer = copy.deepcopy(model)  # it swaps the layer inside the model it is given
        cam = PGCAblationCAM(model=peer, target_layers=[peer.layer4], batch_size=batch_size)
        try:
            return torch.as_tensor(cam(input_tensor=x, targets=[ClassifierOutputTarget(target)]))
        finally:
            cam.activations_and_grads.release()

    return quiet(run)


def torchcam_method(name, model, x, target, **options):
    import torchcam.methods

    cls = getattr(torchcam.methods, name)

    def run():
        torch.manual_seed(0)
        with cls(model, "layer4", input_shape=tuple(x.shape[1:]), **options) as cam:
            with torch.no_grad():
                scores = model(x)
            return cam(class_idx=target, scores=scores, normalized=False)[0]

    return quiet(run)


def minmax(m: torch.Tensor) -> torch.Tensor:
    m = m.double().flatten()
    return (m - m.min()) / (m.max() - m.min()).clamp_min(1e-12)


def agreement(name, peer, ours) -> float:
    """Largest difference of the min-max normalised maps (pytorch-grad-cam's at input size,
    so ours is resized its way first)."""
    if name == "Ablation-CAM":
        from pytorch_grad_cam.utils.image import scale_cam_image

        size = tuple(peer.shape[-1:-3:-1])
        ours = torch.as_tensor(scale_cam_image(ours[:, 0].numpy(), size))
    return float((minmax(peer) - minmax(ours)).abs().max())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="small sizes, one round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size2d", type=int, default=112, help="2D image edge")
    parser.add_argument(
        "--size3d", type=int, default=48, help="3D volume edge (48: a 2x2x2 layer4 map)"
    )
    parser.add_argument("--rounds3d", type=int, default=1, help="rounds of the 3D case")
    parser.add_argument("--widen", type=float, default=0.25, help="ResNet-18 widen_factor")
    parser.add_argument("--ss-samples", type=int, default=4, help="SS-CAM noisy masks per channel")
    args = parser.parse_args()
    rounds = 1 if args.quick else args.rounds
    size2d, size3d = (48, 32) if args.quick else (args.size2d, args.size3d)
    rounds3d = 1 if args.quick else args.rounds3d
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    from monai.networks.nets import resnet18

    torch.manual_seed(0)
    net2d = resnet18(
        spatial_dims=2, n_input_channels=3, num_classes=11, widen_factor=args.widen
    ).eval()
    net3d = resnet18(
        spatial_dims=3, n_input_channels=1, num_classes=11, widen_factor=args.widen
    ).eval()
    x2 = torch.randn(1, 3, size2d, size2d)
    x3 = torch.randn(1, 1, size3d, size3d, size3d)
    target = 3
    ss = {"num_samples": args.ss_samples, "std": 2.0}
    # (name, peer name, peer factory, our 2D call, our 3D call), options matched to the peer
    cases = [
        (
            "Ablation-CAM",
            "pytorch-grad-cam bs=32",
            lambda net, x: pgc_ablation(net, x, target, 32),
            lambda net, x: AblationCAM(net, net.layer4).attribute(
                x, target=target, upsample=False, perturbations_per_eval=32
            ),
            lambda net, x: AblationCAM3D(net, net.layer4).attribute(
                x, target=target, perturbations_per_eval=32
            ),
        ),
        (
            "SS-CAM",
            "torchcam bs=32",
            lambda net, x: torchcam_method("SSCAM", net, x, target, batch_size=32, **ss),
            lambda net, x: SSCAM(net, net.layer4).attribute(
                x, target=target, upsample=False, perturbations_per_eval=32, **ss
            ),
            lambda net, x: SSCAM3D(net, net.layer4).attribute(
                x, target=target, perturbations_per_eval=32, **ss
            ),
        ),
        (
            "IS-CAM",
            "torchcam bs=32",
            lambda net, x: torchcam_method("ISCAM", net, x, target, batch_size=32),
            lambda net, x: ISCAM(net, net.layer4).attribute(
                x, target=target, upsample=False, perturbations_per_eval=32
            ),
            lambda net, x: ISCAM3D(net, net.layer4).attribute(
                x, target=target, perturbations_per_eval=32
            ),
        ),
    ]
    channels = net2d.layer4[-1].conv2.out_channels
    print(
        f"MONAI ResNet-18 (widen_factor {args.widen}, layer4: {channels} channels); 2D "
        f"{tuple(x2.shape)}, 3D {tuple(x3.shape)}; SS-CAM {args.ss_samples} samples, std 2; "
        f"IS-CAM 10 steps; CPU s, median of {rounds} interleaved rounds ({rounds3d} in 3D), "
        f"{torch.get_num_threads()} threads"
    )
    header = (
        f"{'method':13s} {'peer':24s} {'peer 2D':>9s} {'ours 2D':>9s} {'speed-up':>9s} "
        f"{'max |diff|':>10s} {'ours 3D':>9s}  peer 3D"
    )
    print(header)
    for name, peer_name, peer, ours2d, ours3d in cases:
        s2 = interleaved({"peer": peer(net2d, x2), "ours": lambda o=ours2d: o(net2d, x2)}, rounds)
        s3 = interleaved({"peer": peer(net3d, x3), "ours": lambda o=ours3d: o(net3d, x3)}, rounds)
        if s2["peer"]["error"]:
            peer2d, speedup, diff = "FAILED", "", f"{s2['peer']['error']}"
        else:
            peer2d = f"{s2['peer']['median']:9.2f}"
            speedup = f"{s2['peer']['median'] / s2['ours']['median']:8.1f}x"
            diff = f"{agreement(name, s2['peer']['result'], s2['ours']['result']):10.1e}"
        peer3d = (
            f"FAILED: {s3['peer']['error']}"
            if s3["peer"]["error"]
            else f"{s3['peer']['median']:.2f} s"
        )
        print(
            f"{name:13s} {peer_name:24s} {peer2d:>9s} {s2['ours']['median']:9.2f} "
            f"{speedup:>9s} {diff:>10s} {s3['ours']['median']:9.2f}  {peer3d}"
        )


if __name__ == "__main__":
    main()
