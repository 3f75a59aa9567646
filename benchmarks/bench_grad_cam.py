"""Gradient CAMs on a MONAI 3D ResNet-18: captum_medcam vs. MONAI, pytorch-grad-cam, medcam.

Measures process CPU time (the machine is shared), interleaving the methods in every
repetition, and reports the median per method with its ratio to the limit: one forward
pass plus the gradient of the target scores with respect to the layer. Peers that run a
full backward pass through the network cost about 3x the limit.

A second table checks batches: each method's map for a batch with one target per example
is compared with the maps of the examples alone (relative max difference). A peer's error
is printed instead of crashing.

    python benchmarks/bench_grad_cam.py --quick    # 28^3, batch 1 and 8
    python benchmarks/bench_grad_cam.py            # 28^3 and 64^3, batch 1 and 8
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import time
from collections.abc import Callable

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import torch
from monai.networks.nets import resnet18

from captum_medcam import (
    GradCAM3D,
    GradCAMPlusPlus3D,
    HiResCAM3D,
    LayerCAM3D,
    XGradCAM3D,
)
from captum_medcam._core.targets import select_target
from captum_medcam.attr._hooks import forward_with_capture

Run = Callable[[torch.Tensor, list[int]], object]


def limit(net: torch.nn.Module) -> Run:
    """One forward plus the gradient of the target scores to the layer: the lower bound."""

    def run(x: torch.Tensor, target: list[int]) -> object:
        with torch.enable_grad():
            out, acts = forward_with_capture(net, net.layer4, x)
            scores = select_target(out, torch.tensor(target), torch.arange(x.shape[0]))
            return torch.autograd.grad(scores.sum(), acts)[0]

    return run


def ours(cls: type, net: torch.nn.Module) -> Run:
    cam = cls(net, net.layer4)
    return lambda x, target: cam.attribute(x, target=target)


def monai_peer(name: str, net: torch.nn.Module) -> Run:
    import monai.visualize as mv

    cam = getattr(mv, name)(nn_module=net, target_layers="layer4")  # its hooks are never removed
    return lambda x, target: cam(x, class_idx=torch.tensor(target))


def pgc_peer(name: str, net: torch.nn.Module) -> Run:
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    def run(x: torch.Tensor, target: list[int]) -> object:
        with getattr(pgc, name)(model=net, target_layers=[net.layer4]) as cam:
            return cam(input_tensor=x, targets=[ClassifierOutputTarget(t) for t in target])

    return run


def as_array(result: object) -> np.ndarray:
    if isinstance(result, torch.Tensor):
        return result.detach().reshape(result.shape[0], -1).numpy()
    arr = np.asarray(result)
    return arr.reshape(arr.shape[0], -1)


def methods(net: torch.nn.Module) -> dict[str, Run]:
    # Peers get their own copy: MONAI leaves hooks behind and flips inplace flags.
    found: dict[str, Run] = {"limit (forward + grad to layer)": limit(net)}
    for cls in (GradCAM3D, GradCAMPlusPlus3D, LayerCAM3D, HiResCAM3D, XGradCAM3D):
        found[f"captum_medcam {cls.__name__}"] = ours(cls, net)
    for name in ("GradCAM", "GradCAMpp"):
        found[f"MONAI {name}"] = monai_peer(name, copy.deepcopy(net))
    pgc_net = copy.deepcopy(net)
    for name in ("GradCAM", "GradCAMPlusPlus"):
        found[f"pytorch-grad-cam {name}"] = pgc_peer(name, pgc_net)
    return found


def timed(run: Run, x: torch.Tensor, target: list[int]) -> tuple[float, object]:
    start = time.process_time()
    try:
        result = run(x, target)
    except Exception as error:  # a peer's failure is reported, not raised
        return float("nan"), error
    return time.process_time() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="28^3 only")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    net = resnet18(spatial_dims=3, n_input_channels=1, num_classes=2).eval()
    try:
        import medcam  # noqa: F401

        print("medcam is installed but not benchmarked here (its API injects into the model)")
    except ImportError as error:
        print(f"medcam: unavailable ({error})")
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, CPU time per call (median)"
    )
    sizes = [28] if args.quick else [28, 64]
    rows: list[tuple[str, int, int, str, float, str]] = []
    checks: list[tuple[str, int, int, str, str]] = []
    for size in sizes:
        for batch in (1, 8):
            x = torch.randn(batch, 1, size, size, size)
            target = [i % 2 for i in range(batch)]
            runs = methods(net)
            times: dict[str, list[float]] = {name: [] for name in runs}
            last: dict[str, object] = {}
            for _ in range(args.repeats):
                for name, run in runs.items():  # interleaved
                    seconds, last[name] = timed(run, x, target)
                    times[name].append(seconds)
            base = statistics.median(times["limit (forward + grad to layer)"])
            for name in runs:
                t = statistics.median(times[name])
                note = (
                    "" if not isinstance(last[name], Exception) else f"FAILED: {last[name]!r}"[:120]
                )
                rows.append((name, size, batch, f"{t:8.3f}", t / base, note))
            if batch > 1:
                for name, run in runs.items():
                    if name.startswith("limit") or isinstance(last[name], Exception):
                        continue
                    batched = as_array(last[name])
                    alone = np.concatenate(
                        [as_array(run(x[i : i + 1], [t])) for i, t in enumerate(target)]
                    )
                    scale = np.abs(alone).max() or 1.0
                    diff = np.abs(batched - alone).max() / scale
                    checks.append(
                        (name, size, batch, f"{diff:.2e}", "ok" if diff < 1e-3 else "MIXED")
                    )
    width = max(len(r[0]) for r in rows)
    print(f"\n{'method':<{width}}  size  batch  CPU s     x limit")
    for name, size, batch, t, ratio, note in rows:
        print(f"{name:<{width}}  {size:>3}^3  {batch:>5}  {t}  {ratio:7.2f}  {note}")
    print(f"\nbatch of {8} with targets [0, 1, 0, 1, ...] vs. each example alone (max rel. diff)")
    for name, size, batch, diff, verdict in checks:
        print(f"{name:<{width}}  {size:>3}^3  {batch:>5}  {diff}  {verdict}")


if __name__ == "__main__":
    main()
