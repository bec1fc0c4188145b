"""Theorem 1 of the CLOP paper (learning-rate bound), checked symbolically with sympy.

Paper: "Preventing collapse in contrastive learning with orthonormal prototypes" (CLOP),
arXiv 2403.18699: Theorem 1 and Eq. (2) in Section 3.1, proof in Appendix D.

The step under test (Appendix D, with the misprinted ``n`` read as ``k``) moves each unit vector
``x_i`` of ``X: (k, m)`` as

    x_i^(1) = x_i - eta/(k-1) (k mu - x_i) = (1 + eta/(k-1)) x_i - eta k/(k-1) mu,   mu = mean_i x_i,

and then renormalises every row.  Because grad_{x_i} sum_{a != b} x_a.x_b = 2 (k mu - x_i), this
``eta`` is ``2 (k - 1)`` times the learning rate of plain (autograd) gradient descent on
L_class = sum_{i != j} x_i.x_j (:func:`appendix_d_eta_from_plain_lr`, checked in :func:`derive_gradient_relation`).

What this module derives (all by sympy, lazily, cached):

* :func:`mean_after_step_expr` - the pre-normalisation mean is ``(1 - eta) mu`` (as the proof says);
* :func:`norm_sq_expr` - E||x_i^(1)||^2 = 1 + eta^2/(k-1) from Eq. (5) and the proof's moments
  E||x||^2 = 1, E||mu||^2 = 1/k, E[x^T mu] = 1/k.  The paper prints a different polynomial
  (:func:`paper_norm_sq_expr`), which is an algebra slip in expanding Eq. (5);
* :func:`lr_bound_expr` - the largest eta satisfying inequality (2) with the correct E||x||^2;
  at eps = 0 it is 2 (k - 1) / (k - 2);
* :func:`critical_lr_expr` - the exact critical learning rate from linearising the normalised step at a
  zero-mean configuration (a global minimiser of L_class): the mean is multiplied by
  ``(1 - r) I + r G`` with ``r = eta k / (k - 1 + eta)`` and ``G = (1/k) sum_i x_i x_i^T``; on the
  direction with G-eigenvalue 0 the factor is ``(1 - eta) / (1 + eta/(k-1))``, whose modulus reaches 1
  at eta = 2 (k - 1) / (k - 2).

The paper's printed expressions are typed in verbatim (functions named ``paper_*``): they are the
statements under test, never expected values.

Public symbols: :data:`k`, :data:`eta`, :data:`eps` (positive / non-negative sympy symbols; use these
objects, not fresh ``sympy.Symbol('k')``, when substituting).

>>> round(lr_bound(30), 4), round(critical_lr(30), 4), round(paper_closed_form(30), 4)
(2.0714, 2.0714, 2.0333)
"""

from __future__ import annotations

import functools
import numbers

import numpy as np
import sympy as sp

__all__ = [
    "k",
    "eta",
    "eps",
    "g",
    "q",
    "lr_bound",
    "lr_bound_expr",
    "lr_bound_eps0_expr",
    "paper_closed_form",
    "paper_closed_form_expr",
    "critical_lr",
    "critical_lr_expr",
    "norm_sq_expr",
    "mean_after_step_expr",
    "mean_factor_expr",
    "r_expr",
    "etf_in_span_threshold_expr",
    "paper_norm_sq_expr",
    "paper_norm_sq_first_line_expr",
    "paper_eq5_expr",
    "paper_linear_ineq_expr",
    "paper_ratio_expr",
    "paper_bound_from_printed_polynomial_expr",
    "paper_mean_factor_expr",
    "paper_step_gap_expr",
    "corrected_ratio_denominator_expr",
    "for_k_gt_2",
    "appendix_d_eta_from_plain_lr",
    "derive_gradient_relation",
    "series_in_inverse_k",
    "proof_final_inequality_sets",
]

#: Number of class embeddings (the theorem needs k > 2).
k = sp.Symbol("k", positive=True)
#: Learning rate of the Appendix D step.
eta = sp.Symbol("eta", positive=True)
#: Tolerance of Theorem 1: the mean may grow by at most a factor (1 + eps).
eps = sp.Symbol("eps", nonnegative=True)
#: An eigenvalue of G = (1/k) sum_i x_i x_i^T (0 <= g <= 1).
g = sp.Symbol("g", nonnegative=True)
#: q = k - 2 > 0, used to prove signs "for all k > 2" (a rational function of q with positive coefficients).
q = sp.Symbol("q", positive=True)

