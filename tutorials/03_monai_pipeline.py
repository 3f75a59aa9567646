# %% [markdown]
# # In a MONAI pipeline: metrics in an evaluator, maps saved as NIfTI in the scanner's space
#
# MONAI users preprocess with dictionary transforms (orientation, spacing, ...), evaluate
# with a `SupervisedEvaluator`, and save with `SaveImaged`. This tutorial plugs explanations
# into each stage:
# 1. `AttributionHandler` scores the maps of every evaluated batch (deletion and insertion
#    AUC, AOPC) and puts mean and std into `engine.state.metrics`;
# 2. `Attributiond` computes a map as a `MetaTensor` that remembers the preprocessing,
#    `InvertAttributiond` undoes the preprocessing on it, and `SaveImaged` writes a NIfTI
#    with the original file's affine and shape, so the map overlays the scan in any viewer.
#
# The scan is `anatomical.nii`, a small T1 MRI that ships with nibabel (no download). The
# network is untrained: this tutorial is about the plumbing. `CAPTUM_MEDCAM_TUTORIAL_QUICK=1`
# uses a coarser spacing.

# %%
import os
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from monai.engines import SupervisedEvaluator
from monai.networks.nets import resnet10
from monai.transforms import (
    Compose,
    EnsureChannelFirstd,
    LoadImaged,
    Orientationd,
    SaveImaged,
    ScaleIntensityd,
    Spacingd,
)
from nibabel.testing import data_path

from captum_medcam import GradCAM3D, ScoreCAM3D
from captum_medcam.integrations.monai import (
    Attributiond,
    AttributionHandler,
    InvertAttributiond,
    get_layer,
    list_layers,
)

QUICK = os.environ.get("CAPTUM_MEDCAM_TUTORIAL_QUICK") == "1"
OUTPUT = Path(os.environ.get("CAPTUM_MEDCAM_TUTORIAL_OUTPUT", "tutorial_output")) / "03"
torch.manual_seed(0)

# %% [markdown]
# ## Preprocessing and a network

# %%
scan = Path(data_path) / "anatomical.nii"
original = nib.load(scan)
print(
    f"the scan: shape {original.shape}, voxel size {tuple(float(z) for z in original.header.get_zooms())} mm"
)
spacing = (4.0, 4.0, 4.0) if QUICK else (2.0, 2.0, 2.0)
pre = Compose(
    [
        LoadImaged("image", image_only=True),
        EnsureChannelFirstd("image"),
        Orientationd("image", axcodes="RAS", labels=None),
        Spacingd("image", pixdim=spacing),
        ScaleIntensityd("image"),
    ]
)
sample = pre({"image": str(scan), "label": 1})
print(f"after preprocessing: {tuple(sample['image'].shape)} at {spacing} mm")

net = resnet10(spatial_dims=3, n_input_channels=1, num_classes=2, widen_factor=0.5).eval()
for info in list_layers(net, (1, *sample["image"].shape))[-5:]:
    print(f"layer {info.name}: output {info.output_shape}")

# %% [markdown]
# ## 1. Faithfulness in an evaluator
#
# The handler computes each batch's maps with the attribution it is given and scores them
# with its metrics; `target="pred"` explains the class the evaluator predicted.

# %%
batch = {"image": sample["image"].as_tensor(), "label": 1}  # the voxels; metadata not needed here
loader = torch.utils.data.DataLoader([batch, batch], batch_size=2)
evaluator = SupervisedEvaluator(device=torch.device("cpu"), val_data_loader=loader, network=net)
AttributionHandler(GradCAM3D(net, get_layer(net, "layer3")), target="pred").attach(evaluator)
evaluator.run()
for name, value in evaluator.state.metrics.items():
    print(f"{name}: {value:.4f}")

# %% [markdown]
# ## 2. A map in the scanner's space, saved as NIfTI

# %%
out_dir = Path(tempfile.mkdtemp()) if QUICK else OUTPUT
save = Compose(
    [
        Attributiond("image", ScoreCAM3D(net, get_layer(net, "layer3")), target="label"),
        InvertAttributiond("image_map", pre, orig_keys="image"),
        SaveImaged(
            "image_map",
            output_dir=str(out_dir),
            output_postfix="map",
            separate_folder=False,
            print_log=False,
        ),
    ]
)
save(pre({"image": str(scan), "label": 1}))
saved = nib.load(next(out_dir.glob("anatomical_map.nii*")))
print(
    f"saved map: shape {saved.shape}, same affine as the scan: "
    f"{np.allclose(saved.affine, original.affine, atol=1e-4)}"
)
assert saved.shape[:3] == original.shape[:3]
assert np.allclose(saved.affine, original.affine, atol=1e-4)
data = np.asarray(saved.dataobj)
peak = np.unravel_index(np.argmax(data), data.shape)
print(f"the map's peak is at voxel {tuple(int(v) for v in peak[:3])} of the original scan")
