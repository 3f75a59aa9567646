"""The demo behind ``make demo``: the whole story without a download.

1. Data that looks like anatomy, with true masks: nilearn's MNI152 brain template
   (shipped inside the nilearn package), downsampled to 32 x 40 x 32 voxels of 6 mm, with a
   bright round *tumour* (class 1), a dark irregular *infarct* (class 2) or nothing
   (class 0, healthy), at random places in the brain, with intensity jitter and noise.
2. A small 3D CNN of MONAI convolution blocks trained on the CPU to tell the three apart.
3. The test volumes written as NIfTI (with the template's affine, downsampled) with their
   masks and a ``table.csv``; the network's weights as a state dict (the network itself is
   ``--network captum_medcam._demo:demo_network``).
4. ``captum-medcam evaluate`` on them (the same function, not a copy): Score-CAM, Grad-CAM,
   Grad-CAM++, CRM, Captum's Integrated Gradients and a random map, each scored with
   deletion and insertion AUC, AOPC, the pointing game, the energy pointing game and IoU;
   results.csv, summary.json, NIfTI maps in the volumes' space and report.html.
"""

from __future__ import annotations

import json
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

CLASSES = ("healthy", "tumour", "infarct")
SHAPE = (32, 40, 32)
QUICK_SHAPE = (16, 20, 16)


def demo_network(num_classes: int = len(CLASSES)) -> nn.Module:
    """The demo's classifier: three MONAI convolution blocks (conv, batch norm, PReLU), global
    average pooling and a linear layer; ``conv3`` (a quarter of the input's resolution) is
    the layer the CAMs explain. ``captum-medcam evaluate --network
    captum_medcam._demo:demo_network`` builds it."""
    from collections import OrderedDict

    from monai.networks.blocks import Convolution

    return nn.Sequential(
        OrderedDict(
            conv1=Convolution(3, 1, 16, strides=2, kernel_size=3, norm="batch"),
            conv2=Convolution(3, 16, 32, strides=2, kernel_size=3, norm="batch"),
            conv3=Convolution(3, 32, 64, strides=1, kernel_size=3, norm="batch"),
            pool=nn.AdaptiveAvgPool3d(1),
            flatten=nn.Flatten(),
            fc=nn.Linear(64, num_classes),
        )
    )


def _template(shape: tuple[int, int, int]) -> tuple[Tensor, Tensor, np.ndarray]:
    """The MNI152 template and brain mask, resampled to ``shape``, and their affine."""
    from nilearn.datasets import load_mni152_brain_mask, load_mni152_template

    template = load_mni152_template(resolution=2)
    brain = load_mni152_brain_mask(resolution=2)
    t = torch.from_numpy(np.asarray(template.get_fdata(), dtype=np.float32))
    b = torch.from_numpy(np.asarray(brain.get_fdata(), dtype=np.float32))
    b = nn.functional.interpolate(b[None, None], size=t.shape, mode="nearest")[0, 0]
    old = t.shape
    t = nn.functional.interpolate(t[None, None], size=shape, mode="area")[0, 0]
    b = nn.functional.interpolate(b[None, None], size=shape, mode="area")[0, 0] > 0.5
    t = t / t.max()
    # voxel j of the new grid is at (j + 1/2) * f - 1/2 of the old one (f = old / new)
    scale = np.diag([old[i] / shape[i] for i in range(3)] + [1.0])
    scale[:3, 3] = [(old[i] / shape[i] - 1) / 2 for i in range(3)]
    return t, b, np.asarray(template.affine) @ scale


