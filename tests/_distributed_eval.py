"""Worker for tests/test_evaluation.py: ``torchrun --nproc_per_node=2 tests/_distributed_eval.py OUT [pipeline]``.

Every rank evaluates its share with gloo on the CPU, and writes the gathered result it
returns to ``OUT/rank{r}.pt``. With ``pipeline``, the comparison pipeline of
``captum-medcam evaluate`` (several methods, masks, curves) runs instead
(``setup_pipeline()``). Needs ``tests/`` on ``PYTHONPATH`` (for the conftest models). ``setup()`` is also imported by the test for the
single-process reference.
"""

from __future__ import annotations

import os
import sys
import time
from functools import partial

import torch

from captum_medcam import ScoreCAM3D, evaluate_dataset, run_distributed
from captum_medcam.metrics import aopc
from tests.conftest import masked_score_metric, mean_map_metric, small_cnn

N_SAMPLES = 7  # odd: a padding sampler would duplicate one sample


def setup():
    model = small_cnn(3, in_channels=1)
    g = torch.Generator().manual_seed(1)
    data = [
        {"image": torch.randn(1, 8, 8, 8, generator=g, dtype=torch.float64), "label": i % 3}
        for i in range(N_SAMPLES)
    ]
    metrics = {
        "mean_map": mean_map_metric,
        "masked_score": masked_score_metric,
        # random by definition (uniform noise): seeded, so equal across process splits
        "aopc_noise": partial(aopc, region_size=4, n_regions=3),
    }
    return model, ScoreCAM3D(model, model[4]), data, metrics


def setup_pipeline():
    """The pipeline run: 3 methods (one random, one with seeded noise in AOPC), masks."""
    from captum_medcam.pipeline import EvaluationConfig

    model, _, data, _ = setup()
    for i, sample in enumerate(data):
        mask = torch.zeros(1, 8, 8, 8, dtype=torch.bool)
        if i % 2:
            mask[:, 2:5, 1:4, 3:7] = True
        sample["mask"] = mask
    config = EvaluationConfig(
        methods=("scorecam", "gradcam", "random"),
        layer="4",
        metrics=("deletion", "insertion", "aopc", "pointing_game", "energy_pointing_game"),
        n_steps=6,
        aopc_grid=2,
        aopc_noise_std=0.1,
        batch_size=2,
    )
    return model, data, config


def main_pipeline(out: str) -> None:
    from captum_medcam.pipeline import compare_methods

    model, data, config = setup_pipeline()
    comparison = run_distributed(compare_methods, model, data, config, show_progress=False)
    rank = int(os.environ["RANK"])
    torch.save(
        {"rows": comparison.rows(), "curves": comparison.curves},
        os.path.join(out, f"rank{rank}.pt"),
    )


def main(out: str) -> None:
    start = time.perf_counter()
    model, cam, data, metrics = setup()
    result = run_distributed(
        evaluate_dataset, model, cam, data, metrics, batch_size=2, show_progress=False
    )
    rank = int(os.environ["RANK"])
    torch.save(
        {
            "values": result.values,
            "targets": result.targets,
            "seconds": time.perf_counter() - start,
        },
        os.path.join(out, f"rank{rank}.pt"),
    )


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[2] == "pipeline":
        main_pipeline(sys.argv[1])
    else:
        main(sys.argv[1])