# Second moments used by the proof, as symbols, so Eq. (5) can be stated before they are substituted.
E_XX, E_MUMU, E_XMU = sp.symbols("E_xx E_mumu E_xmu", real=True)


def for_k_gt_2(expr: sp.Expr) -> sp.Expr:
    """Rewrite ``expr`` with ``k = q + 2`` (``q > 0``), simplified: the form used to prove signs for all k > 2."""
    return sp.factor(sp.simplify(sp.sympify(expr).subs(k, q + 2)))


# --------------------------------------------------------------------------------------------
# The paper's printed expressions, typed in verbatim (Appendix D and Eq. (2)). Under test.
# --------------------------------------------------------------------------------------------


def paper_eq5_expr() -> sp.Expr:
    """Eq. (5) as printed: E||x_i^(1)||^2 in terms of the moments E||x||^2, E||mu||^2, E[x^T mu]."""
    return (
        (1 + eta / (k - 1)) ** 2 * E_XX
        + eta**2 * (k / (k - 1)) ** 2 * E_MUMU
        - 2 * eta * k / (k - 1) * (1 + eta / (k - 1)) * E_XMU
    )


def paper_norm_sq_first_line_expr() -> sp.Expr:
    """First line after Eq. (7) as printed: Eq. (5) with the moments substituted."""
    return (1 + eta / (k - 1)) ** 2 + k * eta**2 / (k - 1) ** 2 - 2 * eta * k / (k - 1) * (1 + eta / (k - 1)) * (1 / k)


def paper_norm_sq_expr() -> sp.Expr:
    """The polynomial printed in Eq. (2) and on the second line after Eq. (7) (claimed = E||x_i^(1)||^2)."""
    return 1 + eta / (k - 1) - 2 * eta / k - 2 * eta**2 / (k * (k - 1)) + eta**2 * k / (k - 1) ** 2


def paper_step_gap_expr() -> tuple[sp.Expr, sp.Symbol]:
    """(gap, n): the printed Appendix D step x_i - eta/(k-1) (n mu - x_i), with its ``n`` kept as a symbol,
    minus the step the rest of the appendix uses, x_i - eta/(k-1) (k mu - x_i), as the coefficient of mu:
    eta (k - n)/(k - 1). Non-zero as printed; zero when ``n`` reads ``k``."""
    n = sp.Symbol("n", positive=True)
    xi, mu = sp.symbols("x_i mu")
    printed = xi - eta / (k - 1) * (n * mu - xi)
    derived = xi - eta / (k - 1) * (k * mu - xi)
    return sp.factor(sp.expand(printed - derived).coeff(mu)), n


def paper_mean_factor_expr() -> sp.Expr:
    """The scalar in the proof's "(1/(kB)) sum_i x_i^(1) = (1 - eta)/B mu^(0)", without 1/B."""
    return 1 - eta


def paper_linear_ineq_expr() -> sp.Expr:
    """Left side of the printed linear inequality "(-2 - 1/(k-1) + 2/k) + eta(1 + 2/(k(k-1)) - k/(k-1)^2) <= 0"."""
    return (-2 - 1 / (k - 1) + sp.Integer(2) / k) + eta * (1 + 2 * 1 / (k * (k - 1)) - k / (k - 1) ** 2)


def paper_ratio_expr() -> sp.Expr:
    """The printed ratio (2 + 1/(k-1) - 2/k) / (1 + 2/(k(k-1)) - k/(k-1)^2)."""
    return (2 + 1 / (k - 1) - sp.Integer(2) / k) / (1 + 2 * 1 / (k * (k - 1)) - k / (k - 1) ** 2)


@functools.lru_cache(maxsize=None)
def paper_closed_form_expr() -> sp.Expr:
    """The printed closed form (2k^3 - 5k^2 + 5k - 2) / (k^3 - 3k^2 + 4k - 2) (Appendix D, last display)."""
    return (2 * k**3 - 5 * k**2 + 5 * k - 2) / (k**3 - 3 * k**2 + 4 * k - 2)


