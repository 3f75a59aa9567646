"""Model parameter randomization test, Spearman and SSIM."""

from __future__ import annotations

import copy
import math

import pytest
import scipy.stats
import torch
from captum.attr import Attribution, IntegratedGradients, LayerGradCam
from torch import nn

from captum_medcam import ScoreCAM
from captum_medcam._core.spatial import minmax_normalize, resize
from captum_medcam.metrics import (
    RandomizationResult,
    model_parameter_randomization,
    spearman_rank_correlation,
    structural_similarity,
)
from tests.conftest import CONV, assert_unchanged, hook_count, model_state, small_cnn


class EdgeDetector(Attribution):
    """A "saliency method" that ignores the model: the input's gradient magnitude."""

    def __init__(self, forward_func: nn.Module) -> None:
        super().__init__(forward_func)

    def attribute(self, inputs: torch.Tensor, target=None) -> torch.Tensor:  # type: ignore[override]
        out = torch.zeros_like(inputs)
        for d in range(2, inputs.dim()):
            out = out + torch.diff(inputs, dim=d, append=inputs.narrow(d, -1, 1)).square()
        return out.sqrt()


def data(dims: int, n: int = 3, seed: int = 1) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    model = small_cnn(dims)
    size = 16 if dims == 2 else 8
    x = torch.randn(
        n, 2, *([size] * dims), generator=torch.Generator().manual_seed(seed), dtype=torch.float64
    )
    with torch.no_grad():
        target = model(x).argmax(1)
    return model, x, target


def gradcam(m: nn.Module) -> LayerGradCam:
    return LayerGradCam(m, m[4])


# --- the check itself ------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["cascading", "independent"])
def test_edge_detector_fails_and_gradcam_passes(dims: int, mode: str) -> None:
    model, x, target = data(dims)
    edge = model_parameter_randomization(model, EdgeDetector, x, target, mode=mode, generator=0)
    cam = model_parameter_randomization(model, gradcam, x, target, mode=mode, generator=0)
    assert edge.layers == cam.layers == ("7", "3", "0")
    for name in ("spearman", "ssim"):
        assert edge.similarity[name].shape == (3, 3)
        assert torch.allclose(edge.similarity[name], torch.ones(3, 3, dtype=torch.float64))
    if mode == "cascading":  # the fully randomised model: nothing of the original map is left
        assert cam.similarity["spearman"][-1].mean() < 0.5
        assert cam.similarity["ssim"][-1].mean() < 0.5
    # every step changes Grad-CAM's maps
    assert bool((cam.similarity["spearman"] < 0.999).all())


def test_users_model_and_random_state_are_unchanged(dims: int) -> None:
    model, x, target = data(dims)
    before = model_state(model)
    rng = torch.get_rng_state()
    model_parameter_randomization(
        model, gradcam, x, target, generator=torch.Generator().manual_seed(3)
    )
    model_parameter_randomization(model, gradcam, x, target, mode="independent", generator=3)
    assert_unchanged(model, before)
    assert torch.equal(torch.get_rng_state(), rng)


def test_users_model_is_unchanged_when_the_attribution_raises() -> None:
    model, x, _ = data(2)
    model.train()  # a mode that must survive too
    before = model_state(model)
    with pytest.raises(IndexError):
        model_parameter_randomization(model, gradcam, x, target=7, generator=0)
    assert_unchanged(model, before)


def test_same_seed_same_result_other_seed_other_result() -> None:
    model, x, target = data(3)
    a = model_parameter_randomization(model, gradcam, x, target, generator=5)
    b = model_parameter_randomization(
        model, gradcam, x, target, generator=torch.Generator().manual_seed(5)
    )
    c = model_parameter_randomization(model, gradcam, x, target, generator=6)
    for name in a.similarity:
        assert torch.equal(a.similarity[name], b.similarity[name])
        assert not torch.equal(a.similarity[name], c.similarity[name])
    assert a.seeds == b.seeds != c.seeds


