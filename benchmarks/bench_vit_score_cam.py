"""Score-CAM on a 3D ViT next to a 3D ResNet-18 at the same input size (CPU).

Score-CAM costs one forward per distinct channel mask: for a ViT the channels are its
hidden size (the token embedding, reshaped onto the patch grid with
``captum_medcam.reshapes.monai_vit_reshape``), for a ResNet the channels of the layer. The
forward of each model costs differently too, so the table gives the forwards, the CPU time
of one volume and the ratio.

Models (randomly initialised, eval mode, float32, batch of one volume):

* MONAI ``ViT``: hidden 192, MLP 768, 4 blocks, 4 heads, class token; layer
  ``blocks[-1].norm1``; patch 8 at 32^3 (4^3 tokens), patch 16 at 64^3 (4^3 tokens).
* MONAI ``resnet18``: full width; ``layer3`` (256 channels, 2^3) at 32^3, ``layer4``
  (512 channels, 2^3) at 64^3 (the usual last block; at 32^3 it is 1^3 and has no map).

Run from the repository root: ``PYTHONPATH=. python benchmarks/bench_vit_score_cam.py``
(32^3 and 64^3) or ``--quick`` (32^3). Process CPU time (``time.process_time``), the two
models interleaved, median of rounds.
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch
from monai.networks.nets import ViT, resnet18
from torch import nn

from benchmarks._common import interleaved
from captum_medcam import ScoreCAM3D
from captum_medcam.reshapes import monai_vit_reshape


class Logits(nn.Module):
    def __init__(self, vit: nn.Module) -> None:
        super().__init__()
        self.vit = vit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.vit(x)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="32^3 only, one round")
    quick = parser.parse_args().quick
    torch.manual_seed(0)
    print(f"threads: {torch.get_num_threads()}, OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}")
    for size in (32,) if quick else (32, 64):
        patch = size // 4
        vit = ViT(
            1,
            img_size=size,
            patch_size=patch,
            hidden_size=192,
            mlp_dim=768,
            num_layers=4,
            num_heads=4,
            classification=True,
            num_classes=2,
        )
        vit_model = Logits(vit).eval()
        resnet = resnet18(spatial_dims=3, n_input_channels=1, num_classes=2).eval()
        resnet_layer = resnet.layer3 if size == 32 else resnet.layer4
        x = torch.randn(1, 1, size, size, size)
        cams = {
            "ViT": ScoreCAM3D(
                vit_model,
                vit.blocks[-1].norm1,
                reshape_transform=monai_vit_reshape(size, patch, classification=True),
            ),
            "ResNet-18": ScoreCAM3D(resnet, resnet_layer),
        }
        channels = {"ViT": 192, "ResNet-18": 256 if size == 32 else 512}
        stats = interleaved(
            {name: (lambda c=cam, v=x: c.attribute(v, target=1)) for name, cam in cams.items()},
            rounds=1 if quick else 2,
        )
        print(f"\ninput 1x1x{size}^3")
        print(f"{'model':10s} {'channels':>8s} {'CPU s':>8s} {'peak MB':>8s}")
        for name, s in stats.items():
            if s["error"]:
                print(f"{name:10s} error: {s['error']}")
                continue
            print(f"{name:10s} {channels[name]:8d} {s['median']:8.2f} {s['peak_mb']:8.0f}")
        ratio = stats["ViT"]["median"] / stats["ResNet-18"]["median"]
        print(f"ViT / ResNet-18 CPU time: {ratio:.3g} (ResNet-18 / ViT: {1 / ratio:.3g})")


if __name__ == "__main__":
    main()
