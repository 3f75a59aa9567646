"""Localization metrics and map similarities: captum_medcam vs Quantus, SciPy and scikit-image.

Measures process CPU time per call (the machine is shared), ours and the peer interleaved
round by round (best of the rounds), and the largest difference between the values.
Quantus 0.6 computes the pointing game, relevance rank accuracy and relevance mass
accuracy in NumPy; its randomisation test (MPRT) compares maps with
``scipy.stats.spearmanr`` and ``skimage.metrics.structural_similarity`` one example at a
time, which are the peers of the similarity rows.

    python benchmarks/localization_sanity.py [--quick] [--rounds 5]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import time
import warnings
from collections.abc import Callable

import numpy as np
import torch

from captum_medcam._core.spatial import minmax_normalize
from captum_medcam.metrics import (
    energy_pointing_game,
    pointing_game,
    relevance_rank_accuracy,
    spearman_rank_correlation,
    structural_similarity,
)


def cases(
    a: torch.Tensor, b: torch.Tensor, m: torch.Tensor
) -> list[tuple[str, Callable, Callable]]:
    """(name, ours, peer) for one batch of maps ``a``, ``b`` and masks ``m``."""
    import quantus
    import scipy.stats
    from skimage.metrics import structural_similarity as sk_ssim

    an, bn, mn = a.numpy(), b.numpy(), m.numpy().astype(np.float32)
    x, y = np.zeros_like(an), np.zeros(a.shape[0], dtype=int)
    an01, bn01 = minmax_normalize(a)[0].numpy(), minmax_normalize(b)[0].numpy()

    def q(metric):
        def run():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                scores = metric(disable_warnings=True, normalise=False)(
                    model=None, x_batch=x, y_batch=y, a_batch=an, s_batch=mn, channel_first=True
                )
            return np.asarray(scores, dtype=np.float64)

        return run

    def spearman_peer():
        return np.array(
            [scipy.stats.spearmanr(an[i].ravel(), bn[i].ravel()).statistic for i in range(len(an))]
        )

    def ssim_peer():
        kw = dict(data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
        return np.array([sk_ssim(an01[i, 0], bn01[i, 0], **kw) for i in range(len(an))])

    def ssim_ours():
        return structural_similarity(minmax_normalize(a)[0], minmax_normalize(b)[0]).numpy()

    return [
        ("pointing game", lambda: pointing_game(a, m).numpy(), q(quantus.PointingGame)),
        (
            "rank accuracy",
            lambda: relevance_rank_accuracy(a, m).numpy(),
            q(quantus.RelevanceRankAccuracy),
        ),
        (
            "energy / mass accuracy",
            lambda: energy_pointing_game(a, m).numpy(),
            q(quantus.RelevanceMassAccuracy),
        ),
        ("Spearman", lambda: spearman_rank_correlation(a, b).numpy(), spearman_peer),
        ("SSIM", ssim_ours, ssim_peer),
    ]


def timed(func: Callable) -> tuple[float, object]:
    start = time.process_time()
    out = func()
    return time.process_time() - start, out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=5)
    opts = parser.parse_args()
    torch.set_num_threads(1)
    shapes = [(8, 1, 64, 64), (4, 1, 32, 32, 32)]
    if not opts.quick:
        shapes = [(8, 1, 224, 224), (4, 1, 64, 64, 64)]
    g = torch.Generator().manual_seed(0)
    print(f"{'input':24} {'metric':24} {'ours ms':>9} {'peer ms':>9} {'peer/ours':>9}  max |diff|")
    for shape in shapes:
        a = torch.rand(shape, generator=g)
        b = (a + 0.5 * torch.rand(shape, generator=g)).clamp(0, 1)
        m = torch.rand(shape, generator=g) > 0.8
        label = f"{len(shape) - 2}D {tuple(shape)}"
        for name, ours, peer in cases(a, b, m):
            t_ours = t_peer = float("inf")
            v_ours = v_peer = None
            error = None
            for _ in range(opts.rounds):  # interleaved: one call of each per round
                t, v_ours = timed(ours)
                t_ours = min(t_ours, t)
                if error is None:
                    try:
                        t, v_peer = timed(peer)
                        t_peer = min(t_peer, t)
                    except Exception as e:  # a benchmark prints the peer's failure
                        error = f"peer failed: {type(e).__name__}: {str(e)[:60]}"
            if error is None:
                diff = float(
                    np.max(np.abs(np.asarray(v_ours, dtype=np.float64) - np.asarray(v_peer)))
                )
                tail = f"{1e3 * t_peer:9.2f} {t_peer / t_ours:9.1f}  {diff:.1e}"
            else:
                tail = f"{'-':>9} {'-':>9}  {error}"
            print(f"{label:24} {name:24} {1e3 * t_ours:9.2f} {tail}")


if __name__ == "__main__":
    main()