def brain_lesions(
    n: int, seed: int = 0, shape: tuple[int, int, int] = SHAPE
) -> tuple[list[dict[str, Tensor]], np.ndarray]:
    """``n`` brain volumes with a tumour, an infarct or nothing, and their affine.

    Sample ``i`` has class ``i % 3`` (0 healthy, 1 tumour, 2 infarct) and is generated from
    ``seed`` and ``i`` only.

    Returns:
        ``([{"image": (1, *shape) float32 in [0, 1], "label": () long, "mask": (1, *shape)
        bool}, ...], affine (4, 4))``; the mask is empty for healthy volumes.
    """
    template, brain, affine = _template(shape)
    coords = torch.stack(torch.meshgrid(*[torch.arange(s) for s in shape], indexing="ij"), -1)
    inside = brain.nonzero()
    # lesion centres at least 3 voxels inside the brain
    eroded = -nn.functional.max_pool3d(-brain[None, None].float(), 7, stride=1, padding=3)
    centres = (eroded[0, 0] > 0.5).nonzero()
    if len(centres) == 0:
        centres = inside
    samples = []
    for i in range(n):
        g = torch.Generator().manual_seed(seed * 100_003 + i)
        label = i % 3
        image = template * (0.6 + 0.15 * float(torch.rand((), generator=g)))
        image = image + 0.03 * torch.randn(shape, generator=g)
        mask = torch.zeros(shape, dtype=torch.bool)
        if label:
            centre = centres[int(torch.randint(len(centres), (), generator=g))].float()
            scale = min(shape) / 32
            if label == 1:  # tumour: a bright sphere with a brighter rim
                radius = scale * (3.5 + 2.0 * float(torch.rand((), generator=g)))
                distance = (coords - centre).norm(dim=-1)
                mask = (distance <= radius) & brain
                rim = ((distance - radius).abs() < 0.8).float() * mask
                image = torch.where(mask, 0.9 + 0.1 * rim, image)
            else:  # infarct: a dark, irregular ellipsoid (three overlapping blobs)
                for _ in range(3):
                    offset = (torch.rand(3, generator=g) - 0.5) * 4 * scale
                    radii = scale * (2.5 + 2.5 * torch.rand(3, generator=g))
                    blob = (((coords - centre - offset) / radii) ** 2).sum(-1) <= 1
                    mask |= blob & brain
                image = torch.where(mask, torch.zeros(shape), image)
        image = (image + 0.02 * torch.randn(shape, generator=g)).clamp(0, 1)
        # heads are not all placed alike: shift by up to 2 voxels along each axis
        shift = [int(v) for v in torch.randint(-2, 3, (3,), generator=g)]
        image = image.roll(shift, dims=(0, 1, 2))
        mask = mask.roll(shift, dims=(0, 1, 2))
        samples.append(
            {
                "image": image[None].float(),
                "label": torch.tensor(label, dtype=torch.long),
                "mask": mask[None],
            }
        )
    return samples, affine