# --------------------------------------------------------------------------------------------
# Derivations (sympy, from the proof's stated step and moment assumptions).
# --------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def step_coefficients() -> tuple[sp.Expr, sp.Expr]:
    """x_i^(1) = A x_i - Bc mu with A = 1 + eta/(k-1), Bc = eta k/(k-1), obtained by expanding the step."""
    # x_i - eta/(k-1) (k mu - x_i): collect the coefficients of the abstract vectors x_i and mu.
    xi, mu = sp.symbols("x_i mu", commutative=True)
    step = sp.expand(xi - eta / (k - 1) * (k * mu - xi))
    return sp.simplify(step.coeff(xi)), sp.simplify(-step.coeff(mu))


@functools.lru_cache(maxsize=None)
def mean_after_step_expr() -> sp.Expr:
    """Scalar c with (1/k) sum_i x_i^(1) = c mu^(0) (before renormalisation), derived: c = 1 - eta.

    (1/k) sum_i (A x_i - Bc mu) = A mu - Bc mu, because (1/k) sum_i x_i = mu by definition.
    """
    a_coef, b_coef = step_coefficients()
    i = sp.Symbol("i", integer=True, positive=True)
    # Sum over i of the coefficient of mu contributed by each term, divided by k.
    total = sp.summation(a_coef / k, (i, 1, k)) - sp.summation(b_coef / k, (i, 1, k))
    return sp.factor(sp.simplify(total))


@functools.lru_cache(maxsize=None)
def moment_exprs() -> dict[str, sp.Expr]:
    """The proof's moments from E[x_i^T x_j] = delta_ij (unit norm, independent, zero mean), symbolic k.

    E||mu||^2 = (1/k^2) sum_{i,j} delta_ij and E[x_i^T mu] = (1/k) sum_j delta_ij, summed by sympy.
    """
    i, j = sp.symbols("i j", integer=True, positive=True)
    # Inner sum over j for an index i in 1..k (sympy returns Piecewise((1, i <= k), (0, True))).
    inner = sp.refine(sp.summation(sp.KroneckerDelta(i, j), (j, 1, k)), sp.Q.le(i, k))
    e_mm = sp.summation(inner, (i, 1, k)) / k**2
    e_xm = inner / k
    return {"E_xx": sp.Integer(1), "E_mumu": sp.simplify(e_mm), "E_xmu": sp.simplify(e_xm)}


@functools.lru_cache(maxsize=None)
def eq5_derived_expr() -> sp.Expr:
    """E||A x - Bc mu||^2 expanded by bilinearity, in the moment symbols (must agree with printed Eq. (5))."""
    a_coef, b_coef = step_coefficients()
    coeffs = [a_coef, -b_coef]
    gram = [[E_XX, E_XMU], [E_XMU, E_MUMU]]
    return sp.expand(sum(coeffs[p] * coeffs[r] * gram[p][r] for p in range(2) for r in range(2)))


@functools.lru_cache(maxsize=None)
def norm_sq_expr() -> sp.Expr:
    """Derived E||x_i^(1)||^2 under the proof's moment assumptions: 1 + eta^2/(k-1)."""
    m = moment_exprs()
    expr = eq5_derived_expr().subs({E_XX: m["E_xx"], E_MUMU: m["E_mumu"], E_XMU: m["E_xmu"]})
    return sp.simplify(sp.factor(expr))


def _inequality_roots(norm_sq: sp.Expr, with_eps: bool) -> list[sp.Expr]:
    lhs = (1 - eta) ** 2
    rhs = norm_sq * ((1 + eps) ** 2 if with_eps else 1)
    return list(sp.solve(sp.Eq(lhs, rhs), eta))


@functools.lru_cache(maxsize=None)
def lr_bound_expr() -> sp.Expr:
    """Largest eta with (1 - eta)^2 <= E||x^(1)||^2 (1 + eps)^2, E||x^(1)||^2 from :func:`norm_sq_expr`.

    The difference (1-eta)^2 - (1 + eta^2/(k-1)) c, c = (1+eps)^2, is a quadratic in eta with leading
    coefficient (k - 1 - c)/(k - 1) > 0 when c < k - 1, so the feasible set is the interval between its two
    roots and the bound is the larger root (for c >= k - 1 there is no upper bound; :func:`lr_bound`
    returns inf).  Valid for k > 2, eps >= 0, (1 + eps)^2 < k - 1.
    """
    roots = _inequality_roots(norm_sq_expr(), with_eps=True)
    if len(roots) != 2:
        raise RuntimeError(f"expected two roots of the quadratic, sympy gave {roots}")
    # Pick the larger root; the choice is checked symbolically in the tests (difference > 0 for q > 0).
    point = {k: sp.Integer(10), eps: sp.Rational(1, 10)}
    big = max(roots, key=lambda r: float(r.subs(point)))
    return big


