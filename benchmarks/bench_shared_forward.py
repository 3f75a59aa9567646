"""Data-set evaluation with and without the shared clean forward, on the CPU.

``evaluate_dataset`` runs the model once per batch for the target and the correctness;
with the shared forward every metric reuses that output instead of running its own clean
forward (``captum_medcam._core.engine.shared_forward``). "without" patches the sharing out.
Both runs give identical values (checked here); the table gives the forwards (calls and
examples through the model), process CPU time (median of interleaved rounds) and the
saving. The map is GradCAM3D, so the forwards of the metrics are nearly all the work.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_shared_forward.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from contextlib import nullcontext
from functools import partial

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import torch
from monai.networks.nets import resnet10
from torch import nn

import captum_medcam.evaluation as evaluation
from benchmarks._common import interleaved
from captum_medcam import GradCAM3D, evaluate_dataset
from captum_medcam.data import SyntheticLesions
from captum_medcam.evaluation import default_metrics
from captum_medcam.metrics import DegenerateCurveWarning, aopc, deletion_auc, insertion_auc


class Counting(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.calls = self.rows = 0
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.rows += x.shape[0]
        return self.model(x)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="4 volumes, one round")
    parser.add_argument("--volumes", type=int, default=8)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if args.quick:
        args.volumes, args.rounds = 4, 1
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    # random weights: flat curves are expected; the forwards are what is measured
    warnings.simplefilter("ignore", DegenerateCurveWarning)
    torch.manual_seed(0)
    net = resnet10(
        spatial_dims=3, n_input_channels=1, num_classes=2, widen_factor=0.25, no_max_pool=True
    ).eval()
    model = Counting(net)
    data = [
        {"image": s["image"], "label": int(s["label"])}
        for s in SyntheticLesions(args.volumes, size=args.size, seed=1)
    ]
    cam = GradCAM3D(model, net.layer4)
    configs = {
        "defaults (100 + 100 steps, AOPC)": default_metrics(),
        "short curves (16 + 16 steps, AOPC 8 regions)": {
            "deletion_auc": partial(deletion_auc, n_steps=16),
            "insertion_auc": partial(insertion_auc, n_steps=16),
            "aopc": partial(aopc, n_regions=8),
        },
    }
    print(
        f"\n### Shared clean forward in evaluate_dataset: MONAI resnet10 (narrow, random "
        f"weights), {args.volumes} SyntheticLesions volumes {args.size}^3, GradCAM3D maps; "
        f"process CPU time, median of {args.rounds} interleaved round(s)"
    )
    print(
        "| metrics | batch | forwards without / with (examples) | CPU s without | "
        "CPU s with | saved |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for label, metrics in configs.items():
        for batch_size in (1, 4):
            counts: dict[str, tuple[int, int]] = {}

            def run(share: bool, metrics=metrics, batch_size=batch_size, counts=counts):
                patched = evaluation.shared_forward
                if not share:
                    evaluation.shared_forward = lambda *a: nullcontext()  # type: ignore[assignment]
                model.calls = model.rows = 0
                try:
                    result = evaluate_dataset(
                        model, cam, data, metrics, batch_size=batch_size, show_progress=False
                    )
                finally:
                    evaluation.shared_forward = patched  # type: ignore[assignment]
                counts["with" if share else "without"] = (model.calls, model.rows)
                return result

            stats = interleaved(
                {"without": lambda: run(False), "with": lambda: run(True)}, args.rounds
            )
            for s in stats.values():
                if s["error"]:
                    raise RuntimeError(s["error"])
            a, b = stats["without"]["result"], stats["with"]["result"]
            for name in metrics:
                if not torch.equal(a.values[name], b.values[name]):
                    raise AssertionError(f"{name} differs with the shared forward")
            t0, t1 = stats["without"]["median"], stats["with"]["median"]
            (c0, r0), (c1, r1) = counts["without"], counts["with"]
            print(
                f"| {label} | {batch_size} | {c0} / {c1} ({r0} / {r1}) | {t0:.2f} | {t1:.2f} "
                f"| {1 - t1 / t0:+.1%} |"
            )


if __name__ == "__main__":
    main()
