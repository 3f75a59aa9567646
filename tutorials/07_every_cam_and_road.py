# %% [markdown]
# # Every CAM on one 3D model, scored by deletion/insertion, ROAD and the confidence metrics
#
# The CAM family grew: Grad-CAM element-wise, Shapley-CAM, Finer-CAM, Eigen-CAM, KPCA-CAM, FEM,
# the original CAM, FullGrad, Ablation-CAM, SS-CAM, IS-CAM and Smooth Grad-CAM++ all work on
# volumes now, written once for 1D, 2D and 3D. This tutorial trains a small MONAI 3D ResNet on
# `SyntheticLesions` (CT-like volumes; label 1 adds a lesion whose mask we know), explains the
# lesion volumes with a dozen of them next to Grad-CAM (the reference) and a random map (the
# floor), and scores every map with
# - **deletion / insertion AUC** (Petsiuk et al., RISE), both with a blurred copy as the
#   substrate: deletion lower is better, insertion higher;
# - **ROAD** (Rong et al., ICML 2022): voxels removed most relevant first (MoRF, lower is
#   better) or least relevant first (LeRF, higher), imputed from their neighbours with a
#   little noise instead of a constant, so the shape of the removed region does not itself
#   tell the model a class; `combined = (LeRF - MoRF) / 2`, higher is better;
# - **average drop / increase in confidence** (Chattopadhay et al., Grad-CAM++): the model
#   sees the input times the map scaled to [0, 1]; how much confidence it loses (lower is
#   better), and how often it gains some (higher);
# - the **pointing game** against the true lesion mask (higher).
#
# Full mode (32^3 volumes, 80 training steps, 8 lesion volumes) takes a few minutes on two CPU
# cores; `CAPTUM_MEDCAM_TUTORIAL_QUICK=1` (the test suite) makes everything tiny (16^3, two
# volumes, a few noisy samples) and takes well under a minute. Results are written to
# `CAPTUM_MEDCAM_TUTORIAL_OUTPUT` (default `tutorial_output`), in its folder `07`.

# %%
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from monai.networks.nets import resnet10

from captum_medcam import (
    CAM3D,
    FEM3D,
    ISCAM3D,
    KPCACAM3D,
    SSCAM3D,
    AblationCAM3D,
    EigenCAM3D,
    FinerCAM3D,
    FullGrad3D,
    GradCAM3D,
    GradCAMElementWise3D,
    ShapleyCAM3D,
    SmoothGradCAMPlusPlus3D,
)
from captum_medcam.data import SyntheticLesions
from captum_medcam.metrics import (
    auc,
    average_drop,
    blur_baseline,
    deletion_insertion_curves,
    increase_in_confidence,
    pointing_game,
    road,
    summarize,
)
from captum_medcam.visualization import ReportExample, plot_slices, write_report

QUICK = os.environ.get("CAPTUM_MEDCAM_TUTORIAL_QUICK") == "1"
OUTPUT = Path(os.environ.get("CAPTUM_MEDCAM_TUTORIAL_OUTPUT", "tutorial_output")) / "07"
OUTPUT.mkdir(parents=True, exist_ok=True)
SIZE = 16 if QUICK else 32
torch.manual_seed(0)

# %% [markdown]
# ## A lesion detector, trained briefly (tutorial 02's recipe)

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
net.eval()  # our model: the library never calls .eval() on yours, so do it before explaining
with torch.no_grad():
    items = [test[i] for i in range(len(test))]
    images = torch.stack([it["image"] for it in items])
    labels = torch.stack([it["label"] for it in items])
    accuracy = (net(images).argmax(1) == labels).float().mean()
print(f"test accuracy {accuracy:.0%} on {len(test)} volumes")

