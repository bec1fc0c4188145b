"""Tests of simulations/: the batched L_class engine, the Figure 3 search, and the Figure 3/4 scripts.

Reference values come from independent computations: a per-vector Python loop of the Appendix D step,
torch autograd on clop.losses.l_class, numpy SVDs, and the sympy results of theory.theorem1.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from clop.losses import l_class
from clop.prototypes import simplex_etf
from simulations.lclass import (
    COLLAPSE_TOL,
    collapse_contraction_factor,
    collapsed,
    eta_from_autograd_lr,
    autograd_lr_from_eta,
    finite_horizon_threshold,
    initial_embeddings,
    is_collapsed,
    max_stable_lr,
    mean_growth_factor,
    reduce_coordinates,
    simulate,
    sweep,
)
from theory.theorem1 import critical_lr, lr_bound, paper_closed_form

REPO = Path(__file__).resolve().parents[2]


pytestmark = pytest.mark.usefixtures("one_thread")


# --------------------------------------------------------------------------------------------------
# independent reference: the Appendix D step written per vector, one run, plain Python + numpy


def reference_run(x0: np.ndarray, eta: float, steps: int) -> tuple[np.ndarray, list[float]]:
    """x_i <- normalise(x_i - eta * mean_{j != i} x_j), one vector at a time; returns (final X, ||mu_t|| for t=0..steps)."""
    k = x0.shape[0]
    xs = [row.copy() for row in x0]
    norms = [float(np.linalg.norm(sum(xs) / k))]
    for _ in range(steps):
        new = []
        for i in range(k):
            others = np.zeros_like(xs[i])
            for j in range(k):
                if j != i:
                    others = others + xs[j]
            y = xs[i] - eta * others / (k - 1)
            new.append(y / np.linalg.norm(y))
        xs = new
        norms.append(float(np.linalg.norm(sum(xs) / k)))
    return np.stack(xs), norms


# --------------------------------------------------------------------------------------------------
# the update rule and its learning rate


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


def test_mixed_k_padded_batch_equals_reference():
    """sweep() stacks several k in one padded chunk; every run must match the per-vector reference."""
    ks, etas, steps = [3, 5, 8], [1.0, 2.6, 4.5], 120
    cs = sweep(ks, 10, etas, trials=2, steps=steps, seed=2, device="cpu")
    cs_ee = sweep(ks, 10, etas, trials=2, steps=steps, seed=2, device="cpu", early_exit=True)
    np.testing.assert_array_equal(cs, cs_ee)
    for a, k in enumerate(ks):
        x0 = initial_embeddings(k, 10, 2, seed=2)
        for t in range(2):
            for j, eta in enumerate(etas):
                _, norms = reference_run(x0[t].numpy(), eta, steps)
                hits = [s for s, v in enumerate(norms) if v >= 1 - COLLAPSE_TOL]
                assert cs[a, t, j] == (hits[0] if hits else -1), (k, t, eta)
    assert (cs >= 0).any() and (cs < 0).any()


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


# --------------------------------------------------------------------------------------------------
# the collapse criterion


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


# --------------------------------------------------------------------------------------------------
# the paper's claims (Section 3.1, Figure 3)


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


def test_growth_and_contraction_factors_cross_one_at_critical_lr():
    for k in (3, 4, 7, 30, 100):
        crit = critical_lr(k)
        assert mean_growth_factor(k, crit) == pytest.approx(1.0, abs=1e-12)
        assert collapse_contraction_factor(k, crit) == pytest.approx(1.0, abs=1e-12)
        assert mean_growth_factor(k, crit - 0.01) < 1 < mean_growth_factor(k, crit + 0.01)
        assert collapse_contraction_factor(k, crit + 0.01) < 1 < collapse_contraction_factor(k, crit - 0.01)


def test_measured_decay_rate_of_the_mean_is_the_growth_factor():
    """Below the threshold ||mu|| decays exactly at |1 - c| per step once the transient is over."""
    for k in (5, 30):
        eta = critical_lr(k) - 0.05
        res = simulate(k, 100, [eta], trials=2, steps=400, seed=0, record=("mean_norm",), device="cpu")
        mn = res.mean_norm[:, :, 0].numpy()
        rate = (mn[400] / mn[200]) ** (1 / 200)
        np.testing.assert_allclose(rate, mean_growth_factor(k, eta), rtol=1e-6)


@pytest.mark.parametrize("k", [5, 20])
def test_collapse_is_monotone_in_eta_near_the_threshold(k):
    etas = critical_lr(k) + np.linspace(-0.03, 0.05, 33)
    cs = sweep([k], 100, etas, trials=3, steps=800, seed=0, device="cpu", early_exit=True)[0]  # (T, E)
    col = cs >= 0
    for t in range(3):
        assert col[t].any() and not col[t].all()
        first = int(np.argmax(col[t]))
        assert col[t, first:].all() and not col[t, :first].any()  # a single switch from stable to collapsed
        steps_col = cs[t, first:]
        assert (np.diff(steps_col) <= 0).all()  # collapse comes sooner the larger eta


def test_measured_threshold_vs_critical_lr_with_finite_horizon_allowance():
    """The search must land between critical_lr and critical_lr + the finite-horizon excess.

    Allowance (derived, not fitted): just above the threshold the mean grows by |1 - c| per step from
    its initial norm m0 and then the spread around the collapsed point shrinks by
    (1 + eta/(k-1))/|1 - eta| per step until ||mu|| >= 1 - tol; finite_horizon_threshold solves
    'estimated first collapse step = N' for eta. The measured value may lie up to the resolution below
    that and, because the estimate ignores the nonlinear hand-over between the two phases (a few per cent
    of the steps), up to 50 % of the excess above it.
    """
    ks, trials, steps, res_ = [3, 5, 10, 30], 3, 1000, 1e-3
    out = max_stable_lr(ks, 100, trials=trials, steps=steps, resolution=res_, seed=0, device="cpu")
    assert (out.non_monotone == 0).all()
    assert (out.min_collapse_lr - out.max_lr <= res_ * (1 + 1e-9)).all()
    for i, k in enumerate(ks):
        crit = critical_lr(k)
        m0 = torch.linalg.vector_norm(initial_embeddings(k, 100, trials, seed=0).mean(1), dim=-1)
        for t in range(trials):
            excess = finite_horizon_threshold(k, steps, m0=float(m0[t])) - crit
            assert crit + excess - res_ - 0.5 * excess <= out.max_lr[i, t] <= crit + 1.5 * excess + res_, (k, t)
        # far from the paper's printed bound, which lies below: the printed bound is conservative
        assert out.max_lr[i].min() > paper_closed_form(k) + 0.03
    # the bracket is made of evaluated runs: re-simulate both ends independently
    assert (sweep(ks, 100, [out.lo], trials=trials, steps=steps, device="cpu") < 0).all()
    for i, k in enumerate(ks):
        for t in range(trials):
            x0 = initial_embeddings(k, 100, trials, seed=0)[t : t + 1]
            r = simulate(k, 100, [out.max_lr[i, t], out.min_collapse_lr[i, t]], steps=steps, x0=x0, record=(), device="cpu")
            assert collapsed(r)[0].tolist() == [False, True], (k, t)
    # a little above the measured threshold every trial collapses
    above = simulate(30, 100, [out.max_lr[3].min() + 0.01], trials=trials, steps=steps, seed=0, record=(), device="cpu")
    assert collapsed(above).all()


def test_search_edge_cases_and_early_exit_agreement():
    out = max_stable_lr([5], 20, trials=2, steps=300, lo=3.0, hi=4.0, device="cpu")  # lo already collapses
    assert np.isnan(out.max_lr).all()
    out = max_stable_lr([5], 20, trials=2, steps=300, lo=0.5, hi=1.5, device="cpu")  # hi never collapses
    assert (out.max_lr == 1.5).all() and np.isinf(out.min_collapse_lr).all()
    ks, etas = [4, 12], list(np.linspace(1.0, 3.5, 11))
    np.testing.assert_array_equal(
        sweep(ks, 30, etas, trials=2, steps=600, device="cpu", early_exit=True),
        sweep(ks, 30, etas, trials=2, steps=600, device="cpu", early_exit=False),
    )
    full = simulate(12, 30, etas, trials=2, steps=600, device="cpu")
    early = simulate(12, 30, etas, trials=2, steps=600, device="cpu", early_exit=True)
    assert torch.equal(collapsed(full), collapsed(early)) and torch.equal(full.collapse_step, early.collapse_step)
    assert early.steps_run <= 600 and int(early.record_steps[-1]) == early.steps_run


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


# --------------------------------------------------------------------------------------------------
# Section 3.2 / Figure 4 and the scripts


def test_dimensional_collapse_rank_k_minus_1_not_etf():
    from simulations.dimensional_collapse import final_stats, run

    df = run([6, 12], m=30, eta=0.2, steps=300, trials=4, record_every=50, seed=0, device="cpu")
    st = final_stats(df)
    for k in (6, 12):
        assert st.loc[k, "rank_min"] == st.loc[k, "rank_max"] == k - 1
        assert st.loc[k, "max_abs_lclass_plus_k"] < 1e-9
        assert st.loc[k, "min_trial_cos_std"] > 0.02  # pairwise cosines not all equal: not an ETF
        assert st.loc[k, "cos_mean"] == pytest.approx(-1 / (k - 1), abs=1e-9)  # zero mean => mean cosine -1/(k-1)
    # independent check on the raw simulation: numpy SVD of the final embeddings
    res = simulate(12, 30, [0.2], trials=4, steps=300, seed=0, device="cpu")
    s = np.linalg.svd(res.embeddings()[:, 0].numpy(), compute_uv=False)
    assert (s[:, -1] / s[:, 0] < 1e-12).all() and (s[:, -2] / s[:, 0] > 1e-2).all()


def test_figure3_script_small(tmp_path):
    from simulations import lr_bound

    rc = lr_bound.main(["--ks", "3", "8", "--trials", "2", "--steps", "300", "--spectra-steps", "40",
                        "--spectra-every", "20", "--out", str(tmp_path)])
    assert rc == 0
    for name in ("figure3.png", "figure3.pdf", "figure3_max_lr.csv", "figure3_spectra.csv"):
        assert (tmp_path / name).stat().st_size > 0
    ml = pd.read_csv(tmp_path / "figure3_max_lr.csv")
    assert {"k", "m", "trial", "max_lr", "theorem1_bound", "critical_lr", "paper_closed_form"} <= set(ml.columns)
    assert len(ml) == 4
    assert ml.loc[ml.k == 8, "critical_lr"].iloc[0] == pytest.approx(critical_lr(8))
    sp = pd.read_csv(tmp_path / "figure3_spectra.csv")
    assert set(sp.eta.unique()) == {2.0, 2.1} and sp["index"].max() == 30


def test_figure4_script_small(tmp_path):
    from simulations import dimensional_collapse

    rc = dimensional_collapse.main(["--ks", "5", "--m", "12", "--steps", "60", "--trials", "2", "--out", str(tmp_path)])
    assert rc == 0
    assert (tmp_path / "figure4.png").stat().st_size > 0
    df = pd.read_csv(tmp_path / "figure4.csv")
    assert set(df.quantity.unique()) == {"singular_value", "pairwise_cosine", "l_class"}


def test_scripts_run_as_files():
    for script in ("simulations/lr_bound.py", "benchmarks/bench_lclass.py"):
        out = subprocess.run([sys.executable, script, "--help"], cwd=REPO, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert "usage" in out.stdout


# --------------------------------------------------------------------------------------------------
# the two engines (issue 14, item 2): the native CPU kernel and the batched torch engine decide alike


def _native_or_skip():
    from simulations import lclass_native

    if not lclass_native.available():
        pytest.skip(f"native kernel unavailable here: {lclass_native.status()}")
    return lclass_native


def _threshold_etas(k: int) -> list[float]:
    """Learning rates on both sides of the critical one, with the special eta = 1 and a fast collapse."""
    return [0.5, 1.0, critical_lr(k) - 0.02, critical_lr(k) + 0.003, critical_lr(k) + 0.03, 6.0]


@pytest.mark.parametrize("engine", ["native", "torch"])
def test_each_engine_equals_the_per_vector_reference(engine):
    """Both engines against the per-vector loop; the ks cover padding to 4 rows / 8 columns and K < 16."""
    if engine == "native":
        _native_or_skip()
    ks, m, steps = [3, 4, 7, 9], 12, 150
    cs = sweep(ks, m, [1.0, 2.7, 4.5], trials=2, steps=steps, seed=4, device="cpu", engine=engine)
    for a, k in enumerate(ks):
        x0 = initial_embeddings(k, m, 2, seed=4)
        for t in range(2):
            for j, eta in enumerate([1.0, 2.7, 4.5]):
                _, norms = reference_run(x0[t].numpy(), eta, steps)
                hits = [s for s, v in enumerate(norms) if v >= 1 - COLLAPSE_TOL]
                assert cs[a, t, j] == (hits[0] if hits else -1), (engine, k, t, eta)
    assert (cs >= 0).any() and (cs < 0).any()


def _shrinking_rows_case() -> tuple[list[torch.Tensor], np.ndarray]:
    """k = 3 in the plane (m = 2) at eta = 2.5: two rows shrink by f = ||x_i - c mu||^2 ~ 0.2 a step for many
    steps, so a tracked norm's round-off grows ~5x a step (see lclass_native.DRIFT_R). The starts and the
    per-vector reference's collapse steps (-1: none)."""
    k, m, trials, steps = 3, 2, 40, 400
    x0 = initial_embeddings(k, m, trials, seed=1)
    expected = []
    for t in range(trials):
        _, norms = reference_run(x0[t].numpy(), 2.5, steps)
        hits = [s for s, v in enumerate(norms) if v >= 1 - COLLAPSE_TOL]
        expected.append(hits[0] if hits else -1)
    return [x0[t] for t in range(trials)], np.array(expected)


