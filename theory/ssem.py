"""SSEM's class-collapse boundary alpha*(tau, k, n) as floats, the optimal spread, and the claims.

Paper: Lee, Oh, Lee & Sohn (2025), "A Theoretical Framework for Preventing Class Collapse in Supervised
Contrastive Learning", AISTATS, arXiv 2503.08203 (SSEM). The paper's theorem text was not available to us:
the boundary below is derived here (:mod:`theory.ssem_derivation`, with sympy) from the loss the authors'
code computes (:func:`clop.losses.ssem`) on the simplex-to-simplex family of :mod:`theory.ssem_family`
(k class means on a regular simplex, n samples per class on a regular simplex of spread s around their
mean, u_ci = sqrt(1 - s^2) m_c + s e_ci, both views equal). The family's minimiser over s in [0, 1] is
class-collapsed (s = 0) exactly for alpha <= alpha*, with q = exp(-k / ((k - 1) tau)):

    "pairs"   (CIFAR code):    alpha* = (1 + (n k - 1) q) / (n (1 + (k - 1) q))
    "anchors" (ImageNet code): alpha* = (2 n k - 1) q / (2 n - 1 + 2 n (k - 1) q)

Beyond it the optimal spread s* = sqrt(rho*) is the root of dL/drho = 0, increasing with alpha up to
rho_1 = k (n - 1) / (n k - 1) at alpha = 1.

For simulations: :func:`boundary` (tau a float or a numpy array), :func:`optimal_spread`,
:func:`optimal_rho`; :func:`brute_force_spread` (grid minimisation over s of the closed form, no
derivative) checks them. :func:`claims` returns the verdicts as :class:`clop.claims.Claim` records
(paper "2503.08203"), every one computed from the checks it names.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import sympy as sp
from scipy.optimize import brentq

from clop.claims import Claim
from clop.losses.ssem_loss import ssem
from clop.util.checks import check_choice, check_positive, check_size, is_finite_real
from theory.ssem_derivation import (
    Q_OF_TAU,
    alpha_slope_expr,
    boundary_matches_q_form,
    boundary_q_form,
    positive_for_k_n_ge_2,
    q,
    s_slope_at_collapse,
    slope_expr,
    spread_at_alpha_one_expr,
    stationary_at_alpha_one,
    strictly_convex,
)
from theory.ssem_family import (
    CONVENTIONS,
    alpha,
    family_embeddings,
    family_loss,
    k,
    n,
    rho,
    tau,
)

__all__ = [
    "SHAPES",
    "TAUS",
    "ALPHAS",
    "LOSS_POINTS",
    "GRID_POINTS",
    "boundary",
    "optimal_rho",
    "optimal_spread",
    "brute_force_spread",
    "rounding_bound",
    "closed_form_vs_loss",
    "brute_force_check",
    "threshold_claim",
    "tau_claim",
    "conventions_claim",
    "spread_claim",
    "claims",
]


def _convention(convention: str) -> str:
    return check_choice("convention", convention, tuple(CONVENTIONS))


# --------------------------------------------------------------------------------------------
# Numerics: the boundary and the optimal spread as floats
# --------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _boundary_fn(convention: str):
    return sp.lambdify((tau, k, n), boundary_q_form(convention).subs(q, Q_OF_TAU), "numpy")


def _check_shape(k_value: object, n_value: object) -> tuple[int, int]:
    return check_size("k", k_value, 2), check_size("n", n_value, 2)


def boundary(tau_value, k_value: int, n_value: int, convention: str = "pairs"):
    """alpha*(tau, k, n) as a float (or a numpy array for an array of tau > 0); collapse for alpha <= alpha*.

    >>> round(boundary(0.1, 10, 10), 4), round(boundary(0.1, 10, 10, "anchors"), 6)
    (0.1001, 0.000157)
    """
    convention = _convention(convention)
    kk, nn = _check_shape(k_value, n_value)
    t = np.asarray(tau_value, dtype=np.float64)
    if t.size == 0 or not (np.all(np.isfinite(t)) and np.all(t > 0)):
        raise ValueError(f"tau must be a finite real number > 0 (or an array of them); got {tau_value!r}")
    out = _boundary_fn(convention)(t, kk, nn)
    return float(out) if np.ndim(out) == 0 else np.asarray(out, dtype=np.float64)


@functools.lru_cache(maxsize=None)
def _slope_fn(convention: str):
    return sp.lambdify((rho, alpha, tau, k, n), slope_expr(convention), "numpy")


def _check_alpha(alpha_value: object) -> float:
    if is_finite_real(alpha_value) and 0 <= alpha_value <= 1:
        return float(alpha_value)
    raise ValueError(f"alpha must be a real number in [0, 1]; got {alpha_value!r}")


def optimal_rho(alpha_value: float, tau_value: float, k_value: int, n_value: int, convention: str = "pairs") -> float:
    """The minimiser rho* = s*^2 of L over [0, 1]: 0 for alpha <= alpha*, rho_1 = k(n-1)/(nk-1) at alpha = 1,
    else the root of dL/drho in (0, rho_1) (Brent's method to 1e-15; the slope increases in rho)."""
    convention = _convention(convention)
    a = _check_alpha(alpha_value)
    t = check_positive("tau", tau_value)
    kk, nn = _check_shape(k_value, n_value)
    rho_1 = kk * (nn - 1) / (nn * kk - 1)
    slope = _slope_fn(convention)
    if slope(0.0, a, t, kk, nn) >= 0:
        return 0.0
    if a == 1.0:
        return rho_1
    return brentq(lambda r: slope(r, a, t, kk, nn), 0.0, rho_1, xtol=1e-15, rtol=4 * np.finfo(float).eps)


def optimal_spread(
    alpha_value: float, tau_value: float, k_value: int, n_value: int, convention: str = "pairs"
) -> float:
    """s* = sqrt(rho*), the family's optimal spread (0 = class collapse); see :func:`optimal_rho`."""
    return math.sqrt(optimal_rho(alpha_value, tau_value, k_value, n_value, convention))


def brute_force_spread(
    alpha_value: float, tau_value: float, k_value: int, n_value: int, convention: str = "pairs", points: int = 4001
) -> float:
    """argmin of the closed-form L over an even grid of ``points`` spreads s in [0, 1] (independent of the
    derivation: no slope, no root). L is unimodal in s (convex in rho = s^2, and rho increases with s), so
    the grid minimiser lies within one step 1 / (points - 1) of the true one, up to ties at rounding level."""
    points = check_size("points", points, 2)
    grid = np.linspace(0.0, 1.0, points)
    values = family_loss(
        grid,
        _check_alpha(alpha_value),
        check_positive("tau", tau_value),
        *_check_shape(k_value, n_value),
        _convention(convention),
    )
    return float(grid[int(np.argmin(values))])


# --------------------------------------------------------------------------------------------
# Checks against the loss and against brute force; the claims
# --------------------------------------------------------------------------------------------

SHAPES = ((2, 2), (3, 4), (10, 5))
"""(k, n) of the brute-force grid: the smallest family, a small one, and CIFAR-10's class count."""
TAUS = (0.05, 0.1, 0.2, 0.5, 1.0)
ALPHAS = tuple(i / 20 for i in range(21))
LOSS_POINTS = (
    (2, 2, 0.3, 0.2, 0.1),
    (3, 4, 0.7, 0.5, 0.5),
    (5, 3, 0.0, 1.0, 0.05),
    (4, 2, 1.0, 0.0, 1.3),
    (10, 5, 0.45, 0.8, 0.2),
)
"""(k, n, s, alpha, tau) where the closed form is compared with clop.losses.ssem on the constructed embeddings."""
GRID_POINTS = 4001


def rounding_bound(k_value: int, n_value: int, tau_value: float) -> float:
    """Bound on |L_a - L_b| for two float64 evaluations of the loss (or one of its parts) on the family: sums
    over at most (2kn)^2 pairs of terms of size at most 1 + 1/tau (logits, log-sum-exps), each with an error
    of a few eps of that size, both sides erring: 4 eps (2kn)^2 (1 + 1/tau). An absolute bound: a part of
    the loss can be much smaller than its terms (L_self of a spread family nearly cancels)."""
    return 4 * np.finfo(np.float64).eps * (2 * k_value * n_value) ** 2 * (1 + 1 / tau_value)


def closed_form_vs_loss(points=LOSS_POINTS) -> tuple[float, float]:
    """(largest relative difference, largest ratio of the absolute difference to :func:`rounding_bound`) over
    ``points`` and both conventions, between the closed form and :func:`clop.losses.ssem` on the constructed
    embeddings (float64, z1 = z2 = the family's rows, labels their classes)."""
    worst, ratio = 0.0, 0.0
    for convention in CONVENTIONS:
        for kk, nn, spread, a, t in points:
            u, labels = family_embeddings(kk, nn, spread)
            loss = float(ssem(u, u, labels, a, t, convention))
            closed = float(family_loss(spread, a, t, kk, nn, convention))
            gap = abs(loss - closed)
            worst, ratio = max(worst, gap / abs(loss)), max(ratio, gap / rounding_bound(kk, nn, t))
    return worst, ratio


def brute_force_check(shapes=SHAPES, taus=TAUS, alphas=ALPHAS, points: int = GRID_POINTS) -> dict:
    """:func:`optimal_spread` against :func:`brute_force_spread` over every (convention, k, n, tau, alpha).

    Returns ``{"points", "agree", "collapsed", "spread", "max_gap", "step"}``: how many settings, how many
    with |s* - s_grid| <= one grid step, how many the grid finds collapsed (s = 0) and spread, the
    largest gap, and the step."""
    step = 1.0 / (points - 1)
    out = {"points": 0, "agree": 0, "collapsed": 0, "spread": 0, "max_gap": 0.0, "step": step}
    for convention in CONVENTIONS:
        for kk, nn in shapes:
            for t in taus:
                for a in alphas:
                    derived = optimal_spread(a, t, kk, nn, convention)
                    grid = brute_force_spread(a, t, kk, nn, convention, points)
                    gap = abs(derived - grid)
                    out["points"] += 1
                    out["agree"] += gap <= step
                    out["collapsed" if grid == 0.0 else "spread"] += 1
                    out["max_gap"] = max(out["max_gap"], gap)
    return out


WHERE = "Abstract (the theorem text was not available)"
QUOTE_COLLAPSE = (
    "achieving an optimal balance between these losses is challenging; failing to do so can lead to class "
    "collapse, reducing discrimination among individual embeddings in the same class."
)
QUOTE_GUIDELINES = (
    "Through SSEM, we analyze how hyperparameters affect learned representations, offering practical "
    "guidelines for hyperparameter selection to mitigate the risk of class collapse."
)
QUOTE_MODEL = (
    "we introduce the Simplex-to-Simplex Embedding Model (SSEM), a theoretical framework that models various "
    "embedding structures, including all embeddings that minimize the supervised contrastive loss."
)
FAMILY = (
    "derived here, not compared with the paper's theorem (its text was not available): in the simplex-to-simplex "
    "family (k class means on a regular simplex, n samples per class on a regular simplex of spread s around "
    "their mean, all unit vectors, both views equal), for the loss of clop.losses.ssem in both conventions"
)


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def _claim(id_: str, quote: str, tested: str, ok: bool, result: str) -> Claim:
    return Claim(
        id=id_,
        where=WHERE,
        quote=quote,
        tested=tested,
        verdict="holds" if ok else "fails",
        result=result,
        evidence="theory_report.md",
        command="python -m theory",
        paper="2503.08203",
    )


def threshold_claim(loss_check: tuple[float, float], grid: dict) -> Claim:
    """SSEM-threshold from the symbolic steps, ``loss_check`` (:func:`closed_form_vs_loss`) and ``grid``
    (:func:`brute_force_check`)."""
    loss_gap, loss_ratio = loss_check
    steps = all(
        s_slope_at_collapse(c) == 0
        and strictly_convex(c)
        and boundary_matches_q_form(c)
        and positive_for_k_n_ge_2(-alpha_slope_expr(c))
        for c in CONVENTIONS
    )
    inside = all(
        positive_for_k_n_ge_2(boundary_q_form(c)) and positive_for_k_n_ge_2(1 - boundary_q_form(c)) for c in CONVENTIONS
    )
    agree = grid["agree"] == grid["points"] and grid["collapsed"] > 0 and grid["spread"] > 0
    ok = steps and inside and loss_ratio <= 1 and agree
    pairs, anchors = boundary_q_form("pairs"), boundary_q_form("anchors")
    result = (
        f"alpha* = {pairs} (pairs), {anchors} (anchors), q = exp(-k/((k-1) tau)); in (0, 1) for all k, n >= 2, "
        f"tau > 0: {'proved' if inside else 'NOT proved'}; dL/ds = 0 at s = 0 and L convex in rho = s^2: "
        f"{'proved' if steps else 'NOT proved'}; closed form vs loss: max relative gap {loss_gap:.1e} (within "
        f"float64 rounding: {'yes' if loss_ratio <= 1 else 'NO'}); brute force over {GRID_POINTS} spreads agrees "
        f"within one step at {grid['agree']}/{grid['points']} settings ({grid['collapsed']} collapsed, "
        f"{grid['spread']} spread)"
    )
    tested = (
        f"{FAMILY}: is there an alpha* in (0, 1) such that the minimiser over s in [0, 1] is s = 0 (class collapse) "
        "exactly for alpha <= alpha*? sympy: sign of dL/d(s^2) at s = 0, convexity certificate, alpha* in (0, 1) as "
        "a ratio of polynomials with non-negative coefficients; the closed form against the loss on constructed "
        f"embeddings; a grid minimisation over s at k, n in {list(SHAPES)}, tau in {list(TAUS)}, 21 alphas"
    )
    return _claim("SSEM-threshold", QUOTE_COLLAPSE, tested, ok, result)


def tau_claim() -> Claim:
    """SSEM-tau: the sign of d alpha*/dq and the limits of alpha* as tau -> 0 and tau -> infinity."""
    increasing = all(positive_for_k_n_ge_2(sp.diff(boundary_q_form(c), q)) for c in CONVENTIONS)
    limits = {c: (sp.limit(boundary_q_form(c), q, 0), sp.limit(boundary_q_form(c), q, 1)) for c in CONVENTIONS}
    examples = ", ".join(
        f"tau = {t}: {_fmt(boundary(t, 10, 10))} (pairs), {_fmt(boundary(t, 10, 10, 'anchors'))} (anchors)"
        for t in (0.1, 0.5)
    )
    result = (
        f"alpha* {'increases' if increasing else 'is NOT proved to increase'} with tau in both conventions "
        f"(d alpha*/dq > 0, q = exp(-k/((k-1) tau)) increasing in tau); tau -> 0: {limits['pairs'][0]} (pairs), "
        f"{limits['anchors'][0]} (anchors); tau -> infinity: {limits['pairs'][1]} (pairs), {limits['anchors'][1]} "
        f"(anchors); k = n = 10: {examples}"
    )
    tested = (
        f"{FAMILY}: whether and how the boundary alpha*(tau, k, n) depends on tau; sympy: sign of d alpha*/dq proved "
        "for k, n >= 2 and q in (0, 1), limits q -> 0 and q -> 1"
    )
    return _claim("SSEM-tau", QUOTE_GUIDELINES, tested, increasing, result)


def conventions_claim() -> Claim:
    """SSEM-conventions: whether the two conventions' boundaries coincide (sympy cancels the difference)."""
    difference = sp.factor(sp.cancel(boundary_q_form("pairs") - boundary_q_form("anchors")))
    same = difference == 0
    pairs_higher = positive_for_k_n_ge_2(difference)
    if same:
        verdict_text = "the two boundaries are identical"
    elif pairs_higher:
        verdict_text = "> 0 for all k, n >= 2, tau > 0 (proved): the CIFAR-code loss collapses up to a larger alpha"
    else:
        verdict_text = "not identically 0: the boundaries differ"
    result = (
        f"alpha*_pairs - alpha*_anchors = {difference}, {verdict_text}; k = n = 10, tau = 0.1: "
        f"{_fmt(boundary(0.1, 10, 10))} (pairs) vs {_fmt(boundary(0.1, 10, 10, 'anchors'))} (anchors)"
    )
    tested = (
        f'{FAMILY}: whether the authors\' CIFAR code ("pairs": column-wise softmax with the self term, global '
        'means, supervised pairs of different samples) and their ImageNet code ("anchors": SupCon-style) share '
        "one boundary, as a single guideline for alpha and tau would need; sympy cancels the difference"
    )
    return _claim("SSEM-conventions", QUOTE_GUIDELINES, tested, same, result)


def spread_claim(grid: dict) -> Claim:
    """SSEM-spread from the symbolic steps and ``grid`` (:func:`brute_force_check`)."""
    at_one = all(stationary_at_alpha_one(c) for c in CONVENTIONS)
    monotone = all(strictly_convex(c) and positive_for_k_n_ge_2(-alpha_slope_expr(c)) for c in CONVENTIONS)
    agree = grid["agree"] == grid["points"]
    result = (
        f"rho_1 = s_1^2 = {spread_at_alpha_one_expr()} at alpha = 1 (all kn embeddings on one regular simplex): "
        f"{'proved' if at_one else 'NOT proved'}; d(dL/drho)/dalpha = {alpha_slope_expr('pairs')} (pairs), "
        f"{alpha_slope_expr('anchors')} (anchors), < 0, and L strictly convex, so rho* increases with alpha: "
        f"{'proved' if monotone else 'NOT proved'}; Brent root vs grid: max |s* - s_grid| = {grid['max_gap']:.2g} "
        f"(step {grid['step']:.2g}) over {grid['points']} settings"
    )
    tested = (
        f"{FAMILY}: beyond alpha* the optimal spread s*(alpha) grows continuously and monotonically from 0 to the "
        "one-simplex value at alpha = 1; explicit inverse alpha(rho) = -A(rho)/B of the stationarity equation, "
        "its root found by Brent's method and checked against the grid minimisation"
    )
    return _claim("SSEM-spread", QUOTE_MODEL, tested, at_one and monotone and agree, result)


def claims() -> list[Claim]:
    """The verdicts of this module as :class:`clop.claims.Claim` records (paper 2503.08203), every one computed:
    SSEM-threshold, SSEM-tau, SSEM-conventions, SSEM-spread."""
    grid = brute_force_check()
    return [threshold_claim(closed_form_vs_loss(), grid), tau_claim(), conventions_claim(), spread_claim(grid)]