# %% [markdown]
# ## The maps
#
# We explain class 1 (lesion) on the volumes that have one. Every class takes the model, and
# all but FullGrad a `layer` (here `layer3`, 4^3 positions at 16^3 and 8^3 at 32^3, as in
# tutorial 02). Where they differ:
# - gradient CAMs (one backward): Grad-CAM, Grad-CAM element-wise (ReLU of gradient x
#   activation per position, then the channel sum), Smooth Grad-CAM++ (Grad-CAM++ averaged over
#   `nt_samples` noisy copies of the input);
# - Shapley-CAM also needs a Hessian-vector product (a second backward through the layers after
#   `layer`); Finer-CAM explains the target's score *minus* the most similar classes' (with two
#   classes there is one other, so `num_references=1`);
# - CAM needs `fc_layer`, the Linear after global average pooling, and the layer just before
#   the pooling (`layer4`): it is then exact in one forward, but `layer4` has only 2^3
#   positions at 32^3 (one at 16^3, where the map is flat), so its map is coarse;
# - FullGrad needs no layer: the input gradient plus every bias gradient, summed over layers;
# - perturbation CAMs (forwards only): Ablation-CAM zeroes one channel of `layer` at a time
#   (one forward of the layers after it per channel); SS-CAM and IS-CAM mask the input with
#   each channel's upsampled activation, `num_samples` noisy or interpolated masks per channel
#   (the papers use 35 and 10; we keep them small, which is what they cost most);
# - **class-agnostic** (the map is the same whatever `target` says, so it cannot tell you *why
#   lesion and not healthy*): Eigen-CAM and KPCA-CAM (the first principal component of the
#   activations, linear or with a kernel) and FEM (channels whose activation is above mean + k
#   sigma). They need one forward and no gradient; `target` is accepted and ignored.

# %%
lesion = labels == 1
volumes = images[lesion][: 2 if QUICK else 8]
masks = torch.stack([it["mask"] for it in items])[lesion][: len(volumes)]
target = torch.ones(len(volumes), dtype=torch.long)
with torch.no_grad():
    predicted = net(volumes).argmax(1)
samples = 2 if QUICK else 4
layer = net.layer3
explainers = {
    "gradcam": lambda: GradCAM3D(net, layer).attribute(volumes, target=target),
    "gradcam_elementwise": lambda: GradCAMElementWise3D(net, layer).attribute(
        volumes, target=target
    ),
    "smoothgradcampp": lambda: SmoothGradCAMPlusPlus3D(net, layer).attribute(
        volumes, target=target, nt_samples=samples, generator=0
    ),
    "shapleycam": lambda: ShapleyCAM3D(net, layer).attribute(volumes, target=target),
    "finercam": lambda: FinerCAM3D(net, layer).attribute(volumes, target=target, num_references=1),
    "cam": lambda: CAM3D(net, net.layer4, fc_layer=net.fc).attribute(volumes, target=target),
    "fullgrad": lambda: FullGrad3D(net).attribute(volumes, target=target),
    "ablationcam": lambda: AblationCAM3D(net, layer).attribute(volumes, target=target),
    "sscam": lambda: SSCAM3D(net, layer).attribute(
        volumes, target=target, num_samples=samples, generator=0
    ),
    "iscam": lambda: ISCAM3D(net, layer).attribute(volumes, target=target, num_samples=samples),
    "eigencam": lambda: EigenCAM3D(net, layer).attribute(volumes),
    "kpcacam": lambda: KPCACAM3D(net, layer).attribute(volumes),
    "fem": lambda: FEM3D(net, layer).attribute(volumes),
}
maps, seconds = {}, {}
for name, explain in explainers.items():
    start = time.perf_counter()
    maps[name] = explain().detach()
    seconds[name] = time.perf_counter() - start
maps["random"] = torch.rand(volumes.shape, generator=torch.Generator().manual_seed(0))
print(f"maps of {len(volumes)} volumes {tuple(volumes.shape[2:])}, seconds per method:")
print("  " + ", ".join(f"{name} {s:.2f}" for name, s in seconds.items()))

# %% [markdown]
# ## Every map, every metric
#
# Deletion and insertion both use a blurred copy as the substrate here (deletion's default is
# zeros; a black hole in a CT-like volume is far from anything the model was trained on).
# ROAD imputes removed voxels from their neighbours. Its default fractions (10%, ..., 90%, as
# in pytorch-grad-cam) suit natural images; a lesion here is 0.3-1% of the volume, so at 10%
# every good map has removed it already and MoRF cannot tell them apart. We remove 0.5% to 20%.
# The pointing game allows 2 voxels of tolerance (Zhang et al. allow 15 pixels): a `layer3`
# cell is 4 voxels wide, so a map's peak is only that precise.
# Average drop and increase in confidence score the input multiplied by the map, so a map
# that is large everywhere (the random one) keeps most of the image and looks good on them:
# read them next to the others.

