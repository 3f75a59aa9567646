"""SSCAM / ISCAM (and their 3D entry points): closed forms, Score-CAM as the limit case,
torchcam, the noise's determinism, invariances, errors."""

from __future__ import annotations

import copy
import math
import warnings

import pytest
import torch
from torch import nn

from captum_medcam import ISCAM, ISCAM3D, SSCAM, SSCAM3D, ScoreCAM
from captum_medcam.attr._smoothed_score_cam import integration_coefficients
from tests.conftest import GAP, assert_unchanged, hook_count, model_state, small_cnn

CLASSES = {"ss": SSCAM, "is": ISCAM}
FAST = {"ss": {"num_samples": 3, "std": 0.3}, "is": {"num_samples": 3}}


class Counter(nn.Module):
    """Counts forward passes."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.model(x)


def identity_model(dims):
    """Layer = the input (one channel), head = GAP -> Linear([1, -1]): logit_0 = mean(x)."""
    layer = nn.Identity()
    head = nn.Linear(1, 2, bias=False).double()
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0], [-1.0]]))
    return nn.Sequential(layer, GAP[dims](1), nn.Flatten(), head).eval(), layer


def ramp(dims):
    n = 4**dims
    return (torch.arange(n, dtype=torch.float64) / (n - 1)).view(1, 1, *([4] * dims))


def test_integration_coefficients():
    torch.testing.assert_close(
        integration_coefficients(10),
        torch.tensor([0.1, 0.3, 0.6, 1.0, 1.5, 2.1, 2.8, 3.6, 4.5, 5.5], dtype=torch.float64),
    )
    assert integration_coefficients(1).tolist() == [1.0]


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_closed_form_is_cam(dims):
    # mask = s(x) = x; logit_0(c * x * x) = c * m with m = mean(x^2); the weight is the mean
    # of c_i * m over the path: m * (N + 1)(N + 2) / (6N).
    model, layer = identity_model(dims)
    x = ramp(dims)
    m = (x * x).mean()
    for n in (1, 4, 10):
        out = ISCAM(model, layer).attribute(x, target=0, num_samples=n, channel_softmax=False)
        torch.testing.assert_close(out, m * (n + 1) * (n + 2) / (6 * n) * x, rtol=0, atol=1e-12)


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_closed_form_ss_cam_reproduces_the_noise(dims):
    # logit_0(x * (s(x) + delta_i)) = mean(x * x) + mean(x * delta_i), delta_i drawn from a
    # generator seeded 5, one (1, *S) draw per sample (one channel).
    model, layer = identity_model(dims)
    x = ramp(dims)
    g = torch.Generator().manual_seed(5)
    deltas = [0.7 * torch.randn(x.shape[2:], generator=g, dtype=x.dtype) for _ in range(4)]
    weight = torch.stack([(x * (x + d)).mean() for d in deltas]).mean()
    out = SSCAM(model, layer).attribute(
        x,
        target=0,
        num_samples=4,
        std=0.7,
        generator=5,
        channel_softmax=False,
        relu_attributions=False,
    )
    torch.testing.assert_close(out, weight * x, rtol=0, atol=1e-12)


@pytest.mark.parametrize("kind", ["ss", "is"])
def test_one_sample_without_noise_is_score_cam(dims, kind):
    model = small_cnn(dims)
    x = torch.randn(2, 2, *([8] * dims), dtype=torch.float64)
    options = {"num_samples": 1, "std": 0.0} if kind == "ss" else {"num_samples": 1}
    for variant in (
        {},
        {"channel_softmax": False, "score": "probability", "normalize_at": "input"},
        {"baselines": 0.0, "channel_softmax": False},
    ):
        for upsample in (True, False):
            ours = CLASSES[kind](model, model[4]).attribute(
                x, target=[0, 2], upsample=upsample, **options, **variant
            )
            ref = ScoreCAM(model, model[4]).attribute(
                x,
                target=[0, 2],
                upsample=upsample,
                **{"score": "logit", "channel_softmax": True, "normalize_at": "layer", **variant},
            )
            torch.testing.assert_close(ours, ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("kind", ["ss", "is"])
def test_matches_torchcam(kind):
    torchcam = pytest.importorskip("torchcam.methods")
    model = small_cnn(2, seed=3).float()
    n = 1 if kind == "ss" else 2  # torchcam draws the noise of a batch in another order
    x = torch.randn(n, 2, 16, 16)
    targets = [1, 2][:n]
    options = {"num_samples": 6, "std": 0.5} if kind == "ss" else {"num_samples": 10}
    peer_model = copy.deepcopy(model)
    peer = torchcam.SSCAM if kind == "ss" else torchcam.ISCAM
    state = torch.get_rng_state()
    torch.manual_seed(7)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with peer(peer_model, peer_model[4], batch_size=5, input_shape=(2, 16, 16), **options) as e:
            with torch.no_grad():
                scores = peer_model(x)
            ref = e(class_idx=targets, scores=scores, normalized=False)[0]
    torch.set_rng_state(state)
    extra = {"generator": 7} if kind == "ss" else {}
    ours = CLASSES[kind](model, model[4]).attribute(
        x, target=targets, upsample=False, **options, **extra
    )
    assert ref.abs().max() > 0.1
    torch.testing.assert_close(ours[:, 0], ref, rtol=0, atol=1e-6)


@pytest.mark.parametrize("kind", ["ss", "is"])
def test_batch_and_chunk_invariance(dims, kind):
    model = small_cnn(dims)
    x = torch.randn(3, 2, *([8] * dims), dtype=torch.float64)
    targets = torch.tensor([2, 0, 1])
    cam = CLASSES[kind](model, model[4])
    batch = cam.attribute(x, target=targets, perturbations_per_eval=1, **FAST[kind])
    torch.testing.assert_close(
        batch,
        cam.attribute(x, target=targets, perturbations_per_eval=7, **FAST[kind]),
        rtol=0,
        atol=1e-12,
    )
    for i in range(3):
        single = cam.attribute(x[i : i + 1], target=int(targets[i]), **FAST[kind])
        torch.testing.assert_close(batch[i : i + 1], single, rtol=0, atol=1e-12)


def test_is_cam_approximate_mode():
    model = small_cnn(2)
    x = torch.randn(2, 2, 8, 8, dtype=torch.float64)
    cam = ISCAM(model, model[4])
    exact = cam.attribute(x, target=[0, 1], num_samples=3)
    assert torch.equal(cam.attribute(x, target=[0, 1], num_samples=3, max_channels=1.0), exact)
    counted = Counter(model).eval()
    ISCAM(counted, model[4]).attribute(
        x, target=[0, 1], num_samples=3, max_channels=2, perturbations_per_eval=1
    )
    assert counted.calls <= 1 + 3 * 2 * 2  # <= 2 masks (and no zero mask) per example
    # the weights of the kept channels: a softmax over them only, as in Score-CAM
    ref = ScoreCAM(model, model[4]).attribute(
        x,
        target=[0, 1],
        score="logit",
        channel_softmax=True,
        normalize_at="layer",
        max_channels=2,
    )
    one = cam.attribute(x, target=[0, 1], num_samples=1, max_channels=2)
    torch.testing.assert_close(one, ref, rtol=0, atol=1e-12)


def test_ss_cam_noise_is_seeded_and_leaves_the_global_state():
    model = small_cnn(2)
    x = torch.randn(2, 2, 8, 8, dtype=torch.float64)
    cam = SSCAM(model, model[4])
    state = torch.get_rng_state()
    a = cam.attribute(x, target=1, num_samples=3)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a, cam.attribute(x, target=1, num_samples=3))  # the seed 0
    assert not torch.equal(a, cam.attribute(x, target=1, num_samples=3, generator=1))
    # a generator advances: two calls differ; the same seed gives the same first call
    g = torch.Generator().manual_seed(3)
    first = cam.attribute(x, target=1, num_samples=3, generator=g)
    assert not torch.equal(first, cam.attribute(x, target=1, num_samples=3, generator=g))
    again = cam.attribute(x, target=1, num_samples=3, generator=torch.Generator().manual_seed(3))
    assert torch.equal(first, again)


def test_forward_counts():
    model = small_cnn(2)
    with torch.no_grad():  # channel 3 of the last conv can never fire: a constant map
        model[3].weight[3] = 0
        model[3].bias[3] = -1.0
    x = torch.randn(1, 2, 8, 8, dtype=torch.float64)
    counted = Counter(model).eval()
    SSCAM(counted, model[4]).attribute(x, target=0, num_samples=2, perturbations_per_eval=1)
    assert counted.calls == 1 + 2 * 8  # every channel, the constant one too, under softmax
    counted.calls = 0
    SSCAM(counted, model[4]).attribute(
        x, target=0, num_samples=2, perturbations_per_eval=1, channel_softmax=False
    )
    with torch.no_grad():
        live = model[:5](x).flatten(2).std(-1).gt(0).sum().item()
    assert counted.calls == 1 + 2 * live
    counted.calls = 0
    ISCAM(counted, model[4]).attribute(x, target=0, num_samples=3, perturbations_per_eval=1)
    assert counted.calls == 1 + 3 * (live + 1)  # the distinct masks and the zero mask


@pytest.mark.parametrize("kind", ["ss", "is"])
def test_3d_entry_point_metatensor_and_upsample_false(kind):
    monai_data = pytest.importorskip("monai.data")
    model = small_cnn(3)
    x = torch.randn(2, 2, 8, 8, 8, dtype=torch.float64)
    meta = monai_data.MetaTensor(x, affine=torch.diag(torch.tensor([2.0, 2.0, 2.0, 1.0])))
    three = {"ss": SSCAM3D, "is": ISCAM3D}[kind]
    out = three(model, model[4]).attribute(meta, target=1, **FAST[kind])
    assert isinstance(out, monai_data.MetaTensor) and out.shape == (2, 1, 8, 8, 8)
    assert torch.equal(out.affine, meta.affine)
    ref = CLASSES[kind](model, model[4]).attribute(x, target=1, **FAST[kind])
    torch.testing.assert_close(out.as_tensor(), ref, rtol=0, atol=1e-12)
    low = CLASSES[kind](model, model[4]).attribute(x, target=1, upsample=False, **FAST[kind])
    assert low.shape == (2, 1, 4, 4, 4)
    with pytest.raises(ValueError, match=r"must be 5-D"):
        three(model, model[4]).attribute(x[:, :, 0], target=0)
    with pytest.raises(TypeError, match="unexpected keyword argument 'align_corners'"):
        three(model, model[4]).attribute(x, target=0, align_corners=True)


@pytest.mark.parametrize("kind", ["ss", "is"])
def test_additional_forward_args_follow_their_example(kind):
    model = small_cnn(2)

    def forward(x, scale):
        return model(x * scale.view(-1, 1, 1, 1))

    x = torch.randn(3, 2, 8, 8, dtype=torch.float64)
    scale = torch.tensor([1.0, 2.0, -1.0], dtype=torch.float64)
    out = CLASSES[kind](forward, model[4]).attribute(
        x, target=[0, 1, 2], additional_forward_args=(scale,), **FAST[kind]
    )
    ref = torch.cat(
        [
            CLASSES[kind](model, model[4]).attribute(
                x[i : i + 1] * scale[i], target=t, **FAST[kind]
            )
            for i, t in enumerate([0, 1, 2])
        ]
    )
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-10)


@pytest.mark.parametrize("kind", ["ss", "is"])
def test_hooks_and_model_untouched_on_success_and_error(kind):
    model = small_cnn(2)
    before = model_state(model)
    x = torch.randn(2, 2, 8, 8, dtype=torch.float64)
    CLASSES[kind](model, model[4]).attribute(x, target=1, **FAST[kind])
    assert_unchanged(model, before)
    with pytest.raises(ValueError, match="out of range"):
        CLASSES[kind](model, model[4]).attribute(x, target=7, **FAST[kind])
    assert_unchanged(model, before)

    class Boom(Exception):
        pass

    def failing(inp):
        model(inp)
        raise Boom

    with pytest.raises(Boom):
        CLASSES[kind](failing, model[4]).attribute(x, target=1, **FAST[kind])
    assert hook_count(model) == 0


def test_training_mode_warns_and_is_not_changed():
    model = small_cnn(2).train()
    x = torch.randn(1, 2, 8, 8, dtype=torch.float64)
    for cls in (SSCAM, ISCAM):
        with pytest.warns(UserWarning, match="training mode"):
            cls(model, model[4]).attribute(x, target=0, num_samples=1)
    assert all(m.training for m in model.modules())


@pytest.mark.parametrize(
    ("cls", "kwargs", "error", "message"),
    [
        (SSCAM, {"num_samples": 0}, ValueError, "num_samples must be >= 1, got 0"),
        (ISCAM, {"num_samples": 2.5}, TypeError, "num_samples"),
        (SSCAM, {"std": -1.0}, ValueError, "std must be >= 0"),
        (SSCAM, {"std": math.nan}, ValueError, "std must be a finite number"),
        (SSCAM, {"generator": "seed"}, TypeError, "generator must be an int seed"),
        (SSCAM, {"generator": -1}, ValueError, "generator must be a seed >= 0"),
        (ISCAM, {"perturbations_per_eval": 0}, ValueError, "perturbations_per_eval"),
        (ISCAM, {"score": "prob"}, ValueError, "score must be"),
        (SSCAM, {"normalize_at": "output"}, ValueError, "normalize_at"),
        (ISCAM, {"channel_softmax": "yes"}, TypeError, "channel_softmax"),
        (ISCAM, {"target": 3}, ValueError, "out of range"),
        (SSCAM, {"inputs": torch.ones(1, 2, 8, 8, dtype=torch.long)}, TypeError, "floating"),
    ],
)
def test_bad_input(cls, kwargs, error, message):
    model = small_cnn(2)
    args = {"inputs": torch.randn(2, 2, 8, 8, dtype=torch.float64), "target": 0, **kwargs}
    before = model_state(model)
    with pytest.raises(error, match=message):
        cls(model, model[4]).attribute(**args)
    assert_unchanged(model, before)


def test_progress_bar(capsys):
    model = small_cnn(2)
    x = torch.randn(1, 2, 8, 8, dtype=torch.float64)
    for cls, name in ((SSCAM, "SS-CAM"), (ISCAM, "IS-CAM")):
        cam = cls(model, model[4])
        assert torch.equal(
            cam.attribute(x, target=0, num_samples=2, show_progress=True),
            cam.attribute(x, target=0, num_samples=2),
        )
        assert name in capsys.readouterr().err


def test_monai_3d_resnet():
    from monai.networks.nets import resnet10

    torch.manual_seed(0)
    net = resnet10(spatial_dims=3, n_input_channels=1, num_classes=3, widen_factor=0.25).eval()
    x = torch.randn(1, 1, 24, 24, 24)
    before = model_state(net)
    for cls in (SSCAM3D, ISCAM3D):
        out = cls(net, net.layer3).attribute(x, target=2, num_samples=1, perturbations_per_eval=64)
        assert out.shape == (1, 1, 24, 24, 24) and bool(out.isfinite().all())
        assert out.max() > 0
    assert_unchanged(net, before)


@pytest.mark.parametrize("kind", ["ss", "is"])
def test_bfloat16_autocast_stays_close(kind):
    from captum_medcam import perturbation_options
    from captum_medcam.metrics import spearman_rank_correlation

    model = small_cnn(2).float()
    x = torch.randn(2, 2, 8, 8)
    options = {**FAST[kind], "channel_softmax": False, "relu_attributions": False}
    exact = CLASSES[kind](model, model[4]).attribute(x, target=[0, 2], **options)
    with perturbation_options(autocast="bfloat16"):
        mixed = CLASSES[kind](model, model[4]).attribute(x, target=[0, 2], **options)
    assert mixed.dtype == torch.float32 and not torch.equal(mixed, exact)
    assert float(spearman_rank_correlation(mixed, exact).min()) > 0.95