@functools.lru_cache(maxsize=None)
def lr_bound_eps0_expr() -> sp.Expr:
    """:func:`lr_bound_expr` at eps = 0, simplified for k > 2: 2 (k - 1)/(k - 2)."""
    return sp.factor(for_k_gt_2(lr_bound_expr().subs(eps, 0)).subs(q, k - 2))


@functools.lru_cache(maxsize=None)
def paper_bound_from_printed_polynomial_expr() -> sp.Expr:
    """Largest eta satisfying inequality (2) at eps = 0 with the paper's printed polynomial (solved by sympy)."""
    roots = [sp.factor(r) for r in _inequality_roots(paper_norm_sq_expr(), with_eps=False)]
    nonzero = [r for r in roots if sp.simplify(r) != 0]
    if len(nonzero) != 1:
        raise RuntimeError(f"expected roots {{0, bound}}, sympy gave {roots}")
    return nonzero[0]


@functools.lru_cache(maxsize=None)
def corrected_ratio_denominator_expr() -> sp.Expr:
    """Denominator of the printed ratio after simplification (sympy): k^3 - 3k^2 + 3k - 2 (the paper prints 4k)."""
    num, den = sp.fraction(sp.cancel(sp.together(paper_ratio_expr())))
    # Normalise so that the numerator is the printed one (leading coefficient 2).
    lead = sp.Poly(num, k).LC() / 2
    return sp.expand(den / lead)


@functools.lru_cache(maxsize=None)
def r_expr() -> sp.Expr:
    """r = Bc / A = eta k / (k - 1 + eta), the first-order coupling in the linearised mean map."""
    a_coef, b_coef = step_coefficients()
    return sp.factor(sp.simplify(b_coef / a_coef))


@functools.lru_cache(maxsize=None)
def mean_factor_expr() -> sp.Expr:
    """Derived linear factor of the mean on a G-eigendirection with eigenvalue g: (1 - r) + r g.

    Derivation (symbolic, first order in t): perturb a zero-mean unit configuration so that the mean is
    t u (u fixed, tangent perturbations).  For a unit x_i, y_i = A x_i - Bc t u has
    ||y_i||^2 = A^2 - 2 A Bc t c_i + Bc^2 t^2 |u|^2 with c_i = x_i.u, so x_i^new = y_i/||y_i|| =
    alpha_i x_i + beta u with alpha_i, beta expanded below to O(t).  Averaging over i,
    (1/k) sum_i alpha_i x_i = t u + t (Bc/A) G u + O(t^2) and beta = -t Bc/A + O(t^2), hence
    mu^new = t [(1 - r) u + r G u] + O(t^2).  On G u = g u this is the returned scalar.
    """
    # Work with k = q + 2 (q > 0) so that sympy knows A = 1 + eta/(k-1) > 0 inside the square root.
    a_coef, b_coef = (c.subs(k, q + 2) for c in step_coefficients())
    t, ci, nu = sp.symbols("t c_i n_u", real=True)
    norm = sp.sqrt(a_coef**2 - 2 * a_coef * b_coef * t * ci + b_coef**2 * t**2 * nu)
    alpha = a_coef / norm  # coefficient of x_i in x_i^new
    beta = -b_coef * t / norm  # coefficient of u in x_i^new
    # First-order Taylor coefficients at t = 0: alpha = alpha0 + alpha1 c_i t + O(t^2), beta = beta1 t + O(t^2).
    alpha0 = sp.simplify(alpha.subs(t, 0))
    alpha1 = sp.simplify(sp.diff(alpha, t).subs(t, 0) / ci)
    beta1 = sp.simplify(sp.diff(beta, t).subs(t, 0))
    if sp.simplify(alpha0 - 1) != 0:
        raise RuntimeError(f"zeroth-order coefficient should be 1, got {alpha0}")
    # (1/k) sum_i alpha_i x_i = alpha0 * mean + t*alpha1 * (1/k) sum_i x_i (x_i.u) = t u + t alpha1 G u.
    # Mean of the new configuration, as coefficient of t, on G u = g u:
    factor = 1 + alpha1 * g + beta1
    return sp.simplify(sp.simplify(factor).subs(q, k - 2))


