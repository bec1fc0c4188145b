"""The optimum of L_class (Eq. (3), Section 3.2) and Lemma 2 (Appendix E) of the CLOP paper.

Paper: CLOP, arXiv 2403.18699.  Eq. (3) prints
L_class(X) := - sum_{i != j} [X^T X]_ij, while the text minimises the pairwise cosine similarity and gives
the optimum as -k; this module shows which sign does that, proves the identity
sum_{i != j} x_i.x_j = ||sum_i x_i||^2 - k for unit vectors, and checks Lemma 2 and its Appendix E proof.

Symbolic parts use sympy; numerical parts use torch float64 with seeded generators.
Shapes: ``X: (k, m)`` rows are unit class embeddings, batches ``(B, k, m)``.
"""

from __future__ import annotations

import functools
import math

import sympy as sp
import torch

__all__ = [
    "identity_symbolic_k",
    "identity_explicit",
    "etf_value_expr",
    "printed_sign_collapse_expr",
    "inverted_groups",
    "orthonormal_rows",
    "simplex_etf_rows",
    "l_class_loop",
    "configurations_report",
    "lemma2_lagrange",
    "lemma2_cauchy_schwarz_identity",
    "lemma2_numeric",
    "appendix_e_numeric",
    "appendix_e_equality_case",
    "descent_rank_check",
]

k = sp.Symbol("k", integer=True, positive=True)


# --------------------------------------------------------------------------------------------
# Symbolic: the identity, the two signs, the ETF value
# --------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def identity_symbolic_k() -> tuple[sp.Expr, sp.Expr]:
    """For symbolic k, with a symbolic Gram matrix G (G_ii = 1): ||sum x_i||^2 - sum_{i != j} G_ij, evaluated.

    ||sum_i x_i||^2 = sum_{i,j} G_ij and sum_{i != j} G_ij = sum_{i,j} (1 - delta_ij) G_ij, both as sympy Sums
    over 1..k; their difference is sum_{i,j} delta_ij G_ij = sum_i G_ii.  Returns (difference before the unit
    norm is used, difference with G_ii = 1), the latter must be k.
    """
    i, j = sp.symbols("i j", integer=True, positive=True)
    gmat = sp.IndexedBase("G")
    full = sp.Sum(gmat[i, j], (j, 1, k), (i, 1, k))
    off = sp.Sum(gmat[i, j] * (1 - sp.KroneckerDelta(i, j)), (j, 1, k), (i, 1, k))
    # Both are sums over the same ranges: subtract summands, then evaluate the delta sum over j.
    diff_summand = sp.expand(full.function - off.function)
    inner = sp.refine(sp.summation(diff_summand, (j, 1, k)), sp.Q.le(i, k))
    before = sp.Sum(inner, (i, 1, k))
    unit = sp.summation(inner.subs(gmat[i, i], 1), (i, 1, k))
    return before, sp.simplify(unit)


@functools.lru_cache(maxsize=None)
def identity_explicit(k_max: int = 6, m: int = 3) -> bool:
    """Polynomial identity ||sum x_i||^2 - sum_{i != j} x_i.x_j - sum_i ||x_i||^2 == 0 for symbolic vectors
    in R^m, k = 2..k_max (so, with unit rows, sum_{i != j} x_i.x_j = ||sum x_i||^2 - k)."""
    for kk in range(2, k_max + 1):
        xs = sp.Matrix(kk, m, lambda a, c: sp.Symbol(f"x{a}_{c}", real=True))
        s = xs.T * sp.ones(kk, 1)
        sq = (s.T * s)[0]
        off = sum((xs.row(a) * xs.row(b).T)[0] for a in range(kk) for b in range(kk) if a != b)
        norms = sum((xs.row(a) * xs.row(a).T)[0] for a in range(kk))
        if sp.expand(sq - off - norms) != 0:
            return False
    return True


@functools.lru_cache(maxsize=None)
def etf_value_expr() -> sp.Expr:
    """sum_{i != j} of the simplex ETF Gram matrix k/(k-1) (I - 11^T/k): k(k-1) * (-1/(k-1)), symbolic k."""
    off_diag = sp.Rational(1, 1) * k / (k - 1) * (0 - 1 / k)  # entry (i, j), i != j, of k/(k-1)(I - 11^T/k)
    diag = k / (k - 1) * (1 - 1 / k)
    if sp.simplify(diag - 1) != 0:
        raise RuntimeError("ETF rows are not unit")
    return sp.simplify(k * (k - 1) * off_diag)


