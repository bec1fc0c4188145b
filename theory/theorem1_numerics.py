"""Numerical checks of the Theorem 1 derivation (torch, float64, seeded).

Companion of :mod:`theory.theorem1` (paper: CLOP, arXiv 2403.18699,
Theorem 1 / Appendix D).  Three kinds of checks:

* :func:`monte_carlo_moments` - k points uniform on the unit sphere of R^m: E||mu||^2, E[x_i^T mu] and
  E||x_i^(1)||^2 after the Appendix D step, with standard errors, against the derived 1 + eta^2/(k-1) and
  the paper's printed polynomial;
* :func:`mean_map_at` / :func:`critical_crossing` - the finite-difference Jacobian of the actual normalised
  step at a zero-mean configuration, the linear map it induces on the mean, and the eta at which its
  spectral radius crosses 1 (to compare with :func:`theory.theorem1.critical_lr`);
* :func:`gradient_relation_autograd` - autograd of :func:`clop.losses.l_class` equals 2 (k mu - x_i), so the
  Appendix D eta is 2 (k - 1) times a plain learning rate.

Shapes: a configuration is ``X: (k, m)`` with unit rows; batches are ``(B, k, m)``.
"""

from __future__ import annotations

import math

import torch

from clop.util.device import default_device

__all__ = [
    "appendix_d_step",
    "uniform_sphere",
    "monte_carlo_moments",
    "mean_map_at",
    "spectral_radii",
    "critical_crossing",
    "zero_mean_by_descent",
    "etf_configuration",
    "gradient_relation_autograd",
    "mean_growth_from_random_init",
]


