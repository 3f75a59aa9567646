# %% [markdown]
# # Score-CAM on OrganMNIST3D with a MONAI ResNet, and how faithful it is
#
# A jupytext "percent" script: open it as a notebook with `jupytext --to notebook`, or run it
# with `python tutorials/01_score_cam_3d.py`. It follows the 3D Score-CAM study: a MONAI 3D
# ResNet classifies the 11 organs of OrganMNIST3D, `ScoreCAM3D` explains its `layer4`, and
# every map is scored by deletion and insertion with the 0/1-correctness score over 130
# points (the study reports DAUC 0.2576 ± 0.1710 and IAUC 0.6750 ± 0.1944 at 64^3).
#
# Three ways to run it:
# - `CAPTUM_MEDCAM_TUTORIAL_DOWNLOAD=1`: the real OrganMNIST3D at 64^3, downloaded by
#   medmnist, a ResNet-18 trained for a few epochs (tens of minutes on a CPU);
# - by default: a MedMNIST-format file made on the fly (organ-like shapes, no download),
#   read by the same loader;
# - `CAPTUM_MEDCAM_TUTORIAL_QUICK=1` (the test suite): the same, tiny and in seconds.

# %%
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from medmnist.info import INFO
from monai.networks.nets import resnet10, resnet18

from captum_medcam import ScoreCAM3D
from captum_medcam.data import MedMNIST3D
from captum_medcam.metrics import auc, deletion_insertion_curves, summarize
from captum_medcam.visualization import ReportExample, plot_slices, write_report

QUICK = os.environ.get("CAPTUM_MEDCAM_TUTORIAL_QUICK") == "1"
DOWNLOAD = os.environ.get("CAPTUM_MEDCAM_TUTORIAL_DOWNLOAD") == "1"
OUTPUT = Path(os.environ.get("CAPTUM_MEDCAM_TUTORIAL_OUTPUT", "tutorial_output")) / "01"
OUTPUT.mkdir(parents=True, exist_ok=True)
SIZE = 64 if DOWNLOAD else 28
torch.manual_seed(0)

# %% [markdown]
# ## The data
#
# medmnist stores each 3D set as one `.npz` with the keys `train_images`, `train_labels`,
# `val_images`, ... (images `(N, S, S, S)` uint8, labels `(N, 1)`), named
# `organmnist3d.npz` at 28^3 and `organmnist3d_64.npz` at 64^3. Without the download we
# write such a file ourselves, with the real sample counts, where each organ class is an
# ellipsoid of its own size and place (jittered, with noise), and read it with the same
# `MedMNIST3D` loader.


