"""The numerical linearisation of rung 1 (simulations.rungs.linearise) against Theorem 1's rate and the closed
forms of theory.linearisation, and the fixed points and Lemma 1 checks it rests on."""

from __future__ import annotations

import math

import pytest
import torch

from simulations.rungs.linearise import (
    attraction_step,
    critical_step,
    fixed_point,
    lemma1,
    minibatch_prediction,
    simplex_configuration,
    tangent_model,
)
from simulations.rungs.problem import Problem
from theory import linearisation as lin
from theory import theorem1 as t1

pytestmark = pytest.mark.usefixtures("one_thread")


def _simplex_points(points: int, dim: int) -> torch.Tensor:
    c = torch.eye(points, dtype=torch.float64) - 1.0 / points
    c = c / torch.linalg.vector_norm(c, dim=1, keepdim=True)
    q, _ = torch.linalg.qr(torch.randn(dim, points, generator=torch.Generator().manual_seed(3), dtype=torch.float64))
    return c @ q.T


@pytest.mark.parametrize("points", [4, 6, 10])
def test_lclass_linearisation_gives_theorem1_rate_in_appendix_d_units(points):
    """K unit vectors at a zero-mean configuration (a simplex) in R^(K+1): eta = 2(K-1) lr* = 2(K-1)/(K-2)."""
    problem = Problem.make("lclass", 3, 1)
    z = _simplex_points(points, points + 1).reshape(2, points // 2, points + 1)
    labels = torch.arange(points // 2) % 3
    model = tangent_model(problem, z, labels)
    assert model.grad_tangent < 1e-12
    cs = critical_step(model)
    assert 2 * (points - 1) * cs["critical"] == pytest.approx(float(t1.critical_lr(points)), rel=1e-10)
    assert 2 * (points - 1) * cs["textbook"] == pytest.approx(2 * (points - 1) / points, rel=1e-10)
    assert cs["critical"] == pytest.approx(lin.lclass_critical_step(points), rel=1e-10)


def test_lclass_collapse_attracts_from_the_same_step():
    p = Problem.make("lclass", 3, 1, d=7)
    res = lemma1(p)
    assert res["kind"] == "maximum"
    assert res["attracts_from"] == pytest.approx(lin.lclass_critical_step(6), rel=1e-6)


@pytest.mark.parametrize("loss,k,n,tau", [("supcon", 4, 2, 0.5), ("supcon", 3, 2, 1.0), ("infonce", 4, 1, 0.5),
                                          ("infonce", 5, 1, 0.2), ("dcl", 4, 1, 0.1), ("supcon", 5, 1, 3.0)])
def test_closed_form_modes_match_the_numerical_hessian(loss, k, n, tau):
    p = Problem.make(loss, k, n, tau=tau)
    z = simplex_configuration(p)
    model = tangent_model(p, z)
    assert model.grad_tangent < 1e-12
    ev = torch.linalg.eigvalsh(model.h_t).tolist()
    modes = lin.simplex_modes(p.vertices(), p.per_vertex(), tau, dcl=loss == "dcl")
    for name, value in modes.items():
        assert min(abs(e - value) for e in ev) < 1e-9 * max(1.0, value), name
    crit, _ = lin.simplex_critical_step(p.vertices(), p.per_vertex(), tau, dcl=loss == "dcl")
    assert critical_step(model)["critical"] == pytest.approx(crit, rel=1e-9)
    # every non-zero eigenvalue is one of the families (nothing is missing)
    nonzero = [e for e in ev if abs(e) > 1e-9]
    assert all(min(abs(e - v) for v in modes.values()) < 1e-8 * max(1.0, abs(e)) for e in nonzero)


def test_fixed_point_reaches_the_simplex_and_is_a_minimum():
    p = Problem.make("infonce", 3, 1, tau=0.5)
    fp = fixed_point(p)
    assert fp.source == "simplex" and fp.rank == 2
    cs = critical_step(tangent_model(p, fp.z))
    assert cs["hess_min"] > 0


def test_lemma1_contrastive_collapse_is_a_saddle_and_clop_is_not_stationary():
    res = lemma1(Problem.make("infonce", 3, 1, tau=0.5))
    assert res["kind"] == "saddle" and res["grad_tangent"] < 1e-12 and math.isinf(res["attracts_from"])
    assert res["hess_min"] == pytest.approx(-2 / (0.5 * (6 - 1)), rel=1e-9)
    assert lemma1(Problem.make("infonce+clop", 3, 1, tau=0.5))["kind"] == "not stationary"


def test_attraction_step_is_inf_for_a_minimum():
    p = Problem.make("infonce", 3, 1, tau=0.5)
    assert math.isinf(attraction_step(tangent_model(p, simplex_configuration(p))))


def test_minibatch_prediction_full_batch_size_equals_subproblem_for_lclass():
    p = Problem.make("lclass", 3, 2, d=13, batch=3)
    pred = minibatch_prediction(p, fixed_point(Problem.make("lclass", 3, 2, d=13)), samples=6)
    assert 0 < pred["per_batch_p10"] <= pred["per_batch_median"] <= pred["per_batch_p90"]
    assert math.isfinite(pred["expected_jacobian"]) and pred["expected_jacobian"] > pred["per_batch_median"] / 2


def test_hessian_size_is_bounded():
    p = Problem.make("infonce", 50, 1)
    with pytest.raises(ValueError, match="P D"):
        tangent_model(p, simplex_configuration(p))
