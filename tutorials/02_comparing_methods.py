# %% [markdown]
# # Comparing methods: faithfulness (DAUC, IAUC, AOPC) and localization against masks
#
# Which explanation should you trust? This tutorial trains a small MONAI 3D ResNet on
# `SyntheticLesions` (CT-like volumes where label 1 adds a lesion whose mask we know), explains
# the lesion volumes with five methods and a random map (the floor every method must beat),
# and scores every map two ways:
# - **faithfulness**: does the model's score fall when the most relevant voxels go (deletion
#   AUC, lower is better), rise when they come back (insertion AUC, higher), drop when the
#   most relevant regions are perturbed (AOPC, higher)?
# - **localization**: does the map point at the lesion (pointing game), how much of its
#   positive mass lies inside it (energy pointing game), how well does its top 5% overlap it
#   (IoU)?
#
# `CAPTUM_MEDCAM_TUTORIAL_QUICK=1` (the test suite) makes everything tiny.

# %%
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from captum.attr import IntegratedGradients
from monai.networks.nets import resnet10

from captum_medcam import CRM3D, GradCAM3D, GradCAMPlusPlus3D, ScoreCAM3D
from captum_medcam.data import SyntheticLesions
from captum_medcam.metrics import (
    aopc,
    attribution_iou,
    auc,
    blur_baseline,
    deletion_insertion_curves,
    energy_pointing_game,
    pointing_game,
    summarize,
)
from captum_medcam.visualization import ReportExample, write_report

QUICK = os.environ.get("CAPTUM_MEDCAM_TUTORIAL_QUICK") == "1"
OUTPUT = Path(os.environ.get("CAPTUM_MEDCAM_TUTORIAL_OUTPUT", "tutorial_output")) / "02"
SIZE = 16 if QUICK else 32
torch.manual_seed(0)

# %% [markdown]
# ## A lesion detector, trained briefly

# %%
train = SyntheticLesions(16 if QUICK else 64, size=SIZE, seed=0)
test = SyntheticLesions(8 if QUICK else 32, size=SIZE, seed=1)
# a narrow ResNet-10 whose first layers keep the resolution a small lesion needs
net = resnet10(
    spatial_dims=3,
    n_input_channels=1,
    num_classes=2,
    widen_factor=0.25,
    conv1_t_size=3,
    conv1_t_stride=2,
    no_max_pool=True,
)
optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
train_images = torch.stack([train[i]["image"] for i in range(len(train))])
train_labels = torch.stack([train[i]["label"] for i in range(len(train))])
net.train()
for _ in range(3 if QUICK else 80):
    batch = torch.randperm(len(train))[:16]
    optimizer.zero_grad()
    F.cross_entropy(net(train_images[batch]), train_labels[batch]).backward()
    optimizer.step()
net.eval()
with torch.no_grad():
    items = [test[i] for i in range(len(test))]
    images = torch.stack([it["image"] for it in items])
    labels = torch.stack([it["label"] for it in items])
    accuracy = (net(images).argmax(1) == labels).float().mean()
print(f"test accuracy {accuracy:.0%} on {len(test)} volumes")

# %% [markdown]
# ## Maps of five methods and a random map
#
# We explain class 1 (lesion) on the volumes that have one. `CRM3D` gets the head's linear
# layer for its exact one-einsum path; `IntegratedGradients` is Captum's own, unchanged.

# %%
lesion = labels == 1
volumes = images[lesion][: 2 if QUICK else None]
masks = torch.stack([it["mask"] for it in items])[lesion][: len(volumes)]
target = torch.ones(len(volumes), dtype=torch.long)
with torch.no_grad():
    predicted = net(volumes).argmax(1)
g = torch.Generator().manual_seed(0)
maps = {
    "scorecam": ScoreCAM3D(net, net.layer3).attribute(volumes, target=target),
    "gradcam": GradCAM3D(net, net.layer3).attribute(volumes, target=target),
    "gradcampp": GradCAMPlusPlus3D(net, net.layer3).attribute(volumes, target=target),
    "crm": CRM3D(net, net.layer4, fc_layer=net.fc).attribute(volumes, target=target),
    "integrated_gradients": IntegratedGradients(net)
    .attribute(volumes, target=target, n_steps=8 if QUICK else 32)
    .abs(),
    "random": torch.rand(volumes.shape, generator=g),
}

# %% [markdown]
# ## Every map, every metric
#
# Insertion starts from a blurred copy (RISE); AOPC perturbs cubes of 4 voxels by blurring
# them too: replacing a region by noise would put bright voxels, which this detector reads as
# lesion, everywhere.

# %%
region = 4
results, curves = {}, {}
for name, m in maps.items():
    deletion, insertion = deletion_insertion_curves(
        net, volumes, m, target=target, n_steps=16 if QUICK else 64
    )
    curves[name] = (deletion, insertion)
    results[name] = {
        "deletion": auc(deletion),
        "insertion": auc(insertion),
        "aopc": aopc(net, volumes, m, target=target, region_size=region, baselines=blur_baseline()),
        "pointing_game": pointing_game(m, masks),
        "energy_pointing_game": energy_pointing_game(m, masks),
        "iou_top5": attribution_iou(m, masks, top_k_percent=5),
    }

metrics = list(results["random"])
print(f"{'method':22s}" + "".join(f"{k:>22s}" for k in metrics))
for name, values in results.items():
    print(f"{name:22s}" + "".join(f"{summarize(values[k])!s:>22s}" for k in metrics))

# %% [markdown]
# A method earns trust where it beats the random map on the faithfulness metrics *and*
# points at the lesion; where the random row is as good as the others, the metric (with
# these settings) cannot tell maps apart on this model.

# %% [markdown]
# ## The report

# %%
rows = [
    {
        "index": i,
        "label": 1,
        "prediction": int(predicted[i]),
        "correct": bool(predicted[i] == 1),
        "target": 1,
        "method": name,
        **{k: float(v[i]) for k, v in values.items()},
    }
    for name, values in results.items()
    for i in range(len(volumes))
]
summary = {
    name: {
        k: {"mean": float(v.mean()), "std": float(v.std(correction=0)), "n": len(v)}
        for k, v in values.items()
    }
    for name, values in results.items()
}
examples = [
    ReportExample(
        index=i,
        image=volumes[i],
        maps={name: m[i] for name, m in maps.items()},
        target=1,
        label=1,
        prediction=int(predicted[i]),
        mask=masks[i],
        curves={
            name: {"deletion": d.scores[i], "insertion": ins.scores[i]}
            for name, (d, ins) in curves.items()
        },
        class_names=["healthy", "lesion"],
    )
    for i in range(1 if QUICK else 3)
]
report = write_report(
    OUTPUT, results=rows, summary=summary, examples=examples, title="Methods on SyntheticLesions"
)
print(f"report: {report}")