def test_documented_seeding_scheme_reproduces_each_independent_step(dims: int) -> None:
    model, x, target = data(dims)
    result = model_parameter_randomization(
        model, gradcam, x, target, mode="independent", generator=11, return_maps=True
    )
    seeds = torch.randint(0, 2**62, (3,), generator=torch.Generator().manual_seed(11)).tolist()
    assert list(result.seeds) == seeds
    original = resize(gradcam(model).attribute(x, target=target), x.shape[2:])
    assert torch.allclose(result.original, original)
    for step, name in enumerate(result.layers):
        twin = copy.deepcopy(model)
        torch.manual_seed(seeds[step])
        twin.get_submodule(name).reset_parameters()
        expected = resize(gradcam(twin).attribute(x, target=target), x.shape[2:])
        assert result.maps is not None
        assert torch.allclose(result.maps[step], expected)
        rho = spearman_rank_correlation(expected.abs(), original.abs())
        assert torch.allclose(result.similarity["spearman"][step], rho, equal_nan=True)


def test_cascading_accumulates_and_shares_the_first_step_with_independent() -> None:
    model, x, target = data(2)
    kw = dict(generator=2, return_maps=True)
    casc = model_parameter_randomization(model, gradcam, x, target, **kw)
    ind = model_parameter_randomization(model, gradcam, x, target, mode="independent", **kw)
    assert casc.maps is not None and ind.maps is not None
    assert torch.equal(casc.maps[0], ind.maps[0])  # same layer, same seed
    assert not torch.allclose(casc.maps[1], ind.maps[1])
    # cascading step 1 = top layer and layer "3" both randomised, with the same seeds
    twin = copy.deepcopy(model)
    for step in (0, 1):
        torch.manual_seed(casc.seeds[step])
        twin.get_submodule(casc.layers[step]).reset_parameters()
    expected = resize(gradcam(twin).attribute(x, target=target), x.shape[2:])
    assert torch.allclose(casc.maps[1], expected)


def test_batch_and_chunk_invariance_with_per_sample_targets(dims: int) -> None:
    model, x, target = data(dims, n=3)
    full = model_parameter_randomization(model, gradcam, x, target, generator=4)
    chunked = model_parameter_randomization(
        model, gradcam, x, target, generator=4, max_examples_per_batch=2
    )
    listed = model_parameter_randomization(
        model, gradcam, x, target.tolist(), generator=4, max_examples_per_batch=1
    )
    for i in range(3):
        single = model_parameter_randomization(
            model, gradcam, x[i : i + 1], int(target[i]), generator=4
        )
        for name in full.similarity:
            assert torch.allclose(full.similarity[name][:, i], single.similarity[name][:, 0])
    for name in full.similarity:
        assert torch.allclose(full.similarity[name], chunked.similarity[name])
        assert torch.allclose(full.similarity[name], listed.similarity[name])


def test_additional_forward_args_are_split_with_their_examples() -> None:
    class Scaled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = small_cnn(2)

        def forward(self, x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
            return self.net(x * scale.view(-1, 1, 1, 1))

    model, x, target = Scaled(), data(2)[1], torch.tensor([0, 1, 2])
    scale = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)

    def build(m: nn.Module) -> LayerGradCam:
        return LayerGradCam(m, m.net[4])

    whole = model_parameter_randomization(model, build, x, target, scale, generator=1)
    parts = model_parameter_randomization(
        model, build, x, target, scale, generator=1, max_examples_per_batch=1
    )
    assert whole.layers == ("net.7", "net.3", "net.0")
    assert torch.allclose(whole.similarity["spearman"], parts.similarity["spearman"])


# --- how attributions are given ----------------------------------------------------------------


def test_class_with_layer_name_equals_factory() -> None:
    model, x, target = data(2)
    by_name = model_parameter_randomization(model, ScoreCAM, x, target, layer="4", generator=0)
    by_factory = model_parameter_randomization(
        model, lambda m: ScoreCAM(m, m[4]), x, target, generator=0
    )
    for name in by_name.similarity:
        assert torch.equal(by_name.similarity[name], by_factory.similarity[name])


def test_old_keywords_explainer_still_work_with_a_future_warning() -> None:
    """``explainer=`` / ``explainer_kwargs=`` were renamed ``attribution=`` /
    ``attribution_kwargs=`` (the object is called ``attribution`` everywhere else)."""
    model, x, target = data(2)
    new = model_parameter_randomization(
        model,
        attribution=ScoreCAM,
        inputs=x,
        target=target,
        layer="4",
        generator=0,
        attribution_kwargs={},
    )
    with pytest.warns(FutureWarning, match="explainer= is now called attribution="):
        old = model_parameter_randomization(
            model, explainer=ScoreCAM, inputs=x, target=target, layer="4", generator=0
        )
    with pytest.warns(FutureWarning, match="explainer_kwargs= is now called attribution_kwargs="):
        model_parameter_randomization(
            model, ScoreCAM, x, target, layer="4", generator=0, explainer_kwargs={}
        )
    for name in new.similarity:
        assert torch.equal(new.similarity[name], old.similarity[name])
    with pytest.raises(TypeError, match="both explainer= and attribution="):
        model_parameter_randomization(
            model, explainer=ScoreCAM, attribution=ScoreCAM, inputs=x, target=target
        )


