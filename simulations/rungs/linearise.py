"""Numerical linearisation of the normalised step of rung 1 at its fixed points (float64, autograd).

For unit views ``z: (P, D)`` at a fixed point of z <- normalise(z - lr dL/dz) every gradient is radial,
g_a = -c_a z_a, and on the tangent space the Jacobian of the update is ``J = (I + lr C)^-1 (I - lr H_T)``
(:mod:`theory.linearisation`, where the closed forms live). This module computes ``H_T`` (the Euclidean
Hessian of the loss projected on the tangent space, from ``torch.func.hessian``) and ``c`` at any
configuration, and from them:

* :func:`critical_step`: the lr at which an eigenvalue of J leaves the unit circle through -1,
  2 / lambda_max(H_T - C), and the textbook 2 / lambda_max(H_T + C) of the Riemannian Hessian;
* :func:`attraction_step`: for a fixed point that is not a minimum (complete collapse), the smallest lr above
  which every eigenvalue of J except the symmetry modes (rigid rotations, eigenvalue exactly 1) lies inside
  the closed unit circle (flat directions of a degenerate fixed point, with factor exactly 1, are allowed), i.e. the step at which the state starts to attract (inf: never up to ``lr_max``);
* :func:`fixed_point`: the configuration a small step converges to, by L-BFGS on L(normalise(w)) from the
  trial's start (the stationary points of that function are the fixed points of the normalised step);
* :func:`fixed_point_kind`: any configuration as a fixed point: its tangent gradient (stationary?), the
  extreme eigenvalues of the Riemannian Hessian off the symmetry modes (a minimum, saddle or maximum), and where
  it starts to attract; :func:`lemma1` applies it to complete collapse (all views equal),
  :func:`class_collapse` builds the class-collapsed simplex (the failure mode "class collapse" of the
  instance-level losses);
* :func:`path_critical_step`: the smallest local critical step 2 / lambda_max(H_T - C) along the path a small
  step takes from the trial's start (a diagnostic: where the step first becomes locally unstable on the way);
* :func:`minibatch_prediction`: for B < N, the critical step of the batch as a problem of its own, the
  spread over sampled batches of 2 / lambda_max of the batch loss's Hessian at the full-batch optimum, and the
  lr at which the expected Jacobian E_S[J_S] (averaged over sampled batches S) gets an eigenvalue below -1.

Sizes: the full Hessian has (P D)^2 entries; :data:`MAX_PARAMETERS` bounds P D (50 MB of Hessian).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch
from torch.func import hessian

from simulations.rungs.free import batch_indices, initial_views
from simulations.rungs.problem import Problem, loss_function

__all__ = [
    "MAX_PARAMETERS", "TangentModel", "tangent_model", "critical_step", "attraction_step", "FixedPoint",
    "fixed_point", "simplex_configuration", "fixed_point_kind", "lemma1", "class_collapse", "minibatch_prediction",
    "path_critical_step",
]

MAX_PARAMETERS = 2500
_NEUTRAL = 1.0 + 1e-9  # |eigenvalue| up to this counts as not expanding: the flat directions of a degenerate
# minimum (L_class's zero-mean configurations) have factor exactly 1 and do not make it repel


@dataclasses.dataclass
class TangentModel:
    """H_T (M, M) and C (M,) in an orthonormal tangent basis ``basis`` (P D, M); ``orbit`` (M, r): an
    orthonormal basis of the rotation (symmetry) directions in the same coordinates; ``grad_tangent``: norm of
    the tangent gradient (0 at a fixed point); ``c``: (P,) radial coefficients."""

    h_t: torch.Tensor
    c_diag: torch.Tensor
    basis: torch.Tensor
    orbit: torch.Tensor
    grad_tangent: float
    c: torch.Tensor


def _flat_loss(problem: Problem, labels: torch.Tensor, shape: tuple[int, ...]):
    f = loss_function(problem)

    def flat(x: torch.Tensor) -> torch.Tensor:
        return f(x.reshape(shape), labels)

    return flat


def tangent_model(problem: Problem, z: torch.Tensor, labels: torch.Tensor | None = None) -> TangentModel:
    """The tangent model of ``problem``'s loss at views ``z: (2, B, D)`` (unit rows) with ``labels: (B,)``."""
    z = z.to(torch.float64)
    labels = problem.labels() if labels is None else labels
    p_count, dim = z.shape[0] * z.shape[1], z.shape[-1]
    if p_count * dim > MAX_PARAMETERS:
        raise ValueError(f"the numerical Hessian needs P D <= {MAX_PARAMETERS}; got P D = {p_count * dim} "
                         f"({problem.label()}); use the closed forms of theory.linearisation")
    flat = _flat_loss(problem, labels, tuple(z.shape))
    x = z.reshape(-1).clone()
    flat(x)  # fill any cache of the loss outside the transforms
    g = torch.func.grad(flat)(x).reshape(p_count, dim)
    hmat = hessian(flat)(x)
    zr = z.reshape(p_count, dim)
    c = -(g * zr).sum(-1)
    # orthonormal tangent basis per row: the last D - 1 left singular vectors of I - z z^T
    blocks = []
    for a in range(p_count):
        u, _, _ = torch.linalg.svd(torch.eye(dim, dtype=torch.float64) - torch.outer(zr[a], zr[a]))
        blocks.append(u[:, : dim - 1])
    basis = torch.block_diag(*blocks)
    h_t = basis.T @ hmat @ basis
    h_t = 0.5 * (h_t + h_t.T)
    c_diag = c.repeat_interleave(dim - 1)
    gt = g - (g * zr).sum(-1, keepdim=True) * zr
    gens = []
    for i in range(dim):
        for j in range(i + 1, dim):
            a = torch.zeros(dim, dim, dtype=torch.float64)
            a[i, j], a[j, i] = 1.0, -1.0
            gens.append((zr @ a.T).reshape(-1))
    gen = basis.T @ torch.stack(gens, dim=1)
    u, s, _ = torch.linalg.svd(gen, full_matrices=False)
    orbit = u[:, s > 1e-9 * max(float(s.max()), 1e-300)]
    return TangentModel(h_t, c_diag, basis, orbit, float(torch.linalg.vector_norm(gt)), c)


