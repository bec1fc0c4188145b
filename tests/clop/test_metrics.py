"""Tests of clop.metrics against independent numpy / loop computations and known cases."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest
import torch

from clop import metrics
from clop.metrics import (
    alignment,
    collapse_metrics,
    covariance,
    covariance_eigenvalues,
    entropy_rank,
    mean_norm,
    rankme,
    singular_values,
    stable_rank,
    uniformity,
)
from clop.prototypes import simplex_etf


def _anisotropic(n=300, d=7, seed=0, shift=0.0):
    rng = np.random.default_rng(seed)
    scales = np.linspace(0.2, 3.0, d)
    mix = np.linalg.qr(rng.standard_normal((d, d)))[0]
    return rng.standard_normal((n, d)) * scales @ mix + shift


# ---------------------------------------------------------------- independent reference formulas


def _np_cov_eigs(z):
    """Eigenvalues of the 1/N covariance from numpy's np.cov and eigh, descending."""
    sigma = np.cov(np.asarray(z, dtype=np.float64), rowvar=False, bias=True)
    return np.linalg.eigvalsh(np.atleast_2d(sigma))[::-1]


def _ref_stable_rank(eigs):
    return sum(eigs) ** 2 / sum(e * e for e in eigs)


def _ref_entropy_rank(eigs, cut):
    lam = [e for e in eigs if e > cut]
    total = sum(lam)
    return math.exp(-sum((e / total) * math.log(e / total) for e in lam))


def _unit(v):
    n = math.sqrt(sum(x * x for x in v))
    return [x / n for x in v] if n > 0 else [0.0 for _ in v]


# ---------------------------------------------------------------- spectrum and covariance


def test_covariance_is_population_covariance():
    z = _anisotropic(shift=5.0)
    np.testing.assert_allclose(covariance(z).numpy(), np.cov(z, rowvar=False, bias=True), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("center", [False, True])
@pytest.mark.parametrize("shape", [(40, 6), (6, 40), (5, 5)])
def test_singular_values_match_numpy(center, shape):
    z = np.float32(np.random.default_rng(1).standard_normal(shape) + 2.0).astype(np.float64)
    ref = np.linalg.svd(z - z.mean(axis=0) if center else z, compute_uv=False)
    got = singular_values(torch.tensor(z, dtype=torch.float32), center=center)  # exact: z is float32-representable
    assert got.dtype == torch.float64 and got.shape == (min(shape),)
    assert bool((got[:-1] >= got[1:]).all())
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-10, atol=1e-10)


def test_covariance_eigenvalues_match_numpy():
    z = _anisotropic(n=50, d=7, shift=-3.0)
    np.testing.assert_allclose(covariance_eigenvalues(z).numpy(), _np_cov_eigs(z), rtol=1e-10, atol=1e-12)
    # N - 1 < D: rank N-1, padded with zeros to length D
    z = _anisotropic(n=4, d=7)
    got = covariance_eigenvalues(z).numpy()
    assert got.shape == (7,)
    np.testing.assert_allclose(got[:3], _np_cov_eigs(z)[:3], rtol=1e-10)
    assert (got[3:] == 0).all()


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("shift", [0.0, 10.0])
def test_stable_and_entropy_rank_match_np_cov(seed, shift):
    z = _anisotropic(seed=seed, shift=shift)
    eigs = list(_np_cov_eigs(z))
    assert stable_rank(z) == pytest.approx(_ref_stable_rank(eigs), rel=1e-10)
    assert entropy_rank(z) == pytest.approx(_ref_entropy_rank(eigs, 0.0), rel=1e-10)
    # the trace/Frobenius form of the note, straight from np.cov
    sigma = np.cov(z, rowvar=False, bias=True)
    assert stable_rank(z) == pytest.approx(np.trace(sigma) ** 2 / np.sum(sigma * sigma), rel=1e-10)


def test_rankme_matches_formula():
    z = _anisotropic(n=60, d=9, shift=1.5)
    s = np.linalg.svd(z, compute_uv=False)  # uncentred, as in Garrido et al.
    for eps in (1e-7, 0.0, 1e-3):
        p = s / s.sum() + eps
        assert rankme(z, eps=eps) == pytest.approx(math.exp(-sum(pk * math.log(pk) for pk in p)), rel=1e-10)
    assert rankme(z) == rankme(z, eps=1e-7)
    # uncentred: a pure translation changes it (it would not if the data were centred first)
    assert abs(rankme(z + 100.0) - rankme(z)) > 1.0


