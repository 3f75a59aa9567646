"""Worker for tests/test_evaluation.py: ``torchrun --nproc_per_node=2 tests/_distributed_eval.py OUT``.

Every rank evaluates its share with gloo on the CPU, and writes the gathered result it
returns to ``OUT/rank{r}.pt``. Needs ``tests/`` on ``PYTHONPATH`` (for the conftest models). ``setup()`` is also imported by the test for the
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
    main(sys.argv[1])