def train_demo_model(
    train: list[dict[str, Tensor]], steps: int, seed: int = 0, batch_size: int = 16
) -> nn.Module:
    """Train :func:`demo_network` with Adam; returned in eval mode."""
    torch.manual_seed(seed)
    model = demo_network()
    images = torch.stack([s["image"] for s in train])
    labels = torch.stack([s["label"] for s in train])
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        batch = torch.randperm(len(train), generator=g)[:batch_size]
        # a random flip along the left-right axis: lesions may be on either side
        x = images[batch]
        if bool(torch.rand((), generator=g) < 0.5):
            x = x.flip(2)
        loss = nn.functional.cross_entropy(model(x), labels[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    # The weights moved fast (Adam, few steps): the running batch-norm statistics lag behind
    # them. Recompute them as plain averages over the training set, as after SWA.
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    with torch.no_grad():
        for chunk in images.split(batch_size):
            model(chunk)
    for m in norms:
        m.momentum = 0.1
    return model.eval()


@dataclass(frozen=True)
class DemoResult:
    """What the demo wrote and measured."""

    output_dir: Path
    accuracy: float
    summary: dict[str, dict[str, dict[str, float]]]
    files: dict[str, Path]
    command: str
    seconds: float


def run_demo(
    output_dir: str | Path = "demo_output",
    *,
    seed: int = 0,
    quick: bool = False,
    show_progress: bool = True,
) -> DemoResult:
    """Run the demo and write its files into ``output_dir`` (see the module docs).

    Args:
        output_dir: the output folder.
        seed: data, training and random-map seed.
        quick: a tiny run (16 x 20 x 16 volumes, a few training steps, three test volumes)
            for the tests.
        show_progress: progress bars on stderr.
    """
    import nibabel as nib

    from captum_medcam.cli import run_evaluate

    start = time.perf_counter()
    out = Path(output_dir)
    data_dir = out / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    shape = QUICK_SHAPE if quick else SHAPE
    n_train, n_test, steps = (12, 3, 3) if quick else (150, 12, 120)
    samples, affine = brain_lesions(n_train + n_test, seed=seed, shape=shape)
    train, test = samples[:n_train], samples[n_train:]
    model = train_demo_model(train, steps=steps, seed=seed)
    with torch.no_grad():
        x = torch.stack([s["image"] for s in test])
        y = torch.stack([s["label"] for s in test])
        accuracy = float((model(x).argmax(1) == y).float().mean())
    train_seconds = time.perf_counter() - start

    rows = ["image,label,mask"]
    # Volumes with a lesion first, so the report's examples show lesions with their outline
    # (a stable sort: the same volumes and results, healthy ones at the end).
    test = sorted(test, key=lambda sample: int(sample["label"]) == 0)
    for i, sample in enumerate(test):
        name = f"brain{i:02d}_{CLASSES[int(sample['label'])]}"
        nib.save(nib.Nifti1Image(sample["image"][0].numpy(), affine), data_dir / f"{name}.nii.gz")
        mask = sample["mask"][0].numpy().astype(np.uint8)
        nib.save(nib.Nifti1Image(mask, affine), data_dir / f"{name}_mask.nii.gz")
        rows.append(f"{name}.nii.gz,{int(sample['label'])},{name}_mask.nii.gz")
    table = data_dir / "table.csv"
    table.write_text("\n".join(rows) + "\n")
    weights = out / "weights.pt"
    torch.save(model.state_dict(), weights)

    options: dict[str, Any] = {
        "data": str(table),
        "network": "captum_medcam._demo:demo_network",
        "weights": str(weights),
        "layer": "conv3",
        "fc_layer": "fc",
        "methods": ("scorecam", "gradcam", "gradcampp", "crm", "integrated_gradients", "random"),
        "metrics": (
            "deletion",
            "insertion",
            "aopc",
            "pointing_game",
            "energy_pointing_game",
            "iou",
        ),
        "n_steps": 8 if quick else 50,
        # Zeroed brain voxels look like an infarct (dark), so deletion to zero changes the
        # prediction whatever the order: on this model a random map's DAUC was 0.49 against
        # CRM's 0.22 on the lesion volumes; deleting into RISE's blur gave 0.62 against 0.045.
        "deletion_baseline": "blur",
        "aopc_region_size": 4,
        "aopc_regions": 8 if quick else 50,
        "seed": seed,
        "examples": 3 if quick else 6,
        "output": str(out),
        "no_progress": not show_progress,
        "device": "cpu",
    }
    command = "captum-medcam evaluate " + " ".join(
        f"--{k.replace('_', '-')} {shlex.quote(','.join(v) if isinstance(v, tuple) else str(v))}"
        for k, v in options.items()
        if k not in ("no_progress", "device")
    )
    print(
        f"captum_medcam demo: {n_train} training volumes ({shape[0]}x{shape[1]}x{shape[2]}, "
        f"MNI152 brain with {', '.join(CLASSES[1:])} or nothing), a CNN of MONAI blocks trained on "
        f"the CPU in {train_seconds:.0f} s: test accuracy {accuracy:.0%} on {n_test} volumes"
    )
    print(f"now the same as:\n  {command}\n")
    run_evaluate(options, title="captum_medcam demo: brain lesions, six methods compared")
    summary = json.loads((out / "summary.json").read_text())
    files = {
        name: out / file
        for name, file in (
            ("results", "results.csv"),
            ("summary", "summary.json"),
            ("report", "report.html"),
            ("weights", "weights.pt"),
            ("table", "data/table.csv"),
        )
        if (out / file).exists()
    }
    seconds = time.perf_counter() - start
    print(f"captum_medcam demo finished in {seconds:.0f} s; open {out / 'report.html'}")
    return DemoResult(out, accuracy, summary, files, command, seconds)
