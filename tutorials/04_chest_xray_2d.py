# %% [markdown]
# # Chest X-rays in 2D: CRM, Grad-CAM, Guided Grad-CAM and CNN Fixations, and AOPC per model
#
# The X-ray studies this library starts from compare class activation maps on chest X-ray
# classifiers and rank the *models* by AOPC (81 regions perturbed by normal noise with std
# 0.1, correctly classified images only; VGG16 0.45, DenseNet201 0.49 at 299x299). Here the
# same protocol runs on ChestMNIST-format files (28x28) with two small models, a VGG-style
# chain of convolutions and a MONAI DenseNet, trained briefly to tell "any finding" from
# "no finding".
#
# - `CAPTUM_MEDCAM_TUTORIAL_DOWNLOAD=1`: the real ChestMNIST, downloaded by medmnist;
# - by default: a ChestMNIST-format file made on the fly (no download): chest-like images
#   where a finding is a bright patch in a lung field, with multi-label vectors like the
#   real file;
# - `CAPTUM_MEDCAM_TUTORIAL_QUICK=1` (the test suite): the same, tiny.

# %%
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from captum.attr import GuidedGradCam, LayerAttribution, LayerGradCam
from monai.networks.nets import DenseNet
from torch import nn

from captum_medcam import CRM, CNNFixations
from captum_medcam.metrics import aopc, normal_noise_baseline, summarize
from captum_medcam.visualization import ReportExample, write_report

QUICK = os.environ.get("CAPTUM_MEDCAM_TUTORIAL_QUICK") == "1"
DOWNLOAD = os.environ.get("CAPTUM_MEDCAM_TUTORIAL_DOWNLOAD") == "1"
OUTPUT = Path(os.environ.get("CAPTUM_MEDCAM_TUTORIAL_OUTPUT", "tutorial_output")) / "04"
torch.manual_seed(0)
warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU")  # Captum's notice

# %% [markdown]
# ## ChestMNIST-format files
#
# `chestmnist.npz` holds `train_images`, `val_images`, `test_images` (`(N, 28, 28)` uint8)
# and `train_labels`, ... (`(N, 14)` uint8, one column per finding: multi-label). We read it
# with NumPy.


# %%
def write_chest_like_npz(root: Path, counts: dict[str, int], seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:28, 0:28].astype(np.float32)
    lungs = (((xx - 9) / 5) ** 2 + ((yy - 14) / 9) ** 2 < 1) | (
        ((xx - 19) / 5) ** 2 + ((yy - 14) / 9) ** 2 < 1
    )
    arrays = {}
    for split, n in counts.items():
        labels = np.zeros((n, 14), np.uint8)
        images = np.empty((n, 28, 28), np.uint8)
        for i in range(n):
            image = 0.75 - 0.45 * lungs + 0.06 * rng.standard_normal((28, 28))
            if rng.random() < 0.5:  # a finding: a bright patch inside a lung field
                cx, cy = rng.choice([9, 19]) + rng.integers(-2, 3), 14 + rng.integers(-5, 6)
                image += 0.45 * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 4.0)
                labels[i, rng.integers(0, 14)] = 1
            images[i] = np.clip(image * 255, 0, 255).astype(np.uint8)
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = images, labels
    path = root / "chestmnist.npz"
    np.savez_compressed(path, **arrays)
    return path


if DOWNLOAD:
    import medmnist

    root = OUTPUT / "medmnist"
    root.mkdir(parents=True, exist_ok=True)
    medmnist.ChestMNIST(split="test", root=str(root), download=True)
    path = root / "chestmnist.npz"
else:
    counts = (
        {"train": 128, "val": 16, "test": 48} if QUICK else {"train": 2000, "val": 200, "test": 400}
    )
    path = write_chest_like_npz(Path(tempfile.mkdtemp()), counts)
files = np.load(path)


def split(name: str, limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.from_numpy(files[f"{name}_images"][:limit]).float().div(255)[:, None]
    finding = torch.from_numpy(files[f"{name}_labels"][:limit]).any(1).long()
    return images, finding


x_train, y_train = split("train", 20000 if DOWNLOAD else None)
x_test, y_test = split("test", 2000 if DOWNLOAD else None)
print(
    f"{len(x_train)} training images, {len(x_test)} test images, {y_test.float().mean():.0%} with a finding"
)

# %% [markdown]
# ## Two models
#
# CNN Fixations unravels chains of convolutions, ReLUs, pooling and linear layers, so the
# VGG-style model is written as one `nn.Sequential`.

# %%
vgg = nn.Sequential(
    nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
    nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
    nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
    nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
    nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),
    nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 2),
)  # fmt: skip
densenet = DenseNet(
    spatial_dims=2, in_channels=1, out_channels=2, init_features=16, growth_rate=8,
    block_config=(2, 2, 2),
)  # fmt: skip
models = {"vgg": vgg, "densenet": densenet}
steps = 10 if QUICK else 400
for name, net in models.items():
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    net.train()
    for _ in range(steps):
        batch = torch.randint(0, len(x_train), (32,))
        optimizer.zero_grad()
        F.cross_entropy(net(x_train[batch]), y_train[batch]).backward()
        optimizer.step()
    net.eval()
    with torch.no_grad():
        accuracy = (net(x_test).argmax(1) == y_test).float().mean()
    print(f"{name}: test accuracy {accuracy:.1%}")

