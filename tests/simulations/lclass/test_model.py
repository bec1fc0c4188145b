"""Tests of simulations.lclass.model: the learning rate of the Appendix D step, the collapse criterion, the
growth factors and the finite-horizon estimate (arXiv 2403.18699, Sec. 3.1, Appendix D).

Reference values come from independent computations: torch autograd on clop.losses.l_class and the sympy
results of theory.theorem1.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from clop.losses import l_class
from clop.prototypes import simplex_etf
from simulations.lclass.model import (
    autograd_lr_from_eta,
    collapse_contraction_factor,
    collapse_steps_estimate,
    eta_from_autograd_lr,
    fastest_collapse_steps,
    finite_horizon_threshold,
    initial_embeddings,
    is_collapsed,
    mean_growth_factor,
)
from simulations.lclass.simulate import collapsed, simulate
from theory.theorem1 import critical_lr

pytestmark = pytest.mark.usefixtures("one_thread")


def test_eta_is_2_k_minus_1_times_autograd_lr():
    k, m, lr = 7, 11, 0.013
    x0 = initial_embeddings(k, m, 1, seed=3)
    x = x0[0].clone().requires_grad_(True)
    l_class(x).backward()
    others = x0[0].sum(0, keepdim=True) - x0[0]
    assert torch.allclose(x.grad, 2 * others, atol=1e-12)  # grad_{x_i} L_class = 2 sum_{j != i} x_j
    y = x0[0] - lr * x.grad
    manual = y / torch.linalg.vector_norm(y, dim=-1, keepdim=True)
    eta = eta_from_autograd_lr(lr, k)
    assert eta == pytest.approx(2 * (k - 1) * lr)
    assert autograd_lr_from_eta(eta, k) == pytest.approx(lr)
    for reduced in (False, True):
        res = simulate(k, m, [eta], steps=1, x0=x0, reduced=reduced, device="cpu")
        assert torch.allclose(res.embeddings()[0, 0], manual, atol=1e-12)


def test_collapse_criterion_inverted_pairs_etf_and_single_point():
    k, m = 6, 8
    u = torch.nn.functional.normalize(torch.randn(m, dtype=torch.float64, generator=torch.Generator().manual_seed(0)), dim=0)
    pairs = torch.stack([u if i % 2 == 0 else -u for i in range(k)])  # rank 1, zero mean
    assert torch.linalg.matrix_rank(pairs) == 1
    assert float(l_class(pairs)) == pytest.approx(-k)  # a global minimum of L_class
    assert not bool(is_collapsed(pairs))
    res = simulate(k, m, [1.0, 2.5], trials=1, steps=20, x0=pairs[None], reduced=False, device="cpu")
    np.testing.assert_allclose(res.final_x[0, 0].numpy(), pairs.numpy(), atol=1e-12)  # a fixed point
    assert not collapsed(res).any()
    same = u.expand(k, m).clone()
    assert bool(is_collapsed(same))
    etf = simplex_etf(k, m, seed=0, dtype=torch.float64)
    assert not bool(is_collapsed(etf))
    # ||mu|| >= 1 - tol bounds every ||x_i - mu|| by sqrt(2 k tol)
    x = torch.nn.functional.normalize(same + 1e-4 * torch.randn(k, m, dtype=torch.float64, generator=torch.Generator().manual_seed(1)), dim=-1)
    mu = x.mean(0)
    tol = 1 - float(mu.norm())
    assert float((x - mu).norm(dim=-1).max()) <= math.sqrt(2 * k * tol) + 1e-12


def test_growth_and_contraction_factors_cross_one_at_critical_lr():
    for k in (3, 4, 7, 30, 100):
        crit = critical_lr(k)
        assert mean_growth_factor(k, crit) == pytest.approx(1.0, abs=1e-12)
        assert collapse_contraction_factor(k, crit) == pytest.approx(1.0, abs=1e-12)
        assert mean_growth_factor(k, crit - 0.01) < 1 < mean_growth_factor(k, crit + 0.01)
        assert collapse_contraction_factor(k, crit + 0.01) < 1 < collapse_contraction_factor(k, crit - 0.01)


def test_finite_horizon_threshold_equals_the_full_bisection():
    """The bisection stops once (a, b) no longer change: the same bits as all 200 halvings."""
    def full(k, steps, m0):
        a = 2.0 * (k - 1) / (k - 2)
        b = a + 1.0
        while collapse_steps_estimate(k, b, m0=m0) > steps:
            b = a + 2.0 * (b - a)
        for _ in range(200):
            mid = 0.5 * (a + b)
            if collapse_steps_estimate(k, mid, m0=m0) > steps:
                a = mid
            else:
                b = mid
        return b

    for k, steps, m0 in [(3, 2000, 0.4), (4, 300, 0.05), (30, 2000, 0.18), (100, 1000, 0.1), (57, 90, 0.01)]:
        assert finite_horizon_threshold(k, steps, m0=m0) == full(k, steps, m0), (k, steps, m0)


def test_finite_horizon_estimate_is_infinite_when_no_eta_can_collapse_in_time():
    t_min = fastest_collapse_steps(3, m0=0.5)
    assert collapse_steps_estimate(3, 1e6, m0=0.5) == pytest.approx(t_min, rel=1e-4)
    assert math.isinf(finite_horizon_threshold(3, math.floor(t_min), m0=0.5))
    eta = finite_horizon_threshold(3, math.floor(t_min) + 2, m0=0.5)
    assert math.isfinite(eta) and collapse_steps_estimate(3, eta, m0=0.5) <= math.floor(t_min) + 2