def test_captum_integrated_gradients_with_attribute_kwargs() -> None:
    model, x, target = data(3, n=2)
    before = model_state(model)
    result = model_parameter_randomization(
        model,
        IntegratedGradients,
        x,
        target,
        attribute_kwargs={"n_steps": 8},
        generator=0,
        layers=["7", "0"],
        return_maps=True,
    )
    expected = IntegratedGradients(model).attribute(x, target=target, n_steps=8)
    assert torch.allclose(result.original, expected)
    assert result.maps is not None and result.maps.shape == (2, *x.shape)
    assert result.layers == ("7", "0")
    assert_unchanged(model, before)


def test_attribution_built_on_the_users_model_is_refused() -> None:
    model, x, target = data(2)
    with pytest.raises(ValueError, match="not part of the model it was given"):
        model_parameter_randomization(model, lambda m: LayerGradCam(m, model[4]), x, target)
    with pytest.raises(ValueError, match="not part of the model it was given"):
        model_parameter_randomization(model, lambda m: IntegratedGradients(model), x, target)
    assert hook_count(model) == 0


def test_errors_name_the_problem() -> None:
    model, x, target = data(2)
    with pytest.raises(ValueError, match="no layer named 'layer9'"):
        model_parameter_randomization(model, ScoreCAM, x, target, layer="layer9")
    with pytest.raises(ValueError, match="no layer named 'fc'"):
        model_parameter_randomization(model, gradcam, x, target, layers=["fc"])
    with pytest.raises(ValueError, match="for an attribution class"):
        model_parameter_randomization(model, gradcam, x, target, layer="4")
    with pytest.raises(TypeError, match="attribution class"):
        model_parameter_randomization(model, "gradcam", x, target)
    with pytest.raises(ValueError, match="mode"):
        model_parameter_randomization(model, gradcam, x, target, mode="top_down")
    with pytest.raises(ValueError, match="unknown similarity"):
        model_parameter_randomization(model, gradcam, x, target, similarity=["pearson"])
    with pytest.raises(ValueError, match="no parameters"):
        model_parameter_randomization(model, gradcam, x, target, layers=["1"])
    with pytest.raises(TypeError, match=r"nn\.Module"):
        model_parameter_randomization(lambda v: model(v), gradcam, x, target)
    with pytest.raises(TypeError, match="generator"):
        model_parameter_randomization(model, gradcam, x, target, generator=1.5)


# --- which layers, and how they are re-initialised ---------------------------------------------


class HeadFirst(nn.Module):
    """Registers the head before the body: execution order differs from registration order."""

    def __init__(self, dims: int) -> None:
        super().__init__()
        self.head = nn.Linear(4, 2)
        self.body = nn.Sequential(
            CONV[dims](1, 4, 3, padding=1), nn.ReLU(), CONV[dims](4, 4, 1), nn.ReLU()
        )
        self.scale = nn.Parameter(torch.ones(()))  # a parameter outside any reset_parameters
        self.unused = nn.Linear(3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x).flatten(2).mean(-1)) * self.scale


def test_default_order_follows_the_forward_pass(dims: int) -> None:
    model = HeadFirst(dims).double().eval()
    x = torch.randn(2, 1, *([8] * dims), dtype=torch.float64)
    with pytest.warns(
        UserWarning, match=r"HeadFirst \(the model itself, name .*no reset_parameters"
    ):
        result = model_parameter_randomization(
            model, lambda m: LayerGradCam(m, m.body[3]), x, 0, generator=0
        )
    assert result.layers == ("head", "body.2", "body.0")  # the unused Linear is left out


