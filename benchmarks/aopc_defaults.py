"""Which AOPC perturbation and region count tell a good map from a bad one?

Measures, on the demo's 3D task (MONAI resnet10 trained on ``SyntheticLesions`` as
``captum_medcam._demo.train_demo_model`` does) and on a 2D version of it (a small 2D CNN
trained briefly on 2D lesion images), the AOPC of three maps: Score-CAM, a random map and
the true lesion mask, for every perturbation (Samek's uniform noise, the X-ray study's
normal noise with std 0.1, zero, the example's mean, RISE's blur) and for several numbers
of perturbed regions ``L``, plus the MoRF - LeRF gap and the deletion and insertion AUCs.
A perturbation discriminates when the true mask scores well above the random map.

    python benchmarks/aopc_defaults.py [--quick] [--volumes 6] [--region-size 4]

Every AOPC for a given ``L`` is the prefix of the curve over all regions, so each curve
is computed once. Seeds are fixed: the numbers repeat exactly on the same machine.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import math
import time
import warnings
from collections.abc import Callable

import torch
from torch import Tensor, nn

from captum_medcam import ScoreCAM, ScoreCAM3D
from captum_medcam._demo import train_demo_model
from captum_medcam.data import SyntheticLesions
from captum_medcam.metrics import (
    DegenerateCurveWarning,
    aopc_curve,
    blur_baseline,
    deletion_auc,
    insertion_auc,
    mean_baseline,
    normal_noise_baseline,
    uniform_noise_baseline,
)


def perturbations() -> dict[str, Callable[[], object]]:
    """Factories, so that every noise curve starts from the same seeded generator."""
    return {
        "uniform noise (Samek)": lambda: uniform_noise_baseline(
            generator=torch.Generator().manual_seed(0)
        ),
        "normal noise std 0.1 (X-ray)": lambda: normal_noise_baseline(
            0.0, 0.1, generator=torch.Generator().manual_seed(0)
        ),
        "zero": lambda: 0.0,
        "mean": mean_baseline,
        "blur (RISE)": blur_baseline,
    }


def lesion_slices(n: int, size: int, seed: int) -> tuple[Tensor, Tensor, Tensor]:
    """2D lesion images: the axial slice of a ``SyntheticLesions`` volume through the
    lesion's largest cross-section (label 1) or through the middle (label 0)."""
    data = SyntheticLesions(n, size=size, seed=seed)
    images, labels, masks = [], [], []
    for i in range(n):
        item = data[i]
        mask = item["mask"][0]
        z = int(mask.flatten(1).sum(1).argmax()) if bool(mask.any()) else size // 2
        images.append(item["image"][:, z])
        masks.append(item["mask"][:, z])
        labels.append(item["label"])
    return torch.stack(images), torch.stack(labels), torch.stack(masks)


def train_2d(size: int, steps: int, seed: int = 0) -> tuple[nn.Module, float]:
    """A small 2D CNN trained on :func:`lesion_slices`; returns (model, test accuracy)."""
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 32, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 2),
    )
    x, y, _ = lesion_slices(128, size, seed)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        batch = torch.randperm(len(x), generator=g)[:32]
        loss = nn.functional.cross_entropy(model(x[batch]), y[batch])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    xt, yt, _ = lesion_slices(64, size, seed + 1)
    with torch.no_grad():
        accuracy = float((model(xt).argmax(1) == yt).float().mean())
    return model, accuracy


def measure(
    name: str,
    model: nn.Module,
    x: Tensor,
    maps: dict[str, Tensor],
    region_size: int,
    fractions: tuple[float, ...],
) -> None:
    n_regions_total = None
    rows = []
    for map_name, m in maps.items():
        row: dict[str, float] = {
            "DAUC": float(deletion_auc(model, x, m, target=1).mean()),
            "IAUC": float(insertion_auc(model, x, m, target=1).mean()),
        }
        for p_name, make in perturbations().items():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DegenerateCurveWarning)
                morf = aopc_curve(
                    model, x, m, 1, region_size=region_size, region_fraction=1.0, baselines=make()
                ).scores
                lerf = aopc_curve(
                    model,
                    x,
                    m,
                    1,
                    region_size=region_size,
                    region_fraction=1.0,
                    order="lerf",
                    baselines=make(),
                ).scores
            n_regions_total = morf.shape[1] - 1
            for f in fractions:
                k = max(1, math.ceil(f * n_regions_total))  # as aopc's region_fraction
                a_morf = (morf[:, :1] - morf[:, : k + 1]).mean(1)
                a_lerf = (lerf[:, :1] - lerf[:, : k + 1]).mean(1)
                row[f"{p_name} | L={k}"] = float(a_morf.mean())
                row[f"{p_name} | L={k} gap"] = float((a_morf - a_lerf).mean())
        rows.append((map_name, row))
    print(
        f"\n## {name}: {x.shape[0]} lesion examples, region_size={region_size}, "
        f"{n_regions_total} regions; mean over examples"
    )
    keys = list(rows[0][1])
    print(f"{'':42s}" + "".join(f"{m:>14s}" for m, _ in rows))
    for key in keys:
        print(f"{key:42s}" + "".join(f"{r[key]:+14.3f}" for _, r in rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, a smoke run")
    parser.add_argument("--volumes", type=int, default=6, help="lesion examples per case")
    parser.add_argument("--region-size", type=int, default=4)
    args = parser.parse_args()
    size3, steps3 = (16, 3) if args.quick else (32, 80)
    size2, steps2 = (32, 3) if args.quick else (64, 150)
    n = 2 if args.quick else args.volumes
    fractions = (0.05, 0.1, 0.2, 0.5, 1.0)
    start = time.perf_counter()

    model3, acc3 = train_demo_model(size=size3, steps=steps3)
    data = SyntheticLesions(2 * n, size=size3, seed=1)  # the demo's test set; odd: lesion
    items = [data[i] for i in range(1, 2 * n, 2)]
    x3 = torch.stack([it["image"] for it in items])
    masks3 = torch.stack([it["mask"] for it in items]).float()
    g = torch.Generator().manual_seed(0)
    maps3 = {
        "ScoreCAM3D": ScoreCAM3D(model3, model3.layer3).attribute(x3, target=1),
        "random": torch.rand(x3.shape, generator=g),
        "true mask": masks3,
    }
    print(f"3D: MONAI resnet10 (demo), test accuracy {acc3:.1%}, volumes {tuple(x3.shape)}")
    measure("3D", model3, x3, maps3, args.region_size, fractions)
    measure("3D, default region_size", model3, x3, maps3, min(9, size3), fractions)

    model2, acc2 = train_2d(size2, steps2)
    x2all, y2, m2all = lesion_slices(2 * n, size2, seed=2)
    x2, masks2 = x2all[y2 == 1], m2all[y2 == 1].float()
    maps2 = {
        "ScoreCAM": ScoreCAM(model2, model2[7]).attribute(x2, target=1),
        "random": torch.rand(x2.shape, generator=g),
        "true mask": masks2,
    }
    print(f"\n2D: small CNN, test accuracy {acc2:.1%}, images {tuple(x2.shape)}")
    measure("2D", model2, x2, maps2, args.region_size, fractions)
    measure("2D, default region_size", model2, x2, maps2, 9, fractions)
    print(f"\n{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