# %%
def write_organ_like_npz(root: Path, size: int = 28, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    info = INFO["organmnist3d"]
    n_classes = len(info["label"])
    axis = np.linspace(-1, 1, size, dtype=np.float32)
    zz, yy, xx = np.meshgrid(axis, axis, axis, indexing="ij")
    angle = np.linspace(0, 2 * np.pi, n_classes, endpoint=False)
    centres = 0.45 * np.stack([np.cos(angle), np.sin(angle), np.cos(2 * angle)], 1)
    radii = 0.18 + 0.25 * rng.random((n_classes, 3))
    arrays = {}
    for split, n in info["n_samples"].items():
        labels = rng.integers(0, n_classes, n)
        images = np.empty((n, size, size, size), np.uint8)
        for i, k in enumerate(labels):
            c = centres[k] + 0.08 * rng.standard_normal(3)
            r = radii[k] * (1 + 0.1 * rng.standard_normal(3))
            d = ((zz - c[0]) / r[0]) ** 2 + ((yy - c[1]) / r[1]) ** 2 + ((xx - c[2]) / r[2]) ** 2
            body = (zz**2 + yy**2 + xx**2 < 0.9).astype(np.float32)
            v = 0.3 * body + 0.6 * (d < 1) + 0.05 * rng.standard_normal(d.shape)
            images[i] = np.clip(v * 255, 0, 255).astype(np.uint8)
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = images, labels[:, None]
    path = root / "organmnist3d.npz"
    np.savez(path, **arrays)
    return path


if DOWNLOAD:
    root = OUTPUT / "medmnist"
    root.mkdir(exist_ok=True)
else:
    root = Path(tempfile.mkdtemp())
    write_organ_like_npz(root, SIZE)
train = MedMNIST3D("organmnist3d", split="train", size=SIZE, root=root, download=DOWNLOAD)
test = MedMNIST3D("organmnist3d", split="test", size=SIZE, root=root, download=DOWNLOAD)
print(f"{len(train)} training and {len(test)} test volumes of {SIZE}^3, classes {test.classes}")

# %% [markdown]
# ## A MONAI 3D ResNet, trained briefly
#
# ResNet-18 as in the study for the real data; a quarter-width ResNet-10 otherwise. The
# model is put in eval mode by us, its owner: captum_medcam never changes it.

# %%
if DOWNLOAD:
    net = resnet18(spatial_dims=3, n_input_channels=1, num_classes=11)
    epochs, steps_per_epoch = 4, None
else:
    net = resnet10(spatial_dims=3, n_input_channels=1, num_classes=11, widen_factor=0.25)
    epochs, steps_per_epoch = (1, 3) if QUICK else (3, None)
optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
loader = torch.utils.data.DataLoader(train, batch_size=16, shuffle=True)
net.train()
for epoch in range(epochs):
    for step, (x, y) in enumerate(loader):
        if steps_per_epoch is not None and step == steps_per_epoch:
            break
        optimizer.zero_grad()
        loss = F.cross_entropy(net(x), y)
        loss.backward()
        optimizer.step()
    print(f"epoch {epoch}: last batch loss {loss.item():.3f}")
net.eval()

n_test = 2 if QUICK else (len(test) if DOWNLOAD else 32)
volumes = torch.stack([test[i][0] for i in range(n_test)])
labels = torch.tensor([test[i][1] for i in range(n_test)])
with torch.no_grad():
    predictions = torch.cat([net(v) for v in volumes.split(16)]).argmax(1)
print(f"test accuracy: {(predictions == labels).float().mean():.1%} on {n_test} volumes")

# %% [markdown]
# ## Score-CAM on `layer4`
#
# `ScoreCAM3D` masks the input with each of the layer's upsampled, min-max scaled channels
# and weighs the channel by the class probability of the masked volume (the official code's
# variant). We explain the predicted class. `perturbations_per_eval` is how many masked
# copies share one forward: raise it on a GPU.

# %%
cam = ScoreCAM3D(net, net.layer4)
maps = torch.cat(
    [
        cam.attribute(v, target=p, perturbations_per_eval=32)
        for v, p in zip(volumes.split(8), predictions.split(8), strict=True)
    ]
)
print(f"maps: {tuple(maps.shape)}, one per volume at input resolution")
# MedMNIST volumes carry no affine, so the panels are named by array axis ("axis 0 (D)", ...);
# for a NIfTI pass plot_slices(..., affine=nibabel.load(path).affine) to name them sagittal etc.
fig = plot_slices(volumes[0], maps[0], title=f"Score-CAM, class {test.classes[predictions[0]]}")
fig.savefig(OUTPUT / "scorecam_slices.png")

# %% [markdown]
# ## Deletion and insertion, as in the study
#
# Voxels are deleted (set to 0) or inserted (into a blurred copy) in the map's order, 130
# points, and the score is 1 while the model still predicts the explained class, 0 after.
# So every per-volume AUC is a multiple of 1/129 minus 1/258, as in the study's numbers.

# %%
deletion, insertion = deletion_insertion_curves(
    net, volumes, maps, target=predictions, n_steps=129, score="correct"
)
dauc, iauc = auc(deletion), auc(insertion)
print("DAUC", summarize(dauc), "(lower is better)")
print("IAUC", summarize(iauc), "(higher is better)")

# %% [markdown]
# ## The report
#
# `write_report` puts the numbers, the slices through each map's peak, the curves and a
# slice scroller into one HTML file that opens offline.

# %%
rows = [
    {
        "index": i,
        "label": int(labels[i]),
        "prediction": int(predictions[i]),
        "correct": bool(labels[i] == predictions[i]),
        "target": int(predictions[i]),
        "method": "scorecam",
        "deletion": float(dauc[i]),
        "insertion": float(iauc[i]),
    }
    for i in range(n_test)
]
summary = {
    "scorecam": {
        name: {"mean": float(v.mean()), "std": float(v.std()), "n": len(v)}
        for name, v in (("deletion", dauc), ("insertion", iauc))
    }
}
examples = [
    ReportExample(
        index=i,
        image=volumes[i],
        maps={"scorecam": maps[i]},
        target=int(predictions[i]),
        label=int(labels[i]),
        prediction=int(predictions[i]),
        curves={"scorecam": {"deletion": deletion.scores[i], "insertion": insertion.scores[i]}},
        class_names=test.classes,
    )
    for i in range(1 if QUICK else 3)
]
report = write_report(
    OUTPUT / "report",
    results=rows,
    summary=summary,
    examples=examples,
    title="Score-CAM on OrganMNIST3D",
    config={"data": f"organmnist3d {SIZE}^3 test", "model": type(net).__name__, "layer": "layer4"},
)
print(f"report: {report}")