@pytest.mark.parametrize("engine", ["native", "torch"])
def test_engines_equal_the_reference_where_rows_keep_shrinking(engine):
    """Tracked row norms are renormalised before their error can grow (DRIFT_R): without that, both engines
    reported runs collapsed here that the per-vector reference (and a 60-digit computation) does not collapse."""
    if engine == "native":
        _native_or_skip()
    _, expected = _shrinking_rows_case()
    cs = sweep([3], 2, [2.5], trials=40, steps=400, seed=1, device="cpu", engine=engine)[0, :, 0]
    np.testing.assert_array_equal(cs, expected)


def test_tracked_norm_error_stays_bounded_with_the_drift_guard_and_explodes_without(monkeypatch):
    """The mechanism, on the torch engine's state: the relative error of the tracked norms, max over rows and
    steps |(||z_i|| / r_i) - 1| within the first 25 steps (before the periodic renormalisation at 32),
    grows by ~1/f ~ 5 a step without the guard (round-off of 1e-16 reaches order 1e-1 by step 20, whatever
    its first bits) and stays near round-off / DRIFT_R^2 with it."""
    from simulations import lclass_native
    from simulations.lclass_engine import _Batch

    def worst_error() -> float:
        x0 = initial_embeddings(3, 2, 40, seed=1).double()
        b = _Batch(x0, torch.full((40,), 3.0, dtype=torch.float64), torch.full((40,), 2.5, dtype=torch.float64),
                   torch.arange(40))
        worst = 0.0
        for _ in range(25):
            mu = b.mean()
            b.step(mu, (mu * mu).sum(-1))
            worst = max(worst, float((torch.linalg.vector_norm(b.z, dim=-1) / b.r - 1).abs().max()))
        return worst

    assert worst_error() < 1e-8
    monkeypatch.setattr(lclass_native, "DRIFT_R", 0.0)
    assert worst_error() > 1e-2


