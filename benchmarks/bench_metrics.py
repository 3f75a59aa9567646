"""Deletion + insertion + AOPC: captum_medcam vs. a naive loop, torchcam, Quantus, and the limit.

Deletion and insertion share a zero baseline here (torchcam's default), so the fully
deleted input, insertion's start, is scored once. The limit is the same number of forwards as captum_medcam does, run as a bare batched loop
on a pre-built input (no perturbation built, nothing scored): no implementation of these
metrics can do less work with the same model. Peers run interleaved with ours; time is
process CPU time (``time.process_time()``), the fair measure on a shared machine.

    python benchmarks/bench_metrics.py --quick
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

import torch
from monai.networks.nets import resnet18
from torch import nn

from captum_medcam.metrics import (
    aopc,
    deletion_auc,
    deletion_insertion_auc,
    region_labels,
)

CHUNK = 32


class Counting(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.examples = 0
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.examples += x.shape[0]
        return self.model(x)


def naive_rise(model, x, attr, n_steps, substrate_fns) -> None:
    """RISE's loop: one example and one step per forward."""
    v = attr[0, 0].numel()
    step = -(-v // n_steps)
    with torch.no_grad():
        for k in range(x.shape[0]):
            img = x[k : k + 1]
            c = int(model(img).argmax(1))
            order = torch.argsort(attr[k].sum(0).flatten(), descending=True)
            for mode, fn in zip(("del", "ins"), substrate_fns, strict=True):
                start, finish = (img.clone(), fn(img)) if mode == "del" else (fn(img), img.clone())
                for i in range(n_steps + 1):
                    model(start).softmax(1)[0, c]
                    coords = order[step * i : step * (i + 1)]
                    start.view(1, img.shape[1], -1)[..., coords] = finish.reshape(
                        1, img.shape[1], -1
                    )[..., coords]


def naive_aopc(model, x, attr, region, n_regions) -> None:
    """Samek et al.'s loop: one example and one region per forward."""
    labels = region_labels(x, region)
    with torch.no_grad():
        for k in range(x.shape[0]):
            img = x[k : k + 1].clone()
            lab = labels[k].flatten()
            r = int(lab.max()) + 1
            rel = torch.zeros(r, dtype=x.dtype).scatter_add_(0, lab, attr[k].sum(0).flatten())
            c = int(model(img).argmax(1))
            for j in rel.argsort(descending=True)[:n_regions].tolist():
                img.view(1, img.shape[1], -1)[..., lab == j] = 0.0
                model(img).softmax(1)[0, c]


def limit(model, x, n_examples: int) -> None:
    """The same number of forwards, batched, on a pre-built input."""
    batch = x[:1].expand(CHUNK, *x.shape[1:]).contiguous()
    with torch.no_grad():
        for start in range(0, n_examples, CHUNK):
            model(batch[: min(CHUNK, n_examples - start)])


def timed(fn: Callable[[], object]) -> tuple[float, str]:
    t = time.process_time()
    try:
        fn()
    except Exception as e:  # a peer's failure is printed, not raised
        return math.nan, f"{type(e).__name__}: {str(e).splitlines()[0][:110]}"
    return time.process_time() - t, ""


def run_case(name, model, x, attr, n_steps, region, n_regions, reps, peers) -> list[tuple]:
    counting = Counting(model)
    deletion_insertion_auc(
        counting, x, attr, n_steps=n_steps, insertion_baselines=0.0, max_examples_per_batch=CHUNK
    )
    di_forwards = counting.examples
    counting.examples = 0
    aopc(
        counting,
        x,
        attr,
        region_size=region,
        n_regions=n_regions,
        baselines=0.0,
        max_examples_per_batch=CHUNK,
    )
    ao_forwards = counting.examples

    methods: dict[str, Callable[[], object]] = {
        "del+ins  captum_medcam": lambda: deletion_insertion_auc(
            model, x, attr, n_steps=n_steps, insertion_baselines=0.0, max_examples_per_batch=CHUNK
        ),
        "del+ins  limit (same forwards)": lambda: limit(model, x, di_forwards),
        "del+ins  naive RISE loop": lambda: naive_rise(
            model, x, attr, n_steps, (torch.zeros_like, torch.zeros_like)
        ),
        "del      captum_medcam": lambda: deletion_auc(
            model, x, attr, n_steps=n_steps, max_examples_per_batch=CHUNK
        ),
        "aopc     captum_medcam": lambda: aopc(
            model,
            x,
            attr,
            region_size=region,
            n_regions=n_regions,
            baselines=0.0,
            max_examples_per_batch=CHUNK,
        ),
        "aopc     limit (same forwards)": lambda: limit(model, x, ao_forwards),
        "aopc     naive Samek loop": lambda: naive_aopc(model, x, attr, region, n_regions),
        **peers,
    }
    times: dict[str, list[float]] = {k: [] for k in methods}
    errors: dict[str, str] = {}
    for _ in range(reps):  # interleaved
        for key, fn in methods.items():
            t, err = timed(fn)
            times[key].append(t)
            if err:
                errors[key] = err
    rows = []
    for key in methods:
        t = statistics.median(times[key])
        task = key.split()[0]
        ours = statistics.median(times[f"{task:<8} captum_medcam"])
        rows.append(
            (name, key, t, t / ours if not math.isnan(t) else math.nan, errors.get(key, ""))
        )
    return rows


def torchcam_peer(model, x, n_steps) -> Callable[[], object]:
    from torchcam.methods import GradCAM
    from torchcam.metrics import DeletionInsertionMetric

    def run() -> object:
        with GradCAM(model, target_layer=model.layer4) as extractor:
            metric = DeletionInsertionMetric(
                extractor, lambda out: out.softmax(-1), steps=n_steps, batch_size=CHUNK
            )
            metric.update(x)
            return metric.summary()

    return run


def quantus_peers(model, x, attr, n_steps, region, n_regions) -> dict[str, Callable[[], object]]:
    import quantus

    v = attr[0, 0].numel()
    xb, ab = x.numpy(), attr.numpy()
    with torch.no_grad():
        yb = model(x).argmax(1).numpy()

    def pixel_flipping(per_sample_auc: bool) -> Callable[[], object]:
        def run() -> object:
            metric = quantus.PixelFlipping(
                features_in_step=-(-v // n_steps),
                perturb_baseline="black",
                return_auc_per_sample=per_sample_auc,
                disable_warnings=True,
            )
            return metric(model, xb, yb, ab, channel_first=True, device="cpu", batch_size=CHUNK)

        return run

    def region_perturbation() -> object:
        metric = quantus.RegionPerturbation(
            patch_size=region,
            regions_evaluation=n_regions,
            perturb_baseline="black",
            disable_warnings=True,
        )
        return metric(model, xb, yb, ab, channel_first=True, device="cpu", batch_size=CHUNK)

    return {
        "del      quantus PixelFlipping (curves)": pixel_flipping(False),
        "del      quantus PixelFlipping (AUC)": pixel_flipping(True),
        "aopc     quantus RegionPerturbation": region_perturbation,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes only (3D 28^3, 2D 64^2)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.manual_seed(0)
    n_steps, n_regions = 16, 16
    reps = 2
    rows: list[tuple] = []
    sizes3d = [(28, 2)] if args.quick else [(28, 2), (64, 1)]
    for size, n in sizes3d:
        model = resnet18(spatial_dims=3, n_input_channels=1, num_classes=11).eval()
        x = torch.randn(n, 1, size, size, size)
        attr = torch.rand(n, 1, size, size, size)
        peers = {"del+ins  torchcam DeletionInsertion": torchcam_peer(model, x, n_steps)}
        try:  # Quantus on 3D: show the error
            q = quantus_peers(model, x, attr, n_steps, size // 4, n_regions)
            peers.update(
                {
                    k: q[k]
                    for k in (
                        "del      quantus PixelFlipping (curves)",
                        "aopc     quantus RegionPerturbation",
                    )
                }
            )
        except Exception as e:
            print(f"quantus setup failed on 3D: {type(e).__name__}: {e}")
        rows += run_case(
            f"3D {size}^3 N={n}", model, x, attr, n_steps, size // 4, n_regions, reps, peers
        )
    size2d, n2d = (64, 4) if args.quick else (128, 4)
    model = resnet18(spatial_dims=2, n_input_channels=3, num_classes=10).eval()
    x = torch.randn(n2d, 3, size2d, size2d)
    attr = torch.rand(n2d, 1, size2d, size2d)
    peers = quantus_peers(model, x, attr, n_steps, size2d // 8, n_regions)
    rows += run_case(
        f"2D {size2d}^2 N={n2d}", model, x, attr, n_steps, size2d // 8, n_regions, reps, peers
    )

    print(
        f"\nn_steps={n_steps}, AOPC n_regions={n_regions}, max_examples_per_batch={CHUNK}, "
        f"torch threads={torch.get_num_threads()}, CPU seconds (median of {reps}, interleaved)"
    )
    print(f"{'case':<16} {'method':<40} {'CPU s':>8} {'/ ours':>7}  note")
    for case, key, t, ratio, err in rows:
        ts = "failed" if math.isnan(t) else f"{t:8.2f}"
        rs = "" if math.isnan(ratio) else f"{ratio:7.2f}"
        print(f"{case:<16} {key:<40} {ts:>8} {rs:>7}  {err}")


if __name__ == "__main__":
    main()
