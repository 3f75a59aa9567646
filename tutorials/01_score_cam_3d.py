# %% [markdown]
# # Score-CAM on a CT-like volume, and how faithful it is
#
# A jupytext "percent" script: open it as a notebook with `jupytext --to notebook`, or run it
# with `python tutorials/01_score_cam_3d.py`. `make test` runs it. It trains a small MONAI 3D
# ResNet on the synthetic lesion data set (no download), explains a volume with
# `ScoreCAM3D` and `GradCAM3D`, and checks the maps against the true lesion.

# %%
import os

import torch

from captum_medcam import GradCAM3D, ScoreCAM3D
from captum_medcam._demo import train_demo_model
from captum_medcam.data import SyntheticLesions
from captum_medcam.metrics import energy_pointing_game, pointing_game

quick = os.environ.get("CAPTUM_MEDCAM_TUTORIAL_QUICK") == "1"  # the test suite's short run
model, accuracy = train_demo_model(size=16 if quick else 32, steps=3 if quick else 80)
print(f"test accuracy on synthetic lesions: {accuracy:.0%}")

# %% [markdown]
# Explain four volumes with a lesion (odd indices), one target per volume.

# %%
data = SyntheticLesions(8, size=16 if quick else 32, seed=1)
items = [data[i] for i in (1, 3, 5, 7)]
volumes = torch.stack([it["image"] for it in items])
masks = torch.stack([it["mask"] for it in items])
target = torch.ones(4, dtype=torch.long)

maps = {
    "ScoreCAM3D": ScoreCAM3D(model, model.layer3).attribute(volumes, target=target),
    "GradCAM3D": GradCAM3D(model, model.layer3).attribute(volumes, target=target),
}
for name, m in maps.items():
    print(f"{name}: shape {tuple(m.shape)}")

# %% [markdown]
# Does the map point at the lesion? The pointing game asks whether the maximum lies in the
# mask; the energy-based pointing game gives the share of positive attribution inside it.

# %%
for name, m in maps.items():
    hits = pointing_game(m, masks)
    energy = energy_pointing_game(m, masks)
    print(f"{name}: pointing game {hits.tolist()}, energy in lesion {energy.mean():.1%}")