def test_renormalising_no_row_leaves_the_state_bit_identical():
    """On CUDA the torch engine calls renormalise_rows at every step (no host sync), so with no row flagged it
    must change nothing; with one row flagged, only that row (now unit, r = 1)."""
    from simulations.lclass_engine import _Batch

    x0 = initial_embeddings(5, 7, 3, seed=2).double()
    b = _Batch(x0, torch.full((3,), 5.0, dtype=torch.float64), torch.full((3,), 1.7, dtype=torch.float64),
               torch.arange(3))
    for _ in range(3):
        mu = b.mean()
        b.step(mu, (mu * mu).sum(-1))
    z, r = b.z.clone(), b.r.clone()
    b.renormalise_rows(torch.zeros_like(r, dtype=torch.bool))
    assert torch.equal(b.z, z) and torch.equal(b.r, r)
    flag = torch.zeros_like(r, dtype=torch.bool)
    flag[1, 2] = True
    b.renormalise_rows(flag)
    assert torch.equal(b.z[~flag], z[~flag]) and torch.equal(b.r[~flag], r[~flag])
    assert b.r[1, 2] == 1.0 and abs(float(torch.linalg.vector_norm(b.z[1, 2])) - 1.0) < 1e-15


def test_native_kernel_without_the_drift_guard_fails_where_rows_keep_shrinking(tmp_path):
    """The same check on the kernel: a build with the guard off (-DDRIFT_R=0) gets these runs wrong, the
    default build right; and the C default is the module's DRIFT_R."""
    native = _native_or_skip()
    import re

    assert float(re.search(r"#define DRIFT_R ([0-9.e+-]+)", native._SOURCE).group(1)) == native.DRIFT_R
    path, msg = native._compile(native._compiler(), tmp_path, (("-DDRIFT_R=0",),))
    assert path is not None, msg
    inits, expected = _shrinking_rows_case()
    kw = dict(steps=400, tol=COLLAPSE_TOL, early_exit=False, check_every=16, renorm_every=32, stable_mean=1e-8,
              stable_reach=1e-4, group_bytes=2**20)
    guarded = native.decide(inits, [3] * len(inits), [2.5] * len(inits), **kw)[0]
    unguarded = native.decide(inits, [3] * len(inits), [2.5] * len(inits), lib=native._open(path), **kw)[0]
    np.testing.assert_array_equal(guarded, expected)
    assert (unguarded != expected).sum() >= 2