def critical_step(model: TangentModel) -> dict[str, float]:
    """{'critical': 2/lambda_max(H_T - C), 'textbook': 2/lambda_max(H_T + C), 'top': lambda_max(H_T - C),
    'hess_min': smallest eigenvalue of H_T + C off the symmetry modes}; inf where lambda_max <= 0."""
    lam = torch.linalg.eigvalsh(model.h_t - torch.diag(model.c_diag))
    riem = model.h_t + torch.diag(model.c_diag)
    top_r = float(torch.linalg.eigvalsh(riem)[-1])
    q = _orbit_complement(model)
    off = torch.linalg.eigvalsh(q.T @ riem @ q) if q.shape[1] else torch.zeros(1, dtype=torch.float64)
    top = float(lam[-1])
    return {"critical": 2.0 / top if top > 0 else math.inf, "textbook": 2.0 / top_r if top_r > 0 else math.inf,
            "top": top, "hess_min": float(off[0]), "hess_max": float(off[-1])}


def _orbit_complement(model: TangentModel) -> torch.Tensor:
    m = model.h_t.shape[0]
    if model.orbit.shape[1] == 0:
        return torch.eye(m, dtype=torch.float64)
    proj = torch.eye(m, dtype=torch.float64) - model.orbit @ model.orbit.T
    u = torch.linalg.svd(proj)[0]
    return u[:, : m - model.orbit.shape[1]]


def _jacobian_off_orbit(model: TangentModel, q: torch.Tensor, lr: float) -> torch.Tensor:
    """J at ``lr`` restricted to the complement ``q`` of the symmetry modes (which J fixes)."""
    d = 1.0 + lr * model.c_diag
    j = (torch.eye(len(d), dtype=torch.float64) - lr * model.h_t) / d[:, None]
    return q.T @ j @ q


def _radius_off_orbit(model: TangentModel, q: torch.Tensor, lr: float) -> float:
    """Largest |eigenvalue| of J restricted to the complement of the symmetry modes (which J fixes)."""
    return float(torch.linalg.eigvals(_jacobian_off_orbit(model, q, lr)).abs().max())


def _attracts_on_grid(model: TangentModel, q: torch.Tensor, grid: np.ndarray) -> np.ndarray:
    """Whether the fixed point attracts at each step of ``grid``: :func:`_radius_off_orbit` below neutral, the
    Jacobians built one by one and their eigenvalues in one batched call (the same numbers, less overhead)."""
    mats = torch.stack([_jacobian_off_orbit(model, q, float(lr)) for lr in grid])
    return (torch.linalg.eigvals(mats).abs().amax(dim=1) < _NEUTRAL).numpy()


