"""The perturbation engine (captum_medcam._core.engine): chunking, scores, args, dtype."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import Tensor, nn

from captum_medcam._core.engine import (
    PerturbationOptions,
    Perturbed,
    auto_chunk_size,
    current_options,
    forward_in_chunks,
    perturbation_options,
    progress_bar,
    run_jobs,
)
from captum_medcam._core.targets import class_scores

N, F, K = 3, 4, 5


class Scaled(nn.Module):
    """A linear model with a per-example extra argument added to its output."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.linear = nn.Linear(F, K).double()

    def forward(self, x: Tensor, shift: Tensor | None = None, factor: float = 1.0) -> Tensor:
        out = self.linear(x) * factor
        return out if shift is None else out + shift


def jobs(x: Tensor, n_jobs: int, calls: list[tuple[int, int]] | None = None) -> Any:
    """Job j: example j % N, its features times (j // N + 1)."""

    def build(start: int, stop: int) -> Perturbed:
        if calls is not None:
            calls.append((start, stop))
        ids = torch.arange(start, stop)
        owner = ids % x.shape[0]
        return Perturbed(x[owner] * (ids // x.shape[0] + 1).unsqueeze(1).to(x), owner)

    return build


def reference(model: nn.Module, x: Tensor, n_jobs: int, args: tuple[Any, ...]) -> Tensor:
    """The outputs of every job, one forward each."""
    rows = []
    for j in range(n_jobs):
        owner = j % x.shape[0]
        extra = [a[owner : owner + 1] if isinstance(a, Tensor) else a for a in args]
        rows.append(model(x[owner : owner + 1] * (j // x.shape[0] + 1), *extra))
    return torch.cat(rows)


@pytest.mark.parametrize("score", ["probability", "logit", "sigmoid", "correct", "output"])
@pytest.mark.parametrize("chunk_size", [1, 4, 100])
def test_run_jobs_equals_one_forward_per_job(score: str, chunk_size: int) -> None:
    model, x = Scaled(), torch.randn(N, F, dtype=torch.float64)
    shift = torch.randn(N, K, dtype=torch.float64)
    args = (shift, 2.0)
    targets = torch.tensor([0, 3, 4])
    n_jobs = 4 * N + 1
    calls: list[tuple[int, int]] = []
    got = run_jobs(
        model, x, targets, args, n_jobs, jobs(x, n_jobs, calls), chunk_size=chunk_size, score=score
    )  # type: ignore[arg-type]
    outputs = reference(model, x, n_jobs, args)
    owner = torch.arange(n_jobs) % N
    expected = outputs if score == "output" else class_scores(outputs, targets, owner, score)  # type: ignore[arg-type]
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    # lazily, in order, never more than chunk_size rows at once
    assert calls == [(s, min(s + chunk_size, n_jobs)) for s in range(0, n_jobs, chunk_size)]


def test_scores_keep_the_inputs_dtype_and_outputs_their_own() -> None:
    model = nn.Linear(F, K)  # float32
    x = torch.randn(N, F, dtype=torch.float64)

    def build(start: int, stop: int) -> Perturbed:
        owner = torch.arange(start, stop)
        return Perturbed(x[owner].float(), owner)

    scores = run_jobs(
        model, x, torch.tensor([1]).expand(N), (), N, build, chunk_size=2, score="logit"
    )
    assert scores.dtype == torch.float64 and scores.device == x.device
    assert torch.equal(scores, model(x.float())[:, 1].double())
    raw = run_jobs(model, x, None, (), N, build, chunk_size=2, score="output")
    assert raw.dtype == torch.float32 and raw.shape == (N, K)


def test_no_jobs_give_an_empty_result_and_no_forward() -> None:
    def fail(*_: Any) -> Tensor:
        raise AssertionError("no forward expected")

    x = torch.randn(N, F, dtype=torch.float64)
    out = run_jobs(fail, x, None, (), 0, jobs(x, 0), chunk_size=2, score="logit")
    assert out.shape == (0,) and out.dtype == torch.float64


def test_forwards_run_without_gradients() -> None:
    seen: list[bool] = []

    def model(x: Tensor) -> Tensor:
        seen.append(torch.is_grad_enabled())
        return x.sum(1)

    x = torch.randn(N, F, requires_grad=True)
    out = run_jobs(model, x, None, (), 2 * N, jobs(x, 2 * N), chunk_size=4, score="logit")
    assert seen == [False, False] and not out.requires_grad


def test_custom_forward_receives_the_chunk_and_its_args() -> None:
    x = torch.randn(N, F, dtype=torch.float64)
    shift = torch.arange(N, dtype=torch.float64)
    got: list[tuple[Tensor, Any, tuple[Any, ...]]] = []

    def build(start: int, stop: int) -> Perturbed:
        owner = torch.arange(start, stop) % N
        return Perturbed(x[owner], owner, extra=(start, stop))

    def forward(rows: Perturbed, args: tuple[Any, ...]) -> Tensor:
        got.append((rows.owner, rows.extra, args))
        return rows.inputs.sum(1) + args[0]

    out = run_jobs(None, x, None, (shift,), 5, build, chunk_size=3, score="logit", forward=forward)
    assert [g[1] for g in got] == [(0, 3), (3, 5)]
    assert torch.equal(got[1][2][0], shift[torch.tensor([0, 1])])
    owner = torch.arange(5) % N
    assert torch.equal(out, x[owner].sum(1) + shift[owner])


def test_a_model_that_drops_rows_is_refused() -> None:
    x = torch.randn(N, F)
    with pytest.raises(ValueError, match="one row per input"):
        run_jobs(lambda t: t[:1], x, None, (), N, jobs(x, N), chunk_size=N, score="output")
    with pytest.raises(TypeError, match="must return a tensor"):
        run_jobs(lambda t: [t], x, None, (), N, jobs(x, N), chunk_size=N, score="output")
    with pytest.raises(TypeError, match="forward_func or forward"):
        run_jobs(None, x, None, (), N, jobs(x, N), chunk_size=N, score="output")


def test_forward_in_chunks_is_the_batched_forward() -> None:
    model, x = Scaled(), torch.randn(7, F, dtype=torch.float64)
    shift = torch.randn(7, K, dtype=torch.float64)
    for chunk in (1, 3, 7, 50):
        torch.testing.assert_close(
            forward_in_chunks(model, x, (shift,), chunk_size=chunk),
            model(x, shift).detach(),
            rtol=1e-12,
            atol=1e-12,
        )


def test_progress_bar_counts_chunks_and_closes(capsys: pytest.CaptureFixture[str]) -> None:
    x = torch.randn(N, F)
    quiet = run_jobs(lambda t: t.sum(1), x, None, (), 7, jobs(x, 7), chunk_size=3, score="logit")
    shown = run_jobs(
        lambda t: t.sum(1),
        x,
        None,
        (),
        7,
        jobs(x, 7),
        chunk_size=3,
        score="logit",
        show_progress=True,
        desc="engine test",
    )
    assert torch.equal(quiet, shown)
    err = capsys.readouterr().err
    assert "engine test" in err and "7/7" in err
    bar = progress_bar(2, "outer", show=True)
    with pytest.raises(RuntimeError):
        run_jobs(
            lambda t: (_ for _ in ()).throw(RuntimeError("boom")),
            x,
            None,
            (),
            2,
            jobs(x, 2),
            chunk_size=1,
            score="logit",
            bar=bar,
        )
    assert not bar.disable  # a bar passed in stays open for its owner
    bar.close()


# --- perturbation_options: autocast, automatic chunk size, compile -----------------------


def small_3d_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv3d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool3d(2),
        nn.Conv3d(8, 8, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool3d(1),
        nn.Flatten(),
        nn.Linear(8, 3),
    ).eval()


def test_options_are_checked_and_restored() -> None:
    assert current_options() == PerturbationOptions()
    with perturbation_options(autocast="bfloat16", chunk_size="auto") as inner:
        assert current_options() is inner and inner.autocast is torch.bfloat16
        with perturbation_options(autocast=torch.float16):
            assert current_options().autocast is torch.float16
            assert current_options().chunk_size is None  # a block sets every option
        assert current_options() is inner
    with pytest.raises(RuntimeError), perturbation_options(autocast="float16"):
        raise RuntimeError("leaves the block")
    assert current_options() == PerturbationOptions()
    with pytest.raises(ValueError, match="autocast must be"), perturbation_options(autocast="fp8"):
        pass
    with pytest.raises(ValueError, match="chunk_size must be"), perturbation_options(chunk_size=8):  # type: ignore[arg-type]
        pass
    with pytest.raises(TypeError, match="compile must be"), perturbation_options(compile=1):  # type: ignore[arg-type]
        pass
    with (
        pytest.raises(ValueError, match=r"not a torch.compile backend"),
        perturbation_options(compile="no-such-backend"),
    ):
        pass
    with (
        pytest.raises(ValueError, match="memory_fraction"),
        perturbation_options(memory_fraction=0),
    ):
        pass


def test_autocast_runs_every_forward_in_bfloat16_and_scores_in_the_inputs_dtype() -> None:
    seen: list[tuple[bool, torch.dtype]] = []
    net = small_3d_net()

    def model(x: Tensor) -> Tensor:
        out = net(x)
        seen.append((torch.is_autocast_enabled("cpu"), out.dtype))
        return out

    x = torch.randn(2, 1, 8, 8, 8)
    with perturbation_options(autocast="bfloat16"):
        scores = run_jobs(
            model, x, torch.tensor([0, 2]), (), 4, jobs3d(x), chunk_size=3, score="probability"
        )
        raw = forward_in_chunks(model, x, (), chunk_size=1)
    assert seen == [(True, torch.bfloat16)] * 4
    assert scores.dtype == torch.float32 and raw.dtype == torch.float32
    full = run_jobs(
        model, x, torch.tensor([0, 2]), (), 4, jobs3d(x), chunk_size=3, score="probability"
    )
    assert seen[-1] == (False, torch.float32)
    assert not torch.equal(scores, full)  # the forwards did run in lower precision
    torch.testing.assert_close(scores, full, atol=2e-2, rtol=0)


def jobs3d(x: Tensor) -> Any:
    """Job j: example j % N, scaled by (j // N + 1)."""

    def build(start: int, stop: int) -> Perturbed:
        ids = torch.arange(start, stop)
        owner = ids % x.shape[0]
        return Perturbed(x[owner] * (ids // x.shape[0] + 1).view(-1, 1, 1, 1, 1), owner)

    return build


def test_methods_and_metrics_under_bfloat16_stay_close_to_float32() -> None:
    from captum_medcam import CRM3D, ScoreCAM3D
    from captum_medcam.metrics import deletion_insertion_auc, spearman_rank_correlation

    net = small_3d_net()
    torch.manual_seed(1)
    x = torch.randn(2, 1, 12, 12, 12)
    target = [0, 2]

    def run() -> tuple[Tensor, Tensor, Tensor, Tensor]:
        score_cam = ScoreCAM3D(net, net[4]).attribute(x, target=target)
        crm = CRM3D(net, net[4]).attribute(x, target=target)
        d, i = deletion_insertion_auc(net, x, score_cam, target, n_steps=8)
        return score_cam, crm, d, i

    exact = run()
    with perturbation_options(autocast="bfloat16"):
        mixed = run()
    assert mixed[0].dtype == torch.float32 and not torch.equal(mixed[0], exact[0])
    assert float(spearman_rank_correlation(mixed[0], exact[0]).min()) > 0.99
    # CRM squares score differences below bfloat16's resolution: it keeps full precision
    assert torch.equal(mixed[1], exact[1])
    for a, b in zip(exact[2:], mixed[2:], strict=True):
        torch.testing.assert_close(b, a, atol=2e-2, rtol=0)


def test_auto_chunk_size_from_free_memory() -> None:
    gib, mib = 2**30, 2**20
    assert auto_chunk_size(8 * gib, 64 * mib, 16, 10_000) == 64  # half of 8 GiB / 64 MiB
    assert auto_chunk_size(8 * gib, 64 * mib, 16, 10_000, memory_fraction=1.0) == 128
    assert auto_chunk_size(8 * gib, 64 * mib, 16, 40) == 40  # never more than what is left
    assert auto_chunk_size(mib, 64 * mib, 16, 10_000) == 1  # at least one row
    assert auto_chunk_size(None, 64 * mib, 16, 10_000) == 16  # CPU: the call's value
    assert auto_chunk_size(8 * gib, 0.0, 16, 10_000) == 16  # nothing measured
    assert auto_chunk_size(None, 0.0, 16, 0) == 1


def test_auto_chunk_size_on_a_cpu_keeps_the_calls_chunks() -> None:
    x = torch.randn(N, F, dtype=torch.float64)
    model = Scaled()
    plain: list[tuple[int, int]] = []
    auto: list[tuple[int, int]] = []
    a = run_jobs(model, x, None, (), 10, jobs(x, 10, plain), chunk_size=4, score="output")
    with perturbation_options(chunk_size="auto"):
        b = run_jobs(model, x, None, (), 10, jobs(x, 10, auto), chunk_size=4, score="output")
    assert plain == auto and torch.equal(a, b)


def test_auto_chunk_size_resizes_after_the_first_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CUDA path's wiring, with the device's memory counters replaced by numbers."""
    from captum_medcam._core import engine

    monkeypatch.setattr(engine, "_measures_memory", lambda options, device: True)
    monkeypatch.setattr(engine, "_start_measure", lambda device: 1000)
    monkeypatch.setattr(engine, "_bytes_per_row", lambda device, base, rows: 100.0 * rows / rows)
    monkeypatch.setattr(engine, "_cuda_free_bytes", lambda device: 1400)
    x = torch.randn(N, F, dtype=torch.float64)
    model = Scaled()
    calls: list[tuple[int, int]] = []
    with perturbation_options(chunk_size="auto", memory_fraction=0.5):
        got = run_jobs(model, x, None, (), 20, jobs(x, 20, calls), chunk_size=2, score="output")
    # first chunk at the call's size, then 0.5 * 1400 / 100 = 7 rows per chunk
    assert calls == [(0, 2), (2, 9), (9, 16), (16, 20)]
    torch.testing.assert_close(got, reference(model, x, 20, ()).detach(), rtol=1e-12, atol=1e-12)


def test_compile_runs_the_forward_through_torch_compile() -> None:
    x = torch.randn(N, F, dtype=torch.float64)
    model = Scaled()
    compiled_calls: list[int] = []

    def backend(gm: Any, example_inputs: Any) -> Any:
        compiled_calls.append(1)
        return gm.forward

    torch._dynamo.reset()
    expected = run_jobs(model, x, None, (), 6, jobs(x, 6), chunk_size=3, score="output")
    from torch._dynamo import register_backend

    register_backend(backend, name="captum_medcam_test_backend")
    with perturbation_options(compile="captum_medcam_test_backend"):
        got = run_jobs(model, x, None, (), 6, jobs(x, 6), chunk_size=3, score="output")
    torch._dynamo.reset()
    assert compiled_calls  # dynamo traced the model and handed it to the backend
    assert torch.equal(got, expected)
    assert not any(isinstance(m, torch._dynamo.eval_frame.OptimizedModule) for m in [model])


# --- no host synchronisation inside the loops --------------------------------------------


@pytest.fixture
def no_host_reads(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Make every run_jobs call fail on a read of a tensor's value by the host."""
    from unittest import mock

    from captum_medcam._core import engine

    original = engine.run_jobs
    names = ("item", "tolist", "cpu", "numpy", "__bool__", "__int__", "__float__", "__index__")

    def guarded(*args: Any, **kwargs: Any) -> Tensor:
        def boom(self: Tensor, *a: Any, **k: Any) -> Any:
            raise AssertionError("a host read of a tensor inside the engine's loop")

        patches = [mock.patch.object(torch.Tensor, name, boom) for name in names]
        for p in patches:
            p.start()
        try:
            return original(*args, **kwargs)
        finally:
            for p in patches:
                p.stop()

    import captum_medcam.attr._ablation_cam as ablation_cam_module
    import captum_medcam.attr._crm as crm_module
    import captum_medcam.attr._score_cam as score_cam_module
    import captum_medcam.attr._smoothed_score_cam as smoothed_module
    import captum_medcam.metrics._confidence as confidence_module
    import captum_medcam.metrics._perturbation as perturbation_module

    modules = (
        engine,
        ablation_cam_module,
        crm_module,
        score_cam_module,
        smoothed_module,
        confidence_module,
        perturbation_module,
    )
    for module in modules:
        monkeypatch.setattr(module, "run_jobs", guarded)
    return guarded


def test_the_loops_never_read_values_back_to_the_host(no_host_reads: Any) -> None:
    from captum_medcam import CRM3D, ISCAM3D, SSCAM3D, AblationCAM3D, ScoreCAM3D
    from captum_medcam.metrics import (
        aopc,
        average_drop,
        deletion_insertion_auc,
        increase_in_confidence,
    )

    net = small_3d_net()
    x = torch.randn(2, 1, 8, 8, 8)
    target = torch.tensor([0, 2])
    maps = ScoreCAM3D(net, net[4]).attribute(x, target=target, perturbations_per_eval=3)
    CRM3D(net, net[4]).attribute(x, target=target, perturbations_per_eval=5)
    deletion_insertion_auc(net, x, maps, target, n_steps=4, max_examples_per_batch=3)
    aopc(net, x, maps, target, region_size=4, max_examples_per_batch=3)
    AblationCAM3D(net, net[4]).attribute(x, target=target, perturbations_per_eval=3)
    SSCAM3D(net, net[4]).attribute(x, target=target, num_samples=2, perturbations_per_eval=3)
    ISCAM3D(net, net[4]).attribute(x, target=target, num_samples=2, perturbations_per_eval=3)
    average_drop(net, x, maps, target, max_examples_per_batch=3)
    increase_in_confidence(net, x, maps, target, max_examples_per_batch=3)
    with pytest.raises(AssertionError, match="host read"):
        no_host_reads(
            lambda t: t.sum(1) * float(t.sum()),
            x,
            None,
            (),
            2,
            jobs3d(x),
            chunk_size=1,
            score="logit",
        )