def test_blocks_and_custom_reinit() -> None:
    model = HeadFirst(2).double().eval()
    x = torch.randn(2, 1, 8, 8, dtype=torch.float64)
    seen: list[str] = []

    def scramble(module: nn.Module) -> None:
        seen.append(type(module).__name__)
        for p in module.parameters():
            p.copy_(torch.randn_like(p))

    result = model_parameter_randomization(
        model,
        lambda m: LayerGradCam(m, m.body[3]),
        x,
        1,
        layers=["", "body"],
        reinit=scramble,
        generator=0,
    )
    assert result.layers == ("", "body") and seen == ["HeadFirst", "Sequential"]
    with pytest.raises(ValueError, match="no reset_parameters"):
        model_parameter_randomization(
            model, lambda m: LayerGradCam(m, m.body[3]), x, 1, layers=[""]
        )
    block = model_parameter_randomization(
        model, lambda m: LayerGradCam(m, m.body[3]), x, 1, layers=["body"]
    )
    assert block.similarity["spearman"].shape == (1, 2)


def test_custom_similarity_and_signed_maps() -> None:
    model, x, target = data(2, n=2)

    def mean_abs_difference(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a - b).abs().flatten(1).mean(1)

    result = model_parameter_randomization(
        model,
        gradcam,
        x,
        target,
        similarity=[mean_abs_difference, "spearman"],
        absolute=False,
        generator=0,
        return_maps=True,
    )
    assert list(result.similarity) == ["mean_abs_difference", "spearman"]
    assert result.maps is not None
    expected = mean_abs_difference(result.maps[0], result.original)
    assert torch.allclose(result.similarity["mean_abs_difference"][0], expected)
    signed = spearman_rank_correlation(result.maps[1], result.original)
    assert torch.allclose(result.similarity["spearman"][1], signed)


def test_layer_maps_are_compared_at_their_resolution_without_upsample() -> None:
    model, x, target = data(2, n=2)
    result = model_parameter_randomization(model, gradcam, x, target, upsample=False, generator=0)
    assert result.original.shape == (2, 1, 8, 8)


# --- Spearman and SSIM -----------------------------------------------------------------------


def test_spearman_equals_scipy_with_ties() -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.randint(0, 5, (4, 1, 6, 7), generator=g).double()
    b = a + torch.randint(0, 3, (4, 1, 6, 7), generator=g).double()
    ours = spearman_rank_correlation(a, b)
    for i in range(4):
        ref = scipy.stats.spearmanr(a[i].flatten().numpy(), b[i].flatten().numpy()).statistic
        assert ours[i].item() == pytest.approx(ref, abs=1e-12)


def test_spearman_closed_forms() -> None:
    a = torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0], [2.0, 2.0, 2.0, 2.0, 2.0]])
    out = spearman_rank_correlation(a, torch.stack([a[0].exp(), a[0]]))
    assert out[0].item() == pytest.approx(1.0) and math.isnan(out[1].item())  # constant: undefined
    assert spearman_rank_correlation(a[:1], -a[:1]).item() == pytest.approx(-1.0)
    # ranks (1, 2, 3, 4, 5) vs (2, 1, 4, 3, 5): rho = 1 - 6 * 4 / (5 * 24) = 0.8
    b = torch.tensor([[2.0, 1.0, 4.0, 3.0, 5.0]])
    assert spearman_rank_correlation(a[:1], b).item() == pytest.approx(0.8)


def ssim_by_definition(a: torch.Tensor, b: torch.Tensor, size: int, sigma: float = 1.5) -> float:
    """Mean SSIM of one map pair ``(*S)``, window by window, with an explicit Gaussian window."""
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    w1 = torch.exp(-(x**2) / (2 * sigma**2))
    w1 = w1 / w1.sum()
    window = w1
    for _ in range(a.dim() - 1):
        window = window.unsqueeze(-1) * w1
    c1, c2 = 0.01**2, 0.03**2
    values = []
    ranges = [range(s - size + 1) for s in a.shape]
    import itertools

    for corner in itertools.product(*ranges):
        sl = tuple(slice(c, c + size) for c in corner)
        pa, pb = a[sl], b[sl]
        ma, mb = (window * pa).sum(), (window * pb).sum()
        va = (window * (pa - ma) ** 2).sum()
        vb = (window * (pb - mb) ** 2).sum()
        cov = (window * (pa - ma) * (pb - mb)).sum()
        values.append(
            ((2 * ma * mb + c1) * (2 * cov + c2) / ((ma**2 + mb**2 + c1) * (va + vb + c2))).item()
        )
    return sum(values) / len(values)


