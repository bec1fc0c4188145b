"""Tests of theory.ssem_family, theory.ssem_derivation and theory.ssem (SSEM's class-collapse boundary).

The closed form is checked against clop.losses.ssem on explicitly constructed embeddings; the derived
boundary and optimal spread against grid minimisations over s (of the closed form, and of the loss itself);
each claim's verdict against the values it is computed from.
"""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
import sympy as sp
import torch

from clop.claims import Claim
from clop.losses import ssem, ssem_terms
from theory import ssem as S
from theory import ssem_derivation as D
from theory import ssem_family as F

CONVENTIONS = ("pairs", "anchors")
EPS64 = np.finfo(np.float64).eps


# ------------------------------------------------------------------------------------------
# The family and its closed form
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("k", "n", "s"), [(2, 2, 0.0), (3, 4, 0.6), (5, 3, 1.0)])
def test_family_embeddings_have_the_stated_geometry(k, n, s):
    """Unit rows, the four Gram values, class means of length sqrt(1 - s^2), within-class variance s^2."""
    u, labels = F.family_embeddings(k, n, s)
    assert u.shape == (k * n, k + k * n) and labels.tolist() == [c for c in range(k) for _ in range(n)]
    tol = 16 * EPS64
    assert torch.allclose(u.norm(dim=1), torch.ones(k * n, dtype=torch.float64), rtol=0, atol=tol)
    gram = u @ u.T
    same_class = labels[:, None] == labels[None, :]
    off = ~torch.eye(k * n, dtype=torch.bool)
    r = s * s
    expect_class = float(F.gram_entry("class").subs({F.rho: r, F.n: n}))
    expect_other = float(F.gram_entry("other").subs({F.rho: r, F.k: k}))
    assert torch.allclose(
        gram[same_class & off], torch.full_like(gram[same_class & off], expect_class), rtol=0, atol=tol
    )
    assert torch.allclose(gram[~same_class], torch.full_like(gram[~same_class], expect_other), rtol=0, atol=tol)
    means = u.reshape(k, n, -1).mean(1)
    assert torch.allclose(means.norm(dim=1), torch.full((k,), math.sqrt(1 - r), dtype=torch.float64), rtol=0, atol=tol)
    within = ((u.reshape(k, n, -1) - means[:, None]) ** 2).sum(-1).mean()
    assert float(within) == pytest.approx(r, abs=tol)
    counts = {t: int(F.count_per_anchor(t).subs({F.k: k, F.n: n})) for t in F.PAIR_TYPES}
    assert sum(counts.values()) == 2 * k * n  # every one of the 2kn rows has one relation to an anchor


@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize(
    ("k", "n", "s", "alpha", "tau"),
    [
        (2, 2, 0.3, 0.2, 0.1),
        (3, 4, 0.7, 0.5, 0.5),
        (5, 3, 0.0, 1.0, 0.05),
        (4, 2, 1.0, 0.0, 1.3),
        (10, 5, 0.45, 0.8, 0.2),
        (3, 3, 0.9, 0.3, 0.07),
    ],
)
def test_closed_form_matches_the_loss_on_constructed_embeddings(convention, k, n, s, alpha, tau):
    u, labels = F.family_embeddings(k, n, s)
    loss = float(ssem(u, u, labels, alpha, tau, convention))
    closed = float(F.family_loss(s, alpha, tau, k, n, convention))
    assert abs(loss - closed) <= S.rounding_bound(k, n, tau)
    values = {F.rho: s * s, F.tau: tau, F.k: k, F.n: n}
    for got, expr in zip(ssem_terms(u, u, labels, tau, convention), F.terms_expr(convention)):
        assert abs(float(got) - float(expr.subs(values))) <= S.rounding_bound(k, n, tau)


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_scaled_form_equals_plain_form(convention):
    assert F.scaling_identity(convention)
    plain = F.loss_expr(convention, scaled=False).subs(
        {F.rho: sp.Rational(1, 3), F.alpha: sp.Rational(1, 4), F.tau: 2, F.k: 3, F.n: 4}
    )
    scaled = F.loss_expr(convention).subs(
        {F.rho: sp.Rational(1, 3), F.alpha: sp.Rational(1, 4), F.tau: 2, F.k: 3, F.n: 4}
    )
    assert abs(sp.N(plain - scaled, 50)) < 1e-45


def test_family_arguments_are_checked():
    with pytest.raises(ValueError, match=r"^k must be an integer >= 2; got 1"):
        F.family_embeddings(1, 3, 0.5)
    with pytest.raises(ValueError, match=r"^n must be an integer >= 2; got 1"):
        F.family_embeddings(3, 1, 0.5)
    with pytest.raises(ValueError, match=r"^s must be a real number in \[0, 1\]; got 1.5"):
        F.family_embeddings(3, 3, 1.5)
    with pytest.raises(ValueError, match=r"^convention='supcon' is not supported"):
        F.loss_expr("supcon")