def _attraction(model: TangentModel, lr_max: float, points: int) -> tuple[float, np.ndarray, np.ndarray]:
    """(:func:`attraction_step`, the log grid lr_max * 1e-12 .. lr_max of ``points`` steps, whether the fixed
    point attracts at each of them): the grid is read once, by the bisection here and by
    :func:`_attracting_steps`."""
    q = _orbit_complement(model)
    grid = np.geomspace(lr_max * 1e-12, lr_max, points)
    ok = _attracts_on_grid(model, q, grid)
    if not ok[-1]:
        return math.inf, grid, ok
    bad = np.flatnonzero(~ok)
    if bad.size == 0:
        return float(grid[0]), grid, ok
    lo, hi = float(grid[bad[-1]]), float(grid[bad[-1] + 1])
    for _ in range(60):
        mid = math.sqrt(lo * hi)
        if _radius_off_orbit(model, q, mid) < _NEUTRAL:
            hi = mid
        else:
            lo = mid
    return hi, grid, ok


def attraction_step(model: TangentModel, lr_max: float = 1e6, points: int = 121) -> float:
    """Smallest lr in (0, lr_max] above which the fixed point attracts up to lr_max (module docstring); inf if
    it attracts at no lr of a log grid from lr_max * 1e-12, or stops attracting again below lr_max."""
    return _attraction(model, lr_max, points)[0]


@dataclasses.dataclass
class FixedPoint:
    """The optimum a small step converges to: views ``z`` (2, N, d), loss, tangent-gradient norm, rank, and
    how it was obtained (``'lbfgs'`` or ``'simplex'`` when L-BFGS reached the exact simplex's loss)."""

    z: torch.Tensor
    loss: float
    grad_tangent: float
    rank: int
    source: str


def simplex_configuration(problem: Problem) -> torch.Tensor | None:
    """The exact class- or instance-collapsed simplex of InfoNCE, DCL or SupCon (2, N, d); None otherwise."""
    v = problem.vertices()
    if v is None:
        return None
    c = torch.eye(v, dtype=torch.float64) - 1.0 / v
    c = c / torch.linalg.vector_norm(c, dim=1, keepdim=True)
    frame = torch.eye(problem.d, v, dtype=torch.float64)
    pts = c @ frame.T
    owner = torch.arange(problem.instances) if v == problem.instances else problem.labels()
    return torch.stack([pts[owner], pts[owner]])


def _rank(z: torch.Tensor) -> int:
    s = torch.linalg.svdvals(z.reshape(-1, z.shape[-1]))
    return int((s > 1e-3 * s[0]).sum())


def _newton_polish(problem: Problem, z: torch.Tensor, iterations: int = 6) -> torch.Tensor:
    """Riemannian Newton steps (zero modes left alone) while they shrink the tangent gradient."""
    labels = problem.labels()
    model = tangent_model(problem, z, labels)
    for _ in range(iterations):
        if model.grad_tangent < 1e-13:
            break
        f = _flat_loss(problem, labels, tuple(z.shape))
        g = torch.func.grad(f)(z.reshape(-1).clone())
        g_t = model.basis.T @ g
        lam, vec = torch.linalg.eigh(model.h_t + torch.diag(model.c_diag))
        keep = lam.abs() > 1e-8 * lam.abs().max()
        step = -(vec[:, keep] @ ((vec[:, keep].T @ g_t) / lam[keep]))
        z_new = torch.nn.functional.normalize(z + (model.basis @ step).reshape(z.shape), dim=-1)
        new_model = tangent_model(problem, z_new, labels)
        if not new_model.grad_tangent < model.grad_tangent:
            break
        z, model = z_new, new_model
    return z


