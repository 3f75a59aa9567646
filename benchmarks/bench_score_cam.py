"""Score-CAM side by side: captum_medcam vs torchcam vs pytorch-grad-cam vs the limit.

The limit is the same number of masked forwards as ours, done as a bare batched loop over
masks prepared in advance (what no implementation can beat without fewer forwards).
Process CPU time, methods interleaved round by round in one process, median of rounds.

    python benchmarks/bench_score_cam.py [--quick] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import torch

from benchmarks._common import interleaved
from captum_medcam import ScoreCAM, ScoreCAM3D
from captum_medcam._core.spatial import minmax_normalize, resize
from captum_medcam.attr._hooks import forward_with_capture
from captum_medcam.attr._score_cam import _distinct_masks


def layer_masks(model, layer, x):
    """(activations, constant channels, distinct normalised masks at layer resolution)."""
    with torch.no_grad():
        _, acts = forward_with_capture(model, layer, x)
    keys, constant = minmax_normalize(acts)
    masks, _, _ = _distinct_masks(keys, constant, zero_mask=False)
    return acts, constant, masks


def count_forwards(model, layer, x) -> tuple[int, int, int]:
    """(channels, non-constant channels, distinct masks) for one example."""
    acts, constant, masks = layer_masks(model, layer, x)
    return acts.shape[1], int((~constant).sum()), masks.shape[0]


def limit_fn(model, layer, x, target, chunk):
    """The same masked forwards, as a bare loop over masks prepared beforehand."""
    masks = minmax_normalize(resize(layer_masks(model, layer, x)[2], x.shape[2:]))[0]

    def run():
        with torch.no_grad():
            for i in range(0, masks.shape[0], chunk):
                model(x * masks[i : i + chunk]).softmax(1)[:, target]

    return run


def torchcam_fn(model, layer_name, x, target, bs):
    from torchcam.methods import ScoreCAM as TorchcamScoreCAM

    def run():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with TorchcamScoreCAM(
                model, layer_name, batch_size=bs, input_shape=tuple(x.shape[1:])
            ) as cam:
                with torch.no_grad():
                    out = model(x)
                return cam(class_idx=target, scores=out)

    return run


def pgc_fn(model, layer, x, target, bs):
    from pytorch_grad_cam import ScoreCAM as PGCScoreCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    def run():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cam = PGCScoreCAM(model=model, target_layers=[layer])
            cam.batch_size = bs
            cam.tqdm = False
            return cam(input_tensor=x, targets=[ClassifierOutputTarget(target)])

    return run


def case(title, model, layer, layer_name, x, target, rounds, ppe_values, torchcam_bs, with_pgc):
    k, live, distinct = count_forwards(model, layer, x)
    ours_cls = ScoreCAM3D if x.dim() == 5 else ScoreCAM
    methods = {}
    for ppe in ppe_values:
        methods[f"captum_medcam ppe={ppe}"] = lambda ppe=ppe: ours_cls(model, layer).attribute(
            x, target=target, perturbations_per_eval=ppe
        )
    methods[f"limit ({distinct} fwd, chunk {ppe_values[0]})"] = limit_fn(
        model, layer, x, target, ppe_values[0]
    )
    for bs in torchcam_bs:
        methods[f"torchcam bs={bs}"] = torchcam_fn(model, layer_name, x, target, bs)
    if with_pgc:
        methods["pytorch-grad-cam bs=16"] = pgc_fn(model, layer, x, target, 16)
    stats = interleaved(methods, rounds)
    limit = next(v["median"] for n, v in stats.items() if n.startswith("limit"))
    print(
        f"\n### {title}: layer {layer_name} map {tuple(layer_masks(model, layer, x)[0].shape[2:])}, "
        f"{k} channels, {live} non-constant, {distinct} distinct masks -> {distinct} forwards "
        f"({k - distinct} saved)"
    )
    print(f"{'method':38s} {'CPU s':>8s} {'x limit':>8s} {'peak MB':>8s}")
    for name, s in stats.items():
        if s["error"]:
            print(f"{name:38s} FAILED: {s['error']}")
        else:
            print(f"{name:38s} {s['median']:8.2f} {s['median'] / limit:8.2f} {s['peak_mb']:8.0f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="small sizes, one round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs="*", default=[28, 64], help="3D volume edges")
    parser.add_argument("--no-2d", action="store_true", help="skip the 2D ResNet-18 case")
    parser.add_argument(
        "--trained", action="store_true", help="count forwards on the trained demo model"
    )
    args = parser.parse_args()
    rounds = 1 if args.quick else args.rounds
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    from monai.networks.nets import resnet18

    torch.manual_seed(0)
    net3d = resnet18(spatial_dims=3, n_input_channels=1, num_classes=11).eval()
    sizes = [28] if args.quick else args.sizes
    for s in sizes:
        x = torch.randn(1, 1, s, s, s)
        case(
            f"MONAI 3D ResNet-18, {s}^3",
            net3d,
            net3d.layer4,
            "layer4",
            x,
            3,
            rounds,
            [16, 64],
            [32, 64],
            with_pgc=False,
        )
        # pytorch-grad-cam's Score-CAM on a volume: print its error.
        err = interleaved({"pytorch-grad-cam 3D": pgc_fn(net3d, net3d.layer4, x, 3, 16)}, 1)[
            "pytorch-grad-cam 3D"
        ]
        print(f"pytorch-grad-cam ScoreCAM on 5-D input: {err['error'] or 'ran'}")
    if args.trained:
        from captum_medcam._demo import train_demo_model
        from captum_medcam.data import SyntheticLesions

        model, accuracy = train_demo_model()
        x = torch.stack([SyntheticLesions(8, size=32, seed=1)[i]["image"] for i in range(8)])
        print(
            f"\n### forwards saved on the trained demo model (resnet10, accuracy {accuracy:.0%}), 8 volumes"
        )
        for name in ("layer2", "layer3", "layer4"):
            layer = getattr(model, name)
            counts = [count_forwards(model, layer, x[i : i + 1]) for i in range(8)]
            k = counts[0][0]
            live = sum(c[1] for c in counts) / 8
            distinct = sum(c[2] for c in counts) / 8
            print(
                f"{name}: {k} channels, mean {live:.1f} non-constant, {distinct:.1f} distinct masks "
                f"-> {distinct:.1f} forwards per volume ({1 - distinct / k:.0%} saved)"
            )
    if not args.quick and not args.no_2d:
        net2d = resnet18(spatial_dims=2, n_input_channels=3, num_classes=11).eval()
        x2 = torch.randn(1, 3, 224, 224)
        case(
            "MONAI 2D ResNet-18, 224^2",
            net2d,
            net2d.layer4,
            "layer4",
            x2,
            3,
            rounds,
            [16, 64],
            [32],
            with_pgc=True,
        )


if __name__ == "__main__":
    main()
