"""The L_class model: the Appendix D update, its learning rate, the starts, the collapse criterion and the
finite-horizon estimate of the threshold (arXiv 2403.18699, Eq. (3), Sec. 3.1, Theorem 1, Appendix D).

Everything here is per run and cheap; the batched stepping is in :mod:`simulations.lclass.engine`.

The update (Appendix D, with the misprinted ``n mu`` read as ``k mu``)
-----------------------------------------------------------------------
k unit class embeddings ``x_1..x_k`` in R^m (rows of ``X: (k, m)``), mean ``mu = (1/k) sum_i x_i``.
One step moves every point by ``eta`` times the negative mean of the *other* points, then puts it back on
the sphere::

    y_i = x_i - eta * (1/(k-1)) sum_{j != i} x_j = (1 + eta/(k-1)) x_i - eta k/(k-1) mu,
    x_i <- y_i / ||y_i||.

What "learning rate" ``eta`` means here. L_class(X) = sum_{i != j} x_i.x_j (Eq. (3) with the sign the
text means; :func:`clop.losses.l_class`) has gradient ``grad_{x_i} L_class = 2 sum_{j != i} x_j``, so a
plain (autograd) gradient step ``x_i <- x_i - lr * grad_{x_i} L_class`` is the step above with

    eta = 2 (k - 1) * lr        (:func:`eta_from_autograd_lr`, :func:`autograd_lr_from_eta`).

``eta`` is the paper's learning rate throughout the package (Theorem 1, Figure 3: "2.0" and "2.1").

Exact reduction to k dimensions
-------------------------------
The step is a linear combination of the rows followed by a row scaling, so the row space of ``X0`` is
invariant. Writing ``X0 = C0 Q^T`` (QR of ``X0^T``; ``Q: (m, d)`` orthonormal columns, ``d = min(k, m)``,
:func:`reduce_coordinates`), every later ``X_t = C_t Q^T`` with ``C_t: (k, d)`` following the same update.
Gram matrix, singular values, mean norm and L_class of ``C_t`` and ``X_t`` are equal, so the engine
simulates ``C`` at cost O(k d) per run and step instead of O(k m).

Collapse criterion (used by the figures and the tests alike)
------------------------------------------------------------
*Complete collapse* means all embeddings at one point. For unit rows,
``(1/k) sum_i ||x_i - mu||^2 = 1 - ||mu||^2``, so a run is completely collapsed at step t when

    ||mu_t|| >= 1 - tol,     tol = COLLAPSE_TOL = 1e-6,

which bounds every ``||x_i - mu|| <= sqrt(2 k tol)`` (<= 0.015 for k = 100) and makes the top singular
value carry at least ``(1 - tol)^2`` of ``||X||_F^2 = k``. The criterion asks for the mean, not only for
rank one: co-linear "inverted pairs" ``(x, -x, x, -x, ...)`` have rank one but zero mean; they are global
minima of L_class (value -k for even k) and fixed points of the update (there ``y_i = (1 + eta/(k-1)) x_i``),
and the classes stay linearly separable by sign, so they count as *not* collapsed (a dimensional, not a
complete, collapse).

Growth factors
--------------
Linearising the normalised step at a zero-mean configuration gives ``mu -> ((1 - c) I + c F) mu`` with
``c = eta k / (k - 1 + eta)`` and ``F = (1/k) sum_i x_i x_i^T`` (eigenvalues in [0, 1]), so ``||mu||`` grows
at most by ``max(1, |1 - c|)`` per step (:func:`mean_growth_factor`); around a completely collapsed state the
spread shrinks by :func:`collapse_contraction_factor` per step. Both cross 1 at ``eta = 2(k-1)/(k-2)``, the
critical learning rate of :func:`theory.theorem1.critical_lr`. :func:`collapse_steps_estimate` and
:func:`finite_horizon_threshold` turn them into the first collapse step and the threshold a finite search
measures.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from clop.util.checks import check_positive, check_size

__all__ = [
    "COLLAPSE_TOL",
    "check_k",
    "check_etas",
    "check_tol",
    "update_coefficients",
    "eta_from_autograd_lr",
    "autograd_lr_from_eta",
    "initial_embeddings",
    "reduce_coordinates",
    "is_collapsed",
    "mean_growth_factor",
    "collapse_contraction_factor",
    "collapse_steps_estimate",
    "fastest_collapse_steps",
    "finite_horizon_threshold",
]

COLLAPSE_TOL = 1e-6
"""Complete collapse: ``||mu|| >= 1 - COLLAPSE_TOL`` (module docstring)."""


# --------------------------------------------------------------------------------------------------
# argument checks


def check_k(name: str, value: object) -> int:
    """A number of class embeddings: an integer >= 3, else ValueError naming ``name``."""
    return check_size(name, value, 3)


def check_etas(etas: object) -> torch.Tensor:
    """Learning rates as a 1-D float64 tensor: non-empty, finite and > 0, else ValueError naming ``etas``."""
    try:
        e = torch.as_tensor(etas, dtype=torch.float64).reshape(-1)
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"etas must be a number or a 1-D sequence of numbers; got {etas!r}") from None
    if e.numel() == 0 or not bool(torch.isfinite(e).all()) or bool((e <= 0).any()):
        raise ValueError(f"etas must be non-empty, finite and > 0; got {etas!r}")
    return e


def check_tol(tol: object) -> float:
    """A collapse tolerance in (0, 1), else ValueError naming ``tol``."""
    t = check_positive("tol", tol)
    if t >= 1:
        raise ValueError(f"tol must lie in (0, 1); got {tol!r}")
    return t


# --------------------------------------------------------------------------------------------------
# the update and its learning rate


def update_coefficients(k: int, eta: float) -> tuple[float, float]:
    """(alpha, beta) of the Appendix D step ``y_i = alpha x_i - beta mu``: alpha = 1 + eta/(k-1), beta = eta k/(k-1)."""
    k = check_k("k", k)
    eta = check_positive("eta", eta)
    return 1.0 + eta / (k - 1), eta * k / (k - 1)


def eta_from_autograd_lr(lr: float, k: int) -> float:
    """Appendix D ``eta`` of a plain gradient step with learning rate ``lr`` on L_class: eta = 2 (k - 1) lr."""
    return 2.0 * (check_k("k", k) - 1) * check_positive("lr", lr)


def autograd_lr_from_eta(eta: float, k: int) -> float:
    """Inverse of :func:`eta_from_autograd_lr`: lr = eta / (2 (k - 1))."""
    return check_positive("eta", eta) / (2.0 * (check_k("k", k) - 1))


# --------------------------------------------------------------------------------------------------
# initialisation


def _trial_generator(seed: int, k: int, m: int, trial: int) -> torch.Generator:
    """A CPU generator for trial ``trial`` of (k, m): independent of how many trials or etas are run."""
    state = np.random.SeedSequence([seed, k, m, trial]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def initial_embeddings(k: int, m: int, trials: int = 1, *, seed: int = 0) -> torch.Tensor:
    """Gaussian rows normalised to the unit sphere: X0: (trials, k, m), float64 on CPU.

    Trial t of (k, m) is drawn from its own generator seeded by (seed, k, m, t), so it is the same
    whatever else is simulated (same seed, same numbers; a trial's start does not depend on ``trials``).
    A normalised standard Gaussian is uniform on the sphere, the start assumed by Theorem 1.
    """
    k = check_size("k", k, 1)
    m = check_size("m", m, 1)
    trials = check_size("trials", trials, 1)
    seed = check_size("seed", seed, 0)
    x = torch.stack(
        [torch.randn(k, m, generator=_trial_generator(seed, k, m, t), dtype=torch.float64) for t in range(trials)]
    )
    return x / torch.linalg.vector_norm(x, dim=-1, keepdim=True)


def reduce_coordinates(x0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact coordinates of the rows in their span: x0: (..., k, m) -> (c: (..., k, d), q: (..., m, d)), d = min(k, m).

    ``x0 = c q^T`` with ``q^T q = I_d`` (reduced QR of ``x0^T``), so ``c`` has the Gram matrix of ``x0``.
    """
    if x0.dim() < 2:
        raise ValueError(f"x0 must have shape (..., k, m); got shape {tuple(x0.shape)}")
    q, r = torch.linalg.qr(x0.transpose(-1, -2), mode="reduced")
    return r.transpose(-1, -2).contiguous(), q


def is_collapsed(x: torch.Tensor, tol: float = COLLAPSE_TOL) -> torch.Tensor:
    """The collapse criterion on embeddings x: (..., k, m) with unit rows -> bool (...): ||mean|| >= 1 - tol."""
    tol = check_tol(tol)
    return torch.linalg.vector_norm(x.mean(dim=-2), dim=-1) >= 1.0 - tol


# --------------------------------------------------------------------------------------------------
# finite-horizon estimate (growth factors of the update; used to read the measured thresholds)


def mean_growth_factor(k: int, eta: float) -> float:
    """|1 - c|, c = eta k/(k - 1 + eta): per-step factor of the mean along a direction the points do not span.

    Linearising the normalised step at a zero-mean configuration gives ``mu -> ((1 - c) I + c F) mu``
    with ``F = (1/k) sum_i x_i x_i^T`` (module docstring); a zero-mean configuration of k points has
    rank <= k - 1, so inside the k-dimensional span there is a direction with F-eigenvalue 0, where the
    factor is ``1 - c = (1 - eta)/(1 + eta/(k-1))``. Its modulus exceeds 1 iff eta > 2(k-1)/(k-2).
    """
    k = check_k("k", k)
    eta = check_positive("eta", eta)
    return abs(1.0 - eta * k / (k - 1 + eta))


def collapse_contraction_factor(k: int, eta: float) -> float:
    """(1 + eta/(k-1)) / |1 - eta|: per-step factor of the spread around a completely collapsed state.

    With x_i = u + d_i (d_i small), the step gives (1 - eta) u + (1 + eta/(k-1)) d_i - eta k/(k-1) dbar,
    so after renormalisation the deviations from the mean scale by this factor (< 1 iff
    eta > 2(k-1)/(k-2): the collapsed state attracts exactly when zero-mean configurations repel).
    """
    k = check_k("k", k)
    eta = check_positive("eta", eta)
    if eta == 1.0:
        return math.inf
    return (1.0 + eta / (k - 1)) / abs(1.0 - eta)


def collapse_steps_estimate(k: int, eta: float, *, m0: float, tol: float = COLLAPSE_TOL) -> float:
    """Two-phase estimate of the first step with ||mu|| >= 1 - tol, for eta above the threshold.

    Phase 1: the mean grows from ``m0`` (its initial norm) to O(1) at :func:`mean_growth_factor` per step;
    phase 2: the spread (1/k) sum ||x_i - mu||^2 = 1 - ||mu||^2 shrinks from O(1) at
    :func:`collapse_contraction_factor` per step until ``1 - ||mu|| <= tol`` (spread <= sqrt(2 tol)):

        T ~ ln(1/m0) / ln|1 - c| + ln(1/sqrt(2 tol)) / ln(1/rho).

    The nonlinear hand-over between the phases is not counted (a few per cent of T in practice).
    Returns inf where either factor does not favour collapse.
    """
    k = check_k("k", k)
    eta = check_positive("eta", eta)
    m0 = check_positive("m0", m0)
    tol = check_tol(tol)
    return _steps_estimate(k, eta, *_phase_logs(m0, tol))


def _phase_logs(m0: float, tol: float) -> tuple[float, float]:
    """The numerators of :func:`collapse_steps_estimate`: max(0, ln(1/m0)) and ln(1/sqrt(2 tol))."""
    return max(0.0, math.log(1.0 / m0)), math.log(1.0 / math.sqrt(2.0 * tol))


def _steps_estimate(k: int, eta: float, phase1: float, phase2: float) -> float:
    """:func:`collapse_steps_estimate` without the argument checks (the same operations, the same bits)."""
    g = abs(1.0 - eta * k / (k - 1 + eta))  # mean_growth_factor
    rho = math.inf if eta == 1.0 else (1.0 + eta / (k - 1)) / abs(1.0 - eta)  # collapse_contraction_factor
    if g <= 1.0 or rho >= 1.0:
        return math.inf
    return phase1 / math.log(g) + phase2 / math.log(1.0 / rho)


def fastest_collapse_steps(k: int, *, m0: float, tol: float = COLLAPSE_TOL) -> float:
    """Limit of :func:`collapse_steps_estimate` as eta -> infinity, its infimum over eta.

    The estimate decreases in eta (the growth factor |1 - c| rises to k - 1 and the contraction factor
    falls to 1/(k - 1)), so no eta collapses in fewer estimated steps than
    ``(max(0, ln(1/m0)) + ln(1/sqrt(2 tol))) / ln(k - 1)``: about 10 steps at k = 3 and 2 at k = 100
    (for the typical start, m0 ~ 1/sqrt(k)).
    """
    k = check_k("k", k)
    m0 = check_positive("m0", m0)
    tol = check_tol(tol)
    return (max(0.0, math.log(1.0 / m0)) + math.log(1.0 / math.sqrt(2.0 * tol))) / math.log(k - 1)


def finite_horizon_threshold(k: int, steps: int, *, m0: float, tol: float = COLLAPSE_TOL) -> float:
    """Smallest eta whose :func:`collapse_steps_estimate` is <= ``steps``: the threshold a ``steps``-step
    search is expected to measure (it lies above the infinite-horizon one, where both factors cross 1).

    Returns inf when no eta qualifies, i.e. when ``steps`` does not exceed :func:`fastest_collapse_steps`
    (the model predicts no collapse within so short a horizon at any learning rate). Just above that
    horizon the returned eta is finite but very large, far outside the regime near the critical rate
    where the two-phase model is accurate; callers compare it with the range they searched.
    """
    k = check_k("k", k)
    steps = check_size("steps", steps, 1)
    if steps <= fastest_collapse_steps(k, m0=m0, tol=tol):
        return math.inf
    logs = _phase_logs(check_positive("m0", m0), check_tol(tol))
    a = 2.0 * (k - 1) / (k - 2)  # where |1 - c| = 1 (and rho = 1): the estimate is infinite here
    b = a + 1.0
    while _steps_estimate(k, b, *logs) > steps:
        b = a + 2.0 * (b - a)
        if not b < 1e15:  # steps within round-off of the fastest collapse: no usable threshold
            return math.inf
    for _ in range(200):  # bisection; stops early once (a, b) no longer change (the rest would repeat them)
        mid = 0.5 * (a + b)
        if _steps_estimate(k, mid, *logs) > steps:
            if mid == a:
                break
            a = mid
        else:
            if mid == b:
                break
            b = mid
    return b