@pytest.mark.parametrize("alpha", [2, 1, 0.5, 3])
def test_alignment_matches_loop(alpha):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((25, 5)) * 3
    y = x + 0.5 * rng.standard_normal((25, 5))
    ref = 0.0
    for xi, yi in zip(x.tolist(), y.tolist()):
        ux, uy = _unit(xi), _unit(yi)
        ref += math.sqrt(sum((a - b) ** 2 for a, b in zip(ux, uy))) ** alpha
    ref /= len(x)
    assert alignment(torch.tensor(x), torch.tensor(y), alpha=alpha) == pytest.approx(ref, rel=1e-10)
    assert alignment(x, x, alpha=alpha) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("t", [2, 0.5])
@pytest.mark.parametrize("block_size", [1024, 3, 1])
def test_uniformity_matches_loop(t, block_size):
    z = np.random.default_rng(3).standard_normal((23, 4)) * 2 + 0.3
    u = [_unit(r) for r in z.tolist()]
    terms = [
        math.exp(-t * sum((a - b) ** 2 for a, b in zip(u[i], u[j])))
        for i in range(len(u))
        for j in range(i + 1, len(u))
    ]
    ref = math.log(sum(terms) / len(terms))
    assert uniformity(z, t=t, block_size=block_size) == pytest.approx(ref, rel=1e-10, abs=1e-12)


def test_uniformity_extremes():
    # all rows identical -> every distance 0 -> log 1 = 0; antipodal pair -> log exp(-4t)
    assert uniformity(np.ones((6, 3))) == pytest.approx(0.0, abs=1e-12)
    assert uniformity(np.array([[1.0, 0.0], [-2.0, 0.0]]), t=2) == pytest.approx(-8.0, rel=1e-12)


def test_mean_norm():
    z = _anisotropic(n=30, d=4, shift=2.0)
    assert mean_norm(z) == pytest.approx(np.linalg.norm(z.mean(axis=0)), rel=1e-12)
    u = z / np.linalg.norm(z, axis=1, keepdims=True)
    assert mean_norm(z, normalize=True) == pytest.approx(np.linalg.norm(u.mean(axis=0)), rel=1e-12)
    e = simplex_etf(5, 8, seed=0, dtype=torch.float64, device="cpu")
    assert mean_norm(e) == pytest.approx(0.0, abs=1e-12)
    assert mean_norm(np.tile([[3.0, 4.0]], (7, 1)), normalize=True) == pytest.approx(1.0, rel=1e-12)


# ---------------------------------------------------------------- known cases