# %% [markdown]
# ## Four maps per model
#
# - **CRM** (class-selective relevance mapping): how much the class scores change when one
#   position of the last feature map is removed; with the head's linear layer it is exact.
# - **Grad-CAM** and **Guided Grad-CAM**: Captum's own, upsampled to the image.
# - **CNN Fixations**: the input locations the prediction depends on, without gradients. It
#   raises `NotImplementedError` for a block it cannot unravel (here the dense blocks).
#
# Following the protocol, we explain the predicted class on correctly classified images.

# %%
layers = {
    "vgg": (vgg[11], vgg[14]),  # the last ReLU and the linear head
    "densenet": (densenet.class_layers.relu, densenet.class_layers.out),
}
maps_per_model, images_per_model = {}, {}
n_explain = 6 if QUICK else 200
for name, net in models.items():
    with torch.no_grad():
        predicted = net(x_test).argmax(1)
    keep = (predicted == y_test).nonzero().flatten()[:n_explain]
    x, target = x_test[keep], predicted[keep]
    layer, head = layers[name]
    gradcam = LayerGradCam(net, layer).attribute(x, target=target, relu_attributions=True)
    maps = {
        "crm": CRM(net, layer, fc_layer=head).attribute(x, target=target),
        "gradcam": LayerAttribution.interpolate(gradcam, x.shape[2:], "bilinear"),
        "guided_gradcam": GuidedGradCam(net, layer)
        .attribute(x.clone().requires_grad_(), target=target)
        .detach()
        .abs(),
    }
    try:
        maps["cnn_fixations"] = CNNFixations(net).attribute(x, target=target, sigma=1.5)
    except NotImplementedError as error:
        print(f"{name}: no CNN Fixations ({error})")
    maps_per_model[name], images_per_model[name] = maps, (keep, x, target)
    print(f"{name}: {len(keep)} correctly classified images explained with {list(maps)}")

# %% [markdown]
# ## AOPC per model, as in the X-ray study
#
# 81 regions (a 9x9 grid; 3 or 4 pixels a side at 28x28), perturbed most relevant first by
# normal noise with std 0.1, softmax probability of the explained class.

# %%
cell = torch.arange(28) * 9 // 28
grid = (cell[:, None] * 9 + cell[None, :])[None, None]  # (1, 1, 28, 28): 81 region ids
results = {}
for name, net in models.items():
    _, x, target = images_per_model[name]
    results[name] = {}
    for method, m in maps_per_model[name].items():
        noise = normal_noise_baseline(0.0, 0.1, generator=torch.Generator().manual_seed(0))
        results[name][method] = aopc(
            net, x, m, target=target, feature_mask=grid.expand(len(x), 1, 28, 28), baselines=noise
        )
        print(f"{name:9s} {method:15s} AOPC {summarize(results[name][method])}")

# %% [markdown]
# ## The report, per model

# %%
for name in models:
    keep, x, target = images_per_model[name]
    maps = maps_per_model[name]
    rows = [
        {
            "index": int(keep[i]),
            "label": int(y_test[keep[i]]),
            "prediction": int(target[i]),
            "correct": True,
            "target": int(target[i]),
            "method": method,
            "aopc": float(results[name][method][i]),
        }
        for method in maps
        for i in range(len(keep))
    ]
    summary = {
        method: {"aopc": {"mean": float(v.mean()), "std": float(v.std(correction=0)), "n": len(v)}}
        for method, v in results[name].items()
    }
    examples = [
        ReportExample(
            index=int(keep[i]),
            image=x[i],
            maps={method: m[i] for method, m in maps.items()},
            target=int(target[i]),
            label=int(y_test[keep[i]]),
            prediction=int(target[i]),
            class_names=["no finding", "finding"],
        )
        for i in range(2 if QUICK else 4)
    ]
    report = write_report(
        OUTPUT / name, results=rows, summary=summary, examples=examples, title=f"ChestMNIST, {name}"
    )
    print(f"report for {name}: {report}")