@pytest.mark.parametrize(
    "shape", [(13, 12), (11, 12, 13), (5, 9), (7, 6, 8)], ids=["2d", "3d", "2d-small", "3d-small"]
)
def test_ssim_equals_the_definition(shape: tuple[int, ...]) -> None:
    g = torch.Generator().manual_seed(1)
    a = torch.rand(2, 1, *shape, generator=g, dtype=torch.float64)
    b = (a + 0.4 * torch.rand(2, 1, *shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    size = min(11, *shape)
    size -= 1 - size % 2
    ours = structural_similarity(a, b)
    for i in range(2):
        assert ours[i].item() == pytest.approx(
            ssim_by_definition(a[i, 0], b[i, 0], size), abs=1e-10
        )


def test_ssim_equals_skimage(dims: int) -> None:
    metrics = pytest.importorskip("skimage.metrics")
    g = torch.Generator().manual_seed(2)
    a = torch.rand(2, 1, *([16] * dims), generator=g, dtype=torch.float64)
    b = a * 0.7 + 0.3 * torch.rand(a.shape, generator=g, dtype=torch.float64)
    ours = structural_similarity(a, b)
    for i in range(2):
        ref = metrics.structural_similarity(
            a[i, 0].numpy(),
            b[i, 0].numpy(),
            data_range=1.0,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
        )
        assert ours[i].item() == pytest.approx(ref, abs=1e-12)


def test_ssim_closed_forms(dims: int) -> None:
    shape = (1, 1, *([12] * dims))
    x = torch.full(shape, 0.2, dtype=torch.float64)
    y = torch.full(shape, 0.6, dtype=torch.float64)
    c1 = 0.01**2
    expected = (2 * 0.2 * 0.6 + c1) / (0.2**2 + 0.6**2 + c1)  # no variance: luminance term only
    assert structural_similarity(x, y).item() == pytest.approx(expected)
    r = torch.rand(shape, dtype=torch.float64)
    assert structural_similarity(r, r).item() == pytest.approx(1.0)
    assert structural_similarity(r, 1 - r).item() < 0
    assert structural_similarity(r.float(), r.float()).dtype == torch.float32


def test_similarity_errors() -> None:
    a = torch.rand(2, 1, 8, 8)
    with pytest.raises(ValueError, match="same shape"):
        spearman_rank_correlation(a, a[:1])
    with pytest.raises(TypeError, match="floating"):
        structural_similarity(a.long(), a.long())
    with pytest.raises(ValueError, match="odd"):
        structural_similarity(a, a, window_size=4)


# --- the plot --------------------------------------------------------------------------------


def test_plot_randomization() -> None:
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    from captum_medcam.visualization import plot_randomization

    model, x, target = data(2, n=2)
    result = model_parameter_randomization(model, gradcam, x, target, generator=0)
    ax = plot_randomization(result, show_examples=True)
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels == ["original", "7", "3", "0"]
    means = {
        line.get_label(): line.get_ydata()
        for line in ax.get_lines()
        if not line.get_label().startswith("_")
    }
    assert set(means) == {"spearman", "ssim"}
    assert list(means["spearman"]) == pytest.approx(
        [1.0, *result.similarity["spearman"].mean(1).tolist()]
    )
    plt.close(ax.figure)
    # NaN (a constant map) is left out of the mean, not propagated
    nan_result = RandomizationResult(
        layers=("a", "b"),
        mode="cascading",
        original=torch.zeros(2, 1, 4, 4),
        seeds=(0, 1),
        similarity={"spearman": torch.tensor([[0.5, math.nan], [math.nan, math.nan]])},
    )
    ax = plot_randomization(nan_result, measures=["spearman"])
    y = ax.get_lines()[0].get_ydata()
    assert y[1] == 0.5 and math.isnan(y[2])
    plt.close(ax.figure)
    with pytest.raises(ValueError, match="not in the result"):
        plot_randomization(nan_result, measures=["ssim"])


def test_maps_are_normalised_before_ssim() -> None:
    model, x, target = data(2, n=2)
    result = model_parameter_randomization(
        model, gradcam, x, target, generator=0, return_maps=True, similarity=["ssim"]
    )
    assert result.maps is not None
    a = minmax_normalize(result.original.abs())[0]
    b = minmax_normalize(result.maps[0].abs())[0]
    assert torch.allclose(result.similarity["ssim"][0], structural_similarity(a, b))
