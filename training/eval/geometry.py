"""Class geometry of embeddings, and the Appendix D theory bridge (CLOP paper, Sec. 3.2 and Appendix D).

Paper: "Preventing collapse in contrastive learning with orthonormal prototypes" (CLOP), arXiv 2403.18699.

* :func:`class_geometry` - held-out labeled embeddings z: (N, D) with labels y: (N,) -> a dict of floats:
  the norm of the mean unit embedding (Theorem 1's mu), and the geometry of the k unit class means
  c_1..c_k (norm of their sum: zero sum => rank <= k - 1, Sec. 3.2; rank; stable rank; pairwise cosines
  against -1/(k - 1), the simplex ETF, and 0, orthogonal; with prototypes, cosine to the own prototype).
  :func:`class_mean_shape` gives the singular-value ratios and |cosines| of a set of unit class means.
* :func:`fit_eta` - the effective Appendix D step between two snapshots of the class means: the eta for
  which c_i' = normalise(c_i - eta m_i), m_i = (1/(k-1)) sum_{j != i} c_j, fits best, with the fit's R^2.
  :func:`eta_table` does this per logged interval of a sequence of snapshots (rows for a CSV).
* :func:`critical_lr` - 2 (k - 1)/(k - 2), the critical rate of the Appendix D step (2.25 for k = 10).

The Appendix D step. Appendix D writes x_i^(1) = x_i - eta/(k-1) (k mu - x_i) = (1 + eta/(k-1)) x_i -
eta k/(k-1) mu, mu = (1/k) sum_j x_j (:func:`theory.theorem1_numerics.appendix_d_step`). Since
k mu - x_i = sum_{j != i} x_j = (k-1) m_i this is x_i - eta m_i: each class embedding moves by eta times
the negative mean of the others and is then renormalised. :func:`appendix_d_step` writes it that way.

Fitting eta (:func:`fit_eta`). The renormalisation is unknown, so the model reads s_i c_i' = c_i - eta m_i
with s_i = ||c_i - eta m_i|| > 0. Apply P_i = I - c_i' c_i'^T, the projector onto the complement of c_i'
(P_i c_i' = 0 removes s_i): P_i c_i = eta P_i m_i, linear in eta and exact under the model. Least squares
over the k stacked D-vectors (no intercept):

    eta_eff = sum_i <P_i c_i, P_i m_i> / sum_i ||P_i m_i||^2,
    R^2     = 1 - SSR / SST,  SSR = sum_i ||P_i c_i - eta_eff P_i m_i||^2,  SST = sum_i ||P_i c_i||^2.

||P_i c_i|| = sin(angle(c_i, c_i')), so SST is the perpendicular motion and R^2 = 1 means all of it is
explained. As eta = 0 is a candidate, SSR <= SST: R^2 is in [0, 1] (the squared cosine between the
stacked P_i c_i and P_i m_i), never negative; an unrelated change gives R^2 ~ 0 (~ 1/D for random
directions in R^D). Two blind spots of the projection, both reported:

* the pole. P_i removes the sign of s_i and its size, so eta = 1/<c_i, m_i>, where c_i - eta m_i would
  be ~0 (0/0 direction), fits ANY motion when m_i is parallel to c_i for every i with one ratio. That is
  the case for class means that sum to zero (m_i = -c_i/(k - 1), pole eta = -(k - 1)): exactly the
  configuration that InfoNCE / SupCon reach (Sec. 3.2), where the Appendix D step predicts no motion at
  all; and for collapsed means (m_i = c_i, pole eta = 1). Near such configurations the fit is drawn
  towards the pole (s_min ~ ||sum_i c_i|| for near-zero-sum means). Hence
  ``s_min`` = min_i ||c_i - eta_eff m_i|| (near 0: spurious fit). The fit of the normalised steps
  themselves (``eta_step`` below) has no pole: it compares c_i' with the step's prediction, sign and all,
  and its ``r2_step`` says how much of the motion the fitted steps explain. Trust eta_eff when r2 and
  r2_step are both near 1.
* no motion. When SST <= k rtol^2 (every class mean turned by at most rtol radians, rtol below) the
  change is round-off: eta_eff, r2 and the rest are NaN. Likewise when sum_i ||P_i m_i||^2 <= k rtol^2:
  every c_i' lies along m_i, the limit eta -> -inf, and no finite eta is determined.

Many optimiser steps per logged interval. n steps of a small eta compound to ~one step of n eta (to first
order in eta, while m_i barely changes), so eta_eff is per interval and ``steps`` is reported for the
caller to divide. ``eta_step`` is the exact alternative: the per-step eta for which n repeated Appendix D
steps fit best, by nonlinear least squares on c_next - step^n(c, eta) (:func:`fit_steps`):

* it starts from the best point of a fixed grid of etas (:data:`ETA_GRID`, -10 ... 100) and refines the
  best two local minima of the grid by Gauss-Newton. A start from eta_eff / n can land in the basin of
  another minimum: with an even n near collapse, steps of eta and of eta' with
  (1 + eta'/(k-1))/(1 - eta') = -(1 + eta/(k-1))/(1 - eta) give the same n-step map (for k = 10, eta = 3 and
  eta' = -0.43), and the data cannot tell them apart. When the runner-up minimum fits within
  :data:`ALIAS_CHI2` residual variances of the best, the interval does not determine eta: eta_step is NaN.
* its standard error ``eta_step_se`` = sqrt(s^2 / h): s^2 = SSR / (k (D - 1) - 1), the residual variance
  per tangent dimension, h = ||d step^n / d eta||^2 the Gauss-Newton curvature.
* ``r2_step`` is the R^2 of the fitted n-step map against "no change": 1 - ||c_next - step^n(c, eta_step)||^2
  / ||c_next - c||^2 (can be < 0).

One interval's estimate is noisy, and near a fixed point of the step (zero-sum means, where every eta
predicts no motion) or at collapse its apparent precision is noise: a fit of independent noise in c and
c_next finds the eta that damps the noise of c (eta ~ 1), with a small SE. The maximum of such estimates
over a run grows with the number of intervals. :func:`pooled_eta` combines the intervals of a run instead:
the inverse-variance weighted mean of eta_step over the intervals whose n-step fit explains at least
:data:`MIN_R2_STEP` of the motion (stationary intervals explain ~0 of their noise), with its standard
error. On noisy Appendix D trajectories (tests/training/eval/test_geometry.py) it is within a few per cent
of the true eta, where the maximum over intervals and the mean of the per-interval estimates are not.

Conventions: inputs are torch tensors (any device, real dtype; detached) or numpy arrays; everything is
computed in float64 (on the CPU for MPS input). Round-off tolerances follow :func:`clop.metrics.default_rtol`:
rtol = 10 eps(input dtype) + max(rows, D) eps(float64). Class means computed in float64 from lower-precision
embeddings carry that precision: pass ``rtol=default_rtol(N, D, eps of the embeddings)`` to the fits then.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from clop.metrics import default_rtol
from clop.util.checks import check_nonnegative, check_size

__all__ = [
    "GEOMETRY_KEYS",
    "FIT_KEYS",
    "TABLE_KEYS",
    "critical_lr",
    "unit_class_means",
    "class_geometry",
    "class_mean_shape",
    "appendix_d_step",
    "fit_eta",
    "fit_steps",
    "eta_table",
    "pooled_eta",
    "ETA_GRID",
    "ALIAS_CHI2",
    "MIN_R2_STEP",
]

NAN = float("nan")

#: keys of :func:`class_geometry` (CSV columns), see its docstring
GEOMETRY_KEYS = (
    "mu_norm", "classes_missing", "class_sum_norm", "class_mean_norm", "class_rank", "class_stable_rank",
    "class_cos_mean", "class_cos_std", "class_cos_gap_etf", "class_cos_gap_orth", "class_proto_cos",
)
#: keys of :func:`fit_eta`
FIT_KEYS = ("eta_eff", "eta_step", "steps", "r2", "r2_step", "sst", "ssr", "s_min", "eta_step_se")
#: keys of :func:`eta_table` rows
TABLE_KEYS = ("interval", *FIT_KEYS, "mu_norm_before", "mu_norm_after", "eta_crit")

ETA_GRID = tuple(sorted({0.0, *(-(10.0 ** (e / 10)) for e in range(-20, 11)), *(10.0 ** (e / 10) for e in range(-20, 21))}))
"""Per-step etas tried before the nonlinear fit of eta_step: 0 and +-10^(j/10) from 0.01 to 10 (negative) and
to 100 (positive), 73 values, 26 % apart."""
ALIAS_CHI2 = 6.63
"""A second minimum of the n-step fit whose residual exceeds the best one's by less than this many residual
variances (the 99 % point of chi^2 with 1 degree of freedom) makes eta_step undetermined (NaN)."""
MIN_R2_STEP = 0.5
"""Intervals whose n-step fit explains less of the motion than this are left out of :func:`pooled_eta`."""


# --------------------------------------------------------------------------------------------------
# input handling


def _as_f64(x: Any, name: str, shape: str, allow_nan: bool = False) -> tuple[torch.Tensor, float]:
    """(x as a 2-D float64 tensor, machine epsilon of x's dtype); ValueError naming ``name`` otherwise."""
    if isinstance(x, torch.Tensor):
        t = x.detach()
    else:
        arr = np.asarray(x)
        if arr.dtype.kind not in "biuf":
            raise ValueError(f"{name} must be a real tensor or array of shape {shape}; got dtype {arr.dtype}")
        t = torch.from_numpy(np.ascontiguousarray(arr))
    if t.is_complex() or t.dtype == torch.bool:
        raise ValueError(f"{name} must hold real numbers of shape {shape}; got dtype {t.dtype}")
    if t.dim() != 2 or t.shape[0] < 1 or t.shape[1] < 1:
        raise ValueError(f"{name} must be a non-empty 2-D array of shape {shape}; got shape {tuple(t.shape)}")
    eps = torch.finfo(t.dtype).eps if t.dtype.is_floating_point else torch.finfo(torch.float64).eps
    if t.device.type == "mps":  # no float64 on MPS
        t = t.cpu()
    t = t.to(torch.float64)
    bad = torch.isinf(t) if allow_nan else ~torch.isfinite(t)
    if bool(bad.any()):
        raise ValueError(f"{name} must be finite{' (NaN rows mark missing classes)' if allow_nan else ''}; it holds inf/NaN")
    return t, eps


def _labels(y: Any, n: int, k: int | None) -> tuple[torch.Tensor, int]:
    """y as int64 (N,) with values in [0, k); k inferred as max(y) + 1 when None."""
    t = y.detach().cpu() if isinstance(y, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(np.asarray(y)))
    if t.dtype.is_floating_point or t.is_complex() or t.dtype == torch.bool:
        raise ValueError(f"y must be integer class labels of shape (N,); got dtype {t.dtype}")
    if t.dim() != 1 or t.shape[0] != n:
        raise ValueError(f"y must have shape (N,) = ({n},) to match z; got shape {tuple(t.shape)}")
    t = t.to(torch.int64)
    lo, hi = int(t.min()), int(t.max())
    k = hi + 1 if k is None else check_size("k", k, minimum=2)
    if k < 2:
        raise ValueError(f"k must be an integer >= 2 (classes); got k={k}")
    if lo < 0 or hi >= k:
        raise ValueError(f"y must hold labels in 0..k-1 = 0..{k - 1}; got range [{lo}, {hi}]")
    return t, k


def _unit_rows(x: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit norm (divided by their largest entry first: no over/underflow); zero rows stay zero."""
    m = x.abs().amax(dim=1, keepdim=True)
    x = x / torch.where(m > 0, m, torch.ones_like(m))
    n = torch.linalg.vector_norm(x, dim=1, keepdim=True)
    return x / torch.where(n > 0, n, torch.ones_like(n))


def _rtol(rtol: float | None, rows: int, d: int, eps: float) -> float:
    return default_rtol(rows, d, eps) if rtol is None else check_nonnegative("rtol", rtol)


# --------------------------------------------------------------------------------------------------
# class geometry


def critical_lr(k: int) -> float:
    """2 (k - 1)/(k - 2): the exact critical rate of the Appendix D step, k >= 3 (2.25 for k = 10).

    Derived symbolically in :func:`theory.theorem1.critical_lr` (the eta at which the mean's factor at a
    zero-mean configuration reaches -1); written out here so that training does not import sympy.
    """
    k = check_size("k", k, minimum=3)
    return 2.0 * (k - 1) / (k - 2)


def unit_class_means(z: Any, y: Any, *, k: int | None = None, rtol: float | None = None) -> torch.Tensor:
    """The k unit class means of z: (N, D), labels y: (N,) in 0..k-1 -> C: (k, D) float64.

    c_i = normalise(mean of the unit rows of z with label i). Zero rows of z stay zero (no direction) and
    still count in their class. A class that is ABSENT from y, or whose mean has norm <= rtol (the unit
    embeddings cancel to round-off; default :func:`clop.metrics.default_rtol` (N, D, eps of z's dtype)),
    has no direction: its row is NaN. ``k`` defaults to max(y) + 1.
    """
    zt, eps = _as_f64(z, "z", "(N, D)")
    lab, k = _labels(y, zt.shape[0], k)
    tol = _rtol(rtol, zt.shape[0], zt.shape[1], eps)
    return _class_means(_unit_rows(zt), lab.to(zt.device), k, tol)


def _class_means(u: torch.Tensor, lab: torch.Tensor, k: int, tol: float) -> torch.Tensor:
    sums = torch.zeros(k, u.shape[1], dtype=u.dtype, device=u.device).index_add_(0, lab, u)
    counts = torch.bincount(lab, minlength=k).to(u.dtype)
    means = sums / counts.clamp_min(1.0)[:, None]
    norms = torch.linalg.vector_norm(means, dim=1)
    ok = (counts > 0) & (norms > tol)
    return torch.where(ok[:, None], means / torch.where(ok, norms, torch.ones_like(norms))[:, None], NAN)


def class_geometry(
    z: Any, y: Any, *, k: int | None = None, prototypes: Any = None, rtol: float | None = None
) -> dict[str, float]:
    """Class geometry of held-out labeled embeddings z: (N, D), y: (N,) in 0..k-1; dict of floats.

    ``k`` defaults to the number of prototypes, else max(y) + 1. ``prototypes``: (k, D), row i the
    prototype of class i (CLOP, Sec. 4), any non-zero scale. ``rtol``: the round-off cut (module doc).
    With c_1..c_k the unit class means (:func:`unit_class_means`) the keys are:

    * ``mu_norm``            ||mean of the unit rows of z||: Theorem 1's mu; 1 = complete collapse.
    * ``classes_missing``    classes absent from y or with a zero mean. When > 0 every key below is NaN
                             (they are statistics of k points; k - 1 points would change their reference
                             values, e.g. -1/(k - 1)).
    * ``class_sum_norm``     ||sum_i c_i||: 0 for a simplex ETF (=> rank <= k - 1, Sec. 3.2), sqrt(k)
                             for orthonormal means, k at collapse. ``class_mean_norm`` = that / k.
    * ``class_rank``         numerical rank of C: (k, D): singular values > rtol * s_max count.
    * ``class_stable_rank``  (sum s^2)^2 / sum s^4 = (tr M)^2/||M||_F^2 of the UNCENTRED second moment
                             M = C^T C / k (clop.metrics' definition, uncentred: centring would give k - 1
                             for orthonormal means too). k - 1 for an ETF, k orthonormal, 1 collapsed.
    * ``class_cos_mean``, ``class_cos_std``  mean and population std (ddof 0) of the k(k-1)/2 cosines
                             c_i . c_j, i < j. mean = (||sum c||^2 - k)/(k(k-1)).
    * ``class_cos_gap_etf``  |cos_mean + 1/(k-1)|, distance from the simplex ETF (= ||sum c||^2/(k(k-1))).
    * ``class_cos_gap_orth`` |cos_mean|, distance from orthogonal means.
    * ``class_proto_cos``    mean over i of cos(c_i, prototype_i); NaN without prototypes.
    """
    zt, eps = _as_f64(z, "z", "(N, D)")
    n, d = zt.shape
    protos = None
    if prototypes is not None:
        protos, _ = _as_f64(prototypes, "prototypes", "(k, D)")
        if protos.shape[1] != d or (k is not None and protos.shape[0] != k):
            raise ValueError(f"prototypes must have shape (k, D) = ({k if k is not None else 'k'}, {d}); got {tuple(protos.shape)}")
        if bool((protos.abs().amax(dim=1) == 0).any()):
            raise ValueError("prototypes must have non-zero rows (each is a direction); got a zero row")
        k = protos.shape[0]
    lab, k = _labels(y, n, k)
    tol = _rtol(rtol, n, d, eps)
    u = _unit_rows(zt)
    out = dict.fromkeys(GEOMETRY_KEYS, NAN)
    out["mu_norm"] = float(torch.linalg.vector_norm(u.mean(dim=0)))
    c = _class_means(u, lab.to(u.device), k, tol)
    missing = int(torch.isnan(c[:, 0]).sum())
    out["classes_missing"] = float(missing)
    if missing:
        return out
    total = float(torch.linalg.vector_norm(c.sum(dim=0)))
    s = torch.linalg.svdvals(c)
    s = torch.where(s > tol * s[0], s, torch.zeros_like(s))
    s2 = (s / s[0]) ** 2
    iu = torch.triu_indices(k, k, offset=1, device=c.device)
    cos = (c @ c.T)[iu[0], iu[1]]
    cos_mean = float(cos.mean())
    out.update(
        class_sum_norm=total,
        class_mean_norm=total / k,
        class_rank=float((s > 0).sum()),
        class_stable_rank=float(s2.sum() ** 2 / (s2 * s2).sum()),
        class_cos_mean=cos_mean,
        class_cos_std=float(cos.std(unbiased=False)),
        class_cos_gap_etf=abs(cos_mean + 1.0 / (k - 1)),
        class_cos_gap_orth=abs(cos_mean),
    )
    if protos is not None:
        out["class_proto_cos"] = float((c * _unit_rows(protos.to(c.device))).sum(dim=1).mean())
    return out


def class_mean_shape(c: Any) -> dict[str, float]:
    """The shape of k unit class means c: (k, D) (rows normalised here; NaN rows give NaN): how close they are
    to the zero-mean subspace of rank k - 1 of Sec. 3.2, and how far from orthogonal. Keys:

    * ``sum_norm``      ||sum_i c_i||: 0 when they sum to zero, sqrt(k) orthonormal, k collapsed.
    * ``sv_min_ratio``  s_k / s_1, the smallest singular value of C over the largest: 0 at rank k - 1 or
                        less, 1 for orthonormal means.
    * ``sv_next_ratio`` s_(k-1) / s_1: away from 0 when the rank is not below k - 1.
    * ``cos_mean``, ``cos_std``  mean and population std of the k(k-1)/2 cosines c_i . c_j, i < j (-1/(k-1)
                        for a simplex ETF with std 0; a zero-sum set whose similarities vary has std > 0).
    * ``abs_cos_mean``  mean of |c_i . c_j|: 0 only when every pair is orthogonal.
    """
    t, _ = _as_f64(c, "c", "(k, D)", allow_nan=True)
    k = t.shape[0]
    if k < 2:
        raise ValueError(f"c must hold k >= 2 class means (rows); got shape {tuple(t.shape)}")
    keys = ("sum_norm", "sv_min_ratio", "sv_next_ratio", "cos_mean", "cos_std", "abs_cos_mean")
    if bool(torch.isnan(t).any()) or bool((t.abs().amax(dim=1) == 0).any()):
        return dict.fromkeys(keys, NAN)
    u = _unit_rows(t)
    s = torch.linalg.svdvals(u)
    s = torch.cat([s, torch.zeros(max(0, k - s.numel()), dtype=s.dtype, device=s.device)])  # D < k: zeros
    iu = torch.triu_indices(k, k, offset=1, device=u.device)
    cos = (u @ u.T)[iu[0], iu[1]]
    return {"sum_norm": float(torch.linalg.vector_norm(u.sum(dim=0))), "sv_min_ratio": float(s[k - 1] / s[0]),
            "sv_next_ratio": float(s[k - 2] / s[0]), "cos_mean": float(cos.mean()),
            "cos_std": float(cos.std(unbiased=False)), "abs_cos_mean": float(cos.abs().mean())}


# --------------------------------------------------------------------------------------------------
# the theory bridge: the Appendix D step


def appendix_d_step(c: torch.Tensor, eta: float | torch.Tensor) -> torch.Tensor:
    """One Appendix D step on unit rows c: (k, D): c_i' = normalise(c_i - eta m_i), m_i = mean_{j != i} c_j.

    Same update as Appendix D's x_i - eta/(k-1) (k mu - x_i) (module doc). A zero pre-image row maps to
    zero. float64 in, float64 out; differentiable in eta.
    """
    k = c.shape[0]
    m = (c.sum(dim=0, keepdim=True) - c) / (k - 1)
    v = c - eta * m
    n = torch.linalg.vector_norm(v, dim=1, keepdim=True)
    return v / torch.where(n > 0, n, torch.ones_like(n))


def _steps_with_tangent(c: torch.Tensor, eta: float, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """x = step^steps(c, eta) and dx/d(eta), by forward-mode differentiation written out.

    Per step, v = x - eta m, f = v/||v||: dv = dx - eta dm - m (dm = (sum dx - dx)/(k-1)), and
    df = (I - f f^T) dv / ||v||.
    """
    k = c.shape[0]
    x, dx = c, torch.zeros_like(c)
    for _ in range(steps):
        m = (x.sum(dim=0, keepdim=True) - x) / (k - 1)
        dm = (dx.sum(dim=0, keepdim=True) - dx) / (k - 1)
        v, dv = x - eta * m, dx - eta * dm - m
        n = torch.linalg.vector_norm(v, dim=1, keepdim=True)
        x = v / n
        dx = (dv - (x * dv).sum(dim=1, keepdim=True) * x) / n
    return x, dx


def _compound_fit(c: torch.Tensor, c_next: torch.Tensor, steps: int, eta0: float) -> float:
    """Per-step eta minimising ||c_next - step^steps(c, eta)||_F^2: damped Gauss-Newton from eta0; NaN if stuck."""
    eta = eta0
    for _ in range(100):
        f, jac = _steps_with_tangent(c, eta, steps)
        r = c_next - f
        jj = float((jac * jac).sum())
        if not math.isfinite(jj) or jj == 0.0:
            return NAN
        delta = float((jac * r).sum()) / jj
        if abs(delta) <= 1e-13 * max(1.0, abs(eta)):
            return eta
        loss = float((r * r).sum())
        for _ in range(40):  # backtracking: halve the step until the residual decreases
            rt = c_next - _steps_with_tangent(c, eta + delta, steps)[0]
            if float((rt * rt).sum()) < loss:
                eta += delta
                break
            delta /= 2.0
        else:
            return eta  # no decrease possible: at the minimum to working precision
    return NAN


def _grid_losses(a: torch.Tensor, b: torch.Tensor, steps: int, etas: torch.Tensor) -> torch.Tensor:
    """||b - step^steps(a, eta)||_F^2 for every eta of ``etas`` (batched in chunks of at most 2^22 numbers)."""
    k = a.shape[0]
    chunk = max(1, (1 << 22) // a.numel())
    out = []
    for part in etas.split(chunk):
        x = a.expand(len(part), *a.shape)
        e = part[:, None, None]
        for _ in range(steps):
            v = x - e * (x.sum(dim=1, keepdim=True) - x) / (k - 1)
            n = torch.linalg.vector_norm(v, dim=2, keepdim=True)
            x = v / torch.where(n > 0, n, torch.ones_like(n))
        out.append(((b - x) ** 2).sum(dim=(1, 2)))
    return torch.cat(out)


def fit_steps(c: torch.Tensor, c_next: torch.Tensor, steps: int) -> dict[str, float]:
    """The per-step eta of ``steps`` Appendix D steps from unit rows c: (k, D) to unit rows c_next: (k, D).

    Least squares on c_next - step^steps(c, eta): the losses on :data:`ETA_GRID`, Gauss-Newton from the
    best two local minima of the grid; NaN when the runner-up fits within :data:`ALIAS_CHI2` residual
    variances of the best (module docstring; ``r2_step`` is then still that of the best). Returns
    ``eta_step``, ``eta_step_se`` and ``r2_step``.
    float64 tensors in (on any device).
    """
    nan = {"eta_step": NAN, "eta_step_se": NAN, "r2_step": NAN}
    k, d = c.shape
    grid = torch.tensor(ETA_GRID, dtype=c.dtype, device=c.device)
    loss = _grid_losses(c, c_next, steps, grid)
    inner = (loss[1:-1] <= loss[:-2]) & (loss[1:-1] <= loss[2:])
    minima = [i + 1 for i in torch.nonzero(inner).flatten().tolist()]
    minima += [i for i in (0, len(grid) - 1) if not minima or loss[i] < loss[minima].min()]
    minima = sorted(minima, key=lambda i: float(loss[i]))[:2]
    fits = []
    for i in minima:
        eta = _compound_fit(c, c_next, steps, float(grid[i]))
        if math.isfinite(eta) and abs(eta) <= 10 * ETA_GRID[-1]:  # else drifting to eta -> inf: no minimum
            x = _steps_with_tangent(c, eta, steps)[0]
            fits.append((float(((c_next - x) ** 2).sum()), eta))
    if not fits:  # no finite minimum: the best eta of the grid says how little the steps explain
        return {**nan, "r2_step": 1.0 - float(loss.min()) / float(((c_next - c) ** 2).sum())}
    fits.sort()
    ssr, eta = fits[0]
    dof = max(1, k * (d - 1) - 1)
    s2 = ssr / dof
    r2 = 1.0 - ssr / float(((c_next - c) ** 2).sum())
    if len(fits) > 1 and abs(fits[1][1] - eta) > 1e-6 * (1.0 + abs(eta)) and fits[1][0] - ssr < ALIAS_CHI2 * s2:
        return {**nan, "r2_step": r2}  # two etas explain the motion equally well
    dx = _steps_with_tangent(c, eta, steps)[1]
    h = float((dx * dx).sum())
    return {"eta_step": eta, "eta_step_se": math.sqrt(s2 / h) if h > 0 else math.inf, "r2_step": r2}


def fit_eta(c: Any, c_next: Any, *, steps: int = 1, rtol: float | None = None) -> dict[str, float]:
    """Fit the Appendix D step to the change of the unit class means from c: (k, D) to c_next: (k, D).

    Rows are normalised first (they need not be exactly unit); a NaN row (a missing class, see
    :func:`unit_class_means`) or zero row makes every result NaN. ``steps``: optimiser steps in the
    interval (>= 1). ``rtol``: per-class angle below which motion is round-off; default
    :func:`clop.metrics.default_rtol` (k, D, eps of the inputs' dtype). Keys (module doc for the derivation):

    * ``eta_eff``  projected least-squares eta of ONE Appendix D step for the whole interval.
    * ``eta_step`` per-step eta: ``steps`` repeated steps fitted by nonlinear least squares from the best
                   of a grid (:func:`fit_steps`; = eta_eff on exact one-step data; ~ eta_eff/steps for
                   small steps, to first order only); NaN when two etas fit equally well.
    * ``eta_step_se`` its standard error from the residual variance and the fit's curvature.
    * ``steps``    as given (float), for the caller to divide eta_eff by.
    * ``r2``       1 - SSR/SST of the projected fit, in [0, 1]; ``sst`` = sum_i sin^2 angle(c_i, c_i'),
                   ``ssr`` its residual sum of squares.
    * ``r2_step``  R^2 of the ``steps`` fitted steps at eta_step against "no change" (can be < 0).
    * ``s_min``    min_i ||c_i - eta_eff m_i||; ~0 flags the pole (spurious fit of zero-sum means).

    When sst <= k rtol^2 (no measurable motion) or sum_i ||P_i m_i||^2 <= k rtol^2 (c_i' along m_i for
    every i: eta -> -inf) every key but ``steps`` and ``sst`` is NaN. ``eta_step`` (with ``eta_step_se``
    and ``r2_step``) is also NaN when Gauss-Newton finds no finite minimiser within 100 iterations or the
    interval does not determine it (:func:`fit_steps`).
    """
    a, eps_a = _as_f64(c, "c", "(k, D)", allow_nan=True)
    b, eps_b = _as_f64(c_next, "c_next", "(k, D)", allow_nan=True)
    if a.shape != b.shape:
        raise ValueError(f"c and c_next must have the same shape (k, D); got {tuple(a.shape)} and {tuple(b.shape)}")
    k, d = a.shape
    if k < 2:
        raise ValueError(f"c must hold k >= 2 class means (rows); got shape {tuple(a.shape)}")
    steps = check_size("steps", steps)
    tol = _rtol(rtol, k, d, max(eps_a, eps_b))
    out = dict.fromkeys(FIT_KEYS, NAN)
    out["steps"] = float(steps)
    b = b.to(a.device)
    if bool(torch.isnan(a).any() | torch.isnan(b).any()):
        return out
    a, b = _unit_rows(a), _unit_rows(b)
    if bool(((a * a).sum(dim=1) == 0).any() | ((b * b).sum(dim=1) == 0).any()):
        return out
    m = (a.sum(dim=0, keepdim=True) - a) / (k - 1)
    pc = a - (a * b).sum(dim=1, keepdim=True) * b  # P_i c_i
    pm = m - (m * b).sum(dim=1, keepdim=True) * b  # P_i m_i
    sst, sxx = float((pc * pc).sum()), float((pm * pm).sum())
    out["sst"] = sst
    floor = k * tol * tol
    if sst <= floor or sxx <= floor:
        return out
    eta = float((pc * pm).sum()) / sxx
    res = pc - eta * pm
    ssr = float((res * res).sum())
    out.update(eta_eff=eta, r2=1.0 - ssr / sst, ssr=ssr,
               s_min=float(torch.linalg.vector_norm(a - eta * m, dim=1).min()))
    out.update(fit_steps(a, b, steps))
    return out


def eta_table(
    snapshots: Sequence[Any] | Any, *, steps: int | Sequence[int] = 1, rtol: float | None = None
) -> list[dict[str, float]]:
    """Per-interval Appendix D fits for class-mean snapshots c_0..c_T, each (k, D) (or one (T+1, k, D) array).

    ``steps``: optimiser steps per interval, one int for all or T of them. Returns T dicts (rows of a
    CSV) with keys :data:`TABLE_KEYS`: ``interval`` (t, for c_t -> c_{t+1}), the :func:`fit_eta` keys,
    ``mu_norm_before`` / ``mu_norm_after`` = ||(1/k) sum_i c_i|| at t and t + 1 (Theorem 1's mu of the
    class embeddings; NaN with a missing class) and ``eta_crit`` = :func:`critical_lr` (k) (NaN for k < 3).
    """
    snaps = list(snapshots)
    if len(snaps) < 2:
        raise ValueError(f"snapshots must hold at least 2 class-mean matrices (k, D); got {len(snaps)}")
    per = [steps] * (len(snaps) - 1) if isinstance(steps, (int, np.integer)) and not isinstance(steps, bool) else list(steps)
    if len(per) != len(snaps) - 1:
        raise ValueError(f"steps must be one integer or one per interval ({len(snaps) - 1}); got {len(per)}")
    mats = [_as_f64(s, f"snapshots[{t}]", "(k, D)", allow_nan=True)[0] for t, s in enumerate(snaps)]
    k = mats[0].shape[0]
    crit = critical_lr(k) if k >= 3 else NAN

    def mu(x):
        return float(torch.linalg.vector_norm(_unit_rows(x).mean(dim=0)))  # NaN rows propagate

    rows = []
    for t in range(len(mats) - 1):
        fit = fit_eta(snaps[t], snaps[t + 1], steps=per[t], rtol=rtol)  # original dtypes: their eps
        rows.append({"interval": float(t), **fit, "mu_norm_before": mu(mats[t]), "mu_norm_after": mu(mats[t + 1]), "eta_crit": crit})
    return rows


def pooled_eta(eta_step: Any, eta_step_se: Any, r2_step: Any, *, min_r2: float = MIN_R2_STEP) -> tuple[float, float, int]:
    """One per-step eta for a set of intervals (e.g. a run's): the inverse-variance weighted mean of the
    finite ``eta_step`` whose ``r2_step`` >= ``min_r2`` and whose ``eta_step_se`` is finite and > 0.

    Inputs: equal-length sequences (rows of :func:`eta_table` or geometry.csv). Returns (eta, its standard
    error, intervals used); (NaN, NaN, 0) when none qualifies. The module docstring says why not a maximum.
    """
    e, s, r = (np.asarray(x, dtype=np.float64).reshape(-1) for x in (eta_step, eta_step_se, r2_step))
    if not (e.shape == s.shape == r.shape):
        raise ValueError(f"eta_step, eta_step_se and r2_step must have the same length; got {e.size}, {s.size}, {r.size}")
    ok = np.isfinite(e) & np.isfinite(s) & (s > 0) & np.isfinite(r) & (r >= min_r2)
    if not ok.any():
        return NAN, NAN, 0
    w = 1.0 / s[ok] ** 2
    return float((w * e[ok]).sum() / w.sum()), float(1.0 / math.sqrt(w.sum())), int(ok.sum())