# ------------------------------------------------------------------------------------------
# The derivation
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_derivation_steps(convention):
    assert D.s_slope_at_collapse(convention) == 0  # s = 0 always stationary: s is not the regular variable
    assert D.convexity_certificate(convention) and D.strictly_convex(convention)
    assert D.boundary_matches_q_form(convention)
    assert D.stationary_at_alpha_one(convention)
    assert D.positive_for_k_n_ge_2(-D.alpha_slope_expr(convention))
    assert sp.simplify(D.spread_at_alpha_one_expr() - F.k * (F.n - 1) / (F.k * F.n - 1)) == 0
    # alpha(rho) at rho = 0 is the boundary; at rho_1 it is 1
    alpha_of_rho = D.alpha_of_rho_expr(convention)
    point = {F.tau: sp.Rational(3, 10), F.k: 4, F.n: 3}
    assert abs(sp.N((alpha_of_rho.subs(F.rho, 0) - D.boundary_expr(convention)).subs(point), 40)) < 1e-35
    assert abs(sp.N(alpha_of_rho.subs(F.rho, D.spread_at_alpha_one_expr()).subs(point), 40) - 1) < 1e-35


def test_positivity_prover_rejects_what_is_not_positive():
    assert D.positive_for_k_n_ge_2(F.n - 1)
    assert not D.positive_for_k_n_ge_2(F.n - 3)  # negative at n = 2
    assert not D.positive_for_k_n_ge_2(D.q - sp.Rational(1, 2))  # changes sign in (0, 1)
    assert not D.positive_for_k_n_ge_2(sp.sin(F.k))  # not a rational function


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_collapse_slope_sign_flips_at_the_boundary(convention):
    slope = D.collapse_slope_expr(convention)
    for t, kk, nn in [(0.1, 3, 4), (0.5, 10, 5), (2.0, 2, 2)]:
        a_star = S.boundary(t, kk, nn, convention)
        at = {F.tau: t, F.k: kk, F.n: nn}
        assert float(slope.subs({**at, F.alpha: max(a_star - 1e-3, 0)})) > 0
        assert float(slope.subs({**at, F.alpha: min(a_star + 1e-3, 1)})) < 0


# ------------------------------------------------------------------------------------------
# Floats: the boundary and the optimal spread
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_boundary_floats_match_the_derived_expression(convention):
    """boundary() (the q-form, lambdified) against the derived expression at 40 digits; arrays of tau too."""
    taus = [0.02, 0.1, 0.3, 1.0, 5.0]
    expr = D.boundary_expr(convention)
    for kk, nn in [(2, 2), (10, 5), (100, 3)]:
        got = S.boundary(np.array(taus), kk, nn, convention)
        assert got.shape == (5,)
        for t, value in zip(taus, got):
            with mpmath.workdps(40):
                want = float(sp.N(expr.subs({F.tau: sp.Float(t, 40), F.k: kk, F.n: nn}), 40))
            assert value == pytest.approx(want, rel=16 * EPS64, abs=1e-300)
            assert S.boundary(t, kk, nn, convention) == value
    assert S.boundary(1e-3, 3, 4, "pairs") == pytest.approx(0.25, rel=1e-12)  # tau -> 0: 1/n
    assert S.boundary(1e-3, 3, 4, "anchors") == 0.0


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_boundary_against_brute_force_over_alpha_tau_grid(convention):
    """Over an (alpha, tau) grid: the grid minimiser over s is s = 0 exactly below alpha*, and within one grid
    step of the derived optimal spread everywhere (the loss is unimodal in s)."""
    points = 2001
    step = 1 / (points - 1)
    collapsed = spread = 0
    for kk, nn in [(2, 2), (3, 4), (10, 5)]:
        for t in (0.05, 0.1, 0.3, 1.0):
            a_star = S.boundary(t, kk, nn, convention)
            for a in np.linspace(0, 1, 26):
                grid = S.brute_force_spread(a, t, kk, nn, convention, points)
                derived = S.optimal_spread(a, t, kk, nn, convention)
                assert abs(grid - derived) <= step
                if a <= a_star:
                    assert derived == 0.0 and grid == 0.0
                    collapsed += 1
                elif derived > step:  # outside the grid's resolution the grid sees the spread too
                    assert grid > 0.0
                    spread += 1
    assert collapsed > 10 and spread > 10  # the grid straddles the boundary


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_optimal_spread_against_the_loss_itself(convention):
    """Grid minimisation of clop.losses.ssem on the constructed embeddings (no closed form involved)."""
    grid = np.linspace(0, 1, 201)
    for a, t in [(0.05, 0.1), (0.5, 0.1), (0.8, 0.5), (1.0, 0.2)]:
        values = []
        for s in grid:
            u, labels = F.family_embeddings(3, 3, float(s))
            values.append(float(ssem(u, u, labels, a, t, convention)))
        best = float(grid[int(np.argmin(values))])
        assert abs(best - S.optimal_spread(a, t, 3, 3, convention)) <= grid[1]