@functools.lru_cache(maxsize=None)
def printed_sign_collapse_expr() -> dict[str, sp.Expr]:
    """Values of both signs at complete collapse (all x_i equal: every Gram entry 1) and at a zero-sum config.

    With identity S := sum_{i != j} x_i.x_j = ||sum x_i||^2 - k and 0 <= ||sum x_i||^2 <= k^2 (triangle
    inequality, equality at collapse), S ranges over [-k, k(k-1)], so min S = -k (zero sum) and
    min(-S) = -k(k-1) (collapse).
    """
    n2 = sp.Symbol("n2", nonnegative=True)  # ||sum x_i||^2 in [0, k^2]
    s_expr = n2 - k
    return {
        "text_sign_min": sp.simplify(s_expr.subs(n2, 0)),
        "text_sign_max": sp.factor(s_expr.subs(n2, k**2)),
        "printed_sign_min": sp.factor(-s_expr.subs(n2, k**2)),
        "printed_sign_at_zero_sum": sp.simplify(-s_expr.subs(n2, 0)),
    }


# --------------------------------------------------------------------------------------------
# Numerical configurations
# --------------------------------------------------------------------------------------------


def l_class_loop(x: torch.Tensor) -> torch.Tensor:
    """sum_{i != j} x_i.x_j by an explicit double loop (independent of the identity). x: (k, m)."""
    total = x.new_zeros(())
    for a in range(x.shape[0]):
        for b in range(x.shape[0]):
            if a != b:
                total = total + x[a] @ x[b]
    return total


