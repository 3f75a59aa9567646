"""`captum-medcam evaluate --preset organmnist3d-scorecam` end to end, offline.

Writes ``organmnist3d_64.npz`` in medmnist's format (its keys and file name) holding
synthetic "organs" (eleven classes of distinct 3D shapes at random places, 64^3, uint8),
trains the preset's MONAI ``resnet18`` (narrowed with ``widen_factor`` so that it trains on
a CPU) and runs the preset on the test split exactly as a user would with the real file::

    python benchmarks/preset_organmnist3d.py --out /tmp/preset [--limit 12] [--steps 120]

It prints the command it ran and the summary (DAUC/IAUC with the 0/1-correctness score
over 130 points). The real OrganMNIST3D needs a download; with it, the same command line
without ``--network`` reproduces the published protocol.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from medmnist.info import INFO
from torch import nn

COUNTS = {"train": 220, "val": 22, "test": 44}
WIDEN = 0.25


def organs(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` volumes (64^3 uint8) of one of eleven shapes each, and their labels (n, 1)."""
    g = torch.Generator().manual_seed(seed)
    axis = torch.linspace(-1, 1, 64)
    z, y, x = torch.meshgrid(axis, axis, axis, indexing="ij")
    images = np.zeros((n, 64, 64, 64), np.uint8)
    labels = np.zeros((n, 1), np.uint8)
    for i in range(n):
        label = i % 11
        c = (torch.rand(3, generator=g) - 0.5) * 0.6
        r = 0.2 + 0.1 * float(torch.rand((), generator=g))
        dz, dy, dx = z - c[0], y - c[1], x - c[2]
        d = (dz**2 + dy**2 + dx**2).sqrt()
        shapes = [
            d < r,  # sphere
            (dz / (2 * r)) ** 2 + (dy / r) ** 2 + (dx / r) ** 2 < 1,  # long in z
            (dz / r) ** 2 + (dy / (2 * r)) ** 2 + (dx / r) ** 2 < 1,  # long in y
            (dz / r) ** 2 + (dy / r) ** 2 + (dx / (2 * r)) ** 2 < 1,  # long in x
            (d < r) & (d > 0.6 * r),  # shell
            (dz.abs() < r) & (dy.abs() < r) & (dx.abs() < r),  # cube
            ((dy**2 + dx**2).sqrt() < 0.6 * r) & (dz.abs() < 1.5 * r),  # cylinder
            ((dz**2 + dy**2).sqrt() - r).abs() ** 2 + dx**2 < (0.4 * r) ** 2,  # torus
            ((dz - r) ** 2 + dy**2 + dx**2 < (0.6 * r) ** 2)
            | ((dz + r) ** 2 + dy**2 + dx**2 < (0.6 * r) ** 2),  # two blobs
            (dz.abs() + dy.abs() + dx.abs()) < 1.3 * r,  # octahedron
            (d < r) & (dx > 0),  # half sphere
        ]
        body = ((z / 0.9) ** 2 + (y / 0.8) ** 2 + (x / 0.85) ** 2 < 1).float()
        volume = (
            0.25 * body + 0.6 * shapes[label].float() + 0.08 * torch.randn(64, 64, 64, generator=g)
        )
        images[i] = (volume.clamp(0, 1) * 255).to(torch.uint8).numpy()
        labels[i, 0] = label
    return images, labels


def train(root: Path, steps: int) -> Path:
    """Train the preset's resnet18 (narrowed) on the train split; save its state dict."""
    from monai.networks.nets import resnet18

    from captum_medcam.data import MedMNIST3D

    data = MedMNIST3D("organmnist3d", split="train", size=64, root=root)
    images = torch.stack([data[i][0] for i in range(len(data))])
    labels = torch.tensor([data[i][1] for i in range(len(data))])
    torch.manual_seed(0)
    net = resnet18(spatial_dims=3, n_input_channels=1, num_classes=11, widen_factor=WIDEN)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    net.train()
    for _ in range(steps):
        b = torch.randperm(len(data), generator=g)[:16]
        loss = nn.functional.cross_entropy(net(images[b]), labels[b])
        opt.zero_grad()
        loss.backward()
        opt.step()
    norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in norms:  # running statistics as plain averages over the training set
        m.reset_running_stats()
        m.momentum = None
    with torch.no_grad():
        for chunk in images.split(16):
            net(chunk)
    path = root / "resnet18_organs.pt"
    torch.save(net.state_dict(), path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="preset_organmnist3d")
    parser.add_argument("--limit", type=int, default=12)
    parser.add_argument("--steps", type=int, default=120)
    args = parser.parse_args()
    out = Path(args.out)
    root = out / "medmnist"
    root.mkdir(parents=True, exist_ok=True)
    # medmnist checks the sample counts against INFO: this small file has fewer samples
    INFO["organmnist3d"]["n_samples"] = dict(COUNTS)
    arrays = {}
    for k, (split, n) in enumerate(COUNTS.items()):
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = organs(n, seed=k)
    np.savez_compressed(root / "organmnist3d_64.npz", **arrays)
    start = time.perf_counter()
    weights = train(root, args.steps)
    print(f"trained in {time.perf_counter() - start:.0f} s")
    network = json.dumps(
        {
            "_target_": "monai.networks.nets.resnet18",
            "spatial_dims": 3,
            "n_input_channels": 1,
            "num_classes": 11,
            "widen_factor": WIDEN,
        }
    )
    argv = [
        "evaluate",
        "--preset",
        "organmnist3d-scorecam",
        "--root",
        str(root),
        "--network",
        network,
        "--weights",
        str(weights),
        "--limit",
        str(args.limit),
        "--perturbations-per-eval",
        "32",
        "--output",
        str(out / "results"),
    ]
    print("captum-medcam " + " ".join(f"'{a}'" if " " in a else a for a in argv))
    from captum_medcam.cli import main as cli

    start = time.perf_counter()
    code = cli(argv)
    print(f"evaluate took {time.perf_counter() - start:.0f} s")
    sys.exit(code)


if __name__ == "__main__":
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    main()
