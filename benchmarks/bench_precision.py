"""Mixed precision, compilation and channels-last on the CPU: speed and agreement with float32.

The narrow MONAI ``resnet10`` of tutorials/02 is trained briefly on ``SyntheticLesions``
(as in ``bench_score_cam_approx.py``); the lesion volumes it finds are explained with
ScoreCAM3D and scored with deletion and insertion (``deletion_insertion_auc``), under
``captum_medcam.perturbation_options``:

* ``float32`` (default) against ``autocast="bfloat16"``: process CPU time (interleaved
  rounds, median), the Spearman rank correlation of the bfloat16 map with the float32 map,
  and the change of DAUC / IAUC, both for the metrics alone (same float32 map scored under
  bfloat16) and end to end (bfloat16 map scored under bfloat16).
* channels-last-3d inputs (the model's weights stay as they are: the package never changes
  the user's model): a wrapper that converts each perturbed input.
* ``compile=True`` (inductor): the one-off compile cost (wall time and CPU time of the
  process and its compiler workers) against the time saved per run afterwards, and the
  number of runs after which it pays for itself.

Only CPU figures: GPU figures come from runs on a GPU, never from this script.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_precision.py [--quick] [--no-compile]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from collections.abc import Callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import torch
from torch import nn

from benchmarks._common import interleaved
from benchmarks.bench_score_cam_approx import train
from captum_medcam import ScoreCAM3D, perturbation_options
from captum_medcam.data import SyntheticLesions
from captum_medcam.metrics import deletion_insertion_auc, spearman_rank_correlation


def cpu_with_children() -> float:
    """CPU seconds of this process and of its finished children (inductor's workers)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


class ChannelsLast(nn.Module):
    """Feeds the model channels-last-3d inputs (its weights are left as they are)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.contiguous(memory_format=torch.channels_last_3d))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="2 volumes, one round")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--volumes", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=32, help="deletion/insertion steps")
    parser.add_argument("--no-compile", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.volumes, args.rounds, args.steps = 2, 1, 16
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))

    net = train(args.size, n_train=64, steps=80)
    test = SyntheticLesions(args.volumes + 32, size=args.size, seed=1)
    x_all = torch.stack([test[i]["image"] for i in range(len(test))])
    y_all = torch.stack([test[i]["label"] for i in range(len(test))])
    with torch.no_grad():
        predicted = net(x_all).argmax(1)
    accuracy = float((predicted == y_all).float().mean())
    found = ((predicted == 1) & (y_all == 1)).nonzero().squeeze(1)[: args.volumes]
    x, target = x_all[found], predicted[found]
    cam = ScoreCAM3D(net, net.layer4)

    def score_cam(model: nn.Module = net) -> torch.Tensor:
        return ScoreCAM3D(model, net.layer4).attribute(x, target=target)

    maps32 = cam.attribute(x, target=target)

    def metrics(maps: torch.Tensor, model: nn.Module = net) -> tuple[torch.Tensor, torch.Tensor]:
        return deletion_insertion_auc(model, x, maps, target, n_steps=args.steps)

    def under(autocast: str | None, fn: Callable[[], object]) -> Callable[[], object]:
        def run() -> object:
            with perturbation_options(autocast=autocast):
                return fn()

        return run

    methods = {
        "Score-CAM float32": under(None, score_cam),
        "Score-CAM bfloat16": under("bfloat16", score_cam),
        "Score-CAM float32 channels-last input": under(None, lambda: score_cam(ChannelsLast(net))),
        "Score-CAM bfloat16 channels-last input": under(
            "bfloat16", lambda: score_cam(ChannelsLast(net))
        ),
        "deletion+insertion float32": under(None, lambda: metrics(maps32)),
        "deletion+insertion bfloat16": under("bfloat16", lambda: metrics(maps32)),
        "deletion+insertion float32 channels-last input": under(
            None, lambda: metrics(maps32, ChannelsLast(net))
        ),
        "deletion+insertion bfloat16 channels-last input": under(
            "bfloat16", lambda: metrics(maps32, ChannelsLast(net))
        ),
    }
    stats = interleaved(methods, args.rounds)
    for name, s in stats.items():
        if s["error"]:
            raise RuntimeError(f"{name}: {s['error']}")

    print(
        f"\n### Precision on the CPU: MONAI resnet10 (narrow) trained on SyntheticLesions "
        f"{args.size}^3 (held-out accuracy {accuracy:.2f}), {x.shape[0]} lesion volumes, "
        f"layer4, deletion/insertion with {args.steps} steps; process CPU time, median of "
        f"{args.rounds} interleaved round(s), {torch.get_num_threads()} threads"
    )
    print("| run | CPU s | x float32 |")
    print("| --- | --- | --- |")
    for task in ("Score-CAM", "deletion+insertion"):
        base = stats[f"{task} float32"]["median"]
        for name, s in stats.items():
            if name.startswith(task):
                print(f"| {name} | {s['median']:.2f} | {s['median'] / base:.2f} |")

    maps16 = stats["Score-CAM bfloat16"]["result"]
    rho = spearman_rank_correlation(maps16, maps32)
    d32, i32 = stats["deletion+insertion float32"]["result"]
    d16, i16 = stats["deletion+insertion bfloat16"]["result"]
    with perturbation_options(autocast="bfloat16"):
        d_e2e, i_e2e = metrics(maps16)
    print("\n| agreement of bfloat16 with float32 | mean | worst |")
    print("| --- | --- | --- |")
    print(f"| Score-CAM map, Spearman | {rho.mean():.4f} | {rho.min():.4f} |")
    for label, a, b in (
        ("DAUC, metric in bfloat16 (same map)", d16, d32),
        ("IAUC, metric in bfloat16 (same map)", i16, i32),
        ("DAUC, map and metric in bfloat16", d_e2e, d32),
        ("IAUC, map and metric in bfloat16", i_e2e, i32),
    ):
        diff = (a - b).abs()
        print(f"| {label}, abs. difference | {diff.mean():.4f} | {diff.max():.4f} |")
    print(f"(float32: DAUC {d32.mean():.4f}, IAUC {i32.mean():.4f})")

    if args.no_compile:
        return
    # torch.compile: the first run pays the compile (and a recompile for the last, smaller
    # chunk); later runs reuse dynamo's cache.
    with perturbation_options(compile=True):
        wall, cpu = time.perf_counter(), cpu_with_children()
        try:
            first = metrics(maps32)
        except Exception as err:  # report why compile is unusable here
            print(f"\ntorch.compile failed: {type(err).__name__}: {str(err).splitlines()[0]}")
            return
        wall, cpu = time.perf_counter() - wall, cpu_with_children() - cpu
    steady = interleaved(
        {
            "eager": under(None, lambda: metrics(maps32)),
            "compiled": lambda: _compiled(lambda: metrics(maps32)),
        },
        args.rounds,
    )
    eager, compiled = steady["eager"]["median"], steady["compiled"]["median"]
    same = all(
        torch.allclose(a, b, atol=1e-5)
        for a, b in zip(first, steady["eager"]["result"], strict=True)
    )
    saved = eager - compiled
    print(
        f"\n### torch.compile (inductor) of the masked forward, deletion+insertion on "
        f"{x.shape[0]} volumes"
    )
    print("| | s |")
    print("| --- | --- |")
    print(f"| first run incl. compiling, wall | {wall:.1f} |")
    print(f"| first run incl. compiling, CPU (process + compiler workers) | {cpu:.1f} |")
    print(f"| later run, eager, CPU | {eager:.2f} |")
    print(f"| later run, compiled, CPU | {compiled:.2f} |")
    runs = f"after {(cpu - compiled) / saved:.0f} runs" if saved > 0 else "never"
    print(f"compiled results within 1e-5 of eager: {same}; pays for itself: {runs}")


def _compiled(fn: Callable[[], object]) -> object:
    with perturbation_options(compile=True):
        return fn()


if __name__ == "__main__":
    main()
