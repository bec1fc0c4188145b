"""SSEM's class-collapse boundary in the simplex-to-simplex family: the symbolic derivation (sympy).

Paper: Lee, Oh, Lee & Sohn (2025), arXiv 2503.08203 (SSEM). The paper's theorem text was not available
to us, so nothing here is compared with a printed condition: the boundary is derived from the loss the
authors' code computes (:func:`clop.losses.ssem`, both of its conventions) on the family of
:mod:`theory.ssem_family`. :mod:`theory.ssem` turns it into floats and claims.

The derivation (every step by sympy, lazily, cached):

1. L depends on s only through rho = s^2 (the Gram entries are linear in rho), so dL/ds = 2 s dL/drho
   vanishes at s = 0 for every alpha (:func:`s_slope_at_collapse`): s = 0 is always stationary and the
   sign of dL/ds says nothing. rho is the regular variable.
2. L(rho) is a log-sum-exp of functions linear in rho minus a linear function, so it is convex in rho;
   :func:`convexity_certificate` proves L'' = sum_{t < t'} w_t w_t' (g_t' - g_t'')^2 / (tau^2 W^2) with
   w_t = count_t exp(g_t / tau) > 0 and W = sum_t w_t, strictly positive because the "class" and "other"
   entries have different slopes. Hence the minimiser over s in [0, 1] is s = 0 (class collapse) exactly
   when dL/drho >= 0 at rho = 0.
3. dL/drho at rho = 0 is A + alpha B with B < 0 (:func:`alpha_slope_expr`), so collapse happens exactly
   for alpha <= alpha* = -A / B (:func:`boundary_expr`; :func:`strictly_convex` makes the minimiser
   unique). With q = exp(-k / ((k - 1) tau)) in (0, 1):

       "pairs":   alpha* = (1 + (n k - 1) q) / (n (1 + (k - 1) q))
       "anchors": alpha* = (2 n k - 1) q / (2 n - 1 + 2 n (k - 1) q)

   (:func:`boundary_q_form`, proved equal to the derived expression by :func:`boundary_matches_q_form`).
4. Beyond the boundary the optimal rho* solves dL/drho = 0. That equation is linear in alpha, so its
   inverse is explicit, alpha(rho) = -A(rho) / B (:func:`alpha_of_rho_expr`); rho* itself is its root,
   found numerically (:func:`theory.ssem.optimal_rho`). At alpha = 1 the root is closed form,
   rho_1 = k (n - 1) / (n k - 1) (:func:`spread_at_alpha_one_expr`): all k n embeddings on one regular simplex.

Every function takes ``convention`` (``"pairs"`` or ``"anchors"``) where the two differ; results are sympy
expressions in the symbols of :mod:`theory.ssem_family` and :data:`q`, or booleans for identities.
"""

from __future__ import annotations

import functools

import sympy as sp

from clop.util.checks import check_choice
from theory.ssem_family import (
    CONVENTIONS,
    alpha,
    count_per_anchor,
    gram_entry,
    k,
    loss_expr,
    n,
    rho,
    s,
    tau,
)

__all__ = [
    "q",
    "Q_OF_TAU",
    "slope_expr",
    "s_slope_at_collapse",
    "convexity_certificate",
    "strictly_convex",
    "collapse_slope_expr",
    "alpha_slope_expr",
    "boundary_expr",
    "boundary_q_form",
    "boundary_matches_q_form",
    "alpha_of_rho_expr",
    "spread_at_alpha_one_expr",
    "stationary_at_alpha_one",
    "positive_for_k_n_ge_2",
]

q = sp.Symbol("q", positive=True)
"""q = exp(-k / ((k - 1) tau)), in (0, 1): the weight of an other-class row at collapse relative to a same-class one."""

Q_OF_TAU = sp.exp(-k / ((k - 1) * tau))
"""q as a function of tau and k."""


def _convention(convention: str) -> str:
    return check_choice("convention", convention, tuple(CONVENTIONS))


def _exp_to_symbols(expr: sp.Expr) -> tuple[sp.Expr, dict[sp.Symbol, sp.Expr]]:
    """Each distinct exp(x) of ``expr`` (x compared after ``cancel``) replaced by one positive symbol, so that
    identities between exponential sums become identities between rational functions; returns the new
    expression and the map symbol -> exp(x) that undoes the replacement."""
    names: dict[sp.Expr, sp.Symbol] = {}

    def symbol(x: sp.Expr) -> sp.Symbol:
        key = sp.cancel(x.args[0])
        return names.setdefault(key, sp.Symbol(f"X{len(names)}", positive=True))

    out = expr.replace(lambda e: isinstance(e, sp.exp), symbol)
    return out, {sym: sp.exp(x) for x, sym in names.items()}


def _is_zero(expr: sp.Expr) -> bool:
    """expr == 0 as an identity: its exponentials as symbols, the rational function cancelled."""
    return sp.cancel(sp.together(_exp_to_symbols(expr)[0])) == 0


def _rational_form(expr: sp.Expr) -> sp.Expr:
    """expr with its exponentials as symbols, cancelled and factored, then the exponentials put back."""
    rational, back = _exp_to_symbols(expr)
    return sp.factor(sp.cancel(sp.together(rational))).subs(back)


# --------------------------------------------------------------------------------------------
# The derivation
# --------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def s_slope_at_collapse(convention: str) -> sp.Expr:
    """dL/ds at s = 0: 0 for every alpha, tau, k, n, so s is not the regular variable."""
    return _rational_form(sp.diff(loss_expr(_convention(convention)).subs(rho, s**2), s).subs(s, 0))


