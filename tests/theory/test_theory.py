"""Tests of theory/: symbolic identities (simplify(a - b) == 0), derived inequalities, the float API.

No number from the paper is an expected value here: printed expressions are compared with derivations,
and floats with sympy evaluations or independent numerical computations.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import sympy as sp
import torch

from theory import theorem1 as t1

k, eta, eps, g = t1.k, t1.eta, t1.eps, t1.g


def _zero(expr) -> bool:
    return sp.simplify(expr) == 0


# ---------------------------------------------------------------------------------------------
# Theorem 1: float API
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [2, 2.0, 1, 0, -3, float("nan"), float("inf"), [3, 2], np.array([5.0, 1.5]), True, 2.5, 7.5, "5"])
def test_k_at_most_two_raises_naming_k(bad):
    for fn in (t1.lr_bound, t1.critical_lr, t1.paper_closed_form):
        with pytest.raises(ValueError, match="k"):
            fn(bad)


@pytest.mark.parametrize("bad", [-0.1, float("nan"), True])
def test_bad_eps_raises(bad):
    with pytest.raises(ValueError, match="eps"):
        t1.lr_bound(10, bad)


@pytest.mark.parametrize("kv", [3, 4, 7, 30.0, 1000])
def test_floats_equal_sympy_evaluation(kv):
    assert t1.critical_lr(kv) == pytest.approx(float(t1.critical_lr_expr().subs(k, kv)), rel=1e-14)
    assert t1.paper_closed_form(kv) == pytest.approx(float(t1.paper_closed_form_expr().subs(k, kv)), rel=1e-14)
    assert t1.lr_bound(kv) == pytest.approx(float(t1.lr_bound_expr().subs({k: kv, eps: 0})), rel=1e-14)
    if (1 + 0.2) ** 2 < kv - 1:
        assert t1.lr_bound(kv, 0.2) == pytest.approx(float(t1.lr_bound_expr().subs({k: kv, eps: sp.Rational(1, 5)})), rel=1e-12)
    assert isinstance(t1.lr_bound(kv), float)


def test_vectorised_matches_scalar():
    ks = np.array([3.0, 5.0, 30.0, 100.0])
    for fn in (t1.lr_bound, t1.critical_lr, t1.paper_closed_form):
        out = fn(ks)
        assert isinstance(out, np.ndarray) and out.shape == ks.shape
        np.testing.assert_allclose(out, [fn(float(v)) for v in ks], rtol=1e-15)
    np.testing.assert_allclose(t1.lr_bound(30.0, np.array([0.0, 0.1])), [t1.lr_bound(30, 0.0), t1.lr_bound(30, 0.1)])


def test_unbounded_when_tolerance_exceeds_k_minus_one():
    # (1+eps)^2 >= k-1 makes the leading coefficient (k-1-(1+eps)^2)/(k-1) of the quadratic non-positive.
    assert math.isinf(t1.lr_bound(3, 0.5))
    assert math.isfinite(t1.lr_bound(30, 0.5))


def test_bound_is_the_edge_of_the_feasible_set_of_inequality_2():
    """Independent check of the root choice: just below the bound (2) holds, just above it does not."""
    ineq = sp.lambdify((k, eta, eps), (1 - eta) ** 2 - t1.norm_sq_expr() * (1 + eps) ** 2, "numpy")
    for kv in (3, 4, 10, 30, 200):
        for ev in (0.0, 0.05, 0.3):
            if (1 + ev) ** 2 >= kv - 1:
                continue
            b = t1.lr_bound(kv, ev)
            assert ineq(kv, b * (1 - 1e-6), ev) < 0 < ineq(kv, b * (1 + 1e-6), ev)
            assert b > 1  # above eta = 1 where the pre-normalisation mean vanishes


# ---------------------------------------------------------------------------------------------
# Theorem 1: symbolic derivations vs the printed expressions
# ---------------------------------------------------------------------------------------------


def test_step_coefficients_and_mean_factor():
    a_coef, b_coef = t1.step_coefficients()
    assert _zero(a_coef - (1 + eta / (k - 1))) and _zero(b_coef - eta * k / (k - 1))
    assert _zero(t1.mean_after_step_expr() - t1.paper_mean_factor_expr())


def test_moments_and_eq5():
    m = t1.moment_exprs()
    assert _zero(m["E_mumu"] - 1 / k) and _zero(m["E_xmu"] - 1 / k) and m["E_xx"] == 1
    assert _zero(t1.eq5_derived_expr() - t1.paper_eq5_expr())


def test_derived_norm_and_printed_first_line_agree_but_printed_polynomial_does_not():
    derived = t1.norm_sq_expr()
    assert _zero(derived - (1 + eta**2 / (k - 1)))  # hand derivation: (1+a)^2 - 2a(1+a) + k a^2 = 1 - a^2 + k a^2
    assert _zero(t1.paper_norm_sq_first_line_expr() - derived)
    diff = sp.simplify(t1.paper_norm_sq_expr() - derived)
    assert diff != 0
    # the difference is negative for all eta > 0, k > 2: written in q = k - 2 it is -(positive)
    assert _zero(diff + eta * (k - 2) * (eta + k - 1) / (k * (k - 1) ** 2))


def test_paper_chain_follows_from_its_printed_polynomial():
    lin = t1.paper_linear_ineq_expr()
    assert _zero((1 - eta) ** 2 - t1.paper_norm_sq_expr() - eta * lin)
    assert _zero(t1.paper_bound_from_printed_polynomial_expr() - t1.paper_ratio_expr())
    (root,) = sp.solve(lin, eta)
    assert _zero(root - t1.paper_ratio_expr())


def test_printed_closed_form_has_wrong_denominator():
    ratio = t1.paper_ratio_expr()
    assert sp.simplify(ratio - t1.paper_closed_form_expr()) != 0
    assert _zero(t1.corrected_ratio_denominator_expr() - (k**3 - 3 * k**2 + 3 * k - 2))
    assert _zero(ratio - (2 * k**3 - 5 * k**2 + 5 * k - 2) / (k**3 - 3 * k**2 + 3 * k - 2))


def test_corrected_bound_equals_critical_rate():
    assert _zero(t1.lr_bound_eps0_expr() - t1.critical_lr_expr())
    assert _zero(t1.critical_lr_expr() - 2 * (k - 1) / (k - 2))
    # the general-eps root solves the equality
    root = t1.lr_bound_expr()
    assert _zero(((1 - eta) ** 2 - t1.norm_sq_expr() * (1 + eps) ** 2).subs(eta, root))


def test_mean_factor_linearisation():
    r = eta * k / (k - 1 + eta)
    assert _zero(t1.r_expr() - r)
    assert _zero(t1.mean_factor_expr() - ((1 - r) + r * g))
    f0 = t1.mean_factor_expr().subs(g, 0)
    assert _zero(f0 - (1 - eta) / (1 + eta / (k - 1)))
    assert _zero(f0.subs(eta, t1.critical_lr_expr()) + 1)
    # f0 decreases in eta (so the crossing of -1 is unique): derivative = -k(k-1)/(eta+k-1)^2
    assert _zero(sp.diff(f0, eta) + k * (k - 1) / (eta + k - 1) ** 2)
    assert _zero(t1.etf_in_span_threshold_expr() - 2 * (k - 1) ** 2 / (k**2 - 4 * k + 2))


def test_sign_of_differences_proven_in_q():
    from theory.verdict import positive_for_k_gt_2

    ok, _ = positive_for_k_gt_2(t1.critical_lr_expr() - t1.paper_closed_form_expr())
    assert ok
    ok, _ = positive_for_k_gt_2(t1.critical_lr_expr() - t1.paper_ratio_expr())
    assert ok
    ok, _ = positive_for_k_gt_2(t1.paper_closed_form_expr() - t1.critical_lr_expr())
    assert not ok
    ks = np.arange(3, 1001, dtype=float)
    assert np.all(t1.critical_lr(ks) > t1.paper_closed_form(ks))


def test_asymptotics():
    assert t1.series_in_inverse_k(t1.critical_lr_expr()) == (2, 2)
    assert t1.series_in_inverse_k(t1.paper_closed_form_expr()) == (2, 1)
    assert t1.series_in_inverse_k(t1.paper_ratio_expr()) == (2, 1)
    # the same coefficients from sympy's general series expansion
    u = sp.Symbol("u", positive=True)
    s = sp.series(t1.paper_closed_form_expr().subs(k, 1 / u), u, 0, 2).removeO()
    assert (s.coeff(u, 0), s.coeff(u, 1)) == t1.series_in_inverse_k(t1.paper_closed_form_expr())


def test_gradient_relation_symbolic_and_autograd():
    from theory import theorem1_numerics as num

    ok, _ = t1.derive_gradient_relation(k_max=4, dim=2)
    assert ok
    assert num.gradient_relation_autograd() < 1e-12
    assert t1.appendix_d_eta_from_plain_lr(0.5, 11) == 10.0


# ---------------------------------------------------------------------------------------------
# Theorem 1: numerics
# ---------------------------------------------------------------------------------------------


def test_monte_carlo_supports_derived_norm_not_printed():
    from theory import theorem1_numerics as num

    rows = num.monte_carlo_moments(5, 10, etas=(2.0,), n=1500, seed=3)
    norm = [r for r in rows if r["eta"] == 2.0][0]
    assert abs(norm["z_derived"]) < 5 and abs(norm["z_paper"]) > 10
    for r in rows[:2]:
        assert abs(r["z_derived"]) < 5
    # seeded: same seed, same numbers
    assert num.monte_carlo_moments(5, 10, etas=(2.0,), n=50, seed=1) == num.monte_carlo_moments(5, 10, etas=(2.0,), n=50, seed=1)


def test_finite_difference_mean_map_matches_formula_and_crosses_at_critical():
    from theory import theorem1_numerics as num

    for x in (num.etf_configuration(5, 7), num.zero_mean_by_descent(5, 7, seed=2)):
        assert float(x.mean(0).norm()) < 1e-12
        c = t1.critical_lr(5)
        below, above = num.spectral_radii(x, c * (1 - 1e-4)), num.spectral_radii(x, c * (1 + 1e-4))
        assert below["max_formula_error"] < 1e-7 and below["lift_residual"] < 1e-7
        assert below["complement"] < 1 < above["complement"]
        assert above["in_span"] < 1  # the binding direction is the one with G-eigenvalue 0
    etf = num.etf_configuration(5, 7)
    thr = num.critical_crossing(etf, "in_span", lo=c, hi=10.0, tol=1e-4)
    assert thr == pytest.approx(float(t1.etf_in_span_threshold_expr().subs(k, 5)), abs=1e-3)


def test_descent_configuration_has_rank_k_minus_1():
    from theory import theorem1_numerics as num

    x = num.zero_mean_by_descent(6, 9, seed=0)
    s = torch.linalg.svdvals(x)
    assert int((s > 1e-9 * s[0]).sum()) == 5
    with pytest.raises(ValueError, match="m"):
        num.zero_mean_by_descent(6, 5)


# ---------------------------------------------------------------------------------------------
# Lemma 1
# ---------------------------------------------------------------------------------------------


def test_lemma1_gradients_and_saddle():
    from theory import lemma1 as l1

    gr = l1.gradient_norms()
    assert gr["all_equal"] < 1e-12 and gr["colinear"] < 1e-12 and gr["random"] > 1e-3
    h = l1.collapse_hessian()
    assert h["n_negative"] > 0 and h["n_positive"] > 0
    assert h["loss"] == pytest.approx(math.log(2 * h["n"] - 1), rel=1e-12)  # log of the 2N-1 equal terms
    assert l1.network_hessian()["n_negative"] > 0


def test_lemma1_p_star():
    from theory import lemma1 as l1

    ps = l1.p_star()
    i_sym = list(ps["P_star"].free_symbols)[0]
    assert sp.simplify(ps["P_star"] - ps["paper_P_star"]) != 0
    assert _zero(ps["loss_at_collapse"] - ps["paper_P_star"])
    assert ps["gradient_coefficient"] == 0
    num = l1.p_star_numeric(n=5)
    assert num["prob_positive"] == pytest.approx(float(ps["P_star"].subs(i_sym, num["views"])), rel=1e-12)


# ---------------------------------------------------------------------------------------------
# L_class and Lemma 2
# ---------------------------------------------------------------------------------------------


def test_lclass_identity_and_signs():
    from theory import lclass as lc

    _, unit = lc.identity_symbolic_k()
    assert _zero(unit - lc.k)
    assert lc.identity_explicit(k_max=4, m=2)
    signs = lc.printed_sign_collapse_expr()
    assert _zero(signs["text_sign_min"] + lc.k) and _zero(signs["printed_sign_min"] + lc.k * (lc.k - 1))
    assert _zero(lc.etf_value_expr() + lc.k)


def test_lclass_configurations_against_loop_and_derived_values():
    from clop.losses import l_class
    from theory import lclass as lc

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(7, 5, generator=gen, dtype=torch.float64)
    x = x / x.norm(dim=1, keepdim=True)
    assert float(l_class(x)) == pytest.approx(float(lc.l_class_loop(x)), abs=1e-12)
    for row in lc.configurations_report(k_values=(4, 6)):
        assert row["l_class"] == pytest.approx(row["l_class_loop"], abs=1e-12)
        # value from the identity: ||sum||^2 - k
        assert row["l_class"] == pytest.approx(row["sum_norm"] ** 2 - row["k"], abs=1e-9)
        if row["configuration"] == "simplex ETF":
            assert row["l_class"] == pytest.approx(float(lc.etf_value_expr().subs(lc.k, row["k"])), abs=1e-9)
            assert row["rank"] == row["k"] - 1
        if row["configuration"] == "inverted groups (pairs)":
            assert row["rank"] == row["k"] // 2 and row["sum_norm"] < 1e-12


def test_lemma2():
    from theory import lclass as lc

    lag = lc.lemma2_lagrange()
    assert lag["is_minus_s_hat"] and lag["n_stationary"] == 2
    assert lc.lemma2_cauchy_schwarz_identity()
    res = lc.lemma2_numeric(draws=60, candidates=512, pgd_steps=100)
    assert res["max_random_improvement"] <= 1e-12 and res["max_pgd_improvement"] <= 1e-12
    assert res["max_span_residual"] < 1e-12 and res["min_singular_value"] > 1e-6
    ae = lc.appendix_e_numeric(draws=500)
    assert ae["fraction_strictly_lower"] == 1.0 and ae["max_rank_after"] == ae["k"] - 1
    eq = lc.appendix_e_equality_case()
    assert eq["l_class_after"] == pytest.approx(eq["l_class_before"], abs=1e-12)
    assert eq["rank_before"] == 4 and eq["rank_after"] == 3


# ---------------------------------------------------------------------------------------------
# The report and the command line
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def claims():
    from theory import report

    return report.all_claims(fast=True, progress=False)


def test_report_verdicts(claims):
    from clop.claims import VERDICTS

    by = {c.id: c for c in claims}
    assert len(by) == len(claims)
    assert all(c.verdict in VERDICTS and c.detail and "\n" not in c.detail for c in claims)
    expected = {
        "T1-norm-poly": "fails",
        "T1-closed-form": "fails",
        "T1-eq5": "holds",
        "T1-bound": "holds with correction",
        "T1-critical": "holds with correction",
        "T1-tightness": "conservative",
        "L1-stationary": "holds",
        "L1-minima": "fails",
        "L1-pstar": "holds with correction",
        "LC-sign": "holds with correction",
        "LC-optimum": "holds",
        "L2-statement": "holds",
        "L2-proof": "holds with correction",
    }
    for cid, verdict in expected.items():
        assert by[cid].verdict == verdict, (cid, by[cid].detail)


def test_main_outputs(claims, tmp_path, monkeypatch, capsys):
    from theory import __main__ as cli
    from theory import report

    monkeypatch.setattr(report, "all_claims", lambda fast=False, progress=True: claims)
    md, fig = tmp_path / "r" / "theory_report.md", tmp_path / "f" / "theorem1_bound.png"
    assert cli.main(["--json", "--markdown", str(md), "--figure", str(fig), "--no-progress"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [set(d) for d in data] == [{"id", "claim", "method", "verdict", "detail"}] * len(claims)
    text = md.read_text()
    assert text.startswith("# ") and "| id | claim | method | verdict | detail |" in text and "$$" in text
    assert fig.stat().st_size > 10_000
    rows = (fig.parent / "theorem1_bound.csv").read_text().splitlines()
    assert rows[0] == "k,lr_bound_eps0,critical_lr,paper_closed_form,paper_ratio" and len(rows) == 99
    assert cli.main(["--no-progress"]) == 0
    assert "T1-critical" in capsys.readouterr().out