@functools.lru_cache(maxsize=None)
def critical_lr_expr() -> sp.Expr:
    """Exact critical learning rate: the eta > 0 at which the g = 0 factor reaches -1: 2(k-1)/(k-2).

    On g = 0 the factor is (1 - eta)/(1 + eta/(k-1)) (derived); it is < 1 for all eta > 0 and decreases
    in eta, so the mean stops shrinking exactly where it equals -1.
    """
    f0 = mean_factor_expr().subs(g, 0)
    sols = [s for s in sp.solve(sp.Eq(f0, -1), eta)]
    if len(sols) != 1:
        raise RuntimeError(f"expected one solution, sympy gave {sols}")
    return sp.factor(sp.simplify(sols[0]))


@functools.lru_cache(maxsize=None)
def etf_in_span_threshold_expr() -> sp.Expr:
    """eta at which the factor on the span of a simplex ETF (G-eigenvalue 1/(k-1)) reaches -1.

    Solved by sympy; the result 2(k-1)^2/(k^2 - 4k + 2) is meaningful where k^2 - 4k + 2 > 0 (k >= 4);
    for k = 3 the in-span factor stays above -1 for every eta > 0.
    """
    f = mean_factor_expr().subs(g, 1 / (k - 1))
    sols = sp.solve(sp.Eq(f, -1), eta)
    if len(sols) != 1:
        raise RuntimeError(f"expected one solution, sympy gave {sols}")
    return sp.factor(sols[0])


def proof_final_inequality_sets(k_values: tuple[int, ...] = (3, 30)) -> dict[int, tuple[sp.Set, sp.Set]]:
    """Per k: the sets of eta > 0 satisfying the proof's last step at eps = 0, as printed and squared.

    Appendix D ends with (1 - eta)/B <= 1 + eps, B = sqrt(E||x^(1)||^2) = sqrt(1 + eta^2/(k-1)) (derived).
    Returns ``{k: (set of (1 - eta)/B <= 1, set of (1 - eta)^2 <= B^2)}`` solved by sympy: the printed form
    holds for every eta > 1 (its left side is negative there), so it bounds nothing; only the squared form,
    which needs |1 - eta|, gives the bound (0, 2(k-1)/(k-2)].
    """
    domain = sp.Interval.open(0, sp.oo)
    b_sq = norm_sq_expr()
    out = {}
    for kv in k_values:
        printed = ((1 - eta) / sp.sqrt(b_sq)).subs(k, kv)
        squared = ((1 - eta) ** 2 / b_sq).subs(k, kv)
        out[int(kv)] = (
            sp.solve_univariate_inequality(printed <= 1, eta, relational=False, domain=domain),
            sp.solve_univariate_inequality(squared <= 1, eta, relational=False, domain=domain),
        )
    return out


def series_in_inverse_k(expr: sp.Expr) -> tuple[sp.Expr, sp.Expr]:
    """(limit as k -> oo, coefficient of 1/k) of a rational function of k: with u = 1/k, the value and the first
    derivative at u = 0 of the cancelled rational function f(u) (its Taylor coefficients of order 0 and 1)."""
    u = sp.Symbol("u", positive=True)
    f = sp.cancel(sp.together(sp.sympify(expr).subs(k, 1 / u)))
    num, den = sp.fraction(f)
    if not (num.is_polynomial(u) and den.is_polynomial(u)) or den.subs(u, 0) == 0:
        s = sp.series(f, u, 0, 2).removeO()  # general case
        return sp.simplify(s.coeff(u, 0)), sp.simplify(s.coeff(u, 1))
    return sp.simplify(f.subs(u, 0)), sp.simplify(sp.diff(f, u).subs(u, 0))


def appendix_d_eta_from_plain_lr(lr, k_value):
    """Appendix D's eta for plain gradient descent with learning rate ``lr`` on L_class: eta = 2 (k - 1) lr."""
    return 2 * (k_value - 1) * lr


