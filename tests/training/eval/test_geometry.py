"""Tests of training.eval.geometry against independent numpy computations in float64,
constructed configurations (simplex ETF, orthonormal, collapsed) and synthetic Appendix D steps with a
known eta (CLOP, arXiv 2403.18699, Sec. 3.2, Theorem 1, Appendix D).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from clop.prototypes import orthonormal, simplex_etf
from theory.theorem1 import critical_lr
from theory.theorem1_numerics import appendix_d_step as theory_step
from training.eval import geometry as G

pytestmark = pytest.mark.usefixtures("one_thread")

F64 = np.finfo(np.float64).eps


# ---------------------------------------------------------------- independent references (numpy, loops)


def _ref_geometry(z, y, k, protos=None, rank_tol=None):
    z = np.asarray(z, dtype=np.float64)
    y = np.asarray(y)
    u = np.array([row / np.linalg.norm(row) for row in z])
    c = []
    for i in range(k):
        m = u[y == i].mean(axis=0)
        c.append(m / np.linalg.norm(m))
    c = np.array(c)
    cos = [float(c[i] @ c[j]) for i in range(k) for j in range(i + 1, k)]
    second = c.T @ c / k  # uncentred second moment
    out = {
        "mu_norm": np.linalg.norm(u.mean(axis=0)),
        "classes_missing": 0.0,
        "class_sum_norm": np.linalg.norm(c.sum(axis=0)),
        "class_mean_norm": np.linalg.norm(c.mean(axis=0)),
        "class_rank": float(np.linalg.matrix_rank(c, tol=rank_tol)),
        "class_stable_rank": np.trace(second) ** 2 / np.sum(second * second),
        "class_cos_mean": np.mean(cos),
        "class_cos_std": np.std(cos),
        "class_cos_gap_etf": abs(np.mean(cos) + 1 / (k - 1)),
        "class_cos_gap_orth": abs(np.mean(cos)),
        "class_proto_cos": math.nan,
    }
    if protos is not None:
        p = np.asarray(protos, dtype=np.float64)
        out["class_proto_cos"] = np.mean([c[i] @ p[i] / np.linalg.norm(p[i]) for i in range(k)])
    return out


def _assert_matches(got, ref, atol=1e-12):
    assert set(got) == set(G.GEOMETRY_KEYS) == set(ref)
    for key in G.GEOMETRY_KEYS:
        if math.isnan(ref[key]):
            assert math.isnan(got[key]), key
        else:
            assert got[key] == pytest.approx(ref[key], abs=atol), key


def _labels(k, per_class, seed):
    rng = np.random.default_rng(seed)
    return rng.permutation(np.repeat(np.arange(k), per_class))


def _unit(x):
    return x / x.norm(dim=-1, keepdim=True)


def _random_means(k, d, seed):
    g = torch.Generator().manual_seed(seed)
    return _unit(torch.randn(k, d, generator=g, dtype=torch.float64))


# ---------------------------------------------------------------- item 4: class geometry


def test_simplex_etf_means():
    k, d = 10, 16
    e = simplex_etf(k, d, seed=3, dtype=torch.float64, device="cpu")
    y = _labels(k, 4, 0)
    scale = torch.from_numpy(np.random.default_rng(1).uniform(0.5, 3.0, (len(y), 1)))
    z = e[torch.from_numpy(y)] * scale  # unit class directions, arbitrary norms
    got = G.class_geometry(z, y)
    assert got["class_sum_norm"] < 1e-12 and got["mu_norm"] < 1e-12
    assert got["class_rank"] == k - 1 and got["class_stable_rank"] == pytest.approx(k - 1, abs=1e-10)
    assert got["class_cos_mean"] == pytest.approx(-1 / (k - 1), abs=1e-12)
    assert got["class_cos_std"] < 1e-12 and got["class_cos_gap_etf"] < 1e-12
    assert got["class_cos_gap_orth"] == pytest.approx(1 / (k - 1), abs=1e-12)
    _assert_matches(got, _ref_geometry(z, y, k, rank_tol=1e-10))


def test_orthonormal_means_with_their_prototypes():
    k, d = 10, 24
    c = orthonormal(k, d, seed=5, dtype=torch.float64, device="cpu")
    y = _labels(k, 3, 2)
    z = c[torch.from_numpy(y)]
    got = G.class_geometry(z, y, prototypes=c)
    assert got["class_rank"] == k and got["class_stable_rank"] == pytest.approx(k, abs=1e-10)
    assert got["class_sum_norm"] == pytest.approx(math.sqrt(k), abs=1e-12)
    assert abs(got["class_cos_mean"]) < 1e-12 and got["class_cos_std"] < 1e-12
    assert got["class_proto_cos"] == pytest.approx(1.0, abs=1e-12)
    _assert_matches(got, _ref_geometry(z, y, k, protos=c))


def test_complete_collapse():
    k, d = 6, 8
    y = _labels(k, 5, 3)
    rng = np.random.default_rng(4)
    direction = rng.standard_normal(d)
    z = rng.uniform(0.1, 10.0, (len(y), 1)) * direction  # every embedding on one ray
    got = G.class_geometry(z, y)
    assert got["mu_norm"] == pytest.approx(1.0, abs=1e-12)
    assert got["class_rank"] == 1 and got["class_stable_rank"] == pytest.approx(1.0, abs=1e-12)
    assert got["class_sum_norm"] == pytest.approx(k, abs=1e-12)
    assert got["class_cos_mean"] == pytest.approx(1.0, abs=1e-12)
    _assert_matches(got, _ref_geometry(z, y, k))


@pytest.mark.parametrize("kind", ["orthonormal", "etf"])
def test_prototype_plus_noise(kind):
    k, d = 10, 32
    make = orthonormal if kind == "orthonormal" else simplex_etf
    p = make(k, d, seed=7, dtype=torch.float64, device="cpu")
    y = _labels(k, 20, 5)
    g = torch.Generator().manual_seed(6)
    z = p[torch.from_numpy(y)] + 0.02 * torch.randn(len(y), d, generator=g, dtype=torch.float64)
    got = G.class_geometry(z, y, prototypes=p)
    assert got["class_proto_cos"] > 0.999
    _assert_matches(got, _ref_geometry(z, y, k, protos=p))
    # the prototype of class i is row i: a shifted assignment is not close
    shifted = G.class_geometry(z, y, prototypes=torch.roll(p, 1, dims=0))
    assert shifted["class_proto_cos"] < 0.1


def test_general_embeddings_numpy_and_torch_agree_with_reference():
    k, n, d = 7, 140, 12
    rng = np.random.default_rng(8)
    z = rng.standard_normal((n, d)) + 0.5 * rng.standard_normal(d)
    y = rng.integers(0, k, n)
    y[:k] = np.arange(k)
    protos = rng.standard_normal((k, d))
    ref = _ref_geometry(z, y, k, protos=protos)
    _assert_matches(G.class_geometry(z, y, prototypes=protos), ref)
    _assert_matches(G.class_geometry(torch.from_numpy(z), torch.from_numpy(y), prototypes=torch.from_numpy(protos)), ref)
    # the identity cos_mean = (||sum c||^2 - k) / (k (k - 1)) behind the two gaps
    got = G.class_geometry(z, y)
    assert got["class_cos_mean"] == pytest.approx((got["class_sum_norm"] ** 2 - k) / (k * (k - 1)), abs=1e-12)


def test_rank_tolerance_follows_the_input_dtype():
    """float32 ETF means: the null singular value is float32 round-off, so the rank stays k - 1."""
    k, d = 10, 16
    e32 = simplex_etf(k, d, seed=0, dtype=torch.float32, device="cpu")
    y = np.arange(k)
    s = np.linalg.svd(e32.double().numpy(), compute_uv=False)
    assert s[-1] > 1e3 * F64 * s[0]  # a float64-only tolerance would count it (rank k)
    assert G.class_geometry(e32, y)["class_rank"] == k - 1
    assert G.class_geometry(e32, y, rtol=0.0)["class_rank"] == k


def test_missing_or_zero_class_means_are_nan():
    k, d = 4, 5
    c = orthonormal(k, d, seed=1, dtype=torch.float64, device="cpu")
    y = np.array([0, 0, 1, 3, 3])  # class 2 absent
    z = c[torch.from_numpy(y)]
    means = G.unit_class_means(z, y, k=k)
    assert torch.isnan(means[2]).all() and torch.isfinite(means[[0, 1, 3]]).all()
    got = G.class_geometry(z, y, k=k)
    assert got["classes_missing"] == 1.0
    assert got["mu_norm"] == pytest.approx(np.linalg.norm(z.numpy().mean(axis=0)), abs=1e-14)
    assert all(math.isnan(got[key]) for key in G.GEOMETRY_KEYS if key.startswith("class_"))
    # a class whose unit embeddings cancel to round-off (three at 120 degrees) has no direction
    angles = 0.3 + 2 * np.pi * np.arange(3) / 3
    star = np.zeros((3, d))
    star[:, 0], star[:, 1] = np.cos(angles), np.sin(angles)
    star[:, 2] = 3e-17  # a round-off-sized mean that is not exactly zero, whatever the libm's cos and sin give
    assert 0 < np.linalg.norm(star.mean(axis=0)) < 1e-15
    z2 = np.concatenate([c.numpy(), star])
    y2 = np.array([1, 1, 2, 3, 0, 0, 0])
    assert G.class_geometry(z2, y2)["classes_missing"] == 1.0
    assert torch.isnan(G.unit_class_means(z2, y2)[0]).all()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"z": np.ones(5)}, "^z must"),
        ({"z": np.full((5, 3), np.inf)}, "^z must be finite"),
        ({"y": np.arange(5) * 1.0}, "^y must be integer"),
        ({"y": np.arange(4)}, "^y must have shape"),
        ({"y": np.array([0, 1, 2, 3, 9]), "k": 5}, "^y must hold labels"),
        ({"y": np.array([0, 1, 2, 3, -1])}, "^y must hold labels"),
        ({"k": 3}, "^y must hold labels"),
        ({"y": np.zeros(5, dtype=int)}, "^k must"),
        ({"k": 2.5}, "^k must"),
        ({"prototypes": np.ones((5, 4))}, "^prototypes must have shape"),
        ({"prototypes": np.zeros((5, 3))}, "^prototypes must have non-zero rows"),
        ({"rtol": -1.0}, "^rtol must"),
    ],
)
def test_geometry_argument_errors(kwargs, match):
    args = {"z": np.random.default_rng(0).standard_normal((5, 3)), "y": np.arange(5)}
    args.update(kwargs)
    z, y = args.pop("z"), args.pop("y")
    with pytest.raises(ValueError, match=match):
        G.class_geometry(z, y, **args)


# ---------------------------------------------------------------- item 5: the theory bridge


def test_critical_lr_matches_theory():
    from theory import theorem1

    assert G.critical_lr(10) == 2.25 == pytest.approx(float(theorem1.critical_lr(10)), abs=1e-15)
    for k in (3, 4, 7, 30, 100):
        assert G.critical_lr(k) == pytest.approx(float(theorem1.critical_lr(k)), rel=1e-15)
    for bad in (2, 2.5, True):
        with pytest.raises(ValueError, match="^k must"):
            G.critical_lr(bad)


def test_step_is_the_appendix_d_update():
    """c_i - eta m_i (ours) and (1 + eta/(k-1)) x_i - eta k/(k-1) mu (theory's) are the same update."""
    for k in (3, 10):
        c = _random_means(k, k + 4, k)
        for eta in (0.1, 1.0, 2.5):
            assert torch.allclose(G.appendix_d_step(c, eta), theory_step(c, eta), atol=1e-14, rtol=0)
    # the derivative in eta that the per-step (compound) fit uses, against central differences
    c, h = _random_means(6, 9, 0), 1e-6
    x, dx = G._steps_with_tangent(c, 0.7, 3)
    run = [theory_step(theory_step(theory_step(c, e), e), e) for e in (0.7 - h, 0.7, 0.7 + h)]
    assert torch.allclose(x, run[1], atol=1e-14, rtol=0)
    assert torch.allclose(dx, (run[2] - run[0]) / (2 * h), atol=1e-8, rtol=0)


def _ref_fit(c, cn):
    """The projected least squares by explicit projectors and np.linalg.lstsq on the stacked vectors."""
    c, cn = c.numpy(), cn.numpy()
    cn = cn / np.linalg.norm(cn, axis=1, keepdims=True)
    k, d = c.shape
    a, b = [], []
    for i in range(k):
        p = np.eye(d) - np.outer(cn[i], cn[i])
        m = sum(c[j] for j in range(k) if j != i) / (k - 1)
        a.append(p @ m)
        b.append(p @ c[i])
    a, b = np.concatenate(a)[:, None], np.concatenate(b)
    eta = np.linalg.lstsq(a, b, rcond=None)[0][0]
    return eta, 1 - np.sum((b - a[:, 0] * eta) ** 2) / np.sum(b * b)


@pytest.mark.parametrize("k", [3, 10, 25])
def test_eta_recovered_from_exact_steps(k):
    for seed, eta in enumerate((0.1, 1.0, 2.0, 2.5)):
        c = _random_means(k, k + 6, 100 * k + seed)
        scale = torch.linspace(0.5, 2.0, k, dtype=torch.float64)[:, None]
        fit = G.fit_eta(c, theory_step(c, eta) * scale)  # rows need not be unit
        assert fit["eta_eff"] == pytest.approx(eta, abs=1e-10)
        assert fit["eta_step"] == pytest.approx(eta, abs=1e-10)
        assert abs(fit["r2"] - 1) < 1e-10 and abs(fit["r2_step"] - 1) < 1e-10
        assert fit["s_min"] > 0.1 and fit["sst"] > 0 and fit["steps"] == 1.0


def test_noisy_steps_keep_eta_and_lower_r2():
    k, d, eta = 10, 32, 1.5
    for seed in range(3):
        c = _random_means(k, d, seed)
        g = torch.Generator().manual_seed(50 + seed)
        cn = theory_step(c, eta) + 0.003 * torch.randn(k, d, generator=g, dtype=torch.float64)
        fit = G.fit_eta(c, cn)
        ref_eta, ref_r2 = _ref_fit(c, cn)
        assert fit["eta_eff"] == pytest.approx(ref_eta, abs=1e-12) and fit["r2"] == pytest.approx(ref_r2, abs=1e-12)
        assert fit["eta_eff"] == pytest.approx(eta, rel=0.05)
        assert 0.95 < fit["r2"] < 1 - 1e-6 and 0.95 < fit["r2_step"] < 1 - 1e-6


def test_unrelated_change_has_r2_near_zero():
    """R^2 of the projected fit is in [0, 1] (eta = 0 is a candidate); unrelated motion gives ~1/D."""
    k, d = 10, 64
    r2 = []
    for seed in range(5):
        fit = G.fit_eta(_random_means(k, d, seed), _random_means(k, d, 1000 + seed))
        assert 0.0 <= fit["r2"] and fit["r2_step"] < 0.2
        r2.append(fit["r2"])
        ref_eta, ref_r2 = _ref_fit(_random_means(k, d, seed), _random_means(k, d, 1000 + seed))
        assert fit["eta_eff"] == pytest.approx(ref_eta, abs=1e-12) and fit["r2"] == pytest.approx(ref_r2, abs=1e-12)
    assert np.mean(r2) < 0.05


def test_no_motion_is_nan_with_a_dtype_derived_floor():
    c = _random_means(10, 16, 0)
    fit = G.fit_eta(c, c.clone())
    assert math.isnan(fit["eta_eff"]) and math.isnan(fit["r2"]) and fit["sst"] <= 10 * (20 * F64) ** 2
    # a float32 round-off "motion": below the float32 floor -> NaN; the same change in float64 is measured
    c32 = c.float()
    cn32 = _unit(c32 + 3e-8 * torch.randn(10, 16, generator=torch.Generator().manual_seed(1)))
    assert not torch.equal(c32, cn32)
    assert math.isnan(G.fit_eta(c32, cn32)["eta_eff"])
    assert math.isfinite(G.fit_eta(c32.double(), cn32.double())["eta_eff"])
    # each c_i' along m_i (the eta -> -inf limit): P_i m_i = 0, eta undetermined -> NaN
    m = (c.sum(0, keepdim=True) - c) / 9
    onto = G.fit_eta(c, _unit(m))
    assert onto["sst"] > 1 and math.isnan(onto["eta_eff"]) and math.isnan(onto["r2"])


def test_zero_sum_and_collapsed_means_hit_the_pole_and_are_flagged():
    """m_i parallel to c_i for every i: the projected fit explains ANY motion with the pole eta = 1/<c_i, m_i>.

    Zero-sum means (Sec. 3.2, simplex ETF): m_i = -c_i/(k-1), pole -(k-1); collapsed means: m_i = c_i, pole 1.
    """
    k, d = 10, 16
    e = simplex_etf(k, d, seed=0, dtype=torch.float64, device="cpu")
    same = _random_means(1, d, 2).repeat(k, 1)
    g = torch.Generator().manual_seed(3)
    for c, pole in ((e, -(k - 1)), (same, 1.0)):
        fit = G.fit_eta(c, c + 0.05 * torch.randn(k, d, generator=g, dtype=torch.float64))
        assert fit["eta_eff"] == pytest.approx(pole, abs=1e-8) and fit["r2"] == pytest.approx(1.0, abs=1e-10)
        assert fit["s_min"] < 1e-8  # flagged; and the fitted normalised steps (no pole) explain none of it
        assert fit["r2_step"] < 0.1 and not abs(fit["eta_step"] - pole) < 0.1


def test_several_optimiser_steps_per_interval():
    k, d, eta, n = 10, 20, 0.05, 5
    c = _random_means(k, d, 9)
    x = c
    for _ in range(n):
        x = theory_step(x, eta)
    fit = G.fit_eta(c, x, steps=n)
    assert fit["steps"] == n and fit["eta_step"] == pytest.approx(eta, abs=1e-10)
    assert fit["r2_step"] == pytest.approx(1.0, abs=1e-12) and fit["eta_step_se"] < 1e-10
    assert fit["eta_eff"] / n == pytest.approx(eta, rel=0.2)  # first order only
    assert abs(fit["eta_eff"] / n - eta) > 1e-6


def test_eta_table_rows():
    k, d = 10, 20
    etas, steps = [0.3, 1.0, 2.0], [1, 2, 1]
    snaps = [_random_means(k, d, 11)]
    for eta, n in zip(etas, steps):
        x = snaps[-1]
        for _ in range(n):
            x = theory_step(x, eta)
        snaps.append(x)
    scale = torch.linspace(0.5, 2.0, k, dtype=torch.float64)[None, :, None]  # rows need not be unit
    rows = G.eta_table(torch.stack(snaps) * scale, steps=steps)
    assert len(rows) == 3 and all(tuple(r) == G.TABLE_KEYS for r in rows)
    for t, (row, eta) in enumerate(zip(rows, etas)):
        assert row["interval"] == t and row["steps"] == steps[t]
        assert row["eta_crit"] == pytest.approx(float(critical_lr(k)), rel=1e-15)  # Theorem 1's exact rate
        assert row["eta_step"] == pytest.approx(eta, abs=1e-10)
        assert row["mu_norm_before"] == pytest.approx(float(np.linalg.norm(snaps[t].numpy().mean(0))), abs=1e-14)
        assert row["mu_norm_after"] == pytest.approx(float(np.linalg.norm(snaps[t + 1].numpy().mean(0))), abs=1e-14)
    assert rows[0]["eta_eff"] == pytest.approx(0.3, abs=1e-10) and rows[2]["r2"] == pytest.approx(1, abs=1e-10)
    # a missing class in a snapshot: that interval's fit is NaN, not an error
    holed = [s.clone() for s in snaps[:2]]
    holed[1][4] = math.nan
    row = G.eta_table(holed)[0]
    assert math.isnan(row["eta_eff"]) and math.isnan(row["mu_norm_after"]) and math.isfinite(row["mu_norm_before"])
    with pytest.raises(ValueError, match="^steps must"):
        G.eta_table(snaps, steps=[1, 1])
    with pytest.raises(ValueError, match="^snapshots must"):
        G.eta_table(snaps[:1])


@pytest.mark.parametrize(
    "c, cn, kwargs, match",
    [
        (np.ones((3, 4)), np.ones((3, 5)), {}, "^c and c_next must have the same shape"),
        (np.ones((1, 4)), np.ones((1, 4)), {}, "^c must hold k >= 2"),
        (np.ones((3, 4)), np.ones((3, 4)), {"steps": 0}, "^steps must"),
        (np.ones((3, 4)), np.full((3, 4), np.inf), {}, "^c_next must be finite"),
        (np.ones(4), np.ones(4), {}, "^c must be a non-empty 2-D"),
    ],
)
def test_fit_argument_errors(c, cn, kwargs, match):
    with pytest.raises(ValueError, match=match):
        G.fit_eta(c, cn, **kwargs)


# ------------------------------------------------- eta under noise: per interval and pooled over a run


def _noisy_trajectory(k, d, eta, steps, intervals, sigma, seed):
    """Snapshots of ``intervals`` x ``steps`` Appendix D steps (theory's own step) from random unit means, each
    snapshot with independent isotropic noise of norm ~sigma per class mean, renormalised."""
    g = torch.Generator().manual_seed(seed)
    c = _unit(torch.randn(k, d, generator=g, dtype=torch.float64))
    snaps = [c]
    for _ in range(intervals):
        for _ in range(steps):
            c = theory_step(c, eta)
        snaps.append(c)
    return [_unit(s + sigma / math.sqrt(d) * torch.randn(k, d, generator=g, dtype=torch.float64)) for s in snaps]


@pytest.mark.slow
@pytest.mark.parametrize("eta, sigma", [(1.5, 0.075), (3.0, 0.3)])
def test_pooled_eta_is_unbiased_on_noisy_multi_step_trajectories(eta, sigma):
    """20 noisy runs of 4 intervals x 5 steps (k = 10, D = 128); the noise gives the first interval's fit R^2 ~ 0.9.
    Below eta_crit = 2.25 the means reach a zero sum in the first interval and then stand still (pure noise);
    above it they collapse. The pooled eta is within 5 % of the truth on average; the maximum over intervals
    of the per-interval estimates is not."""
    pooled, peak, first_r2 = [], [], []
    for seed in range(20):
        rows = G.eta_table(_noisy_trajectory(10, 128, eta, 5, 4, sigma, seed), steps=5)
        first_r2.append(rows[0]["r2_step"])
        est, se, used = G.pooled_eta(*([r[key] for r in rows] for key in ("eta_step", "eta_step_se", "r2_step")))
        assert used >= 1 and 0 < se < 0.2 * eta
        pooled.append(est)
        peak.append(np.nanmax([r["eta_step"] for r in rows]))
    assert 0.85 < np.median(first_r2) < 0.95
    assert abs(np.mean(pooled) / eta - 1) < 0.05, np.mean(pooled)
    assert abs(np.mean(peak) / eta - 1) > 0.05, np.mean(peak)  # why the maximum is not used


def test_stationary_noise_is_left_out_of_the_pooled_eta():
    """Zero-sum means stand still under every eta; independent noise on both snapshots is then all the motion,
    and the fit explains little of it, so the interval does not vote (a fit of noise finds eta ~ 1, which damps
    the noise of the first snapshot)."""
    e = simplex_etf(10, 64, seed=0, dtype=torch.float64, device="cpu")
    g = torch.Generator().manual_seed(4)
    noisy = [_unit(e + 0.02 * torch.randn(10, 64, generator=g, dtype=torch.float64)) for _ in range(2)]
    fit = G.fit_eta(noisy[0], noisy[1], steps=5)
    assert fit["r2_step"] < G.MIN_R2_STEP
    moving = G.fit_eta(*_noisy_trajectory(10, 64, 1.5, 5, 1, 0.02, 1), steps=5)
    assert moving["r2_step"] > 0.95 and moving["eta_step"] == pytest.approx(1.5, rel=0.05)
    rows = [moving, fit]
    est, se, used = G.pooled_eta(*([r[key] for r in rows] for key in ("eta_step", "eta_step_se", "r2_step")))
    assert used == 1 and est == moving["eta_step"] and se == moving["eta_step_se"]


def test_even_steps_near_collapse_do_not_determine_eta():
    """Near collapse two steps of eta = 3 and of eta' = -0.43 ((1 + eta'/9)/(1 - eta') = -(1 + 3/9)/(1 - 3)) move
    the means alike: with noise the fit says so (NaN), while three steps (odd: the sign differs) decide."""
    g = torch.Generator().manual_seed(0)
    base = _unit(torch.randn(1, 32, generator=g, dtype=torch.float64))
    c = _unit(base + 0.1 / math.sqrt(32) * torch.randn(10, 32, generator=g, dtype=torch.float64))
    for steps, decided in ((2, False), (3, True)):
        x = c
        for _ in range(steps):
            x = theory_step(x, 3.0)
        assert G.fit_eta(c, x, steps=steps)["eta_step"] == pytest.approx(3.0, abs=1e-9)  # exact data decide
        fit = G.fit_eta(c, _unit(x + 0.01 / math.sqrt(32) * torch.randn(10, 32, generator=g, dtype=torch.float64)),
                        steps=steps)
        assert fit["r2_step"] > 0.9
        if decided:
            assert fit["eta_step"] == pytest.approx(3.0, rel=0.05) and fit["eta_step_se"] < 0.1
        else:
            assert math.isnan(fit["eta_step"]) and math.isnan(fit["eta_step_se"])


def test_pooled_eta_weights_and_refusals():
    est, se, used = G.pooled_eta([1.0, 2.0, 50.0, math.nan], [0.1, 0.2, 0.01, 0.1], [0.9, 0.8, 0.3, 0.9])
    w = np.array([100.0, 25.0])
    assert used == 2 and est == pytest.approx((w * [1.0, 2.0]).sum() / w.sum()) and se == pytest.approx(w.sum() ** -0.5)
    assert G.pooled_eta([1.0], [0.1], [0.2])[2] == 0 and math.isnan(G.pooled_eta([], [], [])[0])
    with pytest.raises(ValueError, match="same length"):
        G.pooled_eta([1.0, 2.0], [0.1], [0.9, 0.9])
