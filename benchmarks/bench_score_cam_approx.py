"""Approximate Score-CAM (``max_channels``): speed and fidelity against the exact map.

The narrow MONAI ``resnet10`` of tutorials/02 is trained briefly on ``SyntheticLesions`` (lesion vs. no lesion),
then for every ``max_channels`` x ``channel_criterion`` the maps of held-out volumes are
compared with exact Score-CAM: CPU-time speed-up (process time, methods interleaved round
by round, median of rounds), forwards spent, Spearman rank correlation with the exact map
and the change in deletion/insertion AUC (DAUC lower is better, IAUC higher is better).
The predicted class is explained.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_score_cam_approx.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import torch
from monai.networks.nets import resnet10
from torch import nn

from benchmarks._common import interleaved
from captum_medcam import ScoreCAM3D
from captum_medcam.data import SyntheticLesions
from captum_medcam.metrics import deletion_auc, insertion_auc, spearman_rank_correlation

FRACTIONS = (1.0, 0.5, 0.25, 0.1, 0.05)
CRITERIA = ("variance", "mean")


class Counter(nn.Module):
    """Counts the examples that pass through the model (the clean forward included)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.rows = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.rows += x.shape[0]
        return self.model(x)


def train(size: int, n_train: int, steps: int) -> nn.Module:
    """The narrow ResNet-10 of tutorials/02, trained briefly (Adam, batches of 16), with its
    batch-norm statistics recomputed over the training set; returned in eval mode."""
    torch.manual_seed(0)
    net = resnet10(
        spatial_dims=3,
        n_input_channels=1,
        num_classes=2,
        widen_factor=0.25,
        conv1_t_size=3,
        conv1_t_stride=2,
        no_max_pool=True,
    )
    data = SyntheticLesions(n_train, size=size, seed=0)
    x = torch.stack([data[i]["image"] for i in range(n_train)])
    y = torch.stack([data[i]["label"] for i in range(n_train)])
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    net.train()
    for _ in range(steps):
        idx = torch.randperm(n_train)[:16]
        opt.zero_grad()
        nn.functional.cross_entropy(net(x[idx]), y[idx]).backward()
        opt.step()
    norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    with torch.no_grad():
        for chunk in x.split(16):
            net(chunk)
    for m in norms:
        m.momentum = 0.1
    return net.eval()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="2 volumes, one round, 16 steps")
    parser.add_argument("--size", type=int, default=32, help="volume edge")
    parser.add_argument("--layer", default="layer4", help="layer of the resnet10 to explain")
    parser.add_argument("--train-steps", type=int, default=80)
    parser.add_argument("--volumes", type=int, default=6, help="held-out volumes explained")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=32, help="deletion/insertion steps")
    args = parser.parse_args()
    if args.quick:
        args.volumes, args.rounds, args.steps = 2, 1, 16

    net = train(args.size, n_train=64, steps=args.train_steps)
    test = SyntheticLesions(args.volumes + 32, size=args.size, seed=1)
    x_all = torch.stack([test[i]["image"] for i in range(len(test))])
    y_all = torch.stack([test[i]["label"] for i in range(len(test))])
    with torch.no_grad():
        accuracy = float((net(x_all).argmax(1) == y_all).float().mean())
    with torch.no_grad():
        predicted = net(x_all).argmax(1)
    # Lesion volumes the network finds: their evidence is local, so the curves are
    # informative (on a healthy volume there is nothing to delete or insert).
    found = ((predicted == 1) & (y_all == 1)).nonzero().squeeze(1)[: args.volumes]
    if found.numel() == 0:
        raise RuntimeError(f"the network found no lesion (held-out accuracy {accuracy:.2f})")
    x = x_all[found]
    target = predicted[found]
    layer = getattr(net, args.layer)
    counter = Counter(net).eval()
    cam = ScoreCAM3D(counter, layer)

    configs: dict[str, tuple[float | None, str]] = {"exact": (None, "variance")}
    configs["1.0"] = (1.0, "variance")  # every channel: the criterion does not matter
    for criterion in CRITERIA:
        for fraction in FRACTIONS[1:]:
            configs[f"{fraction} {criterion}"] = (fraction, criterion)

    forwards: dict[str, float] = {}

    def method(name: str, max_channels: float | None, criterion: str):
        def run() -> torch.Tensor:
            counter.rows = 0
            out = cam.attribute(
                x, target=target, max_channels=max_channels, channel_criterion=criterion
            )
            forwards[name] = (counter.rows - x.shape[0]) / x.shape[0]  # masked, per volume
            return out

        return run

    stats = interleaved({k: method(k, *v) for k, v in configs.items()}, args.rounds)
    for s in stats.values():
        if s["error"]:
            raise RuntimeError(s["error"])
    exact = stats["exact"]["result"]

    def aucs(maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        kw = {"n_steps": args.steps}
        return (
            deletion_auc(net, x, maps, target, **kw),
            insertion_auc(net, x, maps, target, **kw),
        )

    d_exact, i_exact = aucs(exact)
    channels = cam_channels(net, layer, x[:1])
    print(
        f"\n### Approximate Score-CAM: MONAI resnet10 trained on SyntheticLesions {args.size}^3 "
        f"(held-out accuracy {accuracy:.2f}), {args.layer} ({channels} channels), "
        f"{x.shape[0]} lesion volumes, CPU time median of {args.rounds} round(s)"
    )
    print(f"exact: DAUC {d_exact.mean():.4f}, IAUC {i_exact.mean():.4f} ({args.steps} steps)")
    print(
        "| max_channels | criterion | forwards/volume | CPU s | speed-up | Spearman (min) "
        "| dDAUC | dIAUC |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    t_exact = stats["exact"]["median"]
    for name, (fraction, criterion) in configs.items():
        maps = stats[name]["result"]
        rho = spearman_rank_correlation(maps, exact)
        d, i = aucs(maps)
        label = "None (exact)" if fraction is None else f"{fraction:g}"
        crit = "-" if fraction in (None, 1.0) else criterion
        print(
            f"| {label} | {crit} | {forwards[name]:.0f} | {stats[name]['median']:.2f} "
            f"| {t_exact / stats[name]['median']:.1f}x "
            f"| {statistics.fmean(rho.tolist()):.3f} ({float(rho.min()):.3f}) "
            f"| {float((d - d_exact).mean()):+.4f} | {float((i - i_exact).mean()):+.4f} |"
        )


def cam_channels(net: nn.Module, layer: nn.Module, x: torch.Tensor) -> int:
    """The number of channels of ``layer``'s output."""
    seen: list[int] = []
    handle = layer.register_forward_hook(lambda m, i, o: seen.append(o.shape[1]))
    try:
        with torch.no_grad():
            net(x)
    finally:
        handle.remove()
    return seen[0]


if __name__ == "__main__":
    main()