@functools.lru_cache(maxsize=None)
def derive_gradient_relation(k_max: int = 5, dim: int = 2) -> tuple[bool, str]:
    """Check with sympy, for k = 3..k_max and vectors in R^dim with symbolic entries, that

    x_i - lr * grad_{x_i} sum_{a != b} x_a.x_b  ==  x_i - eta/(k-1) (k mu - x_i)   with eta = 2 (k-1) lr.

    Returns (all equal, description).
    """
    lr = sp.Symbol("lr", positive=True)
    for kk in range(3, k_max + 1):
        xs = [[sp.Symbol(f"x{a}_{c}", real=True) for c in range(dim)] for a in range(kk)]
        loss = sum(sum(xs[a][c] * xs[b][c] for c in range(dim)) for a in range(kk) for b in range(kk) if a != b)
        et = appendix_d_eta_from_plain_lr(lr, kk)
        for a in range(kk):
            for c in range(dim):
                plain = xs[a][c] - lr * sp.diff(loss, xs[a][c])
                mu_c = sum(xs[b][c] for b in range(kk)) / kk
                appd = xs[a][c] - et / (kk - 1) * (kk * mu_c - xs[a][c])
                if sp.expand(plain - appd) != 0:  # polynomial identity in the entries and lr
                    return False, f"mismatch at k={kk}, i={a}, coordinate {c}"
    return True, f"symbolic entries, k = 3..{k_max}, m = {dim}: identical steps with eta = 2(k-1) lr"


# --------------------------------------------------------------------------------------------
# Float API (lambdified once, cached).
# --------------------------------------------------------------------------------------------


def _as_number_array(value) -> np.ndarray | None:
    """``value`` as a float ndarray when it is a real number or an array of them (no bool, str or object)."""
    if isinstance(value, (bool, np.bool_, str, bytes)):
        return None
    if isinstance(value, numbers.Integral):  # Python, numpy and sympy integers
        return np.asarray(int(value), dtype=float)
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError):
        return None
    if arr.dtype.kind not in "iuf" or arr.size == 0:
        return None
    return arr.astype(float)


def _check_k(k_value):
    """k as a float ndarray when it is an integer >= 3 or an array of them (integer-valued floats such as
    30.0 included), else ``ValueError`` naming k. The derivation needs a whole number of embeddings k > 2:
    the moments are sums over i = 1..k."""
    arr = _as_number_array(k_value)
    if arr is None or not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)) or np.any(arr < 3):
        raise ValueError(
            "k must be an integer >= 3 (the number of class embeddings), or an array of such integers; "
            f"got k={k_value!r}"
        )
    return arr


def _check_eps(eps_value):
    arr = _as_number_array(eps_value)
    if arr is None or not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ValueError(f"eps must be a finite real number >= 0 (or an array of them); got eps={eps_value!r}")
    return arr


def _out(value, scalar: bool):
    return float(value) if scalar else np.asarray(value, dtype=float)


@functools.lru_cache(maxsize=None)
def _lambdified(name: str):
    exprs = {
        "lr_bound": (lr_bound_expr, (k, eps)),
        "paper_closed_form": (paper_closed_form_expr, (k,)),
        "critical_lr": (critical_lr_expr, (k,)),
    }
    fn, args = exprs[name]
    return sp.lambdify(args, fn(), modules="numpy")


def lr_bound(k, eps=0.0):
    """Largest Appendix-D learning rate eta satisfying inequality (2) with the correctly derived E||x^(1)||^2.

    k: number of class embeddings, an integer >= 3 (or an array of them); eps: tolerance >= 0 (float or
    array). Returns a float (or ndarray); inf where (1 + eps)^2 >= k - 1 (no upper bound). At eps = 0
    this is 2 (k - 1)/(k - 2).
    """
    kk = _check_k(k)
    ee = _check_eps(eps)
    kk, ee = np.broadcast_arrays(kk, ee)
    with np.errstate(invalid="ignore", divide="ignore"):
        val = np.asarray(_lambdified("lr_bound")(kk, ee), dtype=float)
    val = np.where((1 + ee) ** 2 >= kk - 1, np.inf, val)
    return _out(val, np.ndim(k) == 0 and np.ndim(eps) == 0)


def paper_closed_form(k):
    """The paper's printed closed form (2k^3 - 5k^2 + 5k - 2)/(k^3 - 3k^2 + 4k - 2), k an integer >= 3 (or array)."""
    kk = _check_k(k)
    return _out(_lambdified("paper_closed_form")(kk), np.ndim(k) == 0)


def critical_lr(k):
    """Exact critical Appendix-D learning rate at zero-mean configurations, 2 (k-1)/(k-2), k an integer >= 3 (or array)."""
    kk = _check_k(k)
    return _out(_lambdified("critical_lr")(kk), np.ndim(k) == 0)