def test_native_and_torch_engines_make_the_same_decisions():
    """Same collapse step and same decision step (early exit) for every run, across the threshold."""
    _native_or_skip()
    from simulations.lclass_engine import (_CHECK_EVERY, _CPU_CHUNK_BYTES, _RENORM_EVERY, _STABLE_MEAN,
                                           _STABLE_REACH, _decide)

    ks = [3, 4, 5, 8, 12, 15, 16, 17, 31, 33, 40]
    inits, kk, ee = [], [], []
    for k in ks:
        c0, _ = reduce_coordinates(initial_embeddings(k, 40, 2, seed=7))
        for t in range(2):
            for eta in _threshold_etas(k):
                inits.append(c0[t])
                kk.append(k)
                ee.append(eta)
    for early_exit in (True, False):
        kw = dict(steps=700, tol=COLLAPSE_TOL, dev=torch.device("cpu"), chunk_bytes=_CPU_CHUNK_BYTES,
                  early_exit=early_exit)
        nat = _decide(inits, kk, ee, engine="native", **kw)
        tor = _decide(inits, kk, ee, engine="torch", **kw)
        np.testing.assert_array_equal(nat[0], tor[0])  # first collapse step
        np.testing.assert_array_equal(nat[1], tor[1])  # step at which the run was decided
        assert (nat[0] >= 0).sum() > len(inits) // 4 and (nat[0] < 0).sum() > len(inits) // 4
        if early_exit:
            assert (nat[1] < 700).any()  # some runs were decided early, by both engines alike
    # several threads, small groups of runs: the same answers (each run is independent of the others)
    from simulations import lclass_native

    par = lclass_native.decide(inits, kk, ee, steps=700, tol=COLLAPSE_TOL, early_exit=True,
                               check_every=_CHECK_EVERY, renorm_every=_RENORM_EVERY, stable_mean=_STABLE_MEAN,
                               stable_reach=_STABLE_REACH, group_bytes=4096, threads=3)
    seq = _decide(inits, kk, ee, engine="native", steps=700, tol=COLLAPSE_TOL, dev=torch.device("cpu"),
                  chunk_bytes=_CPU_CHUNK_BYTES, early_exit=True)
    np.testing.assert_array_equal(par[0], seq[0])
    np.testing.assert_array_equal(par[1], seq[1])


