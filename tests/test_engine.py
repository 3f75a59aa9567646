"""The perturbation engine (captum_medcam._core.engine): chunking, scores, args, dtype."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import Tensor, nn

from captum_medcam._core.engine import Perturbed, forward_in_chunks, progress_bar, run_jobs
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
    assert "engine test" in err and "3/3" in err
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
