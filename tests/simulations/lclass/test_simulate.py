"""Tests of simulations.lclass.simulate: the batched steps against a per-vector reference, the reduction to
k dimensions, seeds, devices, and the paper's Sec. 3.1 claims (Figure 3's k = 30 runs, no collapse below
the Theorem 1 bounds).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from simulations.lclass.model import COLLAPSE_TOL, initial_embeddings, mean_growth_factor, reduce_coordinates
from simulations.lclass.search import max_stable_lr, sweep
from simulations.lclass.simulate import collapsed, simulate
from tests.simulations.lclass.helpers import reference_run
from theory.theorem1 import critical_lr, lr_bound, paper_closed_form

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("k,m,etas,steps", [(6, 9, [0.5, 2.0, 3.0], 150), (30, 100, [2.0, 2.1], 200)])
def test_batched_engine_equals_per_vector_reference(k, m, etas, steps):
    x0 = initial_embeddings(k, m, 2, seed=5)
    res_full = simulate(k, m, etas, trials=2, steps=steps, seed=5, reduced=False, device="cpu")
    res_red = simulate(k, m, etas, trials=2, steps=steps, seed=5, reduced=True, device="cpu")
    for t in range(2):
        for j, eta in enumerate(etas):
            ref_x, ref_norms = reference_run(x0[t].numpy(), eta, steps)
            for res in (res_full, res_red):
                np.testing.assert_allclose(res.embeddings()[t, j].numpy(), ref_x, atol=1e-10, rtol=0)
                np.testing.assert_allclose(res.mean_norm[:, t, j].numpy(), ref_norms, atol=1e-10, rtol=0)
                hits = [s for s, v in enumerate(ref_norms) if v >= 1 - COLLAPSE_TOL]
                assert int(res.collapse_step[t, j]) == (hits[0] if hits else -1)


def test_row_space_invariance_and_reduced_equals_full():
    k, m, steps = 10, 40, 300
    etas = [0.7, 2.0, 2.3, 3.0]
    rec = ("mean_norm", "singular_values", "l_class")
    full = simulate(k, m, etas, trials=3, steps=steps, seed=1, reduced=False, record=rec, record_every=10, device="cpu")
    red = simulate(k, m, etas, trials=3, steps=steps, seed=1, reduced=True, record=rec, record_every=10, device="cpu")
    for name in rec:
        np.testing.assert_allclose(getattr(red, name).numpy(), getattr(full, name).numpy(), atol=1e-10, rtol=0)
    np.testing.assert_allclose(red.embeddings().numpy(), full.embeddings().numpy(), atol=1e-10, rtol=0)
    # the final rows of the full-dimensional run lie in the row space of X0
    x0 = initial_embeddings(k, m, 3, seed=1)
    _, q = reduce_coordinates(x0)
    proj = full.final_x @ q.unsqueeze(1) @ q.transpose(-1, -2).unsqueeze(1)
    np.testing.assert_allclose(proj.numpy(), full.final_x.numpy(), atol=1e-12, rtol=0)
    # independent check of the recorded spectrum and loss at the end
    xf = full.final_x.numpy()
    np.testing.assert_allclose(full.singular_values[-1].numpy(), np.linalg.svd(xf, compute_uv=False), atol=1e-12)
    s = xf.sum(axis=2)
    np.testing.assert_allclose(full.l_class[-1].numpy(), (s * s).sum(-1) - k, atol=1e-10)


def test_same_seed_same_numbers_and_trial_independence():
    a = simulate(8, 20, [1.0, 2.5], trials=3, steps=50, seed=11, record=("singular_values",), device="cpu")
    b = simulate(8, 20, [1.0, 2.5], trials=3, steps=50, seed=11, record=("singular_values",), device="cpu")
    assert torch.equal(a.singular_values, b.singular_values) and torch.equal(a.final_x, b.final_x)
    c = simulate(8, 20, [1.0, 2.5], trials=3, steps=50, seed=12, device="cpu")
    assert not torch.equal(a.final_x, c.final_x)
    # trial t starts the same whether 1 or 3 trials are run
    assert torch.equal(initial_embeddings(8, 20, 3, seed=11)[:1], initial_embeddings(8, 20, 1, seed=11))


def test_device_plumbing():
    res = simulate(5, 7, [1.0], steps=3, device="cpu", record=("mean_norm", "l_class", "singular_values"))
    for t in (res.final_x, res.mean_norm, res.l_class, res.singular_values, res.collapse_step):
        assert t.device.type == "cpu"
    assert res.final_x.dtype == torch.float64
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="device"):
            simulate(5, 7, [1.0], steps=3, device="cuda")
        pytest.skip("CUDA not available: the CUDA run of the same code path is skipped")
    gpu = simulate(5, 7, [1.0, 2.9], trials=2, steps=200, device="cuda", record=("mean_norm",))
    cpu = simulate(5, 7, [1.0, 2.9], trials=2, steps=200, device="cpu", record=("mean_norm",))
    assert gpu.final_x.device.type == "cuda"
    np.testing.assert_allclose(gpu.mean_norm.cpu().numpy(), cpu.mean_norm.numpy(), atol=1e-10)
    assert torch.equal(gpu.collapse_step.cpu(), cpu.collapse_step)
    np.testing.assert_array_equal(sweep([3, 6], 8, [2.0, 4.5], trials=2, steps=100, device="cuda"),
                                  sweep([3, 6], 8, [2.0, 4.5], trials=2, steps=100, device="cpu"))


def test_k30_eta_2_0_trains_to_rank_k_minus_1_and_2_1_collapses():
    k, m = 30, 100
    res = simulate(k, m, [2.0, 2.1], trials=3, steps=1000, seed=0, record=("singular_values", "l_class"),
                   record_every=100, device="cpu")
    sv = res.singular_values[-1]  # (T, E, k)
    ok = ~collapsed(res)
    assert ok[:, 0].all() and not ok[:, 1].any()
    # 2.0: rank k - 1 (last singular value tiny against the first, the others not)
    assert (sv[:, 0, -1] / sv[:, 0, 0] < 1e-12).all()
    assert (sv[:, 0, -2] / sv[:, 0, 0] > 1e-2).all()
    np.testing.assert_allclose(res.l_class[-1, :, 0].numpy(), -k, atol=1e-9)
    # 2.1: complete collapse, one direction left
    assert (sv[:, 1, 1] / sv[:, 1, 0] < 1e-8).all()
    assert (res.final_mean_norm[:, 1] > 1 - 1e-9).all()


@pytest.mark.parametrize("k", [3, 4, 5, 10, 30, 60])
def test_no_collapse_below_theorem1_bounds(k):
    etas = [paper_closed_form(k), lr_bound(k, 0.0) - 2e-3]
    res = simulate(k, 100, etas, trials=5, steps=4000, seed=0, early_exit=True, record=(), device="cpu")
    assert not collapsed(res).any()


def test_measured_decay_rate_of_the_mean_is_the_growth_factor():
    """Below the threshold ||mu|| decays exactly at |1 - c| per step once the transient is over."""
    for k in (5, 30):
        eta = critical_lr(k) - 0.05
        res = simulate(k, 100, [eta], trials=2, steps=400, seed=0, record=("mean_norm",), device="cpu")
        mn = res.mean_norm[:, :, 0].numpy()
        rate = (mn[400] / mn[200]) ** (1 / 200)
        np.testing.assert_allclose(rate, mean_growth_factor(k, eta), rtol=1e-6)


def test_bad_arguments_fail_with_named_value_errors():
    with pytest.raises(ValueError, match="k must be an integer >= 3"):
        simulate(2, 5, [1.0])
    with pytest.raises(ValueError, match="etas"):
        simulate(5, 5, [-1.0])
    with pytest.raises(ValueError, match="record"):
        simulate(5, 5, [1.0], record=("loss",))
    with pytest.raises(ValueError, match="tol"):
        simulate(5, 5, [1.0], tol=1.5)
    with pytest.raises(ValueError, match="lo must be < hi"):
        max_stable_lr([5], 5, lo=2.0, hi=1.0)
    with pytest.raises(ValueError, match="x0 must have shape"):
        simulate(5, 5, [1.0], x0=torch.ones(1, 4, 5))