def _check_km(k: int, m: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k < 3:
        raise ValueError(f"k must be an integer >= 3; got k={k!r}")
    if isinstance(m, bool) or not isinstance(m, int) or m < k:
        raise ValueError(f"m must be an integer >= k (the theorem assumes m >= k); got m={m!r} with k={k}")


def appendix_d_step(x: torch.Tensor, eta: float, normalise: bool = True) -> torch.Tensor:
    """The Appendix D step x_i <- x_i - eta/(k-1) (k mu - x_i), then row normalisation.  x: (..., k, m)."""
    kk = x.shape[-2]
    mu = x.mean(dim=-2, keepdim=True)
    y = x - eta / (kk - 1) * (kk * mu - x)
    return y / y.norm(dim=-1, keepdim=True) if normalise else y


def uniform_sphere(n: int, k: int, m: int, generator: torch.Generator, device) -> torch.Tensor:
    """n independent configurations of k points uniform on S^{m-1}: (n, k, m), float64."""
    z = torch.randn(n, k, m, generator=generator, dtype=torch.float64, device="cpu").to(device)
    return z / z.norm(dim=-1, keepdim=True)


def monte_carlo_moments(
    k: int, m: int, etas: tuple[float, ...] = (0.5, 1.0, 2.0), n: int = 4000, seed: int = 0, device=None
) -> list[dict]:
    """Monte Carlo of the proof's moments and of E||x_i^(1)||^2 (before renormalisation).

    Per configuration the k per-point values are averaged first, so standard errors are over n
    independent configurations.  Returns one dict per quantity with keys quantity, k, m, eta, mean, se,
    derived, paper (paper's printed value where it has one, else None), z_derived, z_paper.
    """
    _check_km(k, m)
    from theory import theorem1 as t1  # sympy expressions, lambdified here

    dev = default_device(device)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    x = uniform_sphere(n, k, m, gen, dev)
    mu = x.mean(dim=1)  # (n, m)
    out = []

    def record(name, per_config, derived, paper, eta_value=None):
        mean = float(per_config.mean())
        se = float(per_config.std(unbiased=True) / math.sqrt(per_config.numel()))
        out.append(
            {
                "quantity": name,
                "k": k,
                "m": m,
                "eta": eta_value,
                "n_configs": n,
                "mean": mean,
                "se": se,
                "derived": derived,
                "paper": paper,
                "z_derived": (mean - derived) / se if se > 0 else float("nan"),
                "z_paper": None if paper is None else ((mean - paper) / se if se > 0 else float("nan")),
            }
        )

    moments = t1.moment_exprs()
    record("E||mu||^2", (mu * mu).sum(-1), float(moments["E_mumu"].subs(t1.k, k)), float(moments["E_mumu"].subs(t1.k, k)))
    record("E[x_i^T mu]", torch.einsum("nkm,nm->nk", x, mu).mean(-1), float(moments["E_xmu"].subs(t1.k, k)), float(moments["E_xmu"].subs(t1.k, k)))
    for e in etas:
        y = appendix_d_step(x, e, normalise=False)
        per = (y * y).sum(-1).mean(-1)
        derived = float(t1.norm_sq_expr().subs({t1.k: k, t1.eta: e}))
        paper = float(t1.paper_norm_sq_expr().subs({t1.k: k, t1.eta: e}))
        record("E||x_i^(1)||^2", per, derived, paper, e)
    return out


def etf_configuration(k: int, m: int, seed: int = 0, device=None) -> torch.Tensor:
    """Simplex ETF of k unit vectors in R^m (m >= k): (k, m) float64, via :func:`clop.prototypes.simplex_etf`."""
    from clop.prototypes import simplex_etf

    return simplex_etf(k, m, seed=seed, dtype=torch.float64, device=default_device(device))


def zero_mean_by_descent(k: int, m: int, seed: int = 0, eta: float = 1.0, tol: float = 1e-14, max_steps: int = 20000, device=None) -> torch.Tensor:
    """A zero-mean unit configuration reached by the Appendix D step from a random start: (k, m) float64.

    Gaussian start in R^m, normalised; iterates the normalised step until ||mu|| < tol.  The iterates stay
    in the k-dimensional span of the start, and the limit (sum x_i = 0) has rank k - 1 generically.
    """
    _check_km(k, m)
    dev = default_device(device)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    x = uniform_sphere(1, k, m, gen, dev)[0]
    for _ in range(max_steps):
        x = appendix_d_step(x, eta)
        if float(x.mean(0).norm()) < tol:
            return x
    raise RuntimeError(f"no zero-mean configuration within {max_steps} steps (||mu|| = {float(x.mean(0).norm()):.3g})")


def _tangent_projector(x: torch.Tensor) -> torch.Tensor:
    """Block-diagonal projector onto the tangent spaces of the k spheres, as (k*m, k*m)."""
    kk, m = x.shape
    blocks = [torch.eye(m, dtype=x.dtype, device=x.device) - torch.outer(x[i], x[i]) for i in range(kk)]
    return torch.block_diag(*blocks)


def finite_difference_jacobian(x: torch.Tensor, eta: float, h: float = 1e-6) -> torch.Tensor:
    """Central finite-difference Jacobian of the normalised step at x: (k*m, k*m) (ambient coordinates)."""
    kk, m = x.shape
    n = kk * m
    basis = torch.eye(n, dtype=x.dtype, device=x.device).reshape(n, kk, m)
    plus = appendix_d_step(x[None] + h * basis, eta).reshape(n, n)
    minus = appendix_d_step(x[None] - h * basis, eta).reshape(n, n)
    return ((plus - minus) / (2 * h)).T  # column c = derivative along basis vector c


def mean_map_at(x: torch.Tensor, eta: float, h: float = 1e-6) -> dict:
    """Linear map induced on the mean by the normalised step at a zero-mean x: (k, m).

    Lift u in R^m to the tangent perturbation dx_i = (I - x_i x_i^T) w, w = (I - G)^{-1} u, whose mean is u;
    push it through the finite-difference Jacobian J and take the mean: M = S J L (m, m).  Also returns the
    formula (1 - r) I + r G, the residual of S J v = M S v on random tangent v (the mean map does not depend
    on the lift), and the projector onto span(x).
    """
    kk, m = x.shape
    jac = finite_difference_jacobian(x, eta, h)
    gram = x.T @ x / kk  # G = (1/k) sum_i x_i x_i^T, (m, m)
    eye = torch.eye(m, dtype=x.dtype, device=x.device)
    w = torch.linalg.solve(eye - gram, eye)  # columns: w for u = e_j
    proj = _tangent_projector(x)
    lift = proj @ w.repeat(kk, 1)  # (k*m, m): stacked (I - x_i x_i^T) w
    mean_op = eye.repeat(1, kk) / kk  # (m, k*m)
    m_num = mean_op @ jac @ lift
    r = eta * kk / (kk - 1 + eta)
    m_formula = (1 - r) * eye + r * gram
    gen = torch.Generator(device="cpu").manual_seed(1)
    v = proj @ torch.randn(kk * m, 8, generator=gen, dtype=x.dtype).to(x.device)
    resid = float((mean_op @ jac @ v - m_num @ (mean_op @ v)).abs().max())
    u, s, _ = torch.linalg.svd(x.T, full_matrices=False)
    rank = int((s > 1e-8 * s[0]).sum())
    span = u[:, :rank] @ u[:, :rank].T
    return {"M": m_num, "M_formula": m_formula, "lift_residual": resid, "span_projector": span, "rank": rank, "G": gram}


def spectral_radii(x: torch.Tensor, eta: float) -> dict:
    """Spectral radius of the mean map M on all of R^m, on span(x), and on its orthogonal complement."""
    res = mean_map_at(x, eta)
    mm, span = res["M"], res["span_projector"]
    sym = (mm + mm.T) / 2
    m = mm.shape[0]

    def radius_on(p):
        # eigenvalues of p M p restricted to range(p): take an orthonormal basis of range(p)
        u, s, _ = torch.linalg.svd(p)
        basis = u[:, : int((s > 0.5).sum())]
        if basis.shape[1] == 0:
            return float("nan")
        return float(torch.linalg.eigvalsh(basis.T @ sym @ basis).abs().max())

    eye = torch.eye(m, dtype=x.dtype, device=x.device)
    return {
        "all": float(torch.linalg.eigvals(mm).abs().max()),
        "in_span": radius_on(span),
        "complement": radius_on(eye - span),
        "max_formula_error": float((mm - res["M_formula"]).abs().max()),
        "lift_residual": res["lift_residual"],
        "asymmetry": float((mm - mm.T).abs().max()),
    }


def critical_crossing(x: torch.Tensor, which: str = "all", lo: float = 1.0, hi: float = 50.0, tol: float = 1e-7) -> float:
    """Bisection for the eta in [lo, hi] where the spectral radius of the finite-difference mean map
    (restricted to ``which`` in {"all", "in_span", "complement"}) crosses 1; inf if it stays below 1 at hi."""
    if which not in ("all", "in_span", "complement"):
        raise ValueError(f"which must be 'all', 'in_span' or 'complement'; got which={which!r}")

    def f(e):
        return spectral_radii(x, e)[which] - 1.0

    if f(hi) < 0:
        return math.inf
    if f(lo) > 0:
        raise RuntimeError(f"spectral radius already above 1 at eta={lo}")
    while hi - lo > tol:
        mid = 0.5 * (lo + hi)
        if f(mid) > 0:
            hi = mid
        else:
            lo = mid
    return 0.5 * (lo + hi)


def gradient_relation_autograd(k: int = 7, m: int = 9, seed: int = 0) -> float:
    """max |grad_{x_i} l_class(X) - 2 (k mu - x_i)| at a random unit X: (k, m), float64 autograd."""
    from clop.losses.clop_objective import l_class

    gen = torch.Generator(device="cpu").manual_seed(seed)
    x = uniform_sphere(1, k, m, gen, "cpu")[0].requires_grad_(True)
    (grad,) = torch.autograd.grad(l_class(x), x)
    with torch.no_grad():
        expected = 2 * (k * x.mean(0, keepdim=True) - x)
    return float((grad - expected).abs().max())


def mean_growth_from_random_init(k: int, m: int, etas, n: int = 2000, seed: int = 0, device=None) -> list[dict]:
    """One normalised step from uniform random starts: E||mu^(1)|| / E||mu^(0)|| for each eta (informational).

    Theorem 1 promises a non-increasing mean for eta below its bound; this measures what one step does in the
    theorem's own setting (k points uniform on S^{m-1}).  Returns dicts with eta, ratio, se (delta method).
    """
    _check_km(k, m)
    dev = default_device(device)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    x = uniform_sphere(n, k, m, gen, dev)
    n0 = x.mean(1).norm(dim=-1)
    out = []
    for e in etas:
        n1 = appendix_d_step(x, float(e)).mean(1).norm(dim=-1)
        ratio = float(n1.mean() / n0.mean())
        # delta-method standard error of a ratio of means of paired samples
        d = n1 - ratio * n0
        se = float(d.std(unbiased=True) / math.sqrt(n) / n0.mean())
        out.append({"eta": float(e), "ratio": ratio, "se": se})
    return out


def rows_above_norm_bound(k: int, m: int, eta: float, n: int = 2000, seed: int = 0, device=None) -> dict:
    """One un-normalised Appendix D step from n uniform random starts: how many rows have ||x_i^(1)|| > B.

    B = sqrt(E||x^(1)||^2) = sqrt(1 + eta^2/(k-1)) (derived) bounds E||x_i^(1)|| by Jensen; the proof of
    Theorem 1 uses 1/||x_i^(1)|| >= 1/B for every row, which needs ||x_i^(1)|| <= B row by row. Returns
    {"fraction": share of the n k rows above B, "max_ratio": largest ||x_i^(1)|| / B, "rows": n k}.
    """
    _check_km(k, m)
    from theory import theorem1 as t1

    dev = default_device(device)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    x = uniform_sphere(n, k, m, gen, dev)
    norms = appendix_d_step(x, float(eta), normalise=False).norm(dim=-1)
    b = math.sqrt(float(t1.norm_sq_expr().subs({t1.k: k, t1.eta: eta})))
    return {"fraction": float((norms > b).double().mean()), "max_ratio": float(norms.max() / b), "rows": norms.numel()}