def fixed_point(problem: Problem, trial: int = 0, max_iter: int = 200, rounds: int = 3) -> FixedPoint:
    """The fixed point a small step converges to from ``trial``'s start (module docstring): L-BFGS, then
    Riemannian Newton steps where the Hessian fits (:data:`MAX_PARAMETERS`)."""
    f = loss_function(problem)
    labels = problem.labels()
    w = initial_views(problem, trial).clone().requires_grad_(True)
    opt = torch.optim.LBFGS([w], lr=1.0, max_iter=max_iter, tolerance_grad=1e-13, tolerance_change=1e-15,
                            history_size=50, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        val = f(torch.nn.functional.normalize(w, dim=-1), labels)
        val.backward()
        return val

    for _ in range(rounds):
        before = float(closure().detach())
        opt.step(closure)
        if abs(before - float(closure().detach())) <= 1e-15 * max(1.0, abs(before)):
            break
    z = torch.nn.functional.normalize(w.detach(), dim=-1)
    if z.numel() <= MAX_PARAMETERS:
        z = _newton_polish(problem, z)
    zz = z.clone().requires_grad_(True)
    val = f(zz, labels)
    (g,) = torch.autograd.grad(val, zz)
    gt = float(torch.linalg.vector_norm(g - (g * z).sum(-1, keepdim=True) * z))
    fp = FixedPoint(z, float(val.detach()), gt, _rank(z), "lbfgs")
    exact = simplex_configuration(problem)
    if exact is not None:
        ev = float(f(exact, labels))
        if abs(ev - fp.loss) <= 1e-9 * max(1.0, abs(ev)):
            return FixedPoint(exact, ev, 0.0, _rank(exact), "simplex")
    return fp


def fixed_point_kind(problem: Problem, z: torch.Tensor) -> dict[str, float | str]:
    """A configuration ``z: (2, N, d)`` as a fixed point of the normalised step: grad_tangent (0: stationary),
    c (mean radial coefficient), hess_min / hess_max (Riemannian Hessian off the symmetry modes), kind
    ('minimum', 'saddle', 'maximum', or 'not stationary'), attracts_from (the step above which it attracts
    the normalised step up to large steps; inf: never; NaN where it is not a fixed point) and attracts_for (the
    grid steps at which it attracts, as an interval text, to the grid's resolution)."""
    model = tangent_model(problem, z)
    crit = critical_step(model)
    scale = max(1.0, float(model.c.abs().max()))
    tol = 1e-9 * max(scale, abs(crit["hess_min"]), abs(crit["hess_max"]))
    if model.grad_tangent > 1e-8 * scale:
        kind, attracts, span = "not stationary", math.nan, ""
    else:
        kind = ("minimum" if crit["hess_min"] >= -tol else "maximum" if crit["hess_max"] <= tol else "saddle")
        attracts, grid, ok = _attraction(model, 1e6, 121)
        span = _attracting_steps(attracts, crit["critical"], grid, ok)
    return {"grad_tangent": model.grad_tangent, "c": float(model.c.mean()), "hess_min": crit["hess_min"],
            "hess_max": crit["hess_max"], "kind": kind, "attracts_from": attracts, "attracts_for": span}


def _attracting_steps(attracts_from: float, critical: float, grid: np.ndarray, ok: np.ndarray) -> str:
    """The steps at which the fixed point attracts, as an interval text: '(0, 5.515)' for a minimum (up to its
    critical step), '[0.07143, inf)' for a state that attracts large steps, 'never'. The shape is read on the log
    ``grid`` (``ok``: whether it attracts at each step, from :func:`_attraction`); the ends are the exact crossings
    where they are known."""
    if not ok.any():
        return "never"
    lo = "0" if ok[0] else f"{attracts_from if ok[-1] else grid[np.argmax(ok)]:.4g}"
    hi = "inf" if ok[-1] else f"{critical if ok[0] else grid[len(ok) - 1 - np.argmax(ok[::-1])]:.4g}"
    return f"({lo}, {hi})" if lo == "0" else f"[{lo}, {hi})"


def lemma1(problem: Problem, seed: int = 0) -> dict[str, float | str]:
    """Complete collapse of ``problem``'s loss (every view equal to a random unit u): Lemma 1's checks, as
    :func:`fixed_point_kind`."""
    g = torch.Generator().manual_seed(seed)
    u = torch.nn.functional.normalize(torch.randn(problem.d, generator=g, dtype=torch.float64), dim=0)
    return fixed_point_kind(problem, u.expand(2, problem.instances, problem.d).clone())


def class_collapse(problem: Problem) -> torch.Tensor:
    """Every instance of class c on vertex c of a regular simplex of the k classes: (2, N, d) (needs d >= k)."""
    c = torch.eye(problem.k, dtype=torch.float64) - 1.0 / problem.k
    c = c / torch.linalg.vector_norm(c, dim=1, keepdim=True)
    pts = c @ torch.eye(problem.d, problem.k, dtype=torch.float64).T
    owner = problem.labels()
    return torch.stack([pts[owner], pts[owner]])


def minibatch_prediction(problem: Problem, fp: FixedPoint, samples: int = 24, seed: int = 0) -> dict[str, float]:
    """Predictions for minibatches of ``problem.batch`` instances at the full-batch fixed point ``fp``.

    ``per_batch_median``, ``per_batch_p10``, ``per_batch_p90``: 2 / lambda_max(H_T,S - C_S) of the batch loss at
    ``fp`` over ``samples`` batches S (the spread of the instantaneous critical step); ``expected_jacobian``:
    the smallest lr on a log grid (refined by bisection) at which E_S[J_S] has an eigenvalue with real part
    below -1, J_S the exact Jacobian of the minibatch update at ``fp`` on the tangent space.
    """
    if problem.batch is None:
        raise ValueError("minibatch_prediction needs problem.batch < N")
    full = dataclasses.replace(problem, batch=None)
    labels = problem.labels()
    z = fp.z
    steps = []
    parts = []
    for s in range(samples):
        idx = batch_indices(problem, 10_000 + seed, s * (problem.instances // problem.batch))
        zb = z[:, idx]
        model = tangent_model(full, zb, labels[idx])
        steps.append(critical_step(model)["critical"])
        parts.append((idx, model))
    arr = np.asarray(steps, dtype=float)
    return {"per_batch_median": float(np.median(arr)), "per_batch_p10": float(np.quantile(arr, 0.1)),
            "per_batch_p90": float(np.quantile(arr, 0.9)),
            "expected_jacobian": _expected_jacobian_step(problem, z, parts)}


def _expected_jacobian(problem: Problem, z: torch.Tensor, parts, lr: float) -> torch.Tensor:
    """E_S[J_S] on the tangent space at z (first-order model of the minibatch update)."""
    p_count = z.shape[0] * z.shape[1]
    dim = z.shape[-1]
    mean = torch.zeros(p_count * (dim - 1), p_count * (dim - 1), dtype=torch.float64)
    for idx, model in parts:
        sel = torch.cat([idx, idx + problem.instances])
        rows = torch.cat([torch.arange(a * (dim - 1), (a + 1) * (dim - 1)) for a in sel.tolist()])
        j = torch.eye(p_count * (dim - 1), dtype=torch.float64)
        d = 1.0 + lr * model.c_diag
        jb = (torch.eye(len(d), dtype=torch.float64) - lr * model.h_t) / d[:, None]
        j[rows[:, None], rows[None, :]] = jb
        mean += j
    return mean / len(parts)


def _expected_jacobian_step(problem: Problem, z: torch.Tensor, parts, points: int = 40) -> float:
    def flips(lr: float) -> bool:
        return bool((torch.linalg.eigvals(_expected_jacobian(problem, z, parts, lr)).real < -1.0).any())

    scale = min(critical_step(m)["critical"] for _, m in parts)
    if not math.isfinite(scale):
        return math.inf
    grid = scale * np.geomspace(0.25, 64.0, points)
    hit = [lr for lr in grid if flips(float(lr))]
    if not hit:
        return math.inf
    hi = float(hit[0])
    lo = float(grid[max(0, list(grid).index(hit[0]) - 1)])
    if lo == hi:
        return hi
    for _ in range(30):
        mid = math.sqrt(lo * hi)
        if flips(mid):
            hi = mid
        else:
            lo = mid
    return hi


def path_critical_step(problem: Problem, trial: int = 0, checkpoints: int = 20, per_checkpoint: int = 5,
                       fraction: float = 0.1) -> dict[str, float]:
    """Smallest 2 / lambda_max(H_T - C) seen along a small-step path from ``trial``'s start.

    The path: the normalised step with lr = ``fraction`` x the local critical step, recomputed every
    ``per_checkpoint`` steps, for ``checkpoints`` checkpoints (a discrete stand-in for gradient flow).
    Returns {'path_min': the smallest local critical step, 'at_step': where on the path, 'final': the local
    critical step at the path's end}.
    """
    f = loss_function(problem)
    labels = problem.labels()
    z = initial_views(problem, trial)
    best, at, step_no, local = math.inf, 0, 0, math.inf
    for _ in range(checkpoints):
        local = critical_step(tangent_model(problem, z))["critical"]
        if local < best:
            best, at = local, step_no
        lr_now = fraction * (local if math.isfinite(local) else 1.0)
        for _ in range(per_checkpoint):
            zz = z.clone().requires_grad_(True)
            (g,) = torch.autograd.grad(f(zz, labels), zz)
            z = torch.nn.functional.normalize(z - lr_now * g, dim=-1)
            step_no += 1
    return {"path_min": best, "at_step": float(at), "final": local}