def test_optimal_spread_ends():
    for convention in CONVENTIONS:
        assert S.optimal_spread(1.0, 0.2, 4, 3, convention) == pytest.approx(math.sqrt(4 * 2 / 11), rel=1e-15)
        a_star = S.boundary(0.2, 4, 3, convention)
        assert S.optimal_rho(a_star * 0.999, 0.2, 4, 3, convention) == 0.0
        assert S.optimal_rho(0.0, 0.2, 4, 3, convention) == 0.0
        # the spread increases with alpha beyond the boundary
        alphas = np.linspace(a_star + 1e-3, 1, 15)
        spreads = [S.optimal_spread(a, 0.2, 4, 3, convention) for a in alphas]
        assert all(b > a for a, b in zip(spreads, spreads[1:]))


def test_numeric_arguments_are_checked():
    with pytest.raises(ValueError, match=r"^tau must be a finite real number > 0"):
        S.boundary(0.0, 3, 3)
    with pytest.raises(ValueError, match=r"^tau must be a finite real number > 0"):
        S.boundary(np.array([0.1, -1.0]), 3, 3)
    with pytest.raises(ValueError, match=r"^k must be an integer >= 2; got 1"):
        S.boundary(0.1, 1, 3)
    with pytest.raises(ValueError, match=r"^n must be an integer >= 2; got 1"):
        S.optimal_spread(0.5, 0.1, 3, 1)
    with pytest.raises(ValueError, match=r"^alpha must be a real number in \[0, 1\]; got 1.2"):
        S.optimal_spread(1.2, 0.1, 3, 3)
    with pytest.raises(ValueError, match=r"^tau must be a finite real number > 0; got -0.1"):
        S.optimal_rho(0.5, -0.1, 3, 3)
    with pytest.raises(ValueError, match=r"^convention='x' is not supported"):
        S.boundary(0.1, 3, 3, "x")
    with pytest.raises(ValueError, match=r"^points must be an integer >= 2"):
        S.brute_force_spread(0.5, 0.1, 3, 3, points=1)


# ------------------------------------------------------------------------------------------
# Claims
# ------------------------------------------------------------------------------------------


def test_claims_are_computed_records():
    claims = S.claims()
    assert [c.id for c in claims] == ["SSEM-threshold", "SSEM-tau", "SSEM-conventions", "SSEM-spread"]
    assert all(isinstance(c, Claim) and c.paper == "2503.08203" for c in claims)
    assert all("not available" in c.where for c in claims)
    verdicts = {c.id: c.verdict for c in claims}
    # the threshold holds: the closed form agrees with the loss, and the brute-force grid with the boundary
    grid = S.brute_force_check()
    gap, ratio = S.closed_form_vs_loss()
    assert ratio <= 1 and grid["agree"] == grid["points"] and grid["collapsed"] and grid["spread"], (grid, ratio)
    assert verdicts["SSEM-threshold"] == "holds"
    assert verdicts["SSEM-conventions"] == "fails"  # the two conventions' boundaries differ (next test)
    assert verdicts["SSEM-tau"] == "holds" and verdicts["SSEM-spread"] == "holds"
    assert "1/n (pairs)" in claims[1].result and f"{gap:.1e}" in claims[0].result


@pytest.mark.parametrize("k, n, tau", [(10, 10, 0.1), (3, 4, 0.5), (2, 2, 1.0)])
def test_the_two_conventions_disagree_on_the_loss_itself(k, n, tau):
    """SSEM-conventions fails on the evidence of clop.losses.ssem, not of the sympy expressions the claim cancels:
    at an alpha between the two derived boundaries, spreading a collapsed family raises the "pairs" loss (collapse
    is optimal there) and lowers the "anchors" loss (it is not). The changes, ~1e-3 at s = 0.05, are ~1e12 times
    float64 rounding of losses of a few units."""
    low, high = sorted((S.boundary(tau, k, n, "anchors"), S.boundary(tau, k, n, "pairs")))
    assert high - low > 0.05
    alpha = (low + high) / 2
    change = {}
    for convention in ("pairs", "anchors"):
        values = []
        for s in (0.0, 0.05):
            u, y = F.family_embeddings(k, n, s)
            values.append(float(ssem(u, u, y, alpha=alpha, temperature=tau, convention=convention)))
        change[convention] = values[1] - values[0]
    assert change["pairs"] > 1e-4 and change["anchors"] < -1e-4, change


def test_verdicts_turn_with_the_evidence():
    """The claim builders decide from their inputs: contrary evidence gives 'fails'."""
    good = {"points": 10, "agree": 10, "collapsed": 4, "spread": 6, "max_gap": 1e-4, "step": 2.5e-4}
    disagreeing = {**good, "agree": 9}
    one_sided = {**good, "collapsed": 0, "spread": 10}
    assert S.threshold_claim((1e-16, 0.1), good).verdict == "holds"
    assert S.threshold_claim((1e-9, 2.0), good).verdict == "fails"  # closed form off the loss
    assert S.threshold_claim((1e-16, 0.1), disagreeing).verdict == "fails"  # brute force disagrees
    assert S.threshold_claim((1e-16, 0.1), one_sided).verdict == "fails"  # the grid never crosses the boundary
    assert S.spread_claim(good).verdict == "holds"
    assert S.spread_claim(disagreeing).verdict == "fails"
