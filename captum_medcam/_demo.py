"""The demo behind ``make demo``: train a small MONAI 3D ResNet on synthetic lesions,
explain one volume with ScoreCAM3D, and write slice images and a NIfTI map."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from captum_medcam.attr import ScoreCAM3D
from captum_medcam.data import SyntheticLesions

__all__ = ["DemoResult", "run_demo"]


@dataclass(frozen=True)
class DemoResult:
    """What the demo wrote and measured."""

    output_dir: Path
    figure: Path
    nifti_map: Path
    nifti_image: Path
    accuracy: float
    peak_in_lesion: bool
    energy_in_lesion: float
    lesion_fraction: float
    seconds: float


def train_demo_model(size: int = 32, steps: int = 80, seed: int = 0) -> tuple[nn.Module, float]:
    """Train MONAI's ``resnet10`` (narrow) to tell lesion from no lesion; returns (model, accuracy)."""
    from monai.networks.nets import resnet10

    torch.manual_seed(seed)
    model = resnet10(
        spatial_dims=3,
        n_input_channels=1,
        num_classes=2,
        widen_factor=0.25,
        conv1_t_size=3,
        conv1_t_stride=2,
        no_max_pool=True,
    )
    train = SyntheticLesions(64, size=size, seed=seed)
    images = torch.stack([train[i]["image"] for i in range(len(train))])
    labels = torch.stack([train[i]["label"] for i in range(len(train))])
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        batch = torch.randperm(len(train), generator=g)[:16]
        loss = nn.functional.cross_entropy(model(images[batch]), labels[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    test = SyntheticLesions(32, size=size, seed=seed + 1)
    with torch.no_grad():
        x = torch.stack([test[i]["image"] for i in range(len(test))])
        y = torch.stack([test[i]["label"] for i in range(len(test))])
        accuracy = float((model(x).argmax(1) == y).float().mean())
    return model, accuracy


def run_demo(
    output_dir: str | Path = "demo_output", size: int = 32, seed: int = 0, steps: int = 80
) -> DemoResult:
    """Run the demo and write its files into ``output_dir``.

    Files: ``scorecam_slices.png`` (three slices with the map and the lesion outline),
    ``scorecam_map.nii.gz`` and ``image.nii.gz`` (the map and the volume, same affine).
    """
    import nibabel as nib
    import numpy as np
    from monai.data import MetaTensor

    from captum_medcam.visualization import plot_slices

    start = time.perf_counter()
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    model, accuracy = train_demo_model(size=size, steps=steps, seed=seed)

    item = SyntheticLesions(32, size=size, seed=seed + 1)[1]  # odd index: a lesion
    spacing = 1.5  # mm, so the NIfTI has a real, non-identity affine
    affine = torch.diag(torch.tensor([spacing, spacing, spacing, 1.0], dtype=torch.float64))
    volume = MetaTensor(item["image"].unsqueeze(0), affine=affine)
    attribution = ScoreCAM3D(model, model.layer3).attribute(
        volume, target=1, perturbations_per_eval=16
    )

    att = attribution[0, 0].as_tensor()
    lesion = item["mask"][0]
    positive = att.clamp(min=0)
    energy = (
        float(positive[lesion].sum() / positive.sum())
        if float(positive.sum()) > 0
        else float("nan")
    )
    peak = bool(lesion.flatten()[att.argmax()])

    fig = plot_slices(
        item["image"],
        att,
        mask=lesion,
        title="ScoreCAM3D on a synthetic lesion (MONAI resnet10, layer3); white: the true lesion",
    )
    figure = out / "scorecam_slices.png"
    fig.savefig(figure, dpi=110)
    nifti_map = out / "scorecam_map.nii.gz"
    nifti_image = out / "image.nii.gz"
    affine_np = attribution.affine.numpy()
    nib.save(nib.Nifti1Image(att.numpy().astype(np.float32), affine_np), nifti_map)
    nib.save(nib.Nifti1Image(item["image"][0].numpy().astype(np.float32), affine_np), nifti_image)
    return DemoResult(
        output_dir=out,
        figure=figure,
        nifti_map=nifti_map,
        nifti_image=nifti_image,
        accuracy=accuracy,
        peak_in_lesion=peak,
        energy_in_lesion=energy,
        lesion_fraction=float(lesion.float().mean()),
        seconds=time.perf_counter() - start,
    )