def inverted_groups(k: int, m: int, seed: int = 0) -> torch.Tensor:
    """The paper's third arrangement with groups of size 2: pairs (v_g, -v_g), v_g orthonormal. (k, m), k even."""
    if k % 2 or k < 2:
        raise ValueError(f"k must be an even integer >= 2 for pairs; got k={k!r}")
    if m < k // 2:
        raise ValueError(f"m must be >= k/2; got m={m!r}, k={k}")
    v = orthonormal_rows(k // 2, m, seed)
    return torch.cat([v, -v], dim=0)


def orthonormal_rows(k: int, m: int, seed: int = 0) -> torch.Tensor:
    """k orthonormal rows in R^m, float64 (:func:`clop.prototypes.orthonormal`, else a QR fallback)."""
    try:
        from clop.prototypes import orthonormal

        return orthonormal(k, m, seed=seed, dtype=torch.float64, device="cpu")
    except ImportError:  # pragma: no cover - fallback while the core is incomplete
        gen = torch.Generator().manual_seed(seed)
        q, _ = torch.linalg.qr(torch.randn(m, k, generator=gen, dtype=torch.float64))
        return q.T.contiguous()


def simplex_etf_rows(k: int, m: int, seed: int = 0) -> torch.Tensor:
    """Simplex ETF of k rows in R^m, float64 (:func:`clop.prototypes.simplex_etf`, else centred orthonormal)."""
    try:
        from clop.prototypes import simplex_etf

        return simplex_etf(k, m, seed=seed, dtype=torch.float64, device="cpu")
    except ImportError:  # pragma: no cover
        e = orthonormal_rows(k, m, seed)
        e = e - e.mean(0, keepdim=True)
        return e / e.norm(dim=1, keepdim=True)


def _rank(x: torch.Tensor, rtol: float = 1e-9) -> int:
    s = torch.linalg.svdvals(x)
    return int((s > rtol * s[0]).sum())


def configurations_report(k_values=(4, 6, 10), m: int = 12, seed: int = 0) -> list[dict]:
    """L_class (text sign, via :func:`clop.losses.l_class` and the loop) and rank of the paper's arrangements."""
    from clop.losses.clop_objective import l_class

    rows = []
    for kk in k_values:
        confs = {
            "simplex ETF": simplex_etf_rows(kk, m, seed),
            "orthonormal": orthonormal_rows(kk, m, seed),
            "inverted groups (pairs)": inverted_groups(kk, m, seed),
            "complete collapse": orthonormal_rows(1, m, seed).repeat(kk, 1),
        }
        for name, x in confs.items():
            rows.append(
                {
                    "k": kk,
                    "configuration": name,
                    "l_class": float(l_class(x)),
                    "l_class_loop": float(l_class_loop(x)),
                    "printed_sign": -float(l_class_loop(x)),
                    "rank": _rank(x),
                    "sum_norm": float(x.sum(0).norm()),
                }
            )
    return rows


def descent_rank_check(k_values=(5, 10, 30), m: int = 100, seeds=(0, 1, 2)) -> list[dict]:
    """Gradient descent (the Appendix D step, eta = 1) from Gaussian starts reaches a zero-sum configuration of
    rank k - 1 whose pairwise similarities are not all equal (Figure 4).  Returns per-run rank, L_class, and
    the spread (max - min) of the off-diagonal Gram entries."""
    from theory.theorem1_numerics import zero_mean_by_descent

    rows = []
    for kk in k_values:
        for sd in seeds:
            x = zero_mean_by_descent(kk, m, seed=sd, tol=1e-13)
            gram = x @ x.T
            off = gram[~torch.eye(kk, dtype=torch.bool)]
            rows.append({"k": kk, "seed": sd, "rank": _rank(x), "l_class": float(l_class_loop(x)) if kk <= 10 else float((x.sum(0) ** 2).sum() - kk), "gram_spread": float(off.max() - off.min())})
    return rows


# --------------------------------------------------------------------------------------------
# Lemma 2
# --------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def lemma2_lagrange(m: int = 3) -> dict:
    """Minimise 2 x.s over unit x in R^m (x_k's share of L_class, s = sum_{i<k} x_i) with a Lagrange multiplier.

    Returns the stationary points found by sympy, the one with the smallest objective, and whether it equals
    -s/||s||.
    """
    xs = sp.symbols(f"x0:{m}", real=True)
    ss = sp.symbols(f"s0:{m}", real=True)
    lam = sp.Symbol("lambda", real=True)
    obj = 2 * sum(a * b for a, b in zip(xs, ss))
    lag = obj - lam * (sum(a**2 for a in xs) - 1)
    eqs = [sp.diff(lag, v) for v in xs] + [sum(a**2 for a in xs) - 1]
    sols = sp.solve(eqs, list(xs) + [lam], dict=True)
    norm_s = sp.sqrt(sum(b**2 for b in ss))
    values = [sp.simplify(obj.subs(sol)) for sol in sols]
    best = min(range(len(sols)), key=lambda n: float(values[n].subs({b: v for b, v in zip(ss, (1, 2, 3, 4, 5, 6)[:m])})))
    best_x = [sp.simplify(sols[best][v]) for v in xs]
    expected = [-b / norm_s for b in ss]
    match = all(sp.simplify(a - b) == 0 for a, b in zip(best_x, expected))
    return {"n_stationary": len(sols), "values": values, "best_x": best_x, "best_value": values[best], "is_minus_s_hat": match}


@functools.lru_cache(maxsize=None)
def lemma2_cauchy_schwarz_identity(m: int = 4) -> bool:
    """For unit x and s != 0 in R^m: 2 x.s + 2||s|| == ||s|| * ||x + s/||s||||^2 (so the minimum -2||s|| is
    attained only at x = -s/||s||).  Checked as a sympy identity after substituting ||x||^2 = 1."""
    xs = sp.symbols(f"x0:{m}", real=True)
    ss = sp.symbols(f"s0:{m}", real=True)
    ns = sp.sqrt(sum(b**2 for b in ss))
    lhs = 2 * sum(a * b for a, b in zip(xs, ss)) + 2 * ns
    rhs = ns * sum((a + b / ns) ** 2 for a, b in zip(xs, ss))
    diff = sp.expand(lhs - rhs)
    # substitute x_{m-1}^2 = 1 - sum of the others (unit norm)
    diff = diff.subs(xs[-1] ** 2, 1 - sum(a**2 for a in xs[:-1]))
    return sp.simplify(diff) == 0


def _random_unit(shape, gen) -> torch.Tensor:
    z = torch.randn(*shape, generator=gen, dtype=torch.float64)
    return z / z.norm(dim=-1, keepdim=True)


def lemma2_numeric(k: int = 6, m: int = 8, draws: int = 200, candidates: int = 2048, pgd_steps: int = 200, seed: int = 0) -> dict:
    """For random linearly independent unit x_1..x_{k-1}: (draws, k-1, m), compare the closed form
    x_k = -s/||s|| with (a) ``candidates`` random unit x_k, (b) projected gradient descent on x_k from random
    starts; and measure the distance of the closed form from span(x_1..x_{k-1}).

    Returns the largest amount by which any competitor beat the closed form (<= 0 means never), the largest
    out-of-span residual, and the smallest singular value of the drawn sets (linear independence)."""
    gen = torch.Generator().manual_seed(seed)
    x = _random_unit((draws, k - 1, m), gen)
    s = x.sum(1)  # (draws, m)
    best = -s / s.norm(dim=-1, keepdim=True)

    def share(xk):  # x_k's contribution to L_class: 2 x_k . s  (the rest does not depend on x_k)
        return 2 * (xk * s[:, None, :]).sum(-1) if xk.dim() == 3 else 2 * (xk * s).sum(-1)

    closed = share(best)  # (draws,)
    cand = _random_unit((draws, candidates, m), gen)
    rand_best = share(cand).min(dim=1).values
    # projected gradient descent on the sphere from 16 random starts per draw
    xk = _random_unit((draws, 16, m), gen)
    for _ in range(pgd_steps):
        grad = 2 * s[:, None, :].expand_as(xk)
        xk = xk - 0.1 * grad
        xk = xk / xk.norm(dim=-1, keepdim=True)
    pgd_best = share(xk).min(dim=1).values
    # span residual of the closed form
    q, _ = torch.linalg.qr(x.transpose(1, 2))  # (draws, m, k-1)
    resid = best - torch.einsum("bmj,bj->bm", q, torch.einsum("bmj,bm->bj", q, best))
    smin = torch.linalg.svdvals(x).min()
    return {
        "draws": draws,
        "k": k,
        "m": m,
        "max_random_improvement": float((closed - rand_best).max()),
        "max_pgd_improvement": float((closed - pgd_best).max()),
        "max_pgd_gap": float((pgd_best - closed).abs().max()),
        "max_span_residual": float(resid.norm(dim=-1).max()),
        "min_singular_value": float(smin),
        "closed_form_value_matches_minus_2norm": float((closed + 2 * s.norm(dim=-1)).abs().max()),
    }


def _appendix_e_construction(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Appendix E: replace x_k (last row) by the normalised projection of x_k onto span(x_1..x_{k-1}),
    sign-flipped when sum_{i<k} x_i . x_k^par > 0.  x: (B, k, m).  Returns (X', sum_{i<k} x_i . x_k^par before
    the flip)."""
    others = x[:, :-1, :]
    q, _ = torch.linalg.qr(others.transpose(1, 2))
    xk = x[:, -1, :]
    par = torch.einsum("bmj,bj->bm", q, torch.einsum("bmj,bm->bj", q, xk))
    par = par / par.norm(dim=-1, keepdim=True)
    ssum = (others.sum(1) * par).sum(-1)
    par = torch.where((ssum > 0)[:, None], -par, par)
    return torch.cat([others, par[:, None, :]], dim=1), ssum


def appendix_e_numeric(k: int = 6, m: int = 8, draws: int = 2000, seed: int = 0) -> dict:
    """Over random full-rank unit X: (draws, k, m), does the Appendix E construction strictly lower L_class?"""
    from clop.losses.clop_objective import l_class

    gen = torch.Generator().manual_seed(seed)
    x = _random_unit((draws, k, m), gen)
    xp, ssum = _appendix_e_construction(x)
    before, after = l_class(x), l_class(xp)
    ranks = torch.linalg.matrix_rank(xp)
    return {
        "draws": draws,
        "k": k,
        "m": m,
        "fraction_strictly_lower": float((after < before).double().mean()),
        "min_decrease": float((before - after).min()),
        "max_rank_after": int(ranks.max()),
        "min_rank_after": int(ranks.min()),
        "min_abs_projection_sum": float(ssum.abs().min()),
    }


def appendix_e_equality_case(k: int = 4, m: int = 6, seed: int = 0) -> dict:
    """A full-rank X whose x_k has its in-span part orthogonal to s = sum_{i<k} x_i: the construction gives
    L_class(X') == L_class(X) (no strict decrease).  Needs k >= 3 (the span must have a direction orthogonal
    to s)."""
    if k < 3:
        raise ValueError(f"k must be >= 3 for the equality case; got k={k!r}")
    from clop.losses.clop_objective import l_class

    gen = torch.Generator().manual_seed(seed)
    others = _random_unit((k - 1, m), gen)
    q, _ = torch.linalg.qr(others.T)  # (m, k-1) basis of the span
    s = others.sum(0)
    # in-span unit vector orthogonal to s
    v = q @ torch.randn(k - 1, generator=gen, dtype=torch.float64)
    s_hat = s / s.norm()
    v = v - (v @ s_hat) * s_hat
    v = v / v.norm()
    # out-of-span unit vector
    w = torch.randn(m, generator=gen, dtype=torch.float64)
    w = w - q @ (q.T @ w)
    w = w / w.norm()
    xk = math.sqrt(0.5) * v + math.sqrt(0.5) * w
    x = torch.cat([others, xk[None]], dim=0)
    xp, ssum = _appendix_e_construction(x[None])
    return {
        "rank_before": _rank(x),
        "rank_after": _rank(xp[0]),
        "l_class_before": float(l_class(x)),
        "l_class_after": float(l_class(xp[0])),
        "projection_sum": float(ssum[0]),
    }
