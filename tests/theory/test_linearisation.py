"""Tests of theory.linearisation: symbolic identities (simplify(a - b) == 0) and the float API.

The closed forms are compared with the numerical Hessians of clop.losses in
tests/simulations/ladder/test_linearise.py.
"""

from __future__ import annotations

import math

import pytest
import sympy as sp

from theory import linearisation as lin
from theory import theorem1 as t1


def _zero(expr) -> bool:
    return sp.simplify(expr) == 0


def test_general_mode_formula():
    assert _zero(lin.critical_step_expr() - 2 / (lin.h - lin.c))
    assert _zero(lin.textbook_ratio_expr() - (lin.h + lin.c) / (lin.h - lin.c))
    f = lin.step_factor_expr().subs(lin.lr, lin.critical_step_expr())
    assert _zero(f + 1)
    # scale-invariant losses (c = 0): the renormalisation changes nothing, critical == textbook
    assert _zero((lin.critical_step_expr() - lin.textbook_step_expr()).subs(lin.c, 0))


def test_lclass_critical_eta_is_theorem1_rate():
    assert _zero(lin.lclass_critical_eta_expr() - 2 * (lin.K - 1) / (lin.K - 2))
    assert _zero(lin.lclass_critical_eta_expr().subs(lin.K, t1.k) - t1.critical_lr_expr())
    assert _zero(lin.lclass_textbook_eta_expr() - 2 * (lin.K - 1) / lin.K)
    assert _zero(lin.lclass_textbook_ratio_expr() - lin.K / (lin.K - 2))


def test_lclass_collapse_attracts_exactly_above_the_critical_eta():
    assert _zero(lin.lclass_collapse_attraction_eta_expr() - lin.lclass_critical_eta_expr())
    f = lin.lclass_collapse_factor_expr()
    for kv in (3, 10):
        crit = float(t1.critical_lr(kv)) / (2 * (kv - 1))
        assert abs(float(f.subs({lin.K: kv, lin.lr: 0.99 * crit}))) > 1
        assert abs(float(f.subs({lin.K: kv, lin.lr: 1.01 * crit}))) < 1


def test_collapse_of_contrastive_losses_is_a_saddle_that_never_attracts():
    proven, factor = lin.collapse_never_attracts()
    assert proven
    assert _zero(factor - (1 + 2 * lin.lr / (lin.tau * (lin.V * lin.m - 1))))
    modes = lin.collapse_mode_exprs()
    assert sp.simplify(modes["within_vertex"].subs({lin.V: 4, lin.m: 2, lin.tau: 1})) > 0


def test_simplex_mode_structure():
    modes = lin.simplex_mode_exprs()
    p_s, p_d = lin.softmax_weights()
    assert _zero(modes["split_in"] - modes["split_out"] - 2 * p_d / (lin.tau**2 * (lin.V - 1)))
    # softmax weights of one anchor sum to 1
    assert _zero((lin.m - 1) * p_s + (lin.V - 1) * lin.m * p_d - 1)
    ps_dcl, pd_dcl = lin.softmax_weights(positive_in_denominator=False)
    assert ps_dcl == 0 and _zero((lin.V - 1) * lin.m * pd_dcl - 1)


def test_float_api():
    crit, mode = lin.simplex_critical_step(8, 2, 0.5)
    assert mode == "split_in" and crit == pytest.approx(2 / lin.simplex_modes(8, 2, 0.5)["split_in"])
    assert "deform_irrep" not in lin.simplex_modes(3, 2, 0.5)
    assert lin.lclass_critical_step(16) == pytest.approx(1 / 14, rel=1e-14)
    assert lin.lclass_textbook_step(16) == pytest.approx(1 / 16, rel=1e-14)
    assert lin.simplex_translation_step(8, 2, 0.5) == pytest.approx(0.5 / float(lin.softmax_weights()[1].subs(
        {lin.V: 8, lin.m: 2, lin.tau: sp.Rational(1, 2)})), rel=1e-12)
    assert math.isfinite(lin.simplex_critical_step(20, 2, 0.1, dcl=True)[0])


@pytest.mark.parametrize("call", [
    lambda: lin.simplex_modes(2, 2, 0.5), lambda: lin.simplex_modes(4, 1, 0.5), lambda: lin.simplex_modes(4, 2, 0.0),
    lambda: lin.simplex_modes(4, 4, 0.5, dcl=True), lambda: lin.lclass_critical_step(2),
    lambda: lin.lclass_textbook_step(True),
])
def test_bad_arguments_raise(call):
    with pytest.raises(ValueError):
        call()