def test_isotropic_gaussian_has_stable_rank_close_to_d():
    """Sample covariance of N(0, I_D): srank ~ D / (1 + D/N) (Marchenko-Pastur); 1% tolerance at N = 20000."""
    d = 8
    z = torch.randn(20000, d, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for value in (stable_rank(z), entropy_rank(z), rankme(z)):
        assert d * 0.99 < value <= d + 1e-9
    # a strongly anisotropic spectrum is far from D
    assert stable_rank(z * torch.logspace(0, -3, d, dtype=torch.float64)) < 2.0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_rank_one_data(dtype):
    g = torch.Generator().manual_seed(4)
    a = torch.randn(200, 1, generator=g, dtype=dtype)
    v = torch.randn(1, 16, generator=g, dtype=dtype)
    for z in (a @ v, a @ v + torch.randn(1, 16, generator=g, dtype=dtype)):  # with and without a mean shift
        assert stable_rank(z) == pytest.approx(1.0, abs=1e-12)
        assert entropy_rank(z) == pytest.approx(1.0, abs=1e-12)
        lam = covariance_eigenvalues(z)
        assert int((lam > 0).sum()) == 1
        assert lam[0].item() == pytest.approx(np.cov(z.double().numpy(), rowvar=False, bias=True).trace(), rel=1e-5)


@pytest.mark.parametrize("k,dim", [(2, 3), (6, 10), (6, 5), (12, 40)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_simplex_etf_has_k_minus_one_singular_values(k, dim, dtype):
    e = simplex_etf(k, dim, seed=5, dtype=dtype, device="cpu")
    s = singular_values(e)
    tol = max(e.shape) * torch.finfo(dtype).eps * float(s[0])  # numpy.linalg.matrix_rank's rule
    assert int((s > tol).sum()) == k - 1
    assert int((s > 1e-3).sum()) == k - 1  # the gap is huge, not a tolerance artefact
    # ETF rows are centred with equal covariance eigenvalues on k-1 directions
    assert stable_rank(e) == pytest.approx(k - 1, rel=1e-9)
    assert entropy_rank(e) == pytest.approx(k - 1, rel=1e-9)


@pytest.mark.parametrize("c", [1e-150, 1e-3, 7.0, 1e150])
def test_scale_invariance(c):
    z = _anisotropic(n=80, d=6, shift=0.7)
    zt = torch.tensor(z)
    for fn in (stable_rank, entropy_rank, rankme):
        assert fn(zt * c) == pytest.approx(fn(zt), rel=1e-10)
    assert alignment(zt * c, zt.flip(0) * c) == pytest.approx(alignment(zt, zt.flip(0)), rel=1e-10)
    assert uniformity(zt * c) == pytest.approx(uniformity(zt), rel=1e-10)


def test_translation_invariance_of_covariance_ranks():
    z = _anisotropic(n=80, d=6)
    for fn in (stable_rank, entropy_rank):
        assert fn(z + 50.0) == pytest.approx(fn(z), rel=1e-9)


def test_small_but_real_variance_is_kept():
    """An eigenvalue far above round-off but tiny relative to the rest still counts."""
    rng = np.random.default_rng(6)
    z = np.zeros((100, 3))
    z[:, 0] = rng.standard_normal(100)
    z[:, 1] = 1e-5 * rng.standard_normal(100)  # variance ratio ~1e-10, singular value ratio ~1e-5 >> 100 * 2.2e-16
    eigs = list(_np_cov_eigs(z))
    assert entropy_rank(z) == pytest.approx(_ref_entropy_rank(eigs, 1e-30), rel=1e-8)
    assert entropy_rank(z) > 1.0
    assert int((covariance_eigenvalues(z) > 0).sum()) == 2


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("n,d", [(1024, 64), (300, 100)])
def test_low_precision_isotropic_data_keeps_its_rank(dtype, n, d):
    """Half-precision storage rounds each entry by ~eps/2; the rank cut must not read that as 'no variance'.

    Reference 1: the same rounded numbers given as float64 (only the tolerance differs: identical unless the
    cut removes real singular values). Reference 2: the unrounded float64 data (the rounding itself moves the
    stable rank by ~eps only).
    """
    z64 = torch.randn(n, d, generator=torch.Generator().manual_seed(n + d), dtype=torch.float64)
    low = z64.to(dtype)
    for fn in (stable_rank, entropy_rank):
        assert fn(low) == pytest.approx(fn(low.double()), rel=1e-12)
        assert fn(low) == pytest.approx(fn(z64), rel=1e-2)
    assert stable_rank(low) > 0.5 * d
    eig = covariance_eigenvalues(low)
    assert int((eig > 0).sum()) == d  # no real direction is cut


def test_float32_data_with_mean_offset_keeps_its_rank():
    """10 + 0.01 x in float32: the variance is ~1e-3 of the offset, i.e. 1e4 eps(float32) above round-off.

    (The former cut, max(N, D) eps s_max(z), returned 0.0 here, and for (4096, 256) as well.)
    """
    z64 = 10.0 + 0.01 * torch.randn(1024, 64, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    z32 = z64.float()
    ref_sr, ref_er = stable_rank(z64), entropy_rank(z64)
    assert ref_sr > 50  # sanity of the reference (Marchenko-Pastur: ~ D / (1 + D/N) = 60)
    assert stable_rank(z32) == pytest.approx(ref_sr, rel=1e-3)
    assert entropy_rank(z32) == pytest.approx(ref_er, rel=1e-3)
    assert collapse_metrics(z32)["stable_rank"] == pytest.approx(ref_sr, rel=1e-3)


def test_default_rtol():
    eps32 = torch.finfo(torch.float32).eps
    eps64 = torch.finfo(torch.float64).eps
    assert metrics.default_rtol(4096, 256, eps32) == pytest.approx(10 * eps32 + 4096 * eps64, rel=1e-15)
    with pytest.raises(ValueError, match=r"^n must be"):
        metrics.default_rtol(0, 3, eps32)
    with pytest.raises(ValueError, match=r"^eps must be"):
        metrics.default_rtol(3, 3, -1.0)


# ---------------------------------------------------------------- collapsed inputs


def _roundoff_equal_rows(n=400, d=32, seed=7):
    """Rows that are mathematically equal (normalise c_i * x) but differ by float32 round-off."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, d, generator=g)
    c = 0.5 + 1.5 * torch.rand(n, 1, generator=g)
    return torch.nn.functional.normalize(c * x, dim=1)


def test_roundoff_equal_rows_count_as_no_variance():
    z = _roundoff_equal_rows()
    assert float(singular_values(z, center=True)[0]) > 0  # the rows really do differ in float32 ...
    assert stable_rank(z) == 0.0  # ... but only by round-off, which the tolerance removes
    assert entropy_rank(z) == 0.0
    assert bool((covariance_eigenvalues(z) == 0).all())
    # without the tolerance the round-off noise would be read as a spread-out spectrum
    assert stable_rank(z, rtol=0.0) > 1.5
    assert entropy_rank(z, rtol=0.0) > 1.5


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("n,d", [(400, 32), (2000, 8), (64, 256)])
def test_roundoff_equal_rows_in_every_precision(dtype, n, d):
    """Rows normalised in the storage dtype (coherent per-row round-off, the worst case for the cut)."""
    g = torch.Generator().manual_seed(n + d)
    x = torch.randn(1, d, generator=g)
    c = 0.5 + 1.5 * torch.rand(n, 1, generator=g)
    z = torch.nn.functional.normalize((c * x).to(dtype), dim=1)
    assert float(singular_values(z, center=True)[0]) > 0
    assert stable_rank(z) == 0.0 and entropy_rank(z) == 0.0


COLLAPSED = {
    "zeros": lambda: torch.zeros(50, 8),
    "all_equal": lambda: torch.randn(1, 8, generator=torch.Generator().manual_seed(8)).repeat(1000, 1),
    "all_equal_f64": lambda: torch.full((300, 5), 0.1, dtype=torch.float64),
    "roundoff_equal": _roundoff_equal_rows,
    "rank_one": lambda: torch.randn(50, 1, generator=torch.Generator().manual_seed(9))
    @ torch.randn(1, 8, generator=torch.Generator().manual_seed(10)),
    "one_nonzero_row": lambda: torch.cat([torch.ones(1, 8), torch.zeros(49, 8)]),
    "tiny": lambda: torch.full((10, 3), 1e-310, dtype=torch.float64),
}


@pytest.mark.parametrize("name", sorted(COLLAPSED))
def test_collapsed_inputs_give_finite_values(name):
    z = COLLAPSED[name]()
    out = collapse_metrics(z, top=10)
    assert all(math.isfinite(v) for v in out.values()), out
    assert math.isfinite(alignment(z, z.flip(0)))
    assert math.isfinite(mean_norm(z, normalize=True))
    if name in ("zeros", "all_equal", "all_equal_f64", "roundoff_equal", "tiny"):
        assert out["stable_rank"] == 0.0 and out["entropy_rank"] == 0.0
    else:
        assert out["stable_rank"] == pytest.approx(1.0, abs=1e-9)
        assert out["entropy_rank"] == pytest.approx(1.0, abs=1e-9)
    if name == "zeros":
        assert out["rankme"] == 0.0 and out["sv1"] == 0.0 and out["mean_norm"] == 0.0
    else:
        assert out["rankme"] == pytest.approx(1.0, abs=1e-3)  # one non-zero singular value


def test_collapse_metrics_agree_with_individual_functions():
    z = torch.tensor(_anisotropic(n=64, d=6, shift=0.4), dtype=torch.float32)
    out = collapse_metrics(z, top=8)
    assert set(out) == {"stable_rank", "entropy_rank", "rankme", "mean_norm", "uniformity"} | {
        f"sv{i}" for i in range(1, 9)
    }
    assert out["stable_rank"] == stable_rank(z)
    assert out["entropy_rank"] == entropy_rank(z)
    assert out["rankme"] == pytest.approx(rankme(z), rel=1e-12)
    assert out["mean_norm"] == pytest.approx(mean_norm(z), rel=1e-12)
    assert out["uniformity"] == pytest.approx(uniformity(z), rel=1e-12)
    s = np.linalg.svd(z.double().numpy(), compute_uv=False)
    np.testing.assert_allclose([out[f"sv{i}"] for i in range(1, 7)], s, rtol=1e-10)
    assert out["sv7"] == 0.0 and out["sv8"] == 0.0  # beyond min(N, D)
    assert all(isinstance(v, float) for v in out.values())


def test_numpy_and_torch_inputs_agree_and_gradients_are_detached():
    z = _anisotropic(n=30, d=5)
    zt = torch.tensor(z, requires_grad=True)
    assert stable_rank(z) == stable_rank(zt)
    assert rankme(z.tolist()) == rankme(zt)
    assert torch.equal(covariance(z), covariance(zt))
    assert not covariance(zt).requires_grad
    assert stable_rank(z.astype(np.float32)) == pytest.approx(stable_rank(z), rel=1e-5)
    assert stable_rank(np.arange(12).reshape(6, 2) ** 2) == stable_rank(np.arange(12.0).reshape(6, 2) ** 2)


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("fn", [singular_values, covariance, covariance_eigenvalues, stable_rank, entropy_rank,
                                rankme, uniformity, mean_norm, collapse_metrics])
def test_not_two_dimensional(fn):
    for bad in (np.ones(5), np.ones((2, 3, 4)), np.ones((0, 3)), np.ones((3, 0))):
        with pytest.raises(ValueError, match=r"^z must"):
            fn(bad)
    with pytest.raises(ValueError, match=r"^z contains NaN or inf"):
        fn(np.array([[1.0, np.nan], [0.0, 1.0]]))
    with pytest.raises(ValueError, match=r"^z must hold real numbers"):
        fn(np.array([["a", "b"], ["c", "d"]]))


@pytest.mark.parametrize("fn", [covariance, covariance_eigenvalues, stable_rank, entropy_rank, uniformity,
                                collapse_metrics])
def test_single_row_rejected_where_variance_needed(fn):
    with pytest.raises(ValueError, match=r"^z needs at least N = 2 rows.*\(1, 3\)"):
        fn(np.ones((1, 3)))


def test_single_row_fine_where_no_variance_needed():
    assert singular_values(np.array([[3.0, 4.0]])).tolist() == [5.0]
    assert rankme(np.array([[3.0, 4.0]])) == pytest.approx(1.0, abs=1e-5)
    assert mean_norm(np.array([[3.0, 4.0]])) == 5.0


def test_alignment_errors():
    with pytest.raises(ValueError, match=r"z1 and z2 must have the same shape.*\(4, 3\).*\(4, 2\)"):
        alignment(np.ones((4, 3)), np.ones((4, 2)))
    with pytest.raises(ValueError, match=r"^z1 must be 2-D"):
        alignment(np.ones(3), np.ones(3))
    with pytest.raises(ValueError, match=r"^z2 must be 2-D"):
        alignment(np.ones((3, 1)), np.ones(3))
    for alpha in (0, -1, float("nan"), "2", True):
        with pytest.raises(ValueError, match=r"^alpha must be"):
            alignment(np.ones((2, 2)), np.ones((2, 2)), alpha=alpha)


def test_parameter_errors():
    z = np.random.default_rng(0).standard_normal((5, 3))
    for t in (0, -2, float("inf")):
        with pytest.raises(ValueError, match=r"^t must be"):
            uniformity(z, t=t)
    with pytest.raises(ValueError, match=r"^block_size must be"):
        uniformity(z, block_size=0)
    with pytest.raises(ValueError, match=r"^eps must be"):
        rankme(z, eps=-1e-7)
    for rtol in (-1.0, float("nan")):
        with pytest.raises(ValueError, match=r"^rtol must be"):
            stable_rank(z, rtol=rtol)
    with pytest.raises(ValueError, match=r"^top must be"):
        collapse_metrics(z, top=-1)


def test_doctests():
    result = doctest.testmod(metrics)
    assert result.attempted > 0 and result.failed == 0
