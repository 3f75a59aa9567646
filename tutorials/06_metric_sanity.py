# %% [markdown]
# # Can the metric tell a good map from a bad one?
#
# A jupytext "percent" script: open it as a notebook with `jupytext --to notebook`, or run it
# with `python tutorials/06_metric_sanity.py`; `make test` runs it in its quick mode
# (`CAPTUM_MEDCAM_TUTORIAL_QUICK=1`: tiny volumes and a few training steps, so the numbers
# there mean nothing). Faithfulness metrics can fail silently: with a perturbation that the
# model reads as the class, every map, a random one included, gets the same score (Tomsett
# et al., "Sanity Checks for Saliency Metrics", AAAI 2020). Before ranking methods with a
# metric, check that it ranks the true lesion above a random map on your model and data.

# %%
import os
import warnings

import torch
from monai.networks.nets import resnet10
from torch import nn

from captum_medcam import ScoreCAM3D
from captum_medcam.data import SyntheticLesions
from captum_medcam.metrics import (
    DegenerateCurveWarning,
    aopc,
    blur_baseline,
    deletion_auc,
    insertion_auc,
    mean_baseline,
    metric_sanity_check,
    uniform_noise_baseline,
)

quick = os.environ.get("CAPTUM_MEDCAM_TUTORIAL_QUICK") == "1"
size, steps, n_volumes = (16, 4, 2) if quick else (32, 80, 6)

# %% [markdown]
# Train a small MONAI 3D ResNet to tell a volume with a lesion from one without (synthetic
# CT-like volumes with bright distractor blobs; no download), as `make demo` does.

# %%
torch.manual_seed(0)
model = resnet10(
    spatial_dims=3,
    n_input_channels=1,
    num_classes=2,
    widen_factor=0.25,
    conv1_t_size=3,
    conv1_t_stride=2,
    no_max_pool=True,
)
train = SyntheticLesions(64, size=size, seed=0)
images = torch.stack([train[i]["image"] for i in range(len(train))])
labels = torch.stack([train[i]["label"] for i in range(len(train))])
optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
g = torch.Generator().manual_seed(0)
model.train()
for _ in range(steps):
    batch = torch.randperm(len(train), generator=g)[:16]
    loss = nn.functional.cross_entropy(model(images[batch]), labels[batch])
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
model.eval()

test = SyntheticLesions(2 * n_volumes, size=size, seed=1)
items = [test[i] for i in range(1, 2 * n_volumes, 2)]  # odd indices have a lesion
volumes = torch.stack([it["image"] for it in items])
masks = torch.stack([it["mask"] for it in items])
with torch.no_grad():
    accuracy = float((model(volumes).argmax(1) == 1).float().mean())
print(f"{n_volumes} lesion volumes {tuple(volumes.shape)}, detected: {accuracy:.0%}")

# %% [markdown]
# Three maps: Score-CAM, a random map, and the true lesion mask. Deletion and insertion AUC
# at their defaults, and AOPC over cubes of `region_size=4` voxels: first as it was computed
# before the defaults changed (every region perturbed; Samek et al.'s uniform noise over
# each volume's range, the mean, RISE's blur), then with the new defaults (the mean, the
# first 20% of the regions) and, for contrast, uniform noise on 20%. `gap` is MoRF - LeRF.
# The uniform-noise runs warn (`DegenerateCurveWarning`); silenced here, the table is the
# point.

# %%
maps = {
    "ScoreCAM3D": ScoreCAM3D(model, model.layer3).attribute(volumes, target=1),
    "a random map": torch.rand(volumes.shape, generator=torch.Generator().manual_seed(0)),
    "the true lesion mask": masks.float(),
}


def uniform():  # Samek et al.'s perturbation, seeded
    return uniform_noise_baseline(generator=torch.Generator().manual_seed(0))


def aopc_and_gap(m, **options):
    morf = aopc(model, volumes, m, target=1, region_size=4, **options)
    lerf = aopc(model, volumes, m, target=1, region_size=4, order="lerf", **options)
    return f"{float(morf.mean()):+.3f} ({float((morf - lerf).mean()):+.3f})"


every = {"region_fraction": 1.0}
columns = {
    "DAUC": lambda m: f"{float(deletion_auc(model, volumes, m, target=1).mean()):.3f}",
    "IAUC": lambda m: f"{float(insertion_auc(model, volumes, m, target=1).mean()):.3f}",
    "AOPC (gap), old default: uniform noise, all regions": lambda m: aopc_and_gap(
        m, baselines=uniform(), **every
    ),
    "mean, all regions": lambda m: aopc_and_gap(m, baselines=mean_baseline(), **every),
    "blur, all regions": lambda m: aopc_and_gap(m, baselines=blur_baseline(), **every),
    "**new defaults**: mean, 20% of the regions": lambda m: aopc_and_gap(m),
    "uniform noise, 20%": lambda m: aopc_and_gap(m, baselines=uniform()),
}
print("| map | " + " | ".join(columns) + " |")
print("|---" * (len(columns) + 1) + "|")
for name, m in maps.items():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DegenerateCurveWarning)
        cells = [column(m) for column in columns.values()]
    print(f"| {name} | " + " | ".join(cells) + " |")
print()

# %% [markdown]
# `metric_sanity_check` does this comparison for you, for any of the library's metrics with
# any options: it scores the true masks (or reference maps you trust), random maps from a
# local generator (a few seeds) and the inverted masks, and says whether the reference
# beats random often enough. The old AOPC default does not separate: its curves are
# degenerate, which the library also reports with a `DegenerateCurveWarning`.

# %%
result = metric_sanity_check(
    {
        "deletion_auc": "deletion_auc",
        "insertion_auc": "insertion_auc",
        "aopc, new defaults": ("aopc", {"region_size": 4}),
        "aopc, uniform noise": ("aopc", {"region_size": 4, "baselines": uniform()}),
        "pointing_game": "pointing_game",
        "energy_pointing_game": "energy_pointing_game",
    },
    model,
    volumes,
    masks=masks,
    target=1,
)
print(result)

# %% [markdown]
# Read the table row by row: a metric is worth reporting on this model only if its
# reference row beats the random maps (the floor) most of the time. The reference here is
# the true lesion; with your own data, pass `reference=` maps you trust, or masks. Rows
# marked degenerate had curves that did not depend on the maps' order: change the
# perturbation (`baselines`) or the `score` until the verdict is "separates". The same
# random floor belongs beside every method in a report, so readers see what chance scores.
