"""ROAD (MoRF + LeRF, noisy linear imputation): captum_medcam vs. pytorch-grad-cam, 2D and 3D.

2D: a MONAI ResNet-18 on RGB images, smooth CAM-like maps, pytorch-grad-cam's ``ROADCombined``
(percentiles 10..90, both orders, ``ClassifierOutputSoftmaxTarget``) against
``road(order="combined")`` with the same fractions, run interleaved; time is process CPU time
(``time.process_time()``), the fair measure on a shared machine. The agreement of the values
is printed with the noise switched off on both sides (pytorch-grad-cam's imputer draws its
noise from torch's global state; ours from a seeded generator). "limit" is the same number
of forwards on a pre-built input: what any ROAD costs without its imputation.

3D: ours on a 3D ResNet-18 (volumes), and pytorch-grad-cam's ROAD on the same volumes, whose
failure (its imputer indexes a volume with two coordinates: a singular system, NaN) is
printed.

    python benchmarks/bench_road.py --quick
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import math
import statistics
import time
import warnings
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from monai.networks.nets import resnet18

from captum_medcam.metrics import road

FRACTIONS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
CHUNK = 32


def smooth_maps(n: int, shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """CAM-like maps ``(n, 1, *shape)``: coarse noise upsampled (a CAM's blobs), no ties."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 1, *[max(2, s // 16) for s in shape], generator=g)
    mode = "bilinear" if len(shape) == 2 else "trilinear"
    maps = F.interpolate(coarse, size=shape, mode=mode, align_corners=False)
    return maps + 1e-3 * torch.rand(maps.shape, generator=g)  # no ties: the counts match


def timed(fn: Callable[[], object]) -> tuple[float, object, str]:
    t = time.process_time()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = fn()
    except Exception as e:  # a peer's failure is printed, not raised
        return math.nan, None, f"{type(e).__name__}: {str(e).splitlines()[0][:110]}"
    return time.process_time() - t, out, ""


def pgc_combined(model, x, cams, target, noise: float) -> Callable[[], np.ndarray]:
    import pytorch_grad_cam.metrics.road as pgc_road
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    targets = [ClassifierOutputSoftmaxTarget(int(t)) for t in target]
    percentiles = [round(100 * (1 - f)) for f in FRACTIONS]  # theirs: the percentage kept

    def run() -> np.ndarray:
        defaults = pgc_road.NoisyLinearImputer.__init__.__defaults__
        pgc_road.NoisyLinearImputer.__init__.__defaults__ = (noise, pgc_road.neighbors_weights)
        try:
            with torch.no_grad():
                return pgc_road.ROADCombined(percentiles)(x, cams, targets, model)
        finally:
            pgc_road.NoisyLinearImputer.__init__.__defaults__ = defaults

    return run


def limit(model, x, n_forwards: int) -> None:
    batch = x[:1].expand(CHUNK, *x.shape[1:]).contiguous()
    with torch.no_grad():
        for start in range(0, n_forwards, CHUNK):
            model(batch[: min(CHUNK, n_forwards - start)])


def case_2d(n: int, size: int, rounds: int, channels: int = 3) -> None:
    torch.manual_seed(0)
    model = resnet18(spatial_dims=2, n_input_channels=channels, num_classes=10).eval()
    x = torch.rand(n, channels, size, size)
    maps = smooth_maps(n, (size, size), 1)
    cams = maps[:, 0].double().numpy()
    with torch.no_grad():
        target = model(x).argmax(1)
    n_forwards = n * (1 + 2 * len(FRACTIONS))
    methods = {
        "captum_medcam road(combined)": lambda: road(
            model, x, maps, target, fractions=FRACTIONS, max_examples_per_batch=CHUNK
        ),
        "pytorch-grad-cam ROADCombined": pgc_combined(model, x, cams, target, 0.01),
        "limit (same forwards)": lambda: limit(model, x, n_forwards),
    }
    times: dict[str, list[float]] = {k: [] for k in methods}
    errors: dict[str, str] = {}
    for _ in range(rounds):  # interleaved
        for key, fn in methods.items():
            t, _, err = timed(fn)
            times[key].append(t)
            if err:
                errors[key] = err
    ours = statistics.median(times["captum_medcam road(combined)"])
    print(f"2D: {n} images {channels}x{size}x{size}, MONAI resnet18, 9 fractions x 2 orders")
    for key in methods:
        t = statistics.median(times[key])
        print(f"  {key:<32} {t:8.2f} s CPU  {t / ours:5.2f}x ours  {errors.get(key, '')}")
    # agreement without noise (same imputation, same counts: size * size a multiple of 100)
    model64 = resnet18(spatial_dims=2, n_input_channels=channels, num_classes=10).eval()
    model64.load_state_dict(model.state_dict())
    model64.double()
    ours64 = road(model64, x.double(), maps.double(), target, fractions=FRACTIONS, noise=0.0)
    ours32 = road(model, x, maps, target, fractions=FRACTIONS, noise=0.0)
    _, theirs, err = timed(pgc_combined(model, x, cams, target, 0.0))
    if err:
        print(f"  agreement: pytorch-grad-cam failed: {err}")
    else:
        ref = torch.from_numpy(np.asarray(theirs)).double()
        d64 = float((ours64 - ref).abs().max())
        d32 = float((ours32.double() - ref).abs().max())
        print(
            f"  agreement without noise, max |ours - theirs|: {d64:.1e} (ours in float64; theirs "
            f"solves in float64, rounds the image to float32 and runs the float32 model), "
            f"{d32:.1e} (ours in float32, tol 1e-5); values "
            f"{[round(v, 4) for v in ours64.tolist()]}"
        )


def case_3d(n: int, size: int, rounds: int) -> None:
    torch.manual_seed(0)
    model = resnet18(spatial_dims=3, n_input_channels=1, num_classes=2).eval()
    x = torch.rand(n, 1, size, size, size)
    maps = smooth_maps(n, (size, size, size), 2)
    with torch.no_grad():
        target = model(x).argmax(1)
    n_forwards = n * (1 + 2 * len(FRACTIONS))
    methods = {
        "captum_medcam road(combined)": lambda: road(
            model, x, maps, target, fractions=FRACTIONS, max_examples_per_batch=CHUNK
        ),
        "limit (same forwards)": lambda: limit(model, x, n_forwards),
    }
    times: dict[str, list[float]] = {k: [] for k in methods}
    values = None
    for _ in range(rounds):
        for key, fn in methods.items():
            t, out, _ = timed(fn)
            times[key].append(t)
            if key.startswith("captum"):
                values = out
    ours = statistics.median(times["captum_medcam road(combined)"])
    print(f"3D: {n} volumes 1x{size}^3, MONAI resnet18, 9 fractions x 2 orders")
    for key in methods:
        t = statistics.median(times[key])
        print(f"  {key:<32} {t:8.2f} s CPU  {t / ours:5.2f}x ours")
    print(f"  ours: values {[round(v, 4) for v in values.tolist()]}")  # type: ignore[union-attr]
    # the peer on one small volume (its imputer builds a SciPy system per fraction, and fails)
    side = min(size, 16)
    small, small_map = x[:1, :, :side, :side, :side], maps[:1, 0, :side, :side, :side]
    with torch.no_grad():
        small_target = model(small).argmax(1)
    t, theirs, err = timed(pgc_combined(model, small, small_map.numpy(), small_target, 0.01))
    shown = err or f"returned {np.asarray(theirs).tolist()}"
    print(f"  pytorch-grad-cam ROADCombined on a 1x{side}^3 volume: {shown} ({t:.2f} s CPU)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, one round")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.quick:
        case_2d(n=2, size=40, rounds=1)
        case_2d(n=2, size=40, rounds=1, channels=1)
        case_3d(n=1, size=16, rounds=1)
    else:
        case_2d(n=8, size=100, rounds=3)  # RGB: their one factorisation serves 3 channels
        case_2d(n=8, size=100, rounds=3, channels=1)  # grayscale, as most medical images
        case_3d(n=2, size=64, rounds=1)


if __name__ == "__main__":
    main()