def test_search_gives_the_same_answer_with_either_engine():
    _native_or_skip()
    a = max_stable_lr([3, 10, 30], 40, trials=2, steps=400, seed=3, device="cpu", engine="native")
    b = max_stable_lr([3, 10, 30], 40, trials=2, steps=400, seed=3, device="cpu", engine="torch")
    np.testing.assert_array_equal(a.max_lr, b.max_lr)
    np.testing.assert_array_equal(a.min_collapse_lr, b.min_collapse_lr)
    assert (a.rounds, a.runs) == (b.rounds, b.runs) and (a.non_monotone == 0).all()


def test_native_kernel_gives_the_same_bits_at_every_vector_width(tmp_path):
    """The sums have one fixed order (8 lanes): builds for 8-, 4- and 2-wide vectors give identical states."""
    import platform

    native = _native_or_skip()
    if platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("the variants below use x86 flags")
    cc = native._compiler()
    variants = {}
    for name, flags in [("native", ("-march=native",)), ("avx2", ("-mavx2", "-mno-avx512f")), ("sse2", ())]:
        path, msg = native._compile(cc, tmp_path, (flags,))
        assert path is not None, msg
        variants[name] = native._open(path)
    inits, kk, ee = [], [], []
    for k in (3, 6, 13, 24):
        c0, _ = reduce_coordinates(initial_embeddings(k, 30, 1, seed=1))
        for eta in _threshold_etas(k):
            inits.append(c0[0])
            kk.append(k)
            ee.append(eta)
    kw = dict(steps=300, tol=COLLAPSE_TOL, early_exit=False, check_every=16, renorm_every=32, stable_mean=1e-8,
              stable_reach=1e-4, group_bytes=2**20, final_states=True)  # early_exit off: these do not matter
    out = {name: native.decide(inits, kk, ee, lib=lib, **kw) for name, lib in variants.items()}
    assert {lib.lclass_vector_width() for lib in variants.values()} >= {2, 4}
    for name in ("avx2", "sse2"):
        np.testing.assert_array_equal(out[name][0], out["native"][0])
        for za, zb in zip(out[name][3], out["native"][3]):
            assert za.tobytes() == zb.tobytes(), name


