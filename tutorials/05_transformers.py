# %% [markdown]
# # Transformers in 3D: a MONAI ViT next to a ResNet
#
# A jupytext "percent" script (`jupytext --to notebook` opens it as a notebook; `python
# tutorials/05_transformers.py` runs it; `make test` runs it in its short mode). It trains
# a small MONAI `ViT` and a small MONAI `resnet10` on the synthetic lesion volumes (no
# download), explains both with Grad-CAM and Score-CAM, and compares how faithful the maps
# are with the deletion and insertion AUCs (DAUC, lower is better; IAUC, higher is better).
#
# A transformer block outputs tokens `(N, T, E)`, one per 3D patch (after a class token),
# not a map `(N, C, D, H, W)`. Every layer method takes `reshape_transform=`, and
# `captum_medcam.reshapes` builds the right one from the input size and the patch size.

# %%
import os
import time

import torch
from monai.networks.nets import ViT, resnet10
from torch import nn

from captum_medcam import EnsembleAttribution, GradCAM3D, ScoreCAM3D
from captum_medcam.data import SyntheticLesions
from captum_medcam.metrics import deletion_auc, insertion_auc, pointing_game
from captum_medcam.reshapes import monai_vit_reshape

quick = os.environ.get("CAPTUM_MEDCAM_TUTORIAL_QUICK") == "1"  # the test suite's short run
size, patch, n_train = (16, 4, 64) if quick else (32, 8, 512)
steps = {"ViT": 3, "ResNet": 3} if quick else {"ViT": 600, "ResNet": 150}  # a ViT learns slower
torch.manual_seed(0)

# %% [markdown]
# Two classifiers for "lesion or not". MONAI's `ViT` returns `(logits, hidden_states)`;
# a two-line wrapper gives Captum and this library the logits.

# %%


class Logits(nn.Module):
    def __init__(self, vit: nn.Module) -> None:
        super().__init__()
        self.vit = vit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.vit(x)[0]


vit = ViT(
    1,
    img_size=size,
    patch_size=patch,
    hidden_size=48,
    mlp_dim=96,
    num_layers=3,
    num_heads=4,
    classification=True,
    num_classes=2,
    post_activation=None,
)
models = {
    "ViT": Logits(vit),
    "ResNet": resnet10(
        spatial_dims=3,
        n_input_channels=1,
        num_classes=2,
        widen_factor=0.25,
        conv1_t_size=3,
        conv1_t_stride=2,
        no_max_pool=True,
    ),
}

train = SyntheticLesions(n_train, size=size, seed=0)
images = torch.stack([train[i]["image"] for i in range(len(train))])
labels = torch.stack([train[i]["label"] for i in range(len(train))])
test = SyntheticLesions(16, size=size, seed=1)
test_images = torch.stack([test[i]["image"] for i in range(len(test))])
test_labels = torch.stack([test[i]["label"] for i in range(len(test))])
for name, model in models.items():
    torch.manual_seed(0)  # the same batches for both models
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-4 if name == "ViT" else 1e-3)
    model.train()
    for _ in range(steps[name]):
        batch = torch.randint(0, len(train), (16,))
        loss = nn.functional.cross_entropy(model(images[batch]), labels[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        accuracy = (model(test_images).argmax(1) == test_labels).float().mean()
    print(f"{name}: test accuracy {accuracy:.0%}")

# %% [markdown]
# The layer to explain. For the ViT it is the first norm of the last block: its patch
# tokens reach the class token through attention (the last block's output itself only
# passes its class token on to the head, so its patch tokens have no gradient).
# `monai_vit_reshape(size, patch, classification=True)` drops the class token and lays
# the `(size / patch)^3` patch tokens on their grid.

# %%
reshape = monai_vit_reshape(size, patch, classification=True)
print(reshape)
layers = {"ViT": (vit.blocks[-1].norm1, reshape), "ResNet": (models["ResNet"].layer3, None)}

lesions = test_images[1::2][:4]  # odd items hold a lesion
masks = torch.stack([test[i]["mask"] for i in range(1, len(test), 2)])[:4]
target = torch.ones(len(lesions), dtype=torch.long)
maps = {}
for name, (layer, transform) in layers.items():
    model = models[name]
    maps[f"{name} Grad-CAM"] = GradCAM3D(model, layer, reshape_transform=transform).attribute(
        lesions, target=target
    )
    maps[f"{name} Score-CAM"] = ScoreCAM3D(model, layer, reshape_transform=transform).attribute(
        lesions, target=target
    )
for name, m in maps.items():
    print(f"{name:18s} map {tuple(m.shape)}, peak in lesion {pointing_game(m, masks).tolist()}")

# %% [markdown]
# ## DAUC and IAUC side by side
#
# Each map is scored with its own model: deletion removes the most relevant voxels first
# (a faithful map makes the score fall fast), insertion puts them back into a blurred
# volume (a faithful map makes it rise fast).

# %%
n_steps = 16 if quick else 64
print(f"{'map':18s} {'DAUC':>7s} {'IAUC':>7s}")
for name, m in maps.items():
    model = models[name.split()[0]]
    dauc = deletion_auc(model, lesions, m, target=target, n_steps=n_steps)
    iauc = insertion_auc(model, lesions, m, target=target, n_steps=n_steps)
    print(f"{name:18s} {dauc.mean():7.3f} {iauc.mean():7.3f}")

# %% [markdown]
# ## An ensemble of the two
#
# `EnsembleAttribution` combines the members' maps as CRM's authors combine an ensemble's:
# each map min-max normalised per volume, then averaged. Its `forward_func` averages the
# members' logits, so the metrics score the ensemble as a model.

# %%
ensemble = EnsembleAttribution(
    [
        GradCAM3D(models["ViT"], vit.blocks[-1].norm1, reshape_transform=reshape),
        GradCAM3D(models["ResNet"], models["ResNet"].layer3),
    ]
)
combined, members = ensemble.attribute(lesions, target=target, return_members=True)
dauc = deletion_auc(ensemble.forward_func, lesions, combined, target=target, n_steps=n_steps)
print(
    f"ensemble map {tuple(combined.shape)} from {members.shape[1]} members, DAUC {dauc.mean():.3f}"
)

# %% [markdown]
# ## What Score-CAM costs on each
#
# Score-CAM runs one forward per distinct channel mask: 48 token channels for this ViT
# (its hidden size), and the channels of `layer3` for the ResNet. The process CPU time
# of one volume at the same input size:

# %%
for name, (layer, transform) in layers.items():
    cam = ScoreCAM3D(models[name], layer, reshape_transform=transform)
    start = time.process_time()
    cam.attribute(lesions[:1], target=1)
    print(f"{name}: Score-CAM on one {size}^3 volume, {time.process_time() - start:.2f} s CPU")
