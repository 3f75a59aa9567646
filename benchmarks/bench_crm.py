"""CRM on a 3D ResNet-18: the fast path and the definition vs. the authors' per-element loop.

The reference (Kim et al.'s Keras code, ported to NumPy for volumes) takes the layer's
activations from one forward pass, then for every class builds the CAM channel by channel
and, for every spatial element, copies the CAM, zeroes the element and sums again. Our fast
path is one einsum after the forward; the definition re-evaluates the head with each
position removed. All three include the forward pass. The reference sums instead of
averaging, so its map is ours times ``|S'|^2``; the "max rel. diff" column compares after
that factor. The "head only" rows time what each does after the forward pass (on the same
captured activations), which is where the per-element loop costs.

Run from the repository root: ``PYTHONPATH=. python benchmarks/bench_crm.py`` (28^3 and 64^3) or ``--quick`` (28^3 only).
Process CPU time (``time.process_time``) is measured, peers interleaved, median of rounds.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from monai.networks.nets import resnet18

from captum_medcam import CRM, CRM3D
from captum_medcam.attr._crm import crm_from_score_changes


def fast_head(acts: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The fast path after its forward pass (one einsum)."""
    changes = torch.einsum("ck,nk...->nc...", weight, acts) / acts[0, 0].numel()
    return crm_from_score_changes(changes, None)


def layer4_output(net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    saved = {}
    handle = net.layer4.register_forward_hook(lambda m, i, o: saved.setdefault("a", o.detach()))
    try:
        with torch.no_grad():
            net(x)
    finally:
        handle.remove()
    return saved["a"]


def reference_loop(net: torch.nn.Module, x: torch.Tensor) -> np.ndarray:
    """The authors' combined CRM (generate_crm_combined), element by element, in 3D."""
    return reference_head(layer4_output(net, x), net.fc.weight.detach())


def reference_head(acts: torch.Tensor, weight: torch.Tensor) -> np.ndarray:
    """The loops of the reference after its forward pass."""
    conv = acts[0].permute(1, 2, 3, 0).numpy()  # (D, H, W, C) as in Keras
    weights = weight.numpy().T  # (C, K) as Keras stores it
    crm = np.zeros(conv.shape[:3], dtype=np.float32)
    for j in range(weights.shape[1]):
        cam = np.zeros(conv.shape[:3], dtype=np.float32)
        for i, w in enumerate(weights[:, j]):
            cam += w * conv[..., i]
        total = np.sum(cam)
        for d in range(cam.shape[0]):
            for h in range(cam.shape[1]):
                for w_ in range(cam.shape[2]):
                    removed = np.array(cam)
                    removed[d, h, w_] = 0.0
                    crm[d, h, w_] += (total - np.sum(removed)) ** 2
    return crm


def cpu_time(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.process_time()
    out = fn()
    return time.process_time() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="28^3 only, 2 rounds")
    parser.add_argument("--rounds", type=int, default=None)
    args = parser.parse_args()
    sizes = [28] if args.quick else [28, 64]
    rounds = args.rounds or (2 if args.quick else 3)
    torch.manual_seed(0)
    net = resnet18(spatial_dims=3, n_input_channels=1, num_classes=11).eval()
    fast = CRM3D(net, net.layer4, fc_layer=net.fc)
    definition = CRM3D(net, net.layer4)
    fast_low = CRM(net, net.layer4, fc_layer=net.fc)
    weight = net.fc.weight.detach()

    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, MONAI resnet18 (11 classes)"
    )
    print(
        f"{'size':>5} {'|S_prime|':>9} {'method':<26} {'CPU s':>8} {'vs reference':>13} {'max rel. diff':>14}"
    )
    for size in sizes:
        x = torch.randn(1, 1, size, size, size)
        acts = layer4_output(net, x)
        peers: dict[str, Callable[[], object]] = {
            "reference loop (NumPy)": lambda x=x: reference_loop(net, x),
            "CRM3D fast (fc_layer)": lambda x=x: fast.attribute(x),
            "CRM3D definition": lambda x=x: definition.attribute(x),
            "CRM fast, layer res.": lambda x=x: fast_low.attribute(x, upsample=False),
            "head only: reference loops": lambda a=acts: reference_head(a, weight),
            "head only: fast einsum": lambda a=acts: fast_head(a, weight),
        }
        times: dict[str, list[float]] = {k: [] for k in peers}
        outputs: dict[str, object] = {}
        errors: dict[str, str] = {}
        for _ in range(rounds):
            for name, fn in peers.items():
                if name in errors:
                    continue
                try:
                    t, out = cpu_time(fn)
                except Exception as exc:  # a peer's failure is reported, not fatal
                    errors[name] = f"{type(exc).__name__}: {exc}"
                    continue
                times[name].append(t)
                outputs[name] = out
        ref = outputs.get("reference loop (NumPy)")
        low = outputs.get("CRM fast, layer res.")
        positions = int(np.prod(ref.shape)) if isinstance(ref, np.ndarray) else 0
        for name in peers:
            base = (
                "head only: reference loops"
                if name.startswith("head only")
                else "reference loop (NumPy)"
            )
            ref_time = statistics.median(times[base]) if times[base] else float("nan")
            if name in errors:
                print(f"{size:>5} {positions:>9} {name:<26} failed: {errors[name]}")
                continue
            t = statistics.median(times[name])
            diff = ""
            if name == "CRM3D definition" and isinstance(low, torch.Tensor):
                up_fast = outputs["CRM3D fast (fc_layer)"]
                assert isinstance(up_fast, torch.Tensor)
                out = outputs[name]
                assert isinstance(out, torch.Tensor)
                diff = f"{float((out - up_fast).abs().max() / up_fast.abs().max()):.1e} (vs fast)"
            elif (
                name == "CRM fast, layer res."
                and isinstance(ref, np.ndarray)
                and isinstance(low, torch.Tensor)
            ):
                ours = low[0, 0].numpy() * positions**2
                diff = f"{float(np.abs(ours - ref).max() / np.abs(ref).max()):.1e}"
            print(
                f"{size:>5} {positions:>9} {name:<26} {t:>8.4f} {ref_time / t:>12.1f}x {diff:>14}"
            )


if __name__ == "__main__":
    main()
