"""The deletion / insertion figure."""

from __future__ import annotations

import pytest
import torch

from captum_medcam.metrics import PerturbationCurve, auc
from captum_medcam.visualization import plot_deletion_insertion


def test_plot_labels_carry_the_aucs() -> None:
    import matplotlib.pyplot as plt

    x = torch.linspace(0, 1, 6, dtype=torch.float64)
    deletion = PerturbationCurve(x, torch.stack([1 - x, (1 - x) ** 2]))
    insertion = PerturbationCurve(x, torch.stack([x, x.sqrt()]))
    ax = plot_deletion_insertion(deletion, insertion, sample=1, title="one")
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == [
        f"deletion (AUC {float(auc(deletion)[1]):.3f})",
        f"insertion (AUC {float(auc(insertion)[1]):.3f})",
    ]
    line = ax.get_lines()[0]
    assert line.get_ydata().tolist() == pytest.approx(((1 - x) ** 2).tolist())
    mean_ax = plot_deletion_insertion(deletion=deletion)
    assert (
        mean_ax.get_legend().get_texts()[0].get_text()
        == f"deletion (AUC {float(auc(deletion).mean()):.3f}, mean of 2)"
    )
    plt.close("all")
    with pytest.raises(ValueError, match="pass a deletion curve"):
        plot_deletion_insertion()
    with pytest.raises(ValueError, match="out of range"):
        plot_deletion_insertion(deletion, sample=2)