# %%
blur = blur_baseline()
fractions = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2)
results, curves = {}, {}
for name, m in maps.items():
    deletion, insertion = deletion_insertion_curves(
        net,
        volumes,
        m,
        target=target,
        n_steps=16 if QUICK else 32,
        deletion_baselines=blur,
        insertion_baselines=blur,
    )
    curves[name] = (deletion, insertion)
    road_morf = road(net, volumes, m, target=target, order="morf", fractions=fractions)
    road_lerf = road(net, volumes, m, target=target, order="lerf", fractions=fractions)
    results[name] = {
        "deletion": auc(deletion),
        "insertion": auc(insertion),
        "road_morf": road_morf,
        "road_lerf": road_lerf,
        # the same as road(..., order="combined"), which scores the clean input once for both
        "road_combined": (road_lerf - road_morf) / 2,
        "average_drop": average_drop(net, volumes, m, target=target),
        "increase_in_confidence": increase_in_confidence(net, volumes, m, target=target),
        "pointing_game": pointing_game(m, masks, tolerance=2),
    }

metrics = list(results["random"])
better = {
    "deletion": "lower",
    "road_morf": "lower",
    "average_drop": "lower",
}
print(f"{'method':20s}" + "".join(f"{k:>24s}" for k in metrics))
print(f"{'(better)':20s}" + "".join(f"{better.get(k, 'higher'):>24s}" for k in metrics))
for name, values in results.items():
    print(f"{name:20s}" + "".join(f"{summarize(values[k])!s:>24s}" for k in metrics))

# %% [markdown]
# A method earns trust where it beats the random row on the perturbation metrics *and* points
# at the lesion. ROAD's two orders need not agree with deletion/insertion: its imputation
# keeps the removed region inconspicuous, so a map scores well only if the voxels it ranks
# first really carry the evidence. With two volumes (quick mode) the std is large: the full
# mode's table is the one to read. In it (8 volumes), the gradient CAMs, Ablation-CAM and
# IS-CAM beat the random map by far on deletion, insertion and ROAD; IS-CAM and Grad-CAM
# element-wise point at the lesion most often; CAM's 2^3 map and SS-CAM with only 4 noisy
# samples per channel are the weakest; the class-agnostic three do nearly as well as Grad-CAM
# because this model has one thing to find. Average drop (0.77 to 1.0, the random map 0.90)
# and increase in confidence (0 for all) barely separate the maps: multiplying a CT-like
# volume by a map darkens the anatomy the model reads, whatever the map. These are the
# numbers most CAM papers report; on volumes, report ROAD or deletion/insertion next to them.

# %% [markdown]
# ## One volume, a few methods

# %%
shown = ["gradcam", "shapleycam", "fullgrad", "ablationcam", "eigencam", "fem"]
for name in shown:
    # SyntheticLesions volumes carry no affine, so the panels are named by array axis
    fig = plot_slices(volumes[0], maps[name][0], mask=masks[0], title=f"{name}, class lesion")
    fig.savefig(OUTPUT / f"slices_{name}.png")
print(f"slices: {', '.join(f'slices_{name}.png' for name in shown)} in {OUTPUT}")

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
        maps={name: maps[name][i] for name in [*shown, "random"]},
        target=1,
        label=1,
        prediction=int(predicted[i]),
        mask=masks[i],
        curves={
            name: {"deletion": curves[name][0].scores[i], "insertion": curves[name][1].scores[i]}
            for name in [*shown, "random"]
        },
        class_names=["healthy", "lesion"],
    )
    for i in range(1 if QUICK else 2)
]
report = write_report(
    OUTPUT,
    results=rows,
    summary=summary,
    examples=examples,
    title="Every CAM on SyntheticLesions: deletion, insertion, ROAD, confidence",
)
print(f"report: {report}")