def test_engine_falls_back_to_torch_without_a_compiler(monkeypatch):
    from simulations import lclass_native
    from simulations.lclass import engine_name

    expected = sweep([3, 6], 10, [1.0, 3.0], trials=2, steps=120, device="cpu", engine="torch")
    for name, value in (("_tried", False), ("_lib", None), ("_error", None)):  # as in a fresh process
        monkeypatch.setattr(lclass_native, name, value)
    monkeypatch.setenv("CC", "/nonexistent/cc")
    assert not lclass_native.available()
    assert "no C compiler" in engine_name("cpu")
    np.testing.assert_array_equal(sweep([3, 6], 10, [1.0, 3.0], trials=2, steps=120, device="cpu"), expected)
    with pytest.raises(RuntimeError, match="engine='native'"):
        sweep([3], 10, [1.0], steps=5, device="cpu", engine="native")
    monkeypatch.undo()
    monkeypatch.setenv(lclass_native.ENV_SWITCH, "0")  # switched off by the environment
    assert engine_name("cpu").startswith("torch (native kernel switched off")
    np.testing.assert_array_equal(sweep([3, 6], 10, [1.0, 3.0], trials=2, steps=120, device="cpu"), expected)
    with pytest.raises(ValueError, match="engine"):
        sweep([3], 10, [1.0], steps=5, device="cpu", engine="fast")


def test_finite_horizon_threshold_equals_the_full_bisection():
    """The bisection stops once (a, b) no longer change: the same bits as all 200 halvings."""
    from simulations.lclass import collapse_steps_estimate

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


# --------------------------------------------------------------------------------------------------
# benchmarks/gpu_check.sh (issue 14, item 3): runnable only on a GPU; its syntax, dry run and bookkeeping here


def test_gpu_check_script_dry_run_and_failure_bookkeeping(tmp_path):
    script = REPO / "benchmarks" / "gpu_check.sh"
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    out = subprocess.run(["bash", str(script), "--dry-run", "--summary", str(tmp_path / "s.txt")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    for step, piece in [("env", "torch.cuda.is_available()"), ("cuda_tests", "-m pytest"),
                        ("train_step", "bench_train_step.py --device cuda"),
                        ("loader", "bench_loader.py --device cuda --dataset synthetic"),
                        ("pretrain", "training.pretrain --smoke --image-size 32 --epochs 2 --device cuda"),
                        ("lr_bound", "simulations/lr_bound.py --device cuda"), ("ffn", "bench_ffn.py --device cuda")]:
        line = next(ln for ln in out.stdout.splitlines() if ln.startswith(f"[{step}]"))
        assert piece in line, line
    lr_line = next(ln for ln in out.stdout.splitlines() if ln.startswith("[lr_bound]"))
    assert "lr_bound.py --device cpu" in lr_line and "max_lr" in lr_line, "on CUDA Figure 3 is compared with the CPU's"
    assert not (tmp_path / "s.txt").exists()  # a dry run runs nothing and writes nothing
    # every step runs and is recorded even when the ones before it fail; the exit status says so
    out = subprocess.run(["bash", str(script), "--device", "cpu", "--only", "env,lr_bound", "--python", "false",
                          "--summary", str(tmp_path / "s.txt"), "--work", str(tmp_path / "work")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    summary = (tmp_path / "s.txt").read_text().splitlines()
    assert [ln.split()[:3] for ln in summary[3:5]] == [["env", "FAIL", "rc=1"], ["lr_bound", "FAIL", "rc=1"]]
    assert summary[-1].startswith("total: 0 ok, 2 failed, 0 skipped")
    bad = subprocess.run(["bash", str(script), "--only", "nonsense"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "unknown step" in bad.stderr
    bad = subprocess.run(["bash", str(script), "--dry-run", "--device", "tpu"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--device must be cuda, cuda:N or cpu; got tpu" in bad.stderr
