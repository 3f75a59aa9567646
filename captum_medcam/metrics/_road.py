"""ROAD: remove and debias, MoRF and LeRF with noisy linear imputation (1D, 2D and 3D).

A removed voxel is not replaced by a constant or by noise (which the model sees as a new,
out-of-distribution pattern, and whose shape leaks which voxels were removed) but by the
weighted mean of its neighbours, removed or not: the removed voxels of an example solve one
sparse linear system, and a little Gaussian noise is added to them. Rong et al. show that
this imputation removes the information of the voxels while leaking little about the mask.

The system is solved here on the inputs' device by conjugate gradients, batched over the
examples, thresholds and channels of a chunk, with the stencil applied as three-tap
separable filters: no SciPy, no NumPy, no copy to the CPU, and the same code for 1, 2 and 3
spatial dims.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from captum_medcam._core.checks import (
    DEFAULT_SEED,
    check_choice,
    check_finite_float,
    check_inputs,
    check_positive_int,
    make_generator,
    user_stacklevel,
)
from captum_medcam._core.engine import Perturbed, forward_in_chunks, progress_bar, run_jobs
from captum_medcam._core.meta import unwrap_meta
from captum_medcam._core.targets import MetricScore
from captum_medcam.metrics._baselines import _noise
from captum_medcam.metrics._perturbation import (
    DEFAULT_MAX_EXAMPLES_PER_BATCH,
    PerturbationCurve,
    _resolve_target,
    _score,
    prepare,
    voxel_order,
)

__all__ = ["noisy_linear_imputation", "road", "road_curve"]

RoadOrder = Literal["morf", "lerf"]
RoadSummary = Literal["combined", "morf", "lerf"]

#: The fractions removed in the paper's figures and pytorch-grad-cam's averages.
DEFAULT_FRACTIONS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
#: The noise of the authors' code and pytorch-grad-cam (``NoisyLinearImputer(noise=0.01)``).
DEFAULT_NOISE = 0.01


def _neighbour_sum(u: Tensor) -> Tensor:
    """``sum_o k(o) u(p + o)`` with the binomial kernel ``k = [1, 2, 1]^{(x) d}``, zero padded.

    The sum includes the centre (weight ``2^d``); :func:`_stencil` removes it.
    """
    dims = u.dim() - 2
    for axis in range(2, u.dim()):
        pad = [0] * (2 * dims)
        pad[2 * (u.dim() - 1 - axis)] = pad[2 * (u.dim() - 1 - axis) + 1] = 1
        p = F.pad(u, pad)
        n = u.shape[axis]
        u = p.narrow(axis, 0, n) + 2 * p.narrow(axis, 1, n) + p.narrow(axis, 2, n)
    return u


def _stencil(u: Tensor) -> Tensor:
    """The weighted sum of each voxel's in-image neighbours (weights summing to 1 inside).

    The weights are the binomial kernel ``[1, 2, 1]^{(x) d}`` without its centre,
    normalised: in 2D the paper's 1/6 for the four edge neighbours and 1/12 for the four
    diagonal ones, in 3D 1/14 (6 faces), 1/28 (12 edges) and 1/56 (8 corners), in 1D 1/2.
    """
    dims = u.dim() - 2
    centre = 2**dims
    return (_neighbour_sum(u) - centre * u) / (4**dims - centre)


#: Conjugate gradient iterations between two checks for convergence (each check syncs).
_SYNC_EVERY = 4


def _default_tol(dtype: torch.dtype) -> float:
    return 1e-10 if dtype == torch.float64 else 1e-5


def _solve(x: Tensor, removed: Tensor, tol: float, max_iter: int) -> Tensor:
    """Each removed voxel as the weighted mean of its neighbours; kept voxels unchanged.

    For the removed voxels ``i`` of each example and channel, solves::

        d_i u_i - sum_{j removed} w_ij u_j = sum_{j kept} w_ij x_j

    with ``w_ij`` the stencil weight of neighbour ``j`` (0 outside the image) and ``d_i``
    the sum of ``i``'s in-image weights: the authors' system (``setup_sparse_system``), in
    which a voxel at the border averages its in-image neighbours only. The matrix is
    symmetric and, as long as one voxel is kept, positive definite, so conjugate gradients
    with the diagonal ``d`` as preconditioner converge; iteration stops per system when the
    residual is at most ``tol`` times the right-hand side.

    Args:
        x: ``(B, C, *S)``, float32 or float64.
        removed: ``(B, 1, *S)`` in ``x``'s dtype, 1 where a voxel is removed.

    Returns:
        ``(B, C, *S)``: ``x`` with the removed voxels imputed (no noise).
    """
    m = removed
    d = _stencil(torch.ones_like(m[:1]))  # the in-image weight of each voxel
    b = m * _stencil((1 - m) * x)
    dims = tuple(range(2, x.dim()))
    tiny = torch.finfo(x.dtype).tiny

    def norm(v: Tensor) -> Tensor:
        return v.square().sum(dims, keepdim=True).sqrt()

    solution = torch.zeros_like(x)
    rows = torch.arange(x.shape[0], device=x.device)  # the examples still being solved
    u = torch.zeros_like(x)
    r = b
    z = r / d
    p = z.clone()
    rz = (r * z).sum(dims, keepdim=True)
    limit = tol * norm(b)
    for step in range(max_iter):
        active = norm(r) > limit  # (B, C, 1, ...): converged systems are frozen
        # Reading flags back to the host is a device sync: every few iterations, examples
        # whose channels have all converged leave the working set (a chunk mixes small and
        # large removals, which need few and many iterations).
        if step % _SYNC_EVERY == 0:
            done = ~active.flatten(1).any(1)
            if bool(done.any()):
                solution.index_copy_(0, rows[done], u[done])
                keep = ~done
                if not bool(keep.any()):
                    break
                rows, u, r, p, rz, limit, m, active = (
                    t[keep] for t in (rows, u, r, p, rz, limit, m, active)
                )
        # p (like r and z) is 0 outside the removed voxels, so m * p = p.
        ap = m * (d * p - _stencil(p))
        pap = (p * ap).sum(dims, keepdim=True)
        alpha = torch.where(active & (pap > 0), rz / pap.clamp(min=tiny), 0)
        u = u.addcmul_(alpha, p)
        r = r.addcmul(alpha, ap, value=-1)
        z = r / d
        rz_new = (r * z).sum(dims, keepdim=True)
        beta = torch.where(active & (rz > 0), rz_new / rz.clamp(min=tiny), 0)
        rz = rz_new
        p = p.mul_(beta).add_(z)
    else:
        solution.index_copy_(0, rows, u)
        rnorm = norm(r)
        if bool((rnorm > limit).any()):
            worst = float((rnorm / limit.clamp(min=tiny)).amax())
            warnings.warn(
                f"noisy linear imputation: conjugate gradients stopped after max_iter={max_iter} "
                f"iterations with a residual {worst:.3g} times the tolerance "
                f"(tol={tol:g}); raise max_iter or tol",
                RuntimeWarning,
                stacklevel=user_stacklevel(),
            )
    return torch.where(removed > 0, solution, x)


def _work_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _check_solver(tol: object, max_iter: object) -> None:
    if tol is not None:
        check_finite_float(tol, "tol", low=0, low_open=True)
    if max_iter is not None:
        check_positive_int(max_iter, "max_iter")


def _default_max_iter(spatial: Sequence[int]) -> int:
    # CG needs about as many iterations as a removed region is wide; this leaves a margin.
    return 20 * sum(spatial) + 100


def noisy_linear_imputation(
    inputs: Tensor,
    removed: Tensor,
    *,
    noise: float = DEFAULT_NOISE,
    generator: int | torch.Generator = DEFAULT_SEED,
    tol: float | None = None,
    max_iter: int | None = None,
) -> Tensor:
    r"""ROAD's noisy linear imputation: removed voxels become the mean of their neighbours.

    Every removed voxel ``i`` takes the weighted mean of its in-image neighbours ``j``
    (removed ones included, so the removed voxels of an example solve one sparse linear
    system per channel), plus Gaussian noise::

        u_i = sum_j w_ij u_j / sum_j w_ij  (u_j = x_j for kept j),   out_i = u_i + noise * z_i

    The weights are the authors': 1/6 for the 4 edge and 1/12 for the 4 diagonal
    neighbours in 2D, i.e. the binomial kernel ``[1, 2, 1] (x) [1, 2, 1]`` without its
    centre; the same rule gives 1/2 for the 2 neighbours in 1D and 1/14, 1/28 and 1/56 for
    the 6 face, 12 edge and 8 corner neighbours in 3D. Neighbours outside the image are left
    out (the weights of a border voxel are renormalised), as in the authors' code. A
    constant image stays constant, and a linear ramp is reproduced exactly wherever the
    removed region does not touch the border.

    The system is symmetric positive definite (when one voxel of the example is kept) and
    solved by preconditioned conjugate gradients on the inputs' device, batched over the
    examples and channels, to a relative residual ``tol``.

    References:
        Rong, Leemann, Borisov, Kasneci, Kasneci. "A Consistent and Efficient Evaluation
        Strategy for Attribution Methods". ICML 2022. arXiv:2202.00449.

    Args:
        inputs: ``(N, C, *S)`` with 1 to 3 spatial dims. Not modified.
        removed: boolean ``(N, 1, *S)`` (or broadcastable to it), True where a voxel is
            removed; all channels of a voxel are imputed together.
        noise: the standard deviation of the noise added to the imputed voxels (0.01 as in
            the authors' code and pytorch-grad-cam; 0 for none), in the inputs' units.
        generator: an int seed (default 0) or a ``torch.Generator``. A seed draws one noise
            field ``(1, C, *S)`` from a new generator and gives it to every example, so a
            call repeats exactly and does not depend on the batch. A generator draws
            ``(N, C, *S)`` from its own state and advances. Torch's global random state is
            never used.
        tol: relative residual at which conjugate gradients stop (default 1e-10 for
            float64 inputs, 1e-5 otherwise). Measured on 100x100 RGB images in ``[0, 1]``
            with 10% to 90% removed in blobs: float32 at 1e-5 imputes within 2e-4 of the
            exact solution, well under the default noise (0.01); 1e-4 within 2e-3, 1.15x
            faster.
        max_iter: iteration cap (default ``20 * sum(S) + 100``); a warning says when it is
            reached first.

    Returns:
        ``(N, C, *S)`` in the inputs' dtype and device: kept voxels unchanged, removed ones
        imputed. Half precision inputs are solved in float32.

    Raises:
        TypeError: inputs that are not a floating tensor, ``removed`` that is not a boolean
            tensor, a bad ``generator``.
        ValueError: shapes that do not match, an example with every voxel removed (there is
            nothing to impute from), a negative ``noise``, a non-positive ``tol`` or
            ``max_iter``.

    Example:
        >>> import torch
        >>> x = torch.arange(25.0).view(1, 1, 5, 5)  # a linear ramp
        >>> removed = torch.zeros(1, 1, 5, 5, dtype=torch.bool)
        >>> removed[..., 1:4, 1:4] = True
        >>> out = noisy_linear_imputation(x, removed, noise=0.0)
        >>> torch.allclose(out, x, atol=1e-4)
        True
    """
    x = check_inputs(unwrap_meta(inputs))
    noise = check_finite_float(noise, "noise", low=0)
    _check_solver(tol, max_iter)
    make_generator(generator)
    if not isinstance(removed, Tensor) or removed.dtype != torch.bool:
        raise TypeError(
            f"removed must be a boolean tensor (True where a voxel is removed), got "
            f"{removed.dtype if isinstance(removed, Tensor) else type(removed).__name__}"
        )
    removed = unwrap_meta(removed)
    try:
        mask = removed.to(x.device).expand(x.shape[0], 1, *x.shape[2:])
    except RuntimeError:
        raise ValueError(
            f"removed of shape {tuple(removed.shape)} does not broadcast to (N, 1, *S) = "
            f"{(x.shape[0], 1, *x.shape[2:])}"
        ) from None
    if bool(mask.flatten(1).all(1).any()):
        raise ValueError(
            "removed marks every voxel of an example: noisy linear imputation needs at least one "
            "kept voxel to impute from"
        )
    z = _noise(torch.randn, generator, x) if noise > 0 else None
    return _impute(x, mask, noise, z, tol, max_iter)


def _impute(
    x: Tensor,
    mask: Tensor,
    noise: float,
    z: Tensor | None,
    tol: float | None,
    max_iter: int | None,
) -> Tensor:
    """Imputation of checked arguments: ``mask`` boolean ``(B, 1, *S)``, ``z`` like ``x``."""
    work = _work_dtype(x.dtype)
    m = mask.to(work)
    filled = _solve(
        x.to(work),
        m,
        _default_tol(work) if tol is None else float(tol),
        _default_max_iter(x.shape[2:]) if max_iter is None else int(max_iter),
    )
    if z is not None:
        filled = filled + (noise * m) * z.to(work)
    return filled.to(x.dtype)


def _count(fraction: float, n_vox: int) -> int:
    """``floor(fraction * V)`` (the authors' ``int(V * th_p)``), safe from binary rounding."""
    exact = fraction * n_vox
    nearest = round(exact)
    return nearest if abs(exact - nearest) <= 1e-9 * max(n_vox, 1) else math.floor(exact)


def _check_fractions(fractions: object) -> tuple[float, ...]:
    if isinstance(fractions, (str, bytes)) or not isinstance(fractions, Sequence):
        raise TypeError(
            f"fractions must be a sequence of numbers in [0, 1), got {type(fractions).__name__}"
        )
    out = []
    for f in fractions:
        if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 <= f < 1:
            raise ValueError(
                f"fractions must hold numbers in [0, 1) (the share of voxels removed; removing "
                f"every voxel leaves nothing to impute from), got {f!r} in {fractions!r}"
            )
        out.append(float(f))
    if not out:
        raise ValueError("fractions is empty; pass e.g. (0.1, 0.2, ..., 0.9)")
    return tuple(out)


def _road_scores(
    forward_func: Callable[..., Any],
    inputs: object,
    attributions: object,
    target: object,
    additional_forward_args: object,
    *,
    orders: Sequence[RoadOrder],
    fractions: Sequence[float],
    noise: float,
    generator: int | torch.Generator,
    score: MetricScore,
    tol: float | None,
    max_iter: int | None,
    max_examples_per_batch: int | None,
    show_progress: bool,
) -> tuple[Tensor, Tensor, list[Tensor]]:
    """The clean scores ``(N,)``, the fractions ``(T,)`` and one ``(N, T)`` curve per order.

    The imputed inputs are built per chunk of ``max_examples_per_batch`` jobs ``(order,
    fraction, example)``, so memory is bounded by the chunk, not by the number of fractions.
    """
    for order in orders:
        check_choice(order, "order", ("morf", "lerf"))
    fracs = _check_fractions(fractions)
    noise = check_finite_float(noise, "noise", low=0)
    _check_solver(tol, max_iter)
    make_generator(generator)
    p = prepare(
        forward_func,
        inputs,
        attributions,
        additional_forward_args,
        score,
        max_examples_per_batch,
        target=target,
        show_progress=show_progress,
    )
    x, n = p.x, p.x.shape[0]
    n_vox = p.relevance[0, 0].numel()
    counts = [_count(f, n_vox) for f in fracs]
    distinct = list(dict.fromkeys(orders))
    ranks = torch.stack([voxel_order(p.relevance, descending=o == "morf") for o in distinct])
    # One noise field for the call, so a voxel gets the same noise at every fraction and in
    # every chunk: the curves do not depend on max_examples_per_batch.
    z = _noise(torch.randn, generator, x) if noise > 0 else None

    # Distinct jobs: (order, count) for counts > 0; count 0 is the clean input.
    keys = list(dict.fromkeys((o, c) for o in orders for c in counts if c > 0))
    key_order = torch.tensor([distinct.index(o) for o, _ in keys], device=x.device)
    key_count = torch.tensor([c for _, c in keys], device=x.device)
    chunk = max_examples_per_batch or max(n, 1)
    n_jobs = len(keys) * n
    everyone = torch.arange(n, device=x.device)
    view = (-1,) + (1,) * (x.dim() - 1)

    def build(start: int, stop: int) -> Perturbed:
        # Job j imputes point j // n of example j % n; a chunk's systems are solved together.
        ids = torch.arange(start, stop, device=x.device)
        k, s = ids // n, ids % n
        removed = ranks[key_order[k], s] < key_count[k].view(view)
        noise_rows = None if z is None else z.index_select(0, s)
        return Perturbed(
            _impute(x.index_select(0, s), removed, noise, noise_rows, tol, max_iter), s
        )

    bar = progress_bar(-(-n // chunk) + -(-n_jobs // chunk), "ROAD forwards", show=show_progress)
    try:
        clean_out = forward_in_chunks(forward_func, x, p.args, chunk_size=chunk, bar=bar)
        targets = _resolve_target(target, n, clean_out, score)
        clean = _score(clean_out, targets, everyone, score, x.dtype)
        flat = run_jobs(
            forward_func, x, targets, p.args, n_jobs, build, chunk_size=chunk, score=score, bar=bar
        )
    finally:
        bar.close()
    scores = flat.view(len(keys), n)
    index = {key: i for i, key in enumerate(keys)}
    curves = [
        torch.stack([clean if c == 0 else scores[index[(o, c)]] for c in counts], dim=1)
        for o in orders
    ]
    xs = torch.tensor(fracs, dtype=x.dtype, device=x.device)
    return clean, xs, curves


def road_curve(
    forward_func: Callable[..., Any],
    inputs: Tensor,
    attributions: Tensor,
    target: Any = None,
    additional_forward_args: Any = None,
    *,
    order: RoadOrder = "morf",
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    noise: float = DEFAULT_NOISE,
    generator: int | torch.Generator = DEFAULT_SEED,
    score: MetricScore = "probability",
    tol: float | None = None,
    max_iter: int | None = None,
    max_examples_per_batch: int | None = DEFAULT_MAX_EXAMPLES_PER_BATCH,
    show_progress: bool = False,
) -> PerturbationCurve:
    """ROAD curve: the score as the most (or least) relevant voxels are imputed.

    Voxels are ranked by their attribution (summed over channels; all input channels of a
    voxel are removed together), ties broken by position (the smaller flattened index
    first). For each fraction ``f`` the ``floor(f * V)`` most relevant voxels (``"morf"``)
    or least relevant voxels (``"lerf"``) of the ``V`` are removed and imputed by
    :func:`noisy_linear_imputation`, and the model scores the imputed input. MoRF: a
    faithful map makes the score fall fast (lower is better); LeRF: the score stays high
    (higher is better). ROAD's point is that with this imputation the two orders rank
    attribution methods consistently, where a constant or noise substrate lets the shape of
    the mask itself carry class information.

    The imputed inputs are built lazily, ``max_examples_per_batch`` at a time (the linear
    systems of a chunk are solved together), and scored under ``torch.no_grad()``; one noise
    field is drawn per call (see ``generator``), so a voxel gets the same noise at every
    fraction and the result does not depend on ``max_examples_per_batch``.

    Where this follows the authors' code (``road_evaluation``) and pytorch-grad-cam
    (``pytorch_grad_cam/metrics/road.py``, which copies the authors' imputer), and where not:

    - the imputation is theirs (same weights, same border rule, noise std 0.01); it is
      written for 1 to 3 spatial dims (pytorch-grad-cam's is 2D only: on a volume it
      indexes the flattened mask with two coordinates and returns NaN) and solved by
      conjugate gradients on the inputs' device instead of SciPy's ``spsolve`` on the CPU.
      Without noise the imputed images agree with theirs to the solver's tolerance.
    - the noise comes from ``generator``, one field per call, not from torch's global
      random state per image and fraction.
    - ``floor(f * V)`` voxels are removed, ties broken by position. The authors' code
      removes ``int(f * V)`` voxels after adding 1e-4 Gaussian noise to the min-max
      normalised map (random tie-breaking) and, for LeRF, its ``th_p`` is the fraction
      *kept* (it removes all but the ``int(th_p * V)`` most relevant voxels): its LeRF
      point ``th_p`` is ``fraction = 1 - th_p`` here. pytorch-grad-cam thresholds at
      ``np.percentile(map, p)`` and removes every voxel at or above it (``p`` is the
      percentage *kept*, in both orders), which removes ``V - ceil(p / 100 * (V - 1))``
      voxels, the same count as here whenever ``p / 100 * V`` is an integer (e.g. ``V`` a
      multiple of 100 and ``p`` a multiple of 10).

    References:
        Rong, Leemann, Borisov, Kasneci, Kasneci. "A Consistent and Efficient Evaluation
        Strategy for Attribution Methods". ICML 2022. arXiv:2202.00449.

    The authors' ``run_road`` returns, per fraction, the test accuracy and the average
    softmax probability of the predicted class over the data set, for one order: here
    ``curve.scores.mean(0)`` with ``score="correct", target=labels`` and with
    ``score="probability"`` (``target=None``, the class predicted on the clean input),
    for ``order="morf"`` and ``"lerf"``. ``curve.scores.mean(1)`` summarises a curve per
    example (its area per unit of the fraction range, by the rectangle rule).

    Args:
        forward_func: the model, called as ``forward_func(inputs, *additional_forward_args)``.
            Its mode is left as it is (call ``model.eval()`` first).
        inputs: ``(N, C, *S)`` with 1 to 3 spatial dims, e.g. ``(N, C, D, H, W)``, in the
            units the model takes (the noise is added in these units). Not modified.
        attributions: ``(N, 1, *S)`` or ``(N, C, *S)`` at input resolution.
        target: the class to score, as in Captum; None takes the class predicted on the
            unperturbed input.
        additional_forward_args: further model arguments, as in Captum; tensors whose first
            dim is ``N`` follow their example.
        fractions: the shares of voxels removed, each in ``[0, 1)`` (0 is the clean input);
            default 0.1, 0.2, ..., 0.9 as in the paper and pytorch-grad-cam.
        noise: std of the Gaussian noise added to the imputed voxels (default 0.01, the
            authors'; 0 for none).
        generator: an int seed (default 0) or a ``torch.Generator``, as in
            :func:`noisy_linear_imputation`: a seed gives every example the same noise field
            and repeats exactly whatever the batch.
        score: ``"probability"`` (softmax of the target, the paper's average probability),
            ``"logit"``, ``"sigmoid"`` (one label of a multi-label head) or ``"correct"``
            (1 where the argmax equals the target: with ``target=labels`` its mean over the
            data set is the paper's accuracy curve).
        tol, max_iter: the conjugate gradient solver's, see :func:`noisy_linear_imputation`.
        max_examples_per_batch: imputed inputs per forward pass (None: all at once). It
            bounds memory; the number of fractions does not.
        show_progress: a progress bar over the forward passes.
        order: ``"morf"`` (most relevant removed first) or ``"lerf"``.

    Returns:
        ``PerturbationCurve(x, scores)``: ``x`` the fractions ``(T,)`` and ``scores``
        ``(N, T)``.

    Raises:
        TypeError: inputs or attributions that are not floating tensors, fractions that are
            not a sequence, a bad ``generator``.
        ValueError: shapes that do not match (a layer-resolution map must be upsampled
            first), a fraction outside ``[0, 1)``, an unknown ``order`` or ``score``, a
            negative ``noise``, a target out of range.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(64, 3)).eval()
        >>> x = torch.randn(2, 1, 4, 4, 4)
        >>> curve = road_curve(model, x, x.abs(), fractions=(0.25, 0.5, 0.75))
        >>> curve.x.tolist(), curve.scores.shape
        ([0.25, 0.5, 0.75], torch.Size([2, 3]))
    """
    _, xs, (curve,) = _road_scores(
        forward_func,
        inputs,
        attributions,
        target,
        additional_forward_args,
        orders=[order],
        fractions=fractions,
        noise=noise,
        generator=generator,
        score=score,
        tol=tol,
        max_iter=max_iter,
        max_examples_per_batch=max_examples_per_batch,
        show_progress=show_progress,
    )
    return PerturbationCurve(xs, curve)


def road(
    forward_func: Callable[..., Any],
    inputs: Tensor,
    attributions: Tensor,
    target: Any = None,
    additional_forward_args: Any = None,
    *,
    order: RoadSummary = "combined",
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    noise: float = DEFAULT_NOISE,
    generator: int | torch.Generator = DEFAULT_SEED,
    score: MetricScore = "probability",
    tol: float | None = None,
    max_iter: int | None = None,
    max_examples_per_batch: int | None = DEFAULT_MAX_EXAMPLES_PER_BATCH,
    show_progress: bool = False,
) -> Tensor:
    """ROAD per example: the mean change of the score as voxels are imputed.

    With ``s(f)`` the score after removing the fraction ``f`` (:func:`road_curve`) and
    ``s(0)`` the clean score, averaged over the fractions::

        morf:     mean_f [s_morf(f) - s(0)]            (lower is better)
        lerf:     mean_f [s_lerf(f) - s(0)]            (higher is better)
        combined: (lerf - morf) / 2 = mean_f [s_lerf(f) - s_morf(f)] / 2   (higher is better)

    These are pytorch-grad-cam's ``ROADMostRelevantFirstAverage``,
    ``ROADLeastRelevantFirstAverage`` and ``ROADCombined`` (one value per example, with
    their default percentiles 10, ..., 90), equal to them where the removal counts match
    and the noise is off (see :func:`road_curve`). The paper plots the curves themselves,
    averaged over the data set: :func:`road_curve` gives them per example. ``combined`` is computed in one
    pass (the clean input is scored once for both orders).

    The removal (ranking, ``floor(f * V)`` voxels per fraction, the imputation, the noise
    and its ``generator``, lazy chunks) and where it follows or departs from the authors'
    code and pytorch-grad-cam are described in :func:`road_curve`.

    References:
        Rong, Leemann, Borisov, Kasneci, Kasneci. "A Consistent and Efficient Evaluation
        Strategy for Attribution Methods". ICML 2022. arXiv:2202.00449.

    Args:
        forward_func: the model, called as ``forward_func(inputs, *additional_forward_args)``.
            Its mode is left as it is (call ``model.eval()`` first).
        inputs: ``(N, C, *S)`` with 1 to 3 spatial dims, e.g. ``(N, C, D, H, W)``, in the
            units the model takes (the noise is added in these units). Not modified.
        attributions: ``(N, 1, *S)`` or ``(N, C, *S)`` at input resolution.
        target: the class to score, as in Captum; None takes the class predicted on the
            unperturbed input.
        additional_forward_args: further model arguments, as in Captum; tensors whose first
            dim is ``N`` follow their example.
        fractions: the shares of voxels removed, each in ``[0, 1)`` (0 is the clean input);
            default 0.1, 0.2, ..., 0.9 as in the paper and pytorch-grad-cam.
        noise: std of the Gaussian noise added to the imputed voxels (default 0.01, the
            authors'; 0 for none).
        generator: an int seed (default 0) or a ``torch.Generator``, as in
            :func:`noisy_linear_imputation`: a seed gives every example the same noise field
            and repeats exactly whatever the batch.
        score: ``"probability"`` (softmax of the target, the paper's average probability),
            ``"logit"``, ``"sigmoid"`` (one label of a multi-label head) or ``"correct"``
            (1 where the argmax equals the target: with ``target=labels`` its mean over the
            data set is the paper's accuracy curve).
        tol, max_iter: the conjugate gradient solver's, see :func:`noisy_linear_imputation`.
        max_examples_per_batch: imputed inputs per forward pass (None: all at once). It
            bounds memory; the number of fractions does not.
        show_progress: a progress bar over the forward passes.
        order: ``"combined"`` (default), ``"morf"`` or ``"lerf"``.

    Returns:
        ``(N,)``: one value per example, in the inputs' dtype.

    Raises:
        TypeError: inputs or attributions that are not floating tensors, fractions that are
            not a sequence, a bad ``generator``.
        ValueError: shapes that do not match (a layer-resolution map must be upsampled
            first), a fraction outside ``[0, 1)``, an unknown ``order`` or ``score``, a
            negative ``noise``, a target out of range.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(64, 3)).eval()
        >>> x = torch.randn(2, 1, 8, 8)
        >>> road(model, x, x.abs()).shape
        torch.Size([2])
    """
    check_choice(order, "order", ("combined", "morf", "lerf"))
    orders: list[RoadOrder] = ["morf", "lerf"] if order == "combined" else [order]
    clean, _, curves = _road_scores(
        forward_func,
        inputs,
        attributions,
        target,
        additional_forward_args,
        orders=orders,
        fractions=fractions,
        noise=noise,
        generator=generator,
        score=score,
        tol=tol,
        max_iter=max_iter,
        max_examples_per_batch=max_examples_per_batch,
        show_progress=show_progress,
    )
    changes = [(c - clean.unsqueeze(1)).mean(1) for c in curves]
    if order == "combined":
        return (changes[1] - changes[0]) / 2
    return changes[0]
