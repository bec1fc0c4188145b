"""Tests of clop.prototypes: orthonormal prototypes (CLOP Section 4) and the simplex ETF."""

from __future__ import annotations

import doctest
import itertools

import numpy as np
import pytest
import torch

from clop import prototypes
from clop.prototypes import orthonormal, simplex_etf
from clop.util.device import default_device

ORTHO_SIZES = [(1, 1), (1, 7), (3, 3), (5, 17), (10, 128), (64, 64)]
ETF_SIZES = [(2, 1), (2, 5), (3, 2), (4, 3), (5, 4), (5, 10), (10, 9), (10, 64), (33, 32)]


@pytest.mark.parametrize("k,dim", ORTHO_SIZES)
@pytest.mark.parametrize("dtype,atol", [(torch.float32, 1e-6), (torch.float64, 1e-12)])
def test_orthonormal_rows(k, dim, dtype, atol):
    c = orthonormal(k, dim, seed=3, dtype=dtype, device="cpu")
    assert c.shape == (k, dim) and c.dtype == dtype
    gram = (c @ c.T).double()
    assert torch.allclose(gram, torch.eye(k, dtype=torch.float64), atol=atol, rtol=0)


@pytest.mark.parametrize("k,dim", [(1, 4), (3, 3), (6, 20)])
def test_orthonormal_is_polar_factor_of_the_gaussian_draw(k, dim):
    """Recompute the Gaussian draw from an identically seeded CPU generator; U V^T from numpy's SVD."""
    seed = 1234
    g = torch.Generator(device="cpu").manual_seed(seed)
    draw = torch.randn(k, dim, generator=g, dtype=torch.float64).numpy()
    u, _, vt = np.linalg.svd(draw, full_matrices=False)
    expected = u @ vt
    got = orthonormal(k, dim, seed=seed, dtype=torch.float64, device="cpu").numpy()
    np.testing.assert_allclose(got, expected, atol=1e-12, rtol=0)
    # independent characterisation of the polar factor: (G G^T)^(-1/2) G
    w, v = np.linalg.eigh(draw @ draw.T)
    np.testing.assert_allclose(got, (v / np.sqrt(w)) @ v.T @ draw, atol=1e-9, rtol=0)


@pytest.mark.parametrize("fn,k,dim", [(orthonormal, 4, 9), (simplex_etf, 5, 4)])
def test_seed_determinism(fn, k, dim):
    a = fn(k, dim, seed=7, device="cpu")
    b = fn(k, dim, seed=7, device="cpu")
    c = fn(k, dim, seed=8, device="cpu")
    assert torch.equal(a, b)
    assert not torch.allclose(a, c, atol=1e-3)
    # seed=None draws fresh entropy: two calls differ
    assert not torch.allclose(fn(k, dim, device="cpu"), fn(k, dim, device="cpu"), atol=1e-3)


@pytest.mark.parametrize("fn,k,dim", [(orthonormal, 4, 9), (simplex_etf, 5, 4)])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_dtype_and_device(fn, k, dim, dtype):
    x = fn(k, dim, seed=1, dtype=dtype, device="cpu")
    assert x.dtype == dtype and x.device.type == "cpu"
    ref = fn(k, dim, seed=1, dtype=torch.float64, device="cpu")
    # computed in float64 then cast: exactly the cast of the float64 result
    assert torch.equal(x, ref.to(dtype))
    default = fn(k, dim, seed=1, dtype=dtype)
    assert default.device == default_device()
    assert torch.equal(default.cpu(), x)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("fn", [orthonormal, simplex_etf])
def test_same_numbers_on_cuda(fn):  # pragma: no cover - no GPU on CI
    a = fn(5, 16, seed=2, device="cuda")
    assert a.device.type == "cuda"
    assert torch.equal(a.cpu(), fn(5, 16, seed=2, device="cpu"))