@functools.lru_cache(maxsize=None)
def convexity_certificate(convention: str) -> bool:
    """d^2 L / d rho^2 == sum_{t < t'} w_t w_t' (g_t' - g_t'')^2 / (tau^2 W^2), an identity (so L is convex in rho)."""
    spec = CONVENTIONS[_convention(convention)]
    types = spec.denominator
    w = {t: count_per_anchor(t) * sp.exp((gram_entry(t) - 1) / tau) for t in types}
    total = sum(w.values())
    slope = {t: sp.diff(gram_entry(t), rho) for t in types}
    cert = sum(w[a] * w[b] * (slope[a] - slope[b]) ** 2 for i, a in enumerate(types) for b in types[i + 1 :]) / (
        tau**2 * total**2
    )
    return _is_zero(sp.diff(loss_expr(convention), rho, 2) - cert)


def strictly_convex(convention: str) -> bool:
    """The certificate holds and one of its terms never vanishes: the "class" and "other" entries (both in
    every denominator) have slopes -n/(n-1) and 1/(k-1), whose difference is proved non-zero for k, n >= 2."""
    gap = sp.diff(gram_entry("other") - gram_entry("class"), rho)
    return convexity_certificate(convention) and positive_for_k_n_ge_2(gap)


@functools.lru_cache(maxsize=None)
def slope_expr(convention: str) -> sp.Expr:
    """dL/drho of the closed form, a function of rho, alpha, tau, k, n."""
    return sp.diff(loss_expr(_convention(convention)), rho)


@functools.lru_cache(maxsize=None)
def collapse_slope_expr(convention: str) -> sp.Expr:
    """dL/drho at rho = 0: a function of alpha, tau, k, n whose sign decides collapse (>= 0: collapsed)."""
    return _rational_form(slope_expr(convention).subs(rho, 0))


@functools.lru_cache(maxsize=None)
def alpha_slope_expr(convention: str) -> sp.Expr:
    """d/dalpha of dL/drho: free of rho, and negative (more self-supervision always favours spreading)."""
    return sp.factor(sp.cancel(sp.diff(slope_expr(convention), alpha)))


@functools.lru_cache(maxsize=None)
def alpha_of_rho_expr(convention: str) -> sp.Expr:
    """alpha(rho) solving dL/drho = 0 (the slope is A(rho) + alpha B): the inverse of the optimal spread."""
    return -slope_expr(convention).subs(alpha, 0) / alpha_slope_expr(convention)


@functools.lru_cache(maxsize=None)
def boundary_expr(convention: str) -> sp.Expr:
    """alpha*(tau, k, n) = alpha(0): collapse exactly for alpha <= alpha*."""
    return _rational_form(alpha_of_rho_expr(convention).subs(rho, 0))


def boundary_q_form(convention: str) -> sp.Expr:
    """alpha* written with q = exp(-k/((k-1) tau)); proved equal to :func:`boundary_expr` by
    :func:`boundary_matches_q_form`."""
    if _convention(convention) == "pairs":
        return (1 + (n * k - 1) * q) / (n * (1 + (k - 1) * q))
    return (2 * n * k - 1) * q / (2 * n - 1 + 2 * n * (k - 1) * q)


@functools.lru_cache(maxsize=None)
def boundary_matches_q_form(convention: str) -> bool:
    """boundary_expr == boundary_q_form with q = exp(-k/((k-1) tau)): every exp(x) of the derived expression is
    rewritten as q^(x / log q) (x / log q must be a rational number), then the difference must cancel to 0."""
    derived = boundary_expr(convention)
    log_q = -k / ((k - 1) * tau)

    def as_power(e: sp.Expr) -> sp.Expr:
        ratio = sp.cancel(e.args[0] / log_q)
        if not ratio.is_Rational:
            raise ValueError(f"exp({e.args[0]}) is not a power of q")
        return q**ratio

    rewritten = derived.replace(lambda e: isinstance(e, sp.exp), as_power)
    return sp.cancel(sp.together(rewritten - boundary_q_form(convention))) == 0


def spread_at_alpha_one_expr() -> sp.Expr:
    """rho_1 = k (n - 1) / (n k - 1): where the "class" and "other" Gram entries are equal (one kn-simplex)."""
    (root,) = sp.solve(sp.Eq(gram_entry("class"), gram_entry("other")), rho)
    return sp.factor(root)


@functools.lru_cache(maxsize=None)
def stationary_at_alpha_one(convention: str) -> bool:
    """dL/drho = 0 at alpha = 1, rho = rho_1 (an identity in tau, k, n)."""
    return _is_zero(slope_expr(convention).subs({alpha: 1, rho: spread_at_alpha_one_expr()}))


def positive_for_k_n_ge_2(expr: sp.Expr) -> bool:
    """Prove expr > 0 for all k, n >= 2 and q in (0, 1): with k = 2 + a, n = 2 + b, q = 1 / (1 + p)
    (a, b >= 0, p > 0) the expression must be a ratio of polynomials in a, b, p with non-negative
    coefficients, neither of them zero."""
    a, b, p = sp.symbols("a b p", nonnegative=True)
    form = sp.together(expr.subs({k: 2 + a, n: 2 + b, q: 1 / (1 + p)}))
    num, den = sp.fraction(sp.cancel(form))
    try:
        pn, pd = sp.Poly(sp.expand(num), a, b, p), sp.Poly(sp.expand(den), a, b, p)
    except sp.PolynomialError:
        return False
    if pn.is_zero or pd.is_zero:
        return False
    return all(c >= 0 for c in pn.coeffs()) and all(c >= 0 for c in pd.coeffs())