@pytest.mark.parametrize("k,dim", ETF_SIZES)
@pytest.mark.parametrize("dtype,atol", [(torch.float32, 1e-6), (torch.float64, 1e-12)])
def test_simplex_etf_properties(k, dim, dtype, atol):
    e = simplex_etf(k, dim, seed=11, dtype=dtype, device="cpu")
    assert e.shape == (k, dim) and e.dtype == dtype
    x = e.double().numpy()
    gram = x @ x.T
    np.testing.assert_allclose(np.diag(gram), np.ones(k), atol=atol, rtol=0)  # unit rows
    off = gram[~np.eye(k, dtype=bool)]
    np.testing.assert_allclose(off, np.full(off.shape, -1.0 / (k - 1)), atol=atol, rtol=0)  # equiangular
    np.testing.assert_allclose(x.sum(axis=0), np.zeros(dim), atol=10 * atol, rtol=0)  # centred
    s = np.linalg.svd(x, compute_uv=False)
    assert np.linalg.matrix_rank(x, tol=1e3 * atol) == k - 1
    # tight frame: the k-1 non-zero singular values are all equal to sqrt(k/(k-1))
    np.testing.assert_allclose(s[: k - 1], np.full(k - 1, np.sqrt(k / (k - 1))), atol=10 * atol, rtol=0)


def test_simplex_etf_subspace_is_random():
    """The ETF is placed in a seeded random subspace, not in the span of fixed coordinate vectors."""
    a = simplex_etf(4, 10, seed=0, dtype=torch.float64, device="cpu").numpy()
    b = simplex_etf(4, 10, seed=1, dtype=torch.float64, device="cpu").numpy()
    # projector onto each row space; different seeds give different 3-dim subspaces
    pa = np.linalg.pinv(a) @ a
    pb = np.linalg.pinv(b) @ b
    assert np.abs(pa - pb).max() > 1e-2
    # and the frame uses more than the first k coordinates (not I - 11^T/d padded with zeros)
    assert np.abs(a[:, 4:]).max() > 1e-2


@pytest.mark.parametrize("k,dim", [(4, 3), (2, 1), (65, 64)])
def test_orthonormal_rejects_k_above_dim(k, dim):
    with pytest.raises(ValueError, match=rf"k <= dim.*k={k}, dim={dim}"):
        orthonormal(k, dim, seed=0, device="cpu")


@pytest.mark.parametrize("k,dim", [(5, 3), (3, 1), (66, 64)])
def test_etf_rejects_k_above_dim_plus_one(k, dim):
    with pytest.raises(ValueError, match=rf"k <= dim \+ 1.*k={k}, dim={dim}"):
        simplex_etf(k, dim, seed=0, device="cpu")


BAD_SIZES = [0, -1, 2.5, True, "3", None]


@pytest.mark.parametrize("fn", [orthonormal, simplex_etf])
@pytest.mark.parametrize("bad", BAD_SIZES)
def test_bad_sizes(fn, bad):
    with pytest.raises(ValueError, match=r"^k must be"):
        fn(bad, 4, device="cpu")
    with pytest.raises(ValueError, match=r"^dim must be"):
        fn(2, bad, device="cpu")


def test_etf_needs_two_points():
    with pytest.raises(ValueError, match=r"^simplex ETF needs 2 <= k <= dim \+ 1; got k=1, dim=4$"):
        simplex_etf(1, 4, device="cpu")


@pytest.mark.parametrize("fn", [orthonormal, simplex_etf])
def test_bad_seed_dtype_device(fn):
    for seed in (-1, 1.5, "a", True):
        with pytest.raises(ValueError, match=r"^seed must be"):
            fn(2, 3, seed=seed, device="cpu")
    for dtype in (torch.int64, torch.bool, "float32", np.float32):
        with pytest.raises(ValueError, match=r"^dtype must be"):
            fn(2, 3, dtype=dtype, device="cpu")
    with pytest.raises(ValueError, match=r"device="):
        fn(2, 3, device="not-a-device")


def test_numpy_integers_accepted():
    a = orthonormal(np.int64(3), np.int32(5), seed=np.int64(4), device="cpu")
    assert torch.equal(a, orthonormal(3, 5, seed=4, device="cpu"))


def test_doctests():
    result = doctest.testmod(prototypes)
    assert result.attempted > 0 and result.failed == 0


def test_orthonormal_rows_are_uniform_on_average():
    """Haar frames: E[c c^T] = I/dim for each row; a sign or ordering bias in the SVD would show here."""
    dim = 4
    acc = np.zeros((dim, dim))
    n = 400
    for seed, row in itertools.product(range(n), range(2)):
        c = orthonormal(2, dim, seed=seed, dtype=torch.float64, device="cpu").numpy()[row]
        acc += np.outer(c, c)
    acc /= 2 * n
    np.testing.assert_allclose(acc, np.eye(dim) / dim, atol=0.04)
